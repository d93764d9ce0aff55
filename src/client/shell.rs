//! `sup shell` (and bare `sup` on a terminal): a line editor in front of `client::execute`.
//!
//! Each line is split like a POSIX shell splits words and parsed by the same clap definitions
//! as the command line, so `stop web` in the shell and `sup stop web` print the same thing
//! through the same code. The shell adds only what an interactive session needs: a prompt
//! naming the daemon, history kept in the user's state directory, completion (`completion`),
//! `help`, and Ctrl-C that interrupts the running command (`tail -f`, a long `stop`) rather
//! than the shell.
//!
//! The connection is made per command: a daemon that goes away and comes back costs one
//! error message, never the session.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Context, Editor, Helper};

use super::completion;
use super::output;
use crate::cli::{Cli, Command, Global};
use crate::control::client::{cause, Closer, Conn, Endpoint};
use crate::control::proto::{Request, RequestBody, ResponseBody};
use crate::fail::{Fail, Outcome};

/// Completion asks the daemon for names while the user waits at the keyboard: a daemon that
/// does not answer this fast gets no completion rather than a frozen prompt.
const NAMES_TIMEOUT: Duration = Duration::from_millis(500);

/// What one line of input asks the shell to do.
#[derive(Debug)]
pub enum Line {
    Nothing,
    Quit,
    /// `help` alone: the command list.
    Help,
    /// Text to print as it is (clap's usage for `help CMD` or `CMD --help`).
    Usage(String),
    /// A client command, and the socket it should use when the line named one.
    Run(Command, Option<PathBuf>),
    /// A line that does not parse: the message, as clap or the word splitter puts it.
    Error(String),
}

/// Parse one line of input. Pure, so the shell's grammar is tested without a terminal.
pub fn parse(line: &str) -> Line {
    let words = match shell_words::split(line) {
        Ok(w) => w,
        Err(e) => return Line::Error(format!("sup: error: cannot split the line: {e}")),
    };
    let Some(first) = words.first() else {
        return Line::Nothing;
    };
    match first.as_str() {
        "quit" | "exit" => return Line::Quit,
        "help" | "?" if words.len() == 1 => return Line::Help,
        // `help stop` reads as `stop --help`, which gives clap's usage with the right name.
        "help" => return parse_words(&[words[1].as_str(), "--help"]),
        _ => {}
    }
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    parse_words(&refs)
}

fn parse_words(words: &[&str]) -> Line {
    match Cli::try_parse_from(std::iter::once("sup").chain(words.iter().copied())) {
        Ok(cli) => match cli.command {
            Some(
                Command::Daemon(_)
                | Command::Check { .. }
                | Command::Shell
                | Command::Top
                | Command::Import { .. }
                | Command::Completions { .. },
            ) => {
                Line::Error(format!(
                    "sup: error: `{}` is not a shell command\n  hint: run `sup {}` from your system shell",
                    words[0], words[0]
                ))
            }
            Some(command) => Line::Run(command, cli.global.socket),
            None => Line::Help,
        },
        Err(e) => {
            use clap::error::ErrorKind;
            let text = e.render().to_string();
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Line::Usage(text),
                // clap's usage for this case is the whole CLI's, which the shell is not.
                ErrorKind::InvalidSubcommand => Line::Error(format!(
                    "sup: error: unknown command `{}`\n  hint: `help` lists the commands",
                    words[0]
                )),
                _ => Line::Error(text.trim_end().to_string()),
            }
        }
    }
}

/// The `help` text: every command with its one-line description.
pub fn help_text() -> String {
    let all = completion::commands();
    let width = all.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut text = String::from("Commands (TAB completes names; `help CMD` shows its usage):\n");
    for (name, about) in all {
        text.push_str(&format!("  {name:width$}  {about}\n"));
    }
    text
}

/// Where the history lives: `$XDG_STATE_HOME/sup/history`, else
/// `~/.local/state/sup/history`. `None` when neither variable helps.
pub fn history_path(xdg_state_home: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    match (xdg_state_home.filter(|s| !s.is_empty()), home) {
        (Some(state), _) => Some(Path::new(state).join("sup/history")),
        (None, Some(home)) if !home.is_empty() => {
            Some(Path::new(home).join(".local/state/sup/history"))
        }
        _ => None,
    }
}

