//! The bundled `sup.d/` demo, as `make run` supervises it, left alone for a minute: every job
//! reaches the state its comment promises and stays there, and the event log holds no warning
//! or error except the crashes of `flaky`, the one job that fails on purpose. And `make run`
//! installs every program the demo's jobs run (`make demo-deps`).

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::sandbox::{wait_until, Sandbox, PATIENCE};

/// A port nobody listens on now, so that the demo's fixed ports cannot meet a demo that a
/// person (or another test run) has going on this machine.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `sup.d/` copied into the sandbox, its two TCP ports moved to free ones; returns db's.
fn copy_demo(sb: &Sandbox) -> u16 {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("sup.d");
    let db_port = free_port();
    let (db, api) = (db_port.to_string(), free_port().to_string());
    let mut files = 0;
    for entry in fs::read_dir(&src).expect("sup.d").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let text = fs::read_to_string(entry.path()).expect("read a demo file");
        assert!(
            name == "sup.yaml" || text.contains("15432") == (name == "db.job" || name == "api.job"),
            "{name}: the demo's ports moved; update this test"
        );
        sb.write(
            &format!("sup.d/{name}"),
            &text.replace("15432", &db).replace("18080", &api),
        );
        files += 1;
    }
    assert!(files >= 6, "the demo has {files} files");
    db_port
}

/// db accepts every connection and closes it: a client reads EOF. A listener that never
/// accepts would leave the client waiting, and its backlog full within minutes.
fn db_accepts(port: u16, times: usize) {
    for i in 0..times {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut c = TcpStream::connect_timeout(&addr, PATIENCE)
            .unwrap_or_else(|e| panic!("connection {i} to db: {e}"));
        c.set_read_timeout(Some(PATIENCE)).expect("read timeout");
        let mut buf = [0u8; 16];
        assert!(
            matches!(c.read(&mut buf), Ok(0)),
            "connection {i}: db did not accept and close it"
        );
    }
}

#[test]
fn the_bundled_demo_stays_green_for_a_minute() {
    let mut sb = Sandbox::new("demo");
    let db_port = copy_demo(&sb);
    sb.config = "sup.d".to_string();
    let started = Instant::now();
    sb.start();

    let steady = ["db", "api", "web", "worker:0", "worker:1"];
    for name in steady.iter().chain(&["flaky"]) {
        sb.wait_state(name, "running");
    }
    let pids: Vec<_> = steady.iter().map(|n| sb.pid(n)).collect();

    // A minute: flaky crashes every 20 s, tick runs once a minute, and db's backlog would have
    // filled long before (api's health check connects to it every 5 s).
    let minute = Duration::from_secs(60) + PATIENCE;
    wait_until(
        "a minute of the demo: tick's first run and flaky's second crash",
        minute,
        &mut || {
            let log = sb.log();
            started.elapsed() >= Duration::from_secs(60)
                && log.contains("tick run finished")
                && log.matches("flaky exited code=3").count() >= 2
        },
        || sb.log(),
    );

    for (name, pid) in steady.iter().zip(&pids) {
        let st = sb.instance(name);
        assert_eq!(st["state"], "running", "{name}: {st}\n{}", sb.log());
        assert_eq!(sb.pid(name), *pid, "{name} was restarted:\n{}", sb.log());
        assert_eq!(st["restarts"], 0, "{name}: {st}");
    }
    assert_eq!(sb.instance("api")["health"], "healthy");
    // Between two runs (or inside its few milliseconds of one).
    sb.wait_state("tick", "scheduled");
    let flaky = sb.instance("flaky");
    assert!(
        flaky["restarts"].as_u64().unwrap_or(0) >= 2,
        "flaky: {flaky}"
    );
    assert!(sb.log().contains("tick run finished in"), "{}", sb.log());
    // More connections than db's listen backlog (16).
    db_accepts(db_port, 40);

    sb.sup_ok(&["shutdown"]);
    assert_eq!(sb.wait_daemon_exit(), Some(0), "{}", sb.log());
    let log = sb.log();
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| {
            let mut words = l.split_whitespace().skip(1);
            let level = words.next().unwrap_or("");
            let crash =
                words.next() == Some("flaky") && l.ends_with("flaky exited code=3 (unexpected)");
            (level == "WARN" || level == "ERROR") && !crash
        })
        .collect();
    assert!(bad.is_empty(), "unexpected warnings:\n{}", bad.join("\n"));
}

/// What `make run` installs for the demo (`DEMO_NEEDS` in the Makefile, COMMAND:PACKAGE).
fn demo_needs() -> Vec<(String, String)> {
    let out = std::process::Command::new("make")
        .args(["-s", "--no-print-directory", "--eval"])
        .arg("print-demo-needs: ; @echo $(DEMO_NEEDS)")
        .arg("print-demo-needs")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run make");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let needs: Vec<_> = text
        .split_whitespace()
        .map(|n| {
            let (cmd, pkg) = n
                .split_once(':')
                .unwrap_or_else(|| panic!("{n}: not CMD:PKG"));
            (cmd.to_string(), pkg.to_string())
        })
        .collect();
    assert!(!needs.is_empty(), "DEMO_NEEDS is empty");
    needs
}

