//! `sup shell` and `sup top`, driven in a real terminal. Each test
//! runs its own tmux server (80×24, no user config), types with `send-keys` and reads the
//! screen with `capture-pane`, waiting on what the screen shows with a deadline.
//!
//! When tmux cannot run at all, the tests say so and pass: `make test` installs it, so that
//! only happens when someone runs `cargo test` by hand on a machine without it.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sandbox::{kill, sup_bin, wait_until, Sandbox, PATIENCE};

static SERVERS: AtomicUsize = AtomicUsize::new(0);

/// A private tmux server, killed on drop.
struct Tmux {
    label: String,
}

impl Tmux {
    /// `None`, with the reason printed, when tmux cannot run here.
    fn new(tag: &str) -> Option<Tmux> {
        match Command::new("tmux").arg("-V").output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                eprintln!(
                    "skipped: `tmux -V` failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                return None;
            }
            Err(e) => {
                eprintln!("skipped: tmux cannot run ({e}); `make test` installs it");
                return None;
            }
        }
        let n = SERVERS.fetch_add(1, Ordering::SeqCst);
        Some(Tmux {
            label: format!("sup-test-{tag}-{}-{n}", std::process::id()),
        })
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.label, "-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("run tmux")
    }

    /// Start `command` (a shell command line) in a detached 80×24 session named `session`.
    fn open(&self, session: &str, command: &str) {
        let out = self.tmux(&[
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "80",
            "-y",
            "24",
            command,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn keys(&self, session: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", session];
        args.extend_from_slice(keys);
        let out = self.tmux(&args);
        assert!(out.status.success(), "tmux send-keys {keys:?} failed");
    }

    fn screen(&self, session: &str) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", session]).stdout)
            .into_owned()
    }

    fn alive(&self, session: &str) -> bool {
        self.tmux(&["has-session", "-t", session]).status.success()
    }

    /// Wait until the screen satisfies `cond`; return that screen.
    fn wait_screen(&self, session: &str, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        wait_until(
            what,
            PATIENCE,
            &mut || {
                last = self.screen(session);
                cond(&last)
            },
            || format!("screen:\n{}", self.screen(session)),
        );
        last
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// The command line that runs `sup ARGS` against the sandbox's daemon, with the history in
/// the sandbox.
fn sup_line(sb: &Sandbox, args: &str) -> String {
    format!(
        "env XDG_STATE_HOME='{}' NO_COLOR= '{}' {args} --socket '{}'",
        sb.path("state").display(),
        sup_bin(),
        sb.socket().display()
    )
}

fn prompt_ready(screen: &str) -> bool {
    screen
        .lines()
        .any(|l| l.starts_with("sup ") && l.trim_end().ends_with('>'))
}

#[test]
fn shell_tab_completes_a_partial_name_and_runs_the_command() {
    let mut sb = Sandbox::with_programs(
        "sh-tab",
        "  worker:\n    cmd: sleep 1000\n    starttime: 0.1\n  web:\n    cmd: sleep 1000\n    starttime: 0.1\n",
    );
    sb.start();
    sb.wait_state("worker", "running");
    let Some(tmux) = Tmux::new("tab") else {
        return;
    };
    tmux.open("sh", &sup_line(&sb, "shell"));
    tmux.wait_screen("sh", "the prompt", prompt_ready);

    tmux.keys("sh", &["stop wor", "Tab"]);
    tmux.wait_screen("sh", "`wor` to complete to `worker`", |s| {
        s.contains("> stop worker")
    });
    tmux.keys("sh", &["Enter"]);
    tmux.wait_screen("sh", "the stop's outcome", |s| {
        s.contains("worker: stopped")
    });
    assert_eq!(sb.state("worker"), "stopped");
    assert_eq!(sb.state("web"), "running");

    // Signal names complete after `signal`, and an unknown command does not end the shell.
    tmux.keys("sh", &["signal US", "Tab", "Tab"]);
    tmux.wait_screen("sh", "signal candidates", |s| {
        s.contains("USR1") && s.contains("USR2")
    });
    tmux.keys("sh", &["C-u", "frobnicate", "Enter"]);
    tmux.wait_screen("sh", "the unknown command's error", |s| {
        s.contains("unknown command `frobnicate`")
    });
    tmux.keys("sh", &["C-d"]);
    wait_until(
        "the shell to end on Ctrl-D",
        PATIENCE,
        &mut || !tmux.alive("sh"),
        String::new,
    );
}

#[test]
fn shell_tab_completes_a_group_name_and_the_group_is_stopped() {
    let mut sb = Sandbox::new("sh-group");
    sb.write(
        "sup.yaml",
        "groups:\n  fleet: [web, worker]\nprograms:\n  worker: {cmd: sleep 1000, starttime: 0s}\n  \
         web: {cmd: sleep 1000, starttime: 0s}\n  db: {cmd: sleep 1000, starttime: 0s}\n",
    );
    sb.start();
    sb.wait_state("web", "running");
    sb.wait_state("db", "running");
    let Some(tmux) = Tmux::new("grouptab") else {
        return;
    };
    tmux.open("sh", &sup_line(&sb, "shell"));
    tmux.wait_screen("sh", "the prompt", prompt_ready);
    tmux.keys("sh", &["stop fl", "Tab"]);
    tmux.wait_screen("sh", "`fl` to complete to `fleet`", |s| {
        s.contains("> stop fleet")
    });
    tmux.keys("sh", &["Enter"]);
    tmux.wait_screen("sh", "the stop's outcome", |s| {
        s.contains("web: stopped") && s.contains("worker: stopped")
    });
    assert_eq!(sb.state("db"), "running");
    tmux.keys("sh", &["C-d"]);
    wait_until(
        "the shell to end on Ctrl-D",
        PATIENCE,
        &mut || !tmux.alive("sh"),
        String::new,
    );
}

#[test]
fn shell_history_recalls_the_previous_command_after_a_restart() {
    let mut sb = Sandbox::with_programs("sh-hist", "  worker:\n    cmd: sleep 1000\n");
    sb.start();
    let Some(tmux) = Tmux::new("hist") else {
        return;
    };
    tmux.open("first", &sup_line(&sb, "shell"));
    tmux.wait_screen("first", "the prompt", prompt_ready);
    tmux.keys("first", &["pid worker", "Enter"]);
    tmux.wait_screen("first", "the pid's answer", |s| {
        s.lines().any(|l| l.trim().parse::<u32>().is_ok())
    });
    tmux.keys("first", &["quit", "Enter"]);
    wait_until(
        "the first shell to quit",
        PATIENCE,
        &mut || !tmux.alive("first"),
        String::new,
    );
    let history = sb.read("state/sup/history");
    assert!(history.contains("pid worker"), "history file: {history:?}");

    tmux.open("second", &sup_line(&sb, "shell"));
    tmux.wait_screen("second", "the prompt", prompt_ready);
    // Up recalls `quit`, the last line; Up again the command before it.
    tmux.keys("second", &["Up", "Up"]);
    tmux.wait_screen("second", "history to recall `pid worker`", |s| {
        s.contains("> pid worker")
    });
}

#[test]
fn shell_reports_a_lost_daemon_and_carries_on() {
    let mut sb = Sandbox::with_programs("sh-lost", "  worker:\n    cmd: sleep 1000\n");
    sb.start();
    let Some(tmux) = Tmux::new("lost") else {
        return;
    };
    tmux.open("sh", &sup_line(&sb, "shell"));
    tmux.wait_screen("sh", "the prompt", prompt_ready);
    kill(sb.daemon_pid(), 15);
    sb.wait_daemon_exit();
    tmux.keys("sh", &["status", "Enter"]);
    tmux.wait_screen("sh", "the connection error", |s| {
        s.contains("no daemon is listening on")
    });
    sb.start();
    tmux.keys("sh", &["status", "Enter"]);
    tmux.wait_screen("sh", "status from the new daemon", |s| {
        s.lines()
            .any(|l| l.starts_with("worker ") && l.contains("pid="))
    });
}

const CRASHY: &str = r#"
  crashy:
    cmd: "sh ./crashy.sh"
    starttime: 0.2
    startretries: 50
  steady:
    cmd: sleep 1000
    starttime: 0.1
"#;

/// The first run stays up; every later one fails at once, so after a kill the job stays in
/// `backoff` (with growing delays) long enough for any refresh rate to see it.
const CRASHY_SH: &str = "if [ -e ran ]; then exit 1; fi\ntouch ran\nexec sleep 1000\n";

/// The row of `name` on a `top` screen.
fn row<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    screen.lines().find(|l| {
        l.trim_start_matches(['›', ' '])
            .split_whitespace()
            .next()
            .is_some_and(|first| first == name)
    })
}

#[test]
fn top_shows_a_job_turning_running_then_backoff_after_a_kill() {
    let mut sb = Sandbox::with_programs("top-kill", CRASHY);
    sb.write("crashy.sh", CRASHY_SH);
    sb.start();
    sb.wait_state("crashy", "running");
    let Some(tmux) = Tmux::new("kill") else {
        return;
    };
    tmux.open("top", &sup_line(&sb, "top"));
    tmux.wait_screen("top", "crashy running", |s| {
        row(s, "crashy").is_some_and(|r| r.contains("running"))
    });
    let pid = sb.pid("crashy").expect("crashy has a pid");
    kill(pid, 9);
    let screen = tmux.wait_screen("top", "crashy in backoff", |s| {
        row(s, "crashy").is_some_and(|r| r.contains("backoff"))
    });
    assert!(screen.contains("backoff"), "{screen}");
    assert!(
        row(&screen, "steady").is_some_and(|r| r.contains("running")),
        "{screen}"
    );
    tmux.keys("top", &["q"]);
    wait_until(
        "top to quit on q",
        PATIENCE,
        &mut || !tmux.alive("top"),
        String::new,
    );
}

#[test]
fn top_stops_the_selected_instance_on_a_key() {
    let mut sb = Sandbox::with_programs("top-stop", CRASHY);
    sb.write("crashy.sh", CRASHY_SH);
    sb.start();
    sb.wait_state("steady", "running");
    let Some(tmux) = Tmux::new("stop") else {
        return;
    };
    tmux.open("top", &sup_line(&sb, "top"));
    tmux.wait_screen("top", "steady running", |s| {
        row(s, "steady").is_some_and(|r| r.contains("running"))
    });
    // crashy sorts first and is selected; j moves to steady, s stops it.
    tmux.keys("top", &["j"]);
    tmux.wait_screen("top", "steady selected", |s| {
        row(s, "steady").is_some_and(|r| r.starts_with('›'))
    });
    tmux.keys("top", &["s"]);
    tmux.wait_screen("top", "the stop's outcome", |s| {
        s.contains("steady: stopped")
    });
    assert_eq!(sb.state("steady"), "stopped");
    assert_eq!(sb.state("crashy"), "running");
    tmux.wait_screen("top", "steady shown stopped", |s| {
        row(s, "steady").is_some_and(|r| r.contains("stopped"))
    });
}

/// The command line that runs `sup ARGS` against a daemon's HTTP API (`--url`, the token in
/// `token`), with no socket or config to fall back on.
fn sup_url_line(sb: &Sandbox, url: &str, token: &std::path::Path, args: &str) -> String {
    format!(
        "env XDG_STATE_HOME='{}' NO_COLOR= SUP_CONFIG='{}' SUP_TOKEN_FILE='{}' '{}' {args} --url '{url}'",
        sb.path("state").display(),
        sb.path("nonexistent.yaml").display(),
        token.display(),
        sup_bin(),
    )
}

#[test]
fn top_and_shell_work_over_the_http_api() {
    // CRASHY with its script inline: the sandbox is started before a file could be written.
    let programs = CRASHY.replace(
        "\"sh ./crashy.sh\"",
        "\"sh -c 'if [ -e ran ]; then exit 1; fi; touch ran; exec sleep 1000'\"",
    );
    assert_ne!(programs, CRASHY);
    // Changes over HTTP need a token.
    let holder = Sandbox::new("top-url-token-file");
    holder.write("token", "t0p\n");
    let token = holder.path("token");
    let (sb, port) = crate::http::start(
        "top-url",
        &format!("    token_file: {}\n", token.display()),
        &programs,
    );
    sb.wait_state("steady", "running");
    sb.wait_state("crashy", "running");
    let url = format!("http://127.0.0.1:{port}");
    let Some(tmux) = Tmux::new("url") else {
        return;
    };
    // top follows the events stream: a crash shows as backoff, a key stops an instance.
    tmux.open("top", &sup_url_line(&sb, &url, &token, "top"));
    tmux.wait_screen("top", "steady running", |s| {
        s.contains(&url) && row(s, "steady").is_some_and(|r| r.contains("running"))
    });
    let pid = sb.pid("crashy").expect("crashy has a pid");
    kill(pid, 9);
    tmux.wait_screen("top", "crashy in backoff", |s| {
        row(s, "crashy").is_some_and(|r| r.contains("backoff"))
    });
    tmux.keys("top", &["j"]);
    tmux.wait_screen("top", "steady selected", |s| {
        row(s, "steady").is_some_and(|r| r.starts_with('›'))
    });
    tmux.keys("top", &["s"]);
    tmux.wait_screen("top", "the stop's outcome", |s| {
        s.contains("steady: stopped")
    });
    assert_eq!(sb.state("steady"), "stopped");

    // (top stays open: a tmux server with no session left exits.)
    tmux.open("sh", &sup_url_line(&sb, &url, &token, "shell"));
    tmux.wait_screen("sh", "the prompt naming the URL", |s| {
        prompt_ready(s) && s.contains(&url)
    });
    tmux.keys("sh", &["start steady", "Enter"]);
    tmux.wait_screen("sh", "the start's outcome", |s| {
        s.contains("steady: started")
    });
    assert_eq!(sb.state("steady"), "running");
}

/// `sup fg`: the job's stdout and stderr on the terminal, Ctrl-C stops it with its
/// stopsignal, and fg ends once the job is down; a job stopped from elsewhere ends it too.
#[test]
fn fg_follows_the_job_and_ctrl_c_stops_it() {
    let mut sb = Sandbox::with_programs(
        "fg",
        "  talk:\n    cmd: [\"sh\", \"-c\", \"trap 'echo got-term; exit 0' TERM; i=0; while :; do i=$((i+1)); echo out-$i; echo err-$i >&2; sleep 0.1; done\"]\n    starttime: 0.1\n    stopsignal: TERM\n  other:\n    cmd: \"sleep 1000\"\n    starttime: 0.1\n  idle:\n    cmd: \"sleep 1000\"\n    autostart: false\n  pair:\n    cmd: \"sleep 1000\"\n    numprocs: 2\n    autostart: false\n",
    );
    sb.start();
    sb.wait_state("talk", "running");
    sb.wait_state("other", "running");
    // Not running, and several instances: errors, without a terminal.
    let idle = sb.sup(&["fg", "idle"]);
    assert_eq!(idle.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&idle.stderr).contains("not running"),
        "{idle:?}"
    );
    assert_eq!(sb.sup(&["fg", "pair"]).status.code(), Some(1));

    let Some(t) = Tmux::new("fg") else { return };
    // The wrapper shell ignores the Ctrl-C itself (a trap is reset for the child at exec)
    // and shows how fg ended.
    let line = format!(
        "sh -c \"trap true INT; {}; echo fg-exit=\\$?; sleep 1000\"",
        sup_line(&sb, "fg talk").replace('"', "\\\"")
    );
    t.open("fg", &line);
    t.wait_screen("fg", "attached", |s| s.contains("attached to talk"));
    t.wait_screen("fg", "both streams", |s| {
        s.contains("out-") && s.contains("err-")
    });
    let pid = sb.pid("talk").expect("pid");
    t.keys("fg", &["C-c"]);
    let screen = t.wait_screen("fg", "fg to end", |s| s.contains("fg-exit="));
    assert!(screen.contains("fg-exit=0"), "{screen}");
    assert!(
        screen.contains("got-term"),
        "the job's last words: {screen}"
    );
    assert!(screen.contains("talk is stopped"), "{screen}");
    assert_eq!(sb.state("talk"), "stopped");
    assert!(!crate::sandbox::alive(pid));

    // Stopped from elsewhere: fg ends as well.
    t.open(
        "fg2",
        &format!(
            "sh -c '{}; echo fg-exit=$?; sleep 1000'",
            sup_line(&sb, "fg other").replace('\'', "'\\''")
        ),
    );
    t.wait_screen("fg2", "fg attached", |s| s.contains("attached to other"));
    sb.sup_ok(&["stop", "other"]);
    let screen = t.wait_screen("fg2", "fg to end", |s| s.contains("fg-exit="));
    assert!(screen.contains("other is stopped"), "{screen}");
}
