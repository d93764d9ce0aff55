//! The command line, as clap definitions only. Validation beyond what clap checks happens in
//! the commands themselves; exit codes are chosen in `main`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sup",
    version,
    about = "A process supervisor and job scheduler",
    long_about = "sup keeps programs alive, runs interval and cron jobs, and captures their \
                  output. `sup daemon` supervises; every other subcommand talks to it over its \
                  control socket.",
    after_help = "With no subcommand on a terminal, sup opens the control shell.\n\n\
                  Exit status: 0 success; 1 failure (an unknown name, no daemon listening, a \
                  transition that did not reach the wanted state, config errors); 2 usage error."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags that work before or after the subcommand.
#[derive(Debug, Clone, Default, Args)]
pub struct Global {
    /// The control socket (else $SUP_SOCKET, daemon.socket, /run/sup/sup.sock for root,
    /// $XDG_RUNTIME_DIR/sup/sup.sock)
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The config file or directory (else $SUP_CONFIG, ./sup.yaml, ./sup.d/, and for root
    /// /etc/sup/sup.yaml or /etc/sup/sup.d/)
    #[arg(short = 'c', long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// How long to wait for the daemon's answer, waiting requests included (else
    /// $SUP_TIMEOUT; default 30s, and for start/stop/restart/reload/shutdown the longest
    /// their jobs may take plus 30s)
    #[arg(long, global = true, value_name = "DURATION", env = "SUP_TIMEOUT",
          value_parser = crate::config::duration::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Talk to a daemon over its HTTP API (daemon.http.listen) instead of the control socket,
    /// e.g. http://127.0.0.1:8080 (else $SUP_URL)
    #[arg(long, global = true, value_name = "URL", env = "SUP_URL")]
    pub url: Option<String>,
    /// The bearer token for --url, one word in a file (else $SUP_TOKEN_FILE)
    #[arg(long, global = true, value_name = "PATH", env = "SUP_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// For an https:// --url: trust the certificates in this PEM file (a self-signed
    /// daemon.http.tls.cert) instead of the built-in roots (else $SUP_CA_FILE)
    #[arg(long, global = true, value_name = "PATH", env = "SUP_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Supervise in the foreground until SIGTERM, SIGINT or `sup shutdown`
    Daemon(DaemonArgs),
    /// Validate the config and print every error
    Check {
        /// Errors and warnings as JSON (file, line, column, key, message, hint)
        #[arg(long)]
        json: bool,
    },
    /// One line per instance (or a JSON array with --json)
    Status {
        /// Programs (all their instances) or instances such as web:1
        names: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Start programs or instances and wait until they run
    Start(Targets),
    /// Stop programs or instances and wait until nothing is left
    Stop(Targets),
    /// Stop, then start again
    Restart {
        #[command(flatten)]
        targets: Targets,
        /// One instance at a time, each once the previous one is running again
        #[arg(long)]
        rolling: bool,
    },
    /// Send a signal to the instances' process groups (or their leaders)
    Signal {
        /// A signal name (TERM, SIGHUP, usr1) or number
        signal: String,
        #[arg(required = true)]
        names: Vec<String>,
        /// Signal the leader only, not its process group (a master that retires its own
        /// workers on HUP: gunicorn, nginx, php-fpm)
        #[arg(long, conflicts_with = "group")]
        main: bool,
        /// Signal the whole process group, whatever the job's signal_target says
        #[arg(long)]
        group: bool,
        /// Per-instance outcomes as JSON
        #[arg(long)]
        json: bool,
    },
    /// Re-read the config and apply the difference
    Reload {
        /// Print the plan and change nothing
        #[arg(long)]
        dry_run: bool,
        /// The plan and its errors as JSON
        #[arg(long)]
        json: bool,
    },
    /// Show an instance's captured output, or with --events the daemon's event log
    Tail {
        /// Keep streaming new output until interrupted
        #[arg(short = 'f', long)]
        follow: bool,
        /// How many lines to show first
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
        /// Show stderr instead of stdout
        #[arg(long, conflicts_with = "events")]
        stderr: bool,
        /// One JSON object per line: stream, time (from `timestamps`) and text
        #[arg(long)]
        json: bool,
        /// The daemon's own event log (daemon.logfile) instead of a job's output
        #[arg(long, conflicts_with = "name")]
        events: bool,
        #[arg(required_unless_present = "events")]
        name: Option<String>,
    },
    /// Apply the config's new or changed definition of these programs only (starting a new one)
    Add {
        /// Programs (or groups) as the config now has them
        #[arg(required = true)]
        names: Vec<String>,
        /// The plan and its outcomes as JSON, as `reload --json`
        #[arg(long)]
        json: bool,
    },
    /// Stop and drop programs that are no longer in the config
    Remove {
        /// Programs (or groups) the config no longer has
        #[arg(required = true)]
        names: Vec<String>,
        /// The plan and its outcomes as JSON, as `reload --json`
        #[arg(long)]
        json: bool,
    },
    /// Attach to a running instance: its output, Ctrl-C stops it; ends when it is down
    Fg { name: String },
    /// Empty the output files of programs or instances, even while they run
    Clear {
        /// Programs, instances (web:1), groups or `all`
        #[arg(required = true)]
        names: Vec<String>,
        /// Per-instance outcomes as JSON
        #[arg(long)]
        json: bool,
    },
    /// The daemon's pid, or the pids of instances
    Pid {
        name: Option<String>,
        /// The pids as JSON
        #[arg(long)]
        json: bool,
    },
    /// Reopen every log file (after an external logrotate)
    Logreopen,
    /// Stop every job, then the daemon exits
    Shutdown,
    /// Interactive control shell
    Shell,
    /// Live full-screen dashboard
    Top,
    /// Translate another supervisor's config into sup's YAML (printed on stdout; what could
    /// not be translated goes to stderr)
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// Print the completion script for a shell (bash, zsh, fish, …)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The configs `sup import` reads.
#[derive(Debug, Subcommand)]
pub enum ImportFrom {
    /// A supervisord.conf, with the files its [include] sections name
    Supervisord {
        /// The supervisord config (such as /etc/supervisor/supervisord.conf)
        file: PathBuf,
    },
    /// A process-compose.yaml
    #[command(name = "process-compose")]
    ProcessCompose {
        /// The process-compose file (such as ./process-compose.yaml)
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct Targets {
    /// Programs, instances (web:1) or `all`
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Return once the request is taken, without waiting for the outcome
    #[arg(long)]
    pub no_wait: bool,
    /// Per-instance outcomes as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Where to write the pidfile (default: sup.pid beside the socket)
    #[arg(long, value_name = "PATH")]
    pub pidfile: Option<PathBuf>,
    /// The event log (default: <logdir>/sup.log)
    #[arg(long, value_name = "PATH")]
    pub logfile: Option<PathBuf>,
    /// Do not copy the event log to stderr
    #[arg(short, long)]
    pub quiet: bool,
    /// Run as a container's init (implied when sup is PID 1): forward SIGUSR1 and SIGWINCH
    /// to the jobs, stop on SIGQUIT too, bound the shutdown by --grace (default 10s)
    #[arg(long)]
    pub init: bool,
    /// The longest a shutdown may take: then every job left is killed (SIGKILL) and the
    /// daemon exits (default 10s with --init, else unbounded)
    #[arg(long, value_name = "DURATION",
          value_parser = crate::config::duration::parse_duration)]
    pub grace: Option<std::time::Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = Cli::try_parse_from(["sup", "status", "--socket", "/x.sock", "-c", "a.yaml"])
            .expect("parses");
        assert_eq!(
            cli.global.socket.as_deref(),
            Some(std::path::Path::new("/x.sock"))
        );
        assert_eq!(
            cli.global.config.as_deref(),
            Some(std::path::Path::new("a.yaml"))
        );
    }

    #[test]
    fn signal_takes_main_or_group_but_not_both() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|c| c.command);
        assert!(matches!(
            parse(&["sup", "signal", "--main", "HUP", "web"]),
            Ok(Some(Command::Signal {
                main: true,
                group: false,
                ..
            }))
        ));
        assert!(matches!(
            parse(&["sup", "signal", "HUP", "web", "--group"]),
            Ok(Some(Command::Signal {
                main: false,
                group: true,
                ..
            }))
        ));
        assert!(parse(&["sup", "signal", "HUP", "web", "--main", "--group"]).is_err());
    }

