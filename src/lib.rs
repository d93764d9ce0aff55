//! sup: a process supervisor and job scheduler.
//!
//! `run` dispatches subcommands and is the only place that chooses exit codes and prints
//! `sup: error: …`: 0 success, 1 failure, 2 usage error (clap's own); the daemon's own status
//! (a critical job's code, 137 after a forced shutdown) comes back from `daemon::run`. The modules stay private:
//! the binary calls `run`, and `fuzzing` is the one other door in, for fuzz targets and the
//! corpus replay test.

mod cli;
mod client;
mod config;
mod control;
mod core;
mod daemon;
mod fail;
mod import;
mod logging;
mod manual;
mod paths;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command};
use fail::{Fail, Outcome};

#[doc(hidden)]
pub mod fuzzing;

/// The whole `sup` command line: what `src/main.rs` calls.
pub fn run() -> ExitCode {
    // The daemon's notification sender: internal, so not a clap subcommand (see deliver.rs).
    if std::env::args().nth(1).as_deref() == Some(daemon::deliver::SUBCOMMAND) {
        return daemon::deliver::main();
    }
    // The man page for `make man`: internal too, so that completions do not offer it.
    if std::env::args().nth(1).as_deref() == Some(manual::MAN) {
        return exit(manual::man());
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Daemon(ref args)) => daemon::run(&cli.global, args).map(Outcome::Status),
        Some(Command::Check { json }) => check(&cli.global, json),
        Some(Command::Shell) => client::shell::run(&cli.global),
        Some(Command::Top) => client::top::run(&cli.global),
        Some(Command::Completions { shell }) => manual::completions(shell),
        Some(Command::Import {
            from: cli::ImportFrom::Supervisord { ref file },
        }) => import::supervisord(file),
        Some(Command::Import {
            from: cli::ImportFrom::ProcessCompose { ref file },
        }) => import::process_compose(file),
        Some(command) => client::run(&cli.global, command),
        None if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() => {
            client::shell::run(&cli.global)
        }
        None => {
            // Not on a terminal: a script gets the usage, and usage errors exit 2.
            let _ = Cli::command().print_help();
            return ExitCode::from(2);
        }
    };
    exit(result)
}

fn exit(result: Result<Outcome, Fail>) -> ExitCode {
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Partial) => ExitCode::from(1),
        Ok(Outcome::Status(code)) => ExitCode::from(code),
        Err(fail) => {
            eprintln!("sup: error: {fail}");
            ExitCode::from(1)
        }
    }
}

/// `sup check`: every error, or `ok: N programs, M instances`; warnings either way (errors
/// first, since they are what stops the config).
fn check(global: &cli::Global, json: bool) -> Result<Outcome, Fail> {
    let env = paths::Env::from_process();
    let path = paths::config_path(global.config.as_deref(), &env);
    let loaded = config::check(&path);
    let (errors, warnings) = match &loaded {
        Ok(cfg) => (&[][..], &cfg.warnings[..]),
        Err(r) => (&r.errors[..], &r.warnings[..]),
    };
    if json {
        let all = |errors: &[config::ConfigError]| -> Vec<serde_json::Value> {
            errors.iter().map(config::ConfigError::to_json).collect()
        };
        let doc = match &loaded {
            Ok(cfg) => serde_json::json!({
                "ok": true,
                "programs": cfg.programs.len(),
                "instances": cfg.instance_count(),
                "errors": [],
                "warnings": all(warnings),
            }),
            Err(_) => serde_json::json!({
                "ok": false,
                "errors": all(errors),
                "warnings": all(warnings),
            }),
        };
        println!("{doc}");
        return Ok(if loaded.is_ok() {
            Outcome::Ok
        } else {
            Outcome::Partial
        });
    }
    for e in errors {
        eprintln!("sup: error: {e}");
    }
    for w in warnings {
        eprintln!("sup: warning: {w}");
    }
    match &loaded {
        Ok(cfg) => {
            println!(
                "ok: {} program{}, {} instance{}",
                cfg.programs.len(),
                plural(cfg.programs.len()),
                cfg.instance_count(),
                plural(cfg.instance_count())
            );
            Ok(Outcome::Ok)
        }
        Err(_) => {
            eprintln!(
                "sup: {} error{} in {}",
                errors.len(),
                plural(errors.len()),
                path.display()
            );
            Ok(Outcome::Partial)
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