/// How the prompt names the daemon: its socket, with the home directory as `~` and long
/// paths cut to their last two parts.
pub fn prompt_for(socket: &Path, home: Option<&str>) -> String {
    let full = socket.display().to_string();
    let shown = match home.filter(|h| !h.is_empty() && *h != "/") {
        Some(h) if full.starts_with(&format!("{h}/")) => format!("~{}", &full[h.len()..]),
        _ => full,
    };
    let shown = if shown.chars().count() > 40 {
        let parts: Vec<&str> = shown.rsplitn(3, '/').collect();
        match parts.as_slice() {
            [file, dir, _] => format!("…/{dir}/{file}"),
            _ => shown,
        }
    } else {
        shown
    };
    format!("sup {shown}> ")
}

/// How the prompt names a daemon: its socket as `prompt_for` shows it, or its URL.
pub fn prompt_for_endpoint(endpoint: &Endpoint, home: Option<&str>) -> String {
    match endpoint {
        Endpoint::Socket(path) => prompt_for(path, home),
        Endpoint::Http(url) => format!("sup {}> ", url.shown),
    }
}

/// Glue between rustyline and `completion`.
struct ShellHelper {
    socket: Endpoint,
}

impl ShellHelper {
    /// Programs and instances as the daemon knows them now. One cheap `status` request; any
    /// failure means no name candidates, never an error in the middle of typing.
    fn names(&self) -> Vec<String> {
        let Ok(mut conn) = Conn::connect(&self.socket) else {
            return Vec::new();
        };
        let req = Request::new(RequestBody::Status {
            names: Vec::new(),
            rows: false,
        });
        match conn.request(&req, Some(NAMES_TIMEOUT)).map(|r| r.body) {
            Ok(ResponseBody::Status { instances, daemon }) => {
                // Groups first: a group is a name like a program's (from a daemon that
                // predates groups, there are none).
                let mut names: Vec<String> = daemon
                    .map(|d| d.groups.into_keys().collect())
                    .unwrap_or_default();
                for i in instances {
                    if i.name != i.program {
                        names.push(i.program);
                    }
                    names.push(i.name);
                }
                names
            }
            _ => Vec::new(),
        }
    }
}

impl Completer for ShellHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        Ok(completion::complete(line, pos, &|| self.names()))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

/// Ctrl-C while a command runs closes that command's connection: its blocked read ends and
/// the command returns through its normal path. While the prompt is up the terminal is in raw
/// mode, so Ctrl-C reaches rustyline as a key and clears the line instead.
#[derive(Clone, Default)]
struct Interrupt {
    current: Arc<Mutex<Option<Closer>>>,
    hit: Arc<AtomicBool>,
}

impl Interrupt {
    fn install(&self) -> Result<(), Fail> {
        use signal_hook::consts::SIGINT;
        let mut signals = signal_hook::iterator::Signals::new([SIGINT])
            .map_err(|e| Fail::new(format!("cannot watch for Ctrl-C: {}", cause(&e))))?;
        let me = self.clone();
        std::thread::spawn(move || {
            for _ in signals.forever() {
                me.fire();
            }
        });
        Ok(())
    }

    /// What Ctrl-C does: end the running command's connection, if there is one.
    fn fire(&self) {
        self.hit.store(true, Ordering::SeqCst);
        if let Ok(current) = self.current.lock() {
            if let Some(c) = current.as_ref() {
                c.close();
            }
        }
    }

    fn arm(&self, closer: Option<Closer>) {
        self.hit.store(false, Ordering::SeqCst);
        if let Ok(mut current) = self.current.lock() {
            *current = closer;
        }
    }

    /// Disarm; true when Ctrl-C came while armed.
    fn disarm(&self) -> bool {
        if let Ok(mut current) = self.current.lock() {
            *current = None;
        }
        self.hit.swap(false, Ordering::SeqCst)
    }
}

