//! The translation end to end, from files on disk: the fixtures from supervisord's own
//! documentation, includes, expansions, and every output fed back through sup's config loader.

use std::path::{Path, PathBuf};

use super::read_tree;
use super::supervisord::{translate, Context, Translation};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn env(name: &str) -> Option<String> {
    match name {
        "HOME" => Some("/home/u".into()),
        "PORT" => Some("8080".into()),
        _ => None,
    }
}

fn import(path: &Path) -> Translation {
    let tree = match read_tree(path, &env) {
        Ok(t) => t,
        Err(e) => panic!("{}: {e}", path.display()),
    };
    let ctx = Context {
        env: &env,
        host: "box".into(),
    };
    let mut t = translate(&tree.sections, &tree.files, &ctx);
    let mut notes = tree.notes;
    notes.append(&mut t.notes);
    t.notes = notes;
    t
}

/// A fresh folder with these files.
fn folder(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sup-import-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (rel, text) in files {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write");
    }
    dir
}

fn notes(t: &Translation) -> String {
    t.notes
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The YAML loads in sup with no error but those `allowed` names.
fn loads(t: &Translation, allowed: &[&str]) -> crate::config::Config {
    match crate::config::load_text(&t.yaml, Path::new("/nonexistent/import")) {
        Ok(cfg) => cfg,
        Err(errors) => {
            let real: Vec<String> = errors
                .iter()
                .map(|e| e.to_string())
                .filter(|e| !allowed.iter().any(|a| e.contains(a)))
                .collect();
            assert!(real.is_empty(), "{}\n---\n{}", real.join("\n"), t.yaml);
            panic!("only allowed errors, but no config: {errors:?}");
        }
    }
}

#[test]
fn the_sample_from_echo_supervisord_conf() {
    let t = import(&repo().join("fixtures/supervisord/echo_supervisord_conf.conf"));
    assert_eq!(t.programs, 0);
    let cfg = loads(&t, &[]);
    assert!(cfg.programs.is_empty());
    assert!(
        t.yaml.contains("logfile: \"/tmp/supervisord.log\""),
        "{}",
        t.yaml
    );
    assert!(t.yaml.contains("loglevel: info"), "{}", t.yaml);
    let n = notes(&t);
    for what in [
        "[unix_http_server] not needed",
        "[supervisorctl] not needed",
        "[rpcinterface:supervisor] not needed",
        "[supervisord] pidfile: not translated",
        "[supervisord] minfds: not translated",
        "[supervisord] nodaemon: not needed",
    ] {
        assert!(n.contains(what), "no {what:?} in:\n{n}");
    }
    // Every key of the section is accounted for: nothing silently dropped.
    assert!(!n.contains("unknown"), "{n}");
}

#[test]
fn the_docs_program_example_with_every_key() {
    let t = import(&repo().join("fixtures/supervisord/docs_program_example.conf"));
    // `user=chrism` is no user here; everything else must load.
    let yaml = &t.yaml;
    for line in [
        "  cat:\n",
        "    cmd: \"/bin/cat\"\n",
        "    workingdir: \"/tmp\"\n",
        "    umask: \"022\"\n",
        "    autostart: true\n",
        "    autorestart: unexpected\n",
        "    starttime: 10\n",
        "    startretries: 3\n",
        "    exitcodes: [0]\n",
        "    stopsignal: TERM\n",
        "    stoptime: 10\n",
        "    user: \"chrism\"\n",
        "    redirect_stderr: false\n",
        "    stdout: \"/a/path\"\n",
        "    stdout_maxbytes: \"1MB\"\n",
        "    stdout_backups: 10\n",
        "    stderr: \"/a/path\"\n",
        "      A: \"1\"\n",
        "      B: \"2\"\n",
        "  http:\n    listen: \"127.0.0.1:9001\"\n",
        "  notify:\n    listeners:\n      - cmd: \"/bin/eventlistener\"\n        \
         events: [spawned, running, backoff, stopping, exit, stopped, fatal]\n",
        "groups:\n  foo: []\n",
    ] {
        assert!(yaml.contains(line), "no {line:?} in:\n{yaml}");
    }
    let n = notes(&t);
    for what in [
        "[program:cat] stdout_capture_maxbytes: not translated",
        "[program:cat] stdout_events_enabled: not translated",
        "[program:cat] serverurl: not translated",
        "[eventlistener:theeventlistenername] translated as a daemon.notify.listeners entry; supervisord's READY/RESULT handshake is not sup's",
        "[fcgi-program:fcgiprogramname] not translated",
        "[inet_http_server] port: translated as daemon.http.listen",
        "[inet_http_server] password: not translated",
        "[group:foo] priority: not translated",
        "\"bar\" is no [program:bar]",
        "[group:foo] translated as groups.foo",
        "\"/an/absolute/filename.conf\" matches no file",
        "stopasgroup/killasgroup false (supervisord's default) for cat",
    ] {
        assert!(n.contains(what), "no {what:?} in:\n{n}");
    }
    // priority=999 is the default: nothing to say.
    assert!(!n.contains("[program:cat] priority"), "{n}");
    assert!(!n.contains("unknown"), "{n}");
    // `user=chrism` is nobody on this machine; with a user that exists it loads.
    let here = Translation {
        yaml: t.yaml.replace("\"chrism\"", "\"root\""),
        notes: Vec::new(),
        programs: t.programs,
    };
    loads(&here, &[]);
}

#[test]
fn includes_are_followed_relative_to_the_including_file_and_cycles_cut() {
    let dir = folder(
        "includes",
        &[
            (
                "supervisord.conf",
                "[include]\nfiles = conf.d/*.conf\n[program:main]\ncommand=/bin/sleep 1\n",
            ),
            (
                "conf.d/a.conf",
                "[program:a]\ncommand=sleep 2\n[include]\nfiles=../more/*.ini\n",
            ),
            ("conf.d/.hidden.conf", "[program:hidden]\ncommand=x\n"),
            (
                "more/b.ini",
                "[program:b]\ncommand=%(here)s/run\n[include]\nfiles=../conf.d/a.conf\n",
            ),
        ],
    );
    let t = import(&dir.join("supervisord.conf"));
    let cfg = loads(&t, &[]);
    let names: Vec<&String> = cfg.programs.keys().collect();
    assert_eq!(names, ["a", "b", "main"], "{}", t.yaml);
    // `%(here)s` is the folder of the file that wrote the section.
    let b = &cfg.programs["b"];
    assert!(b.cmd[0].ends_with("/more/run"), "{:?}", b.cmd);
    let n = notes(&t);
    assert!(n.contains("already read"), "{n}");
    assert!(n.contains("in its main file only"), "{n}");
    assert!(!t.yaml.contains("hidden"), "{}", t.yaml);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_include_chain_stops_at_the_depth_limit() {
    let mut files: Vec<(String, String)> = Vec::new();
    for i in 0..12 {
        files.push((
            format!("f{i}.conf"),
            format!(
                "[program:p{i}]\ncommand=sleep 1\n[include]\nfiles=f{}.conf\n",
                i + 1
            ),
        ));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let dir = folder("depth", &refs);
    let t = import(&dir.join("f0.conf"));
    assert_eq!(t.programs, super::MAX_DEPTH + 1, "{}", t.yaml);
    assert!(notes(&t).contains("nested deeper"), "{}", notes(&t));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn numprocs_and_process_names() {
    let dir = folder(
        "numprocs",
        &[(
            "s.conf",
            "[program:w]\ncommand=sleep 100\nnumprocs=3\nprocess_name=%(program_name)s_%(process_num)02d\n\
             [program:port]\ncommand=server --port=80%(process_num)02d\nnumprocs=2\nnumprocs_start=1\n\
             process_name=%(program_name)s-%(process_num)d\n",
        )],
    );
    let t = import(&dir.join("s.conf"));
    let cfg = loads(&t, &[]);
    assert!(
        t.yaml
            .contains("  w:\n    cmd: \"sleep 100\"\n    numprocs: 3\n"),
        "{}",
        t.yaml
    );
    assert!(
        t.yaml
            .contains("  port-1:\n    cmd: \"server --port=8001\"\n"),
        "{}",
        t.yaml
    );
    assert!(
        t.yaml
            .contains("  port-2:\n    cmd: \"server --port=8002\"\n"),
        "{}",
        t.yaml
    );
    assert_eq!(cfg.instance_count(), 5);
    let n = notes(&t);
    assert!(
        n.contains("instances are named w:0 … w:2 (supervisord: w_00 … w_02)"),
        "{n}"
    );
    assert!(
        n.contains("translated as 2 programs, port-1 … port-2"),
        "{n}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn values_as_supervisord_means_them() {
    let dir = folder(
        "values",
        &[(
            "s.conf",
            "[supervisord]\nenvironment=SHARED=\"s\",OVER=old\numask=027\n\
             [program:a]\ncommand=/usr/bin/env %(ENV_HOME)s/x --port=%(ENV_PORT)s ;comment\n\
             autorestart=true\nexitcodes=0,2\nstopsignal=usr1\nstopasgroup=true\n\
             stdout_logfile=NONE\nstderr_logfile=AUTO\nstdout_logfile_maxbytes=1KB\n\
             environment=\n  OVER=\"new, yes\",\n  QUOTE='it\"s'\n\
             priority=5\nbogus=1\n\
             [program:b]\ncommand=prog a | b && c $HOME\nautorestart=false\nredirect_stderr=true\n\
             stderr_logfile=/x\numask=002\n\
             [program:c]\ncommand=date +%s\n\
             [program:d]\ncommand=x\nautorestart=sometimes\n\
             [program:e]\ncommand=/bin/sh -c \"a | b\"\n",
        )],
    );
    let t = import(&dir.join("s.conf"));
    loads(&t, &[]);
    let y = &t.yaml;
    for line in [
        "    cmd: \"/usr/bin/env /home/u/x --port=8080\"\n",
        "    autorestart: always\n",
        "    exitcodes: [0, 2]\n",
        "    stopsignal: USR1\n",
        "    stdout: discard\n",
        "    stdout_maxbytes: \"1KB\"\n",
        "    umask: \"027\"\n",
        "      SHARED: \"s\"\n",
        "      OVER: \"new, yes\"\n",
        "      QUOTE: \"it\\\"s\"\n",
        "    autorestart: never\n",
        "    umask: \"002\"\n",
    ] {
        assert!(y.contains(line), "no {line:?} in:\n{y}");
    }
    // a's own value wins over [supervisord]'s; b, d and e keep the shared one.
    assert_eq!(y.matches("OVER: \"old\"").count(), 3, "{y}");
    assert!(!y.contains("stderr: \"/x\""), "{y}");
    assert!(!y.contains("  c:"), "{y}");
    let n = notes(&t);
    for what in [
        "%(ENV_HOME)s expanded from this environment",
        "%(ENV_PORT)s expanded from this environment",
        "[program:a] priority: not translated",
        "[program:a] bogus: unknown key",
        "[program:b] command: uses a pipe, `&&`, a `$` variable but",
        "[program:b] stderr_logfile: ignored",
        "[program:c] command: a `%`",
        "[program:d] autorestart: not translated: expected true, false or unexpected",
        "false (supervisord's default) for b, d, e",
    ] {
        assert!(n.contains(what), "no {what:?} in:\n{n}");
    }
    assert!(!n.contains("[program:e] command"), "{n}");
    assert!(s_line(&t, "bogus") == 1, "{n}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The number of notes about `key`.
fn s_line(t: &Translation, key: &str) -> usize {
    t.notes.iter().filter(|n| n.key == key).count()
}

#[test]
fn notes_carry_file_and_line() {
    let dir = folder(
        "lines",
        &[("s.conf", "[program:a]\ncommand=x\n\nweird=1\n")],
    );
    let t = import(&dir.join("s.conf"));
    let note = t.notes.iter().find(|n| n.key == "weird").expect("a note");
    assert_eq!(note.line, 4);
    assert!(
        note.to_string()
            .ends_with("s.conf:4: [program:a] weird: unknown key: not translated"),
        "{note}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn invalid_ini_fails_with_file_and_line() {
    let dir = folder(
        "bad",
        &[("s.conf", "[program:a]\ncommand=x\nno separator\n")],
    );
    let err = match read_tree(&dir.join("s.conf"), &env) {
        Ok(_) => panic!("read"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("s.conf:3: expected `key = value`"), "{err}");
    let missing = match read_tree(&dir.join("nope.conf"), &env) {
        Ok(_) => panic!("read"),
        Err(e) => e.to_string(),
    };
    assert!(missing.contains("nope.conf: unable to read"), "{missing}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn odd_names_and_strings_stay_valid_yaml() {
    let dir = folder(
        "odd",
        &[(
            "s.conf",
            "[program:my app]\ncommand=echo \"a: b#c\" 'x\\y'\ndirectory=/tmp/#x\n\
             environment=K=\"yes\",N=\"007\"\n[program:true]\ncommand=/bin/true\n",
        )],
    );
    let t = import(&dir.join("s.conf"));
    let cfg = loads(&t, &[]);
    let a = cfg
        .programs
        .get("my_app")
        .unwrap_or_else(|| panic!("{}", t.yaml));
    assert_eq!(a.cmd, vec!["echo", "a: b#c", "x\\y"]);
    assert!(cfg.programs.contains_key("true"), "{}", t.yaml);
    assert!(
        notes(&t).contains("\"my app\" is not a sup name"),
        "{}",
        notes(&t)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_huge_numprocs_start_is_refused_not_overflowed() {
    let dir = folder(
        "overflow",
        &[(
            "s.conf",
            "[program:a]\ncommand=x\nnumprocs=2\nnumprocs_start=9223372036854775807\n",
        )],
    );
    let t = import(&dir.join("s.conf"));
    assert_eq!(t.programs, 0);
    assert!(
        notes(&t).contains("numprocs_start: not translated"),
        "{}",
        notes(&t)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn groups_become_sup_groups_of_the_programs_their_members_became() {
    let dir = folder(
        "groups",
        &[(
            "s.conf",
            "[group:web]\nprograms=api,static,api\n[group:static]\nprograms=api\n\
             [program:api]\ncommand=x %(process_num)d\nnumprocs=2\nprocess_name=api%(process_num)d\n\
             [program:static]\ncommand=y\n",
        )],
    );
    let t = import(&dir.join("s.conf"));
    let cfg = loads(&t, &[]);
    assert!(
        t.yaml
            .contains("groups:\n  web: [\"api0\", \"api1\", \"static\"]\n"),
        "{}",
        t.yaml
    );
    assert_eq!(cfg.programs.len(), 3);
    let n = notes(&t);
    assert!(
        n.contains("[group:static] not translated: \"static\" is also a program's name"),
        "{n}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_eventlistener_becomes_a_listener_with_the_events_sup_has() {
    let dir = folder(
        "listener",
        &[(
            "supervisord.conf",
            "[eventlistener:relay]\ncommand=/usr/local/bin/alert-relay --flag\n\
             events=PROCESS_STATE_FATAL, PROCESS_STATE_EXITED,PROCESS_STATE_BACKOFF,TICK_60\n\
             buffer_size=10\n\n[eventlistener:ticks]\ncommand=/bin/ticker\nevents=TICK_5\n",
        )],
    );
    let t = import(&dir.join("supervisord.conf"));
    assert!(
        t.yaml.contains(
            "  notify:\n    listeners:\n      - cmd: \"/usr/local/bin/alert-relay --flag\"\n        \
             events: [fatal, exit, backoff]\n"
        ),
        "{}",
        t.yaml
    );
    assert!(!t.yaml.contains("ticker"), "{}", t.yaml);
    let n = notes(&t);
    for what in [
        "[eventlistener:relay] events: TICK_60: not translated",
        "[eventlistener:relay] buffer_size: not translated",
        "the listener program needs adapting",
        "[eventlistener:ticks] none of its events= are sup's: the listener is left out",
    ] {
        assert!(n.contains(what), "no {what:?} in:\n{n}");
    }
    let config = loads(&t, &[]);
    assert_eq!(config.daemon.notify.listeners.len(), 1);
}

// process-compose.

/// Fails naming the first of `needles` that `text` lacks.
fn has_all(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
}

fn compose(text: &str) -> Translation {
    let env = |name: &str| match name {
        "DATA" => Some("/srv/data".to_string()),
        _ => None,
    };
    match super::process_compose::translate(text, "pc.yaml", &env) {
        Ok(t) => t,
        Err((line, why)) => panic!("{line}: {why}"),
    }
}

fn compose_file(name: &str) -> Translation {
    let path = repo().join("fixtures/process-compose").join(name);
    let text = std::fs::read_to_string(&path).expect("fixture");
    match super::process_compose::translate(&text, name, &env) {
        Ok(t) => t,
        Err((line, why)) => panic!("{name}:{line}: {why}"),
    }
}

#[test]
fn process_compose_own_example_translates_and_loads() {
    let t = compose_file("process-compose.yaml");
    let cfg = loads(&t, &[]);
    assert_eq!(cfg.programs.len(), 11, "{}", t.yaml);
    let y = &t.yaml;
    has_all(
        y,
        &[
            "  loglevel: info\n",
            "  debug: [\"__pc_log\", \"__pc_log_client\"]\n",
            "  test: [\"process5\"]\n",
            "    cmd: \"ls -lFa --color=always\"\n",
            "    cmd: [\"bash\", \"-c\", \"./test_loop.bash ${PROC4}\"]\n",
            "    autorestart: unexpected\n",
            "    autorestart: always\n",
            "    stoptime: 4\n",
            "    stdout: \"./pc.proc2.log\"\n",
            "      _process2: completed\n",
            "    cmd: \"python3 -m http.server 4040\"\n",
            "      http: \"http://127.0.0.1:4040/\"\n",
            "    ready: health\n",
            "      cmd: [\"bash\", \"-c\", \"ps -ef | grep -v grep | grep process4\"]\n",
            "    autostart: false\n",
            "      ABC: \"2221\"\n",
        ],
    );
    // process3 always restarts, so it never completes in sup: started, with a note.
    assert!(y.contains("      process3: started\n"), "{y}");
    let n = notes(&t);
    has_all(
        &n,
        &[
            "process-compose.yaml:3: version: not needed",
            "log_location: not translated: process-compose writes every process's output",
            "processes.process1.shutdown.command: not translated",
            "processes.process1.availability.backoff_seconds: not translated",
            "processes.process1.depends_on.process3: translated as started",
            "processes._process2.readiness_probe.http_get: not translated: sup's HTTP check speaks plain HTTP, not https",
            "processes.process3.depends_on.nginx: \"nginx\" is no process here",
            "processes.server.is_tty: not translated",
            "processes.__pc_log.command: its $VARIABLES are expanded by the shell",
        ],
    );
    assert!(!n.contains("unknown"), "{n}");
    // Notes come in the file's order.
    let lines: Vec<usize> = t.notes.iter().map(|n| n.line).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
}

#[test]
fn process_compose_chain_fixture_keeps_its_order() {
    let t = compose_file("process-compose-chain.yaml");
    let cfg = loads(&t, &[]);
    assert_eq!(cfg.programs.len(), 8);
    for i in 1..8 {
        let deps = &cfg.programs[&format!("process{i}")].health.depends_on;
        assert_eq!(deps.len(), 1, "{}", t.yaml);
        assert_eq!(deps[0].program, format!("process{}", i + 1));
    }
    assert!(t.yaml.contains("      process2: completed\n"), "{}", t.yaml);
    assert!(
        notes(&t).contains("\"on-failure\" is none of"),
        "{}",
        notes(&t)
    );
}

#[test]
fn process_compose_keys_map_to_sup_keys() {
    let t = compose(
        "environment: ['SHARED=1', 'OVER=old']\n\
         vars: {PORT: 80}\n\
         processes:\n\
         \x20 db:\n\
         \x20   entrypoint: [postgres, -D, $DATA]\n\
         \x20   working_dir: ${DATA}\n\
         \x20   availability: {restart: always, max_restarts: 3}\n\
         \x20   shutdown: {signal: 2, timeout_seconds: 30, parent_only: true}\n\
         \x20   liveness_probe: {exec: {command: pg_isready}, initial_delay_seconds: 3, period_seconds: 5}\n\
         \x20   namespace: data\n\
         \x20 api:\n\
         \x20   description: the API\n\
         \x20   command: \"serve --port {{.PORT}}{{.PC_REPLICA_NUM}}\"\n\
         \x20   replicas: 2\n\
         \x20   environment: ['OVER=new']\n\
         \x20   disabled: true\n\
         \x20   availability: {restart: on_failure, exit_on_end: true}\n\
         \x20   depends_on:\n\
         \x20     db: {condition: process_healthy}\n\
         \x20     job: {condition: process_log_ready}\n\
         \x20   readiness_probe:\n\
         \x20     http_get: {host: localhost, port: 8080, path: health}\n\
         \x20     failure_threshold: 2\n\
         \x20 job:\n\
         \x20   command: 'echo $$HOME && exit 0'\n\
         \x20   is_daemon: true\n\
         \x20   namespace: data\n",
    );
    let cfg = loads(&t, &[]);
    let y = &t.yaml;
    has_all(
        y,
        &[
            "  data: [\"db\", \"job\"]\n",
            "    cmd: [\"postgres\", \"-D\", \"/srv/data\"]\n",
            "    workingdir: \"/srv/data\"\n",
            "    stopsignal: INT\n",
            "    stoptime: 30\n",
            "      cmd: \"pg_isready\"\n",
            "      start_period: 3\n",
            "  # the API\n",
            "    cmd: [\"bash\", \"-c\", \"serve --port 80${SUP_PROCESS_NUM}\"]\n",
            "    numprocs: 2\n",
            "    autostart: false\n",
            "    autorestart: unexpected\n",
            "    critical: true\n",
            "      OVER: \"new\"\n",
            "      SHARED: \"1\"\n",
            "      db: healthy\n",
            "      job: started\n",
            "    ready: health\n",
            "    ready_timeout: 21\n",
            "      http: \"http://localhost:8080/health\"\n",
            "      retries: 2\n",
            "    cmd: [\"bash\", \"-c\", \"echo $HOME && exit 0\"]\n",
        ],
    );
    assert_eq!(cfg.programs["api"].numprocs, 2);
    let n = notes(&t);
    has_all(
        &n,
        &[
            "pc.yaml:5: $DATA expanded from this environment",
            "processes.db.availability.max_restarts: not translated",
            "processes.db.shutdown.parent_only: not translated",
            "processes.api.command: {{.PC_REPLICA_NUM}} is written as ${SUP_PROCESS_NUM}",
            "PC_REPLICA_NUM is not in their env",
            "processes.api.depends_on.job: translated as started: sup has no readiness on a log line",
            "processes.job.is_daemon: not translated",
            "processes.job.command: its $VARIABLES are expanded by the shell",
        ],
    );
}

#[test]
fn process_compose_replicas_that_differ_become_programs() {
    let t = compose(
        "processes:\n\
         \x20 web:\n\
         \x20   command: \"python3 -m http.server 90{{.PC_REPLICA_NUM}}\"\n\
         \x20   replicas: 2\n\
         \x20   log_location: /tmp/web.log\n\
         \x20   log_configuration: {rotation: {max_size_mb: 5, max_backups: 2}}\n\
         \x20   readiness_probe:\n\
         \x20     http_get: {host: 127.0.0.1, port: \"90{{.PC_REPLICA_NUM}}\"}\n\
         \x20 client:\n\
         \x20   command: curl http://127.0.0.1:9000/\n\
         \x20   depends_on: {web: {condition: process_healthy}}\n",
    );
    let cfg = loads(&t, &[]);
    assert_eq!(cfg.programs.len(), 3, "{}", t.yaml);
    let y = &t.yaml;
    has_all(
        y,
        &[
            "  web-0:\n    cmd: \"python3 -m http.server 900\"\n",
            "  web-1:\n    cmd: \"python3 -m http.server 901\"\n",
            "    stdout: \"/tmp/web.log.1\"\n",
            "    stdout_maxbytes: \"5MB\"\n",
            "    stdout_backups: 2\n",
            "    redirect_stderr: true\n",
            "      http: \"http://127.0.0.1:901/\"\n",
            "      PC_REPLICA_NUM: \"1\"\n",
            "      web-0: healthy\n      web-1: healthy\n",
        ],
    );
    let n = notes(&t);
    assert!(n.contains("translated as 2 programs, web-0 … web-1"), "{n}");
    // The second replica's notes would repeat the first's.
    assert_eq!(n.matches("translated as 2 programs").count(), 1, "{n}");
}

#[test]
fn process_compose_what_cannot_be_translated_is_noted_at_its_line() {
    let t = compose(
        "processes:\n\
         \x20 a:\n\
         \x20   command: \"{{if .X}}x{{end}}\"\n\
         \x20 b:\n\
         \x20   command: run\n\
         \x20   readiness_probe: {http_get: {host: example.com, port: 80}}\n\
         \x20   bogus: 1\n\
         \x20 vim:\n\
         \x20   command: vim\n\
         \x20   is_foreground: true\n\
         \x20 \"my app\":\n\
         \x20   command: x\n\
         extends: other.yaml\n",
    );
    loads(&t, &[]);
    let n = notes(&t);
    has_all(
        &n,
        &[
            "pc.yaml:3: processes.a.command: not translated: {{if .X}} is a Go template",
            "pc.yaml:2: processes.a: its command is empty or not translated: the process is left out",
            "pc.yaml:6: processes.b.readiness_probe.http_get: not translated: sup's HTTP check needs an IP address",
            "pc.yaml:7: processes.b.bogus: unknown key: not translated",
            "processes.vim.is_foreground: a foreground process needs a terminal",
            "\"my app\" is not a sup name",
            "pc.yaml:13: extends: not translated",
        ],
    );
    assert!(!t.yaml.contains("  a:"), "{}", t.yaml);
    assert!(t.yaml.contains("  my_app:"), "{}", t.yaml);
    assert!(!t.yaml.contains("healthcheck"), "{}", t.yaml);
}

#[test]
fn process_compose_that_is_not_yaml_fails_with_its_line() {
    let err = super::process_compose::translate("processes:\n  a: {command: [\n", "pc.yaml", &env);
    assert!(matches!(err, Err((l, _)) if l >= 2));
    assert!(super::process_compose::translate("- a\n", "pc.yaml", &env).is_err());
}

#[test]
fn a_fifo_or_a_folder_named_as_the_file_is_refused_without_waiting() {
    let dir = folder("fifo", &[("empty.conf", "")]);
    let fifo = dir.join("pc.yaml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    // No writer ever opens it: a blocking open would never return.
    for path in [fifo.as_path(), dir.as_path()] {
        let Err(e) = super::read_text(path, "process-compose file") else {
            panic!("{} was read", path.display());
        };
        assert_eq!(e, "not a regular file: not a process-compose file");
    }
    assert!(read_tree(&fifo, &env).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
