//! INTERFACE.md "Processes": what a job leaves behind (orphans, escapees from its process
//! group), the user switch, and the daemon's own resource failures (fork, pipes, disk) seen
//! through fault injection.

use crate::sandbox::Sandbox;

#[test]
fn an_ordinary_exit_logs_no_signal_warning() {
    let mut sb = Sandbox::with_programs(
        "quiet-exit",
        r#"
  once:
    cmd: ["sh", "-c", "exit 0"]
    autorestart: never
    starttime: 0
"#,
    );
    sb.start();
    sb.wait_state("once", "exited");
    let log = sb.log();
    assert!(log.contains("exited code=0"), "{log}");
    assert!(!log.contains("no such process"), "{log}");
    assert!(!log.contains(" WARN "), "{log}");
}

#[test]
fn a_user_switch_sets_the_users_login_environment() {
    let Some(entry) = passwd_entry("nobody") else {
        eprintln!("skipped: no user nobody on this machine");
        return;
    };
    if !is_root() {
        eprintln!("skipped: switching users needs the daemon to run as root");
        return;
    }
    let mut sb = Sandbox::with_programs(
        "user-env",
        r#"
  plain:
    cmd: env
    user: nobody
    stdout: plainenv
    autorestart: never
    starttime: 0
  explicit:
    cmd: env
    user: nobody
    stdout: explicitenv
    autorestart: never
    starttime: 0
    env:
      HOME: /srv/explicit
"#,
    );
    sb.start();
    sb.wait_state("plain", "exited");
    sb.wait_state("explicit", "exited");
    let env = sb.read("plainenv");
    let (home, shell) = (&entry[5], &entry[6]);
    assert!(env.contains(&format!("\nHOME={home}\n")), "{env}");
    assert!(env.contains("\nUSER=nobody\n"), "{env}");
    assert!(env.contains("\nLOGNAME=nobody\n"), "{env}");
    assert!(env.contains(&format!("\nSHELL={shell}\n")), "{env}");
    let env = sb.read("explicitenv");
    assert!(env.contains("\nHOME=/srv/explicit\n"), "env: wins: {env}");
    assert!(env.contains("\nUSER=nobody\n"), "{env}");
}

/// The fields of `name`'s line in /etc/passwd.
fn passwd_entry(name: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines()
        .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
        .find(|f| f.len() >= 7 && f[0] == name)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        .unwrap_or(false)
}
