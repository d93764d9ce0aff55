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