pub fn run(global: &Global) -> Result<Outcome, Fail> {
    let socket = super::endpoint(global)?;
    let home = std::env::var("HOME").ok();
    let history = history_path(
        std::env::var("XDG_STATE_HOME").ok().as_deref(),
        home.as_deref(),
    );
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .history_ignore_dups(true)
        .and_then(|b| b.max_history_size(1000))
        .map_err(|e| Fail::new(format!("cannot set up the line editor: {e}")))?
        .auto_add_history(false)
        .build();
    let mut editor: Editor<ShellHelper, FileHistory> = Editor::with_config(config)
        .map_err(|e| Fail::new(format!("cannot set up the line editor: {e}")))?;
    editor.set_helper(Some(ShellHelper {
        socket: socket.clone(),
    }));
    if let Some(path) = &history {
        if let Some(dir) = path.parent() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                eprintln!(
                    "sup: warning: history will not be kept: cannot create {}: {}",
                    dir.display(),
                    cause(&e)
                );
            }
        }
        // A first session has no history yet; anything else unreadable starts empty too.
        let _ = editor.load_history(path);
    }
    let interrupt = Interrupt::default();
    interrupt.install()?;
    let prompt = prompt_for_endpoint(&socket, home.as_deref());
    let colour = output::colour_for_stdout();
    println!("sup shell: `help` lists the commands, TAB completes, Ctrl-D leaves");

    loop {
        let line = match editor.readline(&prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(Fail::new(format!("cannot read the command line: {e}"))),
        };
        if !line.trim().is_empty() {
            let _ = editor.add_history_entry(line.as_str());
            if let Some(path) = &history {
                // Saved after every line, so a shell that is killed keeps what was typed.
                if let Err(e) = editor.save_history(path) {
                    eprintln!(
                        "sup: warning: cannot save the history to {}: {e}",
                        path.display()
                    );
                }
            }
        }
        match parse(&line) {
            Line::Nothing => {}
            Line::Quit => break,
            Line::Help => print!("{}", help_text()),
            Line::Usage(text) => print!("{text}"),
            Line::Error(text) => eprintln!("{text}"),
            Line::Run(command, other_socket) => {
                let other = other_socket.map(Endpoint::Socket);
                let socket = other.as_ref().unwrap_or(&socket);
                let mut stdout = io::stdout().lock();
                let mut stderr = io::stderr().lock();
                run_one(
                    socket,
                    command,
                    colour,
                    &interrupt,
                    &mut stdout,
                    &mut stderr,
                );
            }
        }
        let _ = io::stdout().flush();
    }
    Ok(Outcome::Ok)
}