    #[test]
    fn daemon_takes_init_and_grace() {
        let cli =
            Cli::try_parse_from(["sup", "daemon", "--init", "--grace", "3s"]).expect("parses");
        let Some(Command::Daemon(args)) = cli.command else {
            panic!("not the daemon: {cli:?}");
        };
        assert!(args.init);
        assert_eq!(args.grace, Some(std::time::Duration::from_secs(3)));
        assert!(Cli::try_parse_from(["sup", "daemon", "--grace", "soon"]).is_err());
    }

    #[test]
    fn tail_takes_a_name_or_events() {
        assert!(Cli::try_parse_from(["sup", "tail"]).is_err());
        assert!(Cli::try_parse_from(["sup", "tail", "-f", "--events"]).is_ok());
        assert!(Cli::try_parse_from(["sup", "tail", "--events", "web"]).is_err());
        assert!(Cli::try_parse_from(["sup", "tail", "--events", "--stderr"]).is_err());
        assert!(Cli::try_parse_from(["sup", "clear"]).is_err());
        assert!(Cli::try_parse_from(["sup", "clear", "all", "--json"]).is_ok());
    }

    #[test]
    fn import_supervisord_takes_one_file() {
        let cli = Cli::try_parse_from(["sup", "import", "supervisord", "s.conf"]).expect("parses");
        let Some(Command::Import {
            from: ImportFrom::Supervisord { file },
        }) = cli.command
        else {
            panic!("not import: {cli:?}");
        };
        assert_eq!(file, std::path::PathBuf::from("s.conf"));
        assert!(Cli::try_parse_from(["sup", "import", "supervisord"]).is_err());
        assert!(Cli::try_parse_from(["sup", "import", "runit", "x"]).is_err());
    }

    #[test]
    fn start_needs_a_name() {
        assert!(Cli::try_parse_from(["sup", "start"]).is_err());
        assert!(Cli::try_parse_from(["sup", "start", "all"]).is_ok());
    }
}
