//! Golden tests over `fixtures/configs`: every bad config must produce exactly the errors in
//! its `.expected` file, and every good one must resolve to the model asserted here.
//!
//! Paths are given relative to the repository root and loaded as if from there, so messages
//! read `fixtures/configs/bad/x.yaml:4:5: …` wherever the tests run. Set `SUP_BLESS=1` to
//! rewrite the `.expected` files after a deliberate change, then read the diff.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::spec::{AutoRestart, Config, Output, Schedule, Signal};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn load(rel: &str) -> Result<Config, Vec<String>> {
    super::load_in(Path::new(rel), root())
        .map_err(|errors| errors.iter().map(ToString::to_string).collect())
}

fn good(rel: &str) -> Config {
    match load(rel) {
        Ok(c) => c,
        Err(errors) => panic!("{rel} should load:\n{}", errors.join("\n")),
    }
}

/// Each bad fixture: a `*.yaml` file or a directory, beside its `<stem>.expected`.
fn bad_fixtures() -> Vec<(String, PathBuf)> {
    let dir = root().join("fixtures/configs/bad");
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .expect("fixtures/configs/bad")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let stem = p.file_stem().expect("stem").to_string_lossy().into_owned();
            let rel = format!(
                "fixtures/configs/bad/{}",
                p.file_name().expect("name").to_string_lossy()
            );
            (rel, dir.join(format!("{stem}.expected")))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn bad_configs_report_exactly_the_expected_errors() {
    let fixtures = bad_fixtures();
    assert!(fixtures.len() >= 12, "only {} bad fixtures", fixtures.len());
    let bless = std::env::var_os("SUP_BLESS").is_some();
    let mut failures = Vec::new();
    for (rel, expected_path) in fixtures {
        let got = match load(&rel) {
            Ok(_) => "(loaded without errors)\n".to_string(),
            Err(errors) => errors.join("\n") + "\n",
        };
        if bless {
            std::fs::write(&expected_path, &got).expect("write .expected");
            continue;
        }
        let want = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| format!("(missing {})\n", expected_path.display()));
        if got != want {
            failures.push(format!("{rel}\n--- expected\n{want}--- got\n{got}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_taskmaster_example_loads_as_written() {
    let c = good("fixtures/configs/good/taskmaster.yaml");
    assert_eq!(c.programs.len(), 2);
    assert_eq!(c.instance_count(), 9);
    let nginx = &c.programs["nginx"];
    assert_eq!(
        nginx.cmd,
        ["/usr/local/bin/nginx", "-c", "/etc/nginx/test.conf"]
    );
    assert_eq!(nginx.umask, Some(0o22));
    assert_eq!(nginx.exitcodes, [0, 2]);
    assert_eq!(nginx.starttime, Duration::from_secs(5));
    assert_eq!(nginx.stoptime, Duration::from_secs(10));
    assert_eq!(nginx.stopsignal, Signal(15));
    assert_eq!(nginx.workingdir.as_deref(), Some(Path::new("/tmp")));
    assert_eq!(nginx.stdout, Output::File("/tmp/nginx.stdout".into()));
    assert_eq!(nginx.env["ANSWER"], "42");
    assert_eq!(nginx.env["STARTED_BY"], "taskmaster");
    let vog = &c.programs["vogsphere"];
    assert_eq!(vog.numprocs, 8);
    assert_eq!(vog.umask, Some(0o77));
    assert_eq!(vog.exitcodes, [0]);
    assert_eq!(vog.stopsignal, Signal(10));
    assert_eq!(vog.autorestart, AutoRestart::Unexpected);
    assert_eq!(vog.instance_names()[7], "vogsphere:7");
    assert_eq!(
        c.origins["vogsphere"].to_string(),
        "fixtures/configs/good/taskmaster.yaml:22:3"
    );
    // Beside the config: the folder holding the file.
    let base = root().join("fixtures/configs/good");
    assert_eq!(c.base_dir, base);
    assert_eq!(c.source, base.join("taskmaster.yaml"));
    assert_eq!(c.daemon.logdir, base.join("logs"));
    assert_eq!(c.daemon.logfile, base.join("logs/sup.log"));
    assert_eq!(c.daemon.socket, None);
}

#[test]
fn a_file_using_every_key() {
    let c = good("fixtures/configs/good/every_key.yaml");
    let base = root().join("fixtures/configs/good");
    assert_eq!(c.daemon.socket, Some(base.join("run/sup.sock")));
    assert_eq!(c.daemon.pidfile, Some(base.join("run/sup.pid")));
    assert_eq!(c.daemon.logdir, PathBuf::from("/var/log/sup-test"));
    assert_eq!(c.daemon.logfile, base.join("events.log"));
    assert_eq!(c.daemon.loglevel, log::LevelFilter::Debug);

    let web = &c.programs["web"];
    assert_eq!(web.cmd, ["python3", "-m", "http.server", "port 8080"]);
    assert_eq!(web.numprocs, 3);
    assert!(!web.autostart);
    assert_eq!(web.autorestart, AutoRestart::Unexpected);
    assert_eq!(web.exitcodes, [0, 2]);
    assert_eq!(web.startretries, 0);
    assert_eq!(web.starttime, Duration::from_millis(1500));
    assert_eq!(web.stopsignal, Signal(2));
    assert_eq!(web.stoptime, Duration::from_secs(90));
    assert_eq!(web.stdout, Output::File(base.join("out/{name}.log")));
    assert_eq!(
        web.stdout.path_for("web:2"),
        Some(base.join("out/web:2.log"))
    );
    assert_eq!(web.stderr, Output::Discard);
    assert_eq!(web.env["DEBUG"], "false");
    assert_eq!(web.env["RATIO"], "0.50");
    assert_eq!(web.workingdir, Some(base.join("www")));
    assert_eq!(web.umask, Some(0o27));
    assert_eq!(web.user.as_deref(), Some("33"));

    let backup = &c.programs["backup"];
    assert_eq!(backup.cmd, ["/usr/bin/rsync", "-a", "/src", "/dst"]);
    assert_eq!(backup.schedule, Some(Schedule::Cron("30 2 * * 1-5".into())));
    assert_eq!(backup.timezone.as_deref(), Some("UTC"));
    assert_eq!(backup.autorestart, AutoRestart::Never);
    assert_eq!(backup.stdout, Output::Discard);
    // The default follows the configured logdir.
    assert_eq!(
        backup.stderr,
        Output::File("/var/log/sup-test/{name}.err".into())
    );

    let tick = &c.programs["tick"];
    assert_eq!(
        tick.schedule,
        Some(Schedule::Every(Duration::from_secs(300)))
    );
    assert_eq!(tick.env, web.env, "the alias copies the anchored map");
}

#[test]
fn a_directory_of_job_files() {
    let c = good("fixtures/configs/good/dir");
    let names: Vec<&str> = c.programs.keys().map(String::as_str).collect();
    assert_eq!(names, ["backup", "web", "worker"]);
    assert_eq!(c.instance_count(), 4);
    // Beside a directory: the folder holding it.
    let base = root().join("fixtures/configs/good");
    assert_eq!(c.base_dir, base);
    assert_eq!(c.daemon.logdir, base.join("logs"));
    assert_eq!(c.daemon.loglevel, log::LevelFilter::Warn);
    let web = &c.programs["web"];
    assert_eq!(web.cmd, ["./bin/web", "--port", "8080"]);
    assert_eq!(web.workingdir, Some(base.join("app")));
    assert_eq!(c.origins["web"].file, "fixtures/configs/good/dir/web.job");
    assert_eq!(c.programs["worker"].autorestart, AutoRestart::Always);
    assert_eq!(
        c.programs["backup"].schedule,
        Some(Schedule::Cron("@daily".into()))
    );
    assert_eq!(
        c.origins["backup"].file,
        "fixtures/configs/good/dir/conf/nightly/backup.job"
    );
}

#[test]
fn a_file_with_the_default_include() {
    let c = good("fixtures/configs/good/withincludes/sup.yaml");
    let names: Vec<&str> = c.programs.keys().map(String::as_str).collect();
    assert_eq!(names, ["extra", "main", "more"]);
    assert_eq!(c.instance_count(), 6);
    assert_eq!(
        c.programs["more"].instance_names(),
        ["more:0", "more:1", "more:2", "more:3"]
    );
}

#[test]
fn files_outside_the_working_directory_are_shown_absolute() {
    let errors = super::load_in(
        &root().join("fixtures/configs/bad/numprocs_zero.yaml"),
        Path::new("/nonexistent-cwd"),
    )
    .expect_err("bad config");
    let abs = root().join("fixtures/configs/bad/numprocs_zero.yaml");
    assert_eq!(errors[0].place, format!("{}:4:15", abs.display()));
}

#[test]
fn a_missing_config_says_where_sup_looked() {
    let errors = load("fixtures/configs/nope.yaml").expect_err("missing");
    assert_eq!(
        errors,
        [
            "fixtures/configs/nope.yaml: unable to read: no such file or directory\n  hint: sup \
          reads -c/--config PATH, else $SUP_CONFIG, else ./sup.yaml, else ./sup.d/ (root then \
          /etc/sup/sup.yaml, else /etc/sup/sup.d/)"
        ]
    );
}

#[test]
fn reloading_the_same_files_gives_equal_programs() {
    let a = good("fixtures/configs/good/every_key.yaml");
    let b = good("fixtures/configs/good/every_key.yaml");
    assert_eq!(a.programs, b.programs);
    assert_eq!(a.daemon, b.daemon);
}

#[test]
fn a_thousand_programs_load_quickly() {
    use std::fmt::Write;
    let mut src = String::from("programs:\n");
    for i in 0..1000 {
        let _ = write!(
            src,
            "  p{i}:\n    cmd: sleep {i}\n    numprocs: 2\n    env: {{N: {i}}}\n"
        );
    }
    let dir = std::env::temp_dir().join(format!("sup-golden-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("sup.yaml");
    std::fs::write(&file, src).expect("write");
    let start = std::time::Instant::now();
    let c = super::load(&file).expect("loads");
    let took = start.elapsed();
    std::fs::remove_dir_all(&dir).expect("cleanup");
    assert_eq!(c.instance_count(), 2000);
    // Generous for a debug build on a busy machine; a quadratic scan would blow far past it.
    assert!(took < Duration::from_secs(2), "took {took:?}");
}