/// One command over a fresh connection. Every failure is printed as the CLI would print it,
/// and the shell goes on.
fn run_one(
    socket: &Endpoint,
    command: Command,
    colour: bool,
    interrupt: &Interrupt,
    out: &mut dyn Write,
    err: &mut dyn Write,
) {
    let result = Conn::connect(socket).and_then(|mut conn| {
        interrupt.arm(conn.closer().ok());
        super::execute(&mut conn, command, colour, out, err)
    });
    let interrupted = interrupt.disarm();
    // The terminal may be gone; there is nobody to tell then.
    let _ = match result {
        Ok(_) if interrupted => writeln!(out),
        Ok(_) => Ok(()),
        // The connection was closed under the command on purpose; its error is not news.
        Err(_) if interrupted => writeln!(err, "\ninterrupted"),
        Err(fail) => writeln!(err, "sup: error: {fail}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::client::tests::{fake_daemon, line, TempDir};
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;

    #[test]
    fn ctrl_c_ends_tail_f_and_the_shell_goes_on() {
        let dir = TempDir::new("shell-tail");
        let listener = UnixListener::bind(dir.sock()).expect("bind");
        // A daemon that sends one chunk and then keeps the stream open, as `tail -f` does,
        // until the client goes away.
        let daemon = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request = String::new();
            reader.read_line(&mut request).expect("request");
            let mut w = stream;
            let chunk = line(ResponseBody::Output {
                data: "hello\n".into(),
            });
            w.write_all(format!("{chunk}\n").as_bytes()).expect("write");
            let mut rest = String::new();
            let _ = reader.read_line(&mut rest);
            request
        });
        let interrupt = Interrupt::default();
        let presser = {
            let interrupt = interrupt.clone();
            std::thread::spawn(move || {
                // Press Ctrl-C once the command is running (armed), as a user would.
                while interrupt
                    .current
                    .lock()
                    .map(|c| c.is_none())
                    .unwrap_or(true)
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                std::thread::sleep(Duration::from_millis(50));
                interrupt.fire();
            })
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let Line::Run(command, None) = parse("tail -f web") else {
            panic!("tail -f parses");
        };
        run_one(
            &dir.sock().into(),
            command,
            false,
            &interrupt,
            &mut out,
            &mut err,
        );
        presser.join().expect("presser");
        assert!(daemon.join().expect("daemon").contains("\"follow\":true"));
        assert_eq!(String::from_utf8_lossy(&out), "hello\n\n");
        assert_eq!(String::from_utf8_lossy(&err), "");
        // Disarmed: a later Ctrl-C at the prompt closes nothing and is forgotten.
        assert!(interrupt
            .current
            .lock()
            .map(|c| c.is_none())
            .unwrap_or(false));
    }

    #[test]
    fn a_missing_daemon_is_an_error_line_not_the_end() {
        let dir = TempDir::new("shell-lost");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let Line::Run(command, None) = parse("status") else {
            panic!("status parses");
        };
        run_one(
            &dir.sock().into(),
            command,
            false,
            &Interrupt::default(),
            &mut out,
            &mut err,
        );
        let err = String::from_utf8_lossy(&err);
        assert!(
            err.starts_with("sup: error: no daemon is listening on"),
            "{err}"
        );
        // The same command against a daemon that is there now works.
        let daemon = fake_daemon(
            &dir.sock(),
            vec![line(ResponseBody::Status {
                instances: crate::client::status::tests::sample(),
                daemon: None,
            })],
        );
        let Line::Run(command, None) = parse("status") else {
            panic!("status parses");
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        run_one(
            &dir.sock().into(),
            command,
            false,
            &Interrupt::default(),
            &mut out,
            &mut err,
        );
        daemon.join().expect("daemon");
        assert!(String::from_utf8_lossy(&out).contains("web:0"));
        assert!(err.is_empty());
    }

    #[test]
    fn lines_parse_with_the_cli_s_definitions() {
        match parse("stop web:1 --no-wait") {
            Line::Run(Command::Stop(t), None) => {
                assert_eq!(t.names, ["web:1"]);
                assert!(t.no_wait);
            }
            other => panic!("{other:?}"),
        }
        match parse("tail -f -n 3 'my job'") {
            Line::Run(
                Command::Tail {
                    follow: true,
                    lines: 3,
                    name,
                    ..
                },
                None,
            ) => assert_eq!(name.as_deref(), Some("my job")),
            other => panic!("{other:?}"),
        }
        match parse("status --socket /x.sock") {
            Line::Run(Command::Status { .. }, Some(s)) => assert_eq!(s, Path::new("/x.sock")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_shell_s_own_words() {
        assert!(matches!(parse(""), Line::Nothing));
        assert!(matches!(parse("   "), Line::Nothing));
        assert!(matches!(parse("quit"), Line::Quit));
        assert!(matches!(parse("exit"), Line::Quit));
        assert!(matches!(parse("help"), Line::Help));
        match parse("help stop") {
            Line::Usage(text) => assert!(text.contains("Usage: sup stop"), "{text}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_lines_are_errors_with_clap_s_words() {
        match parse("frobnicate") {
            Line::Error(text) => assert!(text.contains("frobnicate"), "{text}"),
            other => panic!("{other:?}"),
        }
        match parse("start") {
            Line::Error(text) => assert!(text.contains("required"), "{text}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse("stop 'web"), Line::Error(_)));
        match parse("daemon") {
            Line::Error(text) => assert!(text.contains("not a shell command"), "{text}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn help_lists_every_command_with_its_description() {
        let text = help_text();
        assert!(text.contains("  status "), "{text}");
        assert!(text.contains("Send a signal to the instances' process groups"));
        assert!(text.contains("  quit "));
    }

    #[test]
    fn history_goes_to_the_state_dir() {
        assert_eq!(
            history_path(Some("/s"), Some("/home/u")),
            Some(PathBuf::from("/s/sup/history"))
        );
        assert_eq!(
            history_path(None, Some("/home/u")),
            Some(PathBuf::from("/home/u/.local/state/sup/history"))
        );
        assert_eq!(
            history_path(Some(""), Some("/home/u")),
            Some(PathBuf::from("/home/u/.local/state/sup/history"))
        );
        assert_eq!(history_path(None, None), None);
    }

    #[test]
    fn the_prompt_names_the_daemon_briefly() {
        assert_eq!(
            prompt_for(Path::new("/home/u/run/sup.sock"), Some("/home/u")),
            "sup ~/run/sup.sock> "
        );
        assert_eq!(
            prompt_for(Path::new("/tmp/sup-1000/sup.sock"), None),
            "sup /tmp/sup-1000/sup.sock> "
        );
        assert_eq!(
            prompt_for(
                Path::new("/very/long/path/that/goes/on/and/on/forever/sup/sup.sock"),
                None
            ),
            "sup …/sup/sup.sock> "
        );
    }
}