/// The program a `cmd` (a string split like a shell, or a list) runs first.
fn program_of(cmd: &serde_yaml::Value) -> String {
    let first = match cmd {
        serde_yaml::Value::String(s) => shell_words::split(s)
            .ok()
            .and_then(|w| w.into_iter().next()),
        serde_yaml::Value::Sequence(items) => {
            items.first().and_then(|v| v.as_str()).map(str::to_string)
        }
        _ => None,
    };
    first.unwrap_or_else(|| panic!("a cmd with no program: {cmd:?}"))
}

/// Every program the demo's jobs (and their `cmd` health checks) run is one that `make run`
/// makes sure of: a job needing, say, node would otherwise fail on a fresh machine.
#[test]
fn every_program_the_demo_runs_is_one_make_run_installs() {
    let needs = demo_needs();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("sup.d");
    let mut jobs: Vec<(String, serde_yaml::Value)> = Vec::new();
    for entry in fs::read_dir(&src).expect("sup.d").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let text = fs::read_to_string(entry.path()).expect("read a demo file");
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        if name.ends_with(".job") {
            jobs.push((name, doc));
        } else if let Some(programs) = doc.get("programs").and_then(|p| p.as_mapping()) {
            for (key, job) in programs {
                jobs.push((format!("{name}: {key:?}"), job.clone()));
            }
        }
    }
    assert!(jobs.len() >= 6, "the demo has {} jobs", jobs.len());
    let mut seen = std::collections::BTreeSet::new();
    for (name, job) in &jobs {
        let cmds = [
            job.get("cmd"),
            job.get("healthcheck").and_then(|h| h.get("cmd")),
        ];
        assert!(cmds[0].is_some(), "{name}: no cmd");
        for cmd in cmds.into_iter().flatten() {
            let program = program_of(cmd);
            let base = program.rsplit('/').next().unwrap_or(&program).to_string();
            assert!(
                needs.iter().any(|(c, _)| *c == base),
                "{name} runs {program}, which `make run` does not install: add it to \
                 DEMO_NEEDS in the Makefile ({needs:?})"
            );
            seen.insert(base);
        }
    }
    assert!(seen.contains("python3"), "{seen:?}");
}

/// `make run` goes through `demo-deps`, which installs with apt what is missing (faked here:
/// an apt-get that records its arguments and "installs" a stand-in), and says what to install
/// by hand where there is no apt.
#[test]
fn make_run_installs_what_the_demo_needs() {
    use std::os::unix::fs::PermissionsExt;
    let root = env!("CARGO_MANIFEST_DIR");
    let dry = std::process::Command::new("make")
        .args([
            "-n",
            "--no-print-directory",
            "run",
            "CARGO=true",
            "RUSTC=true",
        ])
        .current_dir(root)
        .output()
        .expect("run make -n");
    let plan = String::from_utf8_lossy(&dry.stdout).into_owned();
    let install = plan.find("apt_install").unwrap_or_else(|| panic!("{plan}"));
    let daemon = plan
        .find("daemon -c sup.d")
        .unwrap_or_else(|| panic!("{plan}"));
    assert!(install < daemon, "demo-deps runs before the demo:\n{plan}");

    let sb = Sandbox::new("demodeps");
    let bin = sb.path("bin");
    fs::create_dir_all(&bin).expect("bin");
    let log = sb.path("apt.log");
    // Only what the fake puts in bin/ is on PATH (the recipe's shell is /bin/sh itself).
    let apt = format!(
        "#!/bin/sh\necho \"$@\" >> '{log}'\n[ \"$1\" = install ] || exit 0\n\
         for pkg; do case $pkg in\n\
           dash) /bin/ln -sf /bin/sh '{bin}/sh' ;;\n\
           python3) printf '#!/bin/sh\\n' > '{bin}/python3'; /bin/chmod +x '{bin}/python3' ;;\n\
         esac; done\n",
        log = log.display(),
        bin = bin.display()
    );
    fs::write(bin.join("apt-get"), apt).expect("write apt-get");
    fs::set_permissions(bin.join("apt-get"), fs::Permissions::from_mode(0o755)).expect("chmod");
    // Found on the test's own PATH: the child's PATH is the fake one.
    let make_bin = std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("make"))
                .find(|m| m.is_file())
        })
        .expect("make on PATH");
    let make = |path: &Path| {
        std::process::Command::new(&make_bin)
            .args(["-s", "--no-print-directory", "demo-deps"])
            .env("PATH", path)
            .current_dir(root)
            .output()
            .expect("run make")
    };
    let out = make(&bin);
    assert!(out.status.success(), "{out:?}");
    let asked = fs::read_to_string(&log).unwrap_or_default();
    assert!(asked.contains("install -y -qq python3"), "{asked}");
    assert!(bin.join("python3").is_file(), "{asked}");

    // Nothing missing: apt is not even asked.
    fs::remove_file(&log).expect("rm log");
    let out = make(&bin);
    assert!(out.status.success(), "{out:?}");
    assert!(!log.exists(), "apt-get ran with everything present");

    // No apt and no python3: the one line that says what to install.
    fs::remove_file(bin.join("apt-get")).expect("rm apt-get");
    fs::remove_file(bin.join("python3")).expect("rm python3");
    let out = make(&bin);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("make: python3 is missing: install the python3 package"),
        "{err}"
    );
}
