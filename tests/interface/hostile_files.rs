//! Files a user or another account can make hostile: a config nested deep enough to overflow a
//! recursive reader, symlinks planted where sup writes, a socket directory or state file that
//! someone else controls, and the fds held for instances that are down.

use crate::sandbox::{kill, Sandbox};

fn pids(sb: &Sandbox) -> Vec<(String, Option<u64>)> {
    sb.status()
        .into_iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap_or("").to_string(),
                i["pid"].as_u64(),
            )
        })
        .collect()
}

#[test]
fn a_deeply_nested_config_fails_reload_and_sighup_and_keeps_every_job() {
    let mut sb = Sandbox::with_programs(
        "deep",
        "  a:\n    cmd: sleep 1000\n    starttime: 0.1\n  b:\n    cmd: sleep 1000\n    starttime: 0.1\n",
    );
    sb.start();
    sb.wait_state("a", "running");
    sb.wait_state("b", "running");
    let before = pids(&sb);
    sb.write("sup.yaml", &format!("{}x\n", "- ".repeat(30_000)));

    let out = sb.sup(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sup.yaml:1:129: lists and maps nest deeper than 64 levels"),
        "{err}"
    );
    assert_eq!(pids(&sb), before);

    kill(sb.daemon_pid(), 1);
    sb.wait_for("the failed SIGHUP reload in the log", || {
        sb.log().matches("reload failed").count() >= 2
    });
    assert!(
        sb.log().contains("nest deeper than 64 levels"),
        "{}",
        sb.log()
    );
    assert_eq!(pids(&sb), before);
    assert!(sb.sup(&["status"]).status.success());
}
