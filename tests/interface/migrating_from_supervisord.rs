//! `sup import supervisord FILE` (README: "Migrating from supervisord"): the real binary
//! translates a supervisord config with an include, `sup check` accepts what it printed, and a
//! daemon started on it runs the programs; what was not translated is on stderr.

use crate::sandbox::Sandbox;

const MAIN: &str = "\
[unix_http_server]
file=/tmp/supervisor.sock   ; the path to the socket file

[supervisord]
logfile=%(here)s/logs/supervisord.log ; main log file
loglevel=info
environment=FROM_SUPERVISORD=\"yes\"

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[program:sleeper]
command=sleep 300
process_name=%(program_name)s_%(process_num)02d
numprocs=2
autorestart=true
stopsignal=TERM
stopwaitsecs=5

[program:writer]
command=/bin/sh -c \"echo $FROM_SUPERVISORD; exec sleep 300\"
directory=%(here)s
redirect_stderr=true
stdout_logfile=%(here)s/writer.log

[group:pool]
programs=sleeper,included

[include]
files = conf.d/*.conf
";

const INCLUDED: &str = "\
[program:included]
command=sleep 300
startsecs=0

[eventlistener:crashmail]
command=crashmail -a -m root@localhost
events=PROCESS_STATE_EXITED
";

#[test]
fn an_imported_config_passes_check_and_runs() {
    let mut sb = Sandbox::new("import");
    sb.write("supervisord.conf", MAIN);
    sb.write("conf.d/extra.conf", INCLUDED);
    let conf = sb.path("supervisord.conf");
    let out = sb.sup(&["import", "supervisord", &conf.to_string_lossy()]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "import failed:\n{stderr}");
    for said in [
        "[eventlistener:crashmail] translated as a daemon.notify.listeners entry",
        "the listener program needs adapting",
        "[unix_http_server] not needed",
        "[rpcinterface:supervisor] not needed",
        "instances are named sleeper:0 … sleeper:1 (supervisord: sleeper_00 … sleeper_01)",
        "[group:pool] translated as groups.pool",
        "translated 3 programs",
    ] {
        assert!(stderr.contains(said), "stderr lacks {said:?}:\n{stderr}");
    }
    assert!(
        stdout
            .contains("      - cmd: \"crashmail -a -m root@localhost\"\n        events: [exit]\n"),
        "{stdout}"
    );
    // The YAML is stdout alone: no note leaked into it.
    assert!(!stdout.contains("sup: note"), "{stdout}");
    sb.write("sup.yaml", &stdout);
    let check = sb.sup_ok(&["check"]);
    assert_eq!(check, "ok: 3 programs, 4 instances\n", "{stdout}");

    sb.start();
    for name in ["sleeper:0", "sleeper:1", "writer", "included"] {
        let inst = sb.wait_state(name, "running");
        assert!(inst["pid"].as_u64().is_some(), "{inst}");
    }
    // [supervisord] environment reached the job, and its output the file it named.
    sb.wait_for("writer's output in writer.log", || {
        sb.read("writer.log") == "yes\n"
    });
    assert!(sb
        .read("logs/supervisord.log")
        .contains("sleeper:0 spawned"));
    sb.sup_ok(&["shutdown"]);
    assert_eq!(sb.wait_daemon_exit(), Some(0));
}

#[test]
fn an_invalid_file_fails_naming_file_and_line() {
    let sb = Sandbox::new("import-bad");
    sb.write(
        "bad.conf",
        "[program:a]\ncommand=sleep 1\nthis is not ini\n",
    );
    let out = sb.sup(&[
        "import",
        "supervisord",
        &sb.path("bad.conf").to_string_lossy(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("bad.conf:3: expected `key = value`"),
        "{stderr}"
    );
    let missing = sb.sup(&[
        "import",
        "supervisord",
        &sb.path("none.conf").to_string_lossy(),
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("none.conf: unable to read"));
}
