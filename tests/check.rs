//! `sup check` as a user runs it: the real binary on the fixtures under `fixtures/configs`, and
//! the config lookup order (`-c`, `$SUP_CONFIG`, `./sup.yaml`, `./sup.d/`) in a fresh folder.
//!
//! The messages themselves are pinned by the `.expected` files beside the bad fixtures; here we
//! check that the binary prints each with the `sup: error: ` prefix, a count line, and exit 1.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `sup ARGS…` run from `cwd`, with no `SUP_CONFIG` unless a test sets one.
fn sup(cwd: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sup"));
    cmd.args(args).current_dir(cwd).env_remove("SUP_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run sup")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn expect_ok(out: &Output, line: &str) {
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{line}\n"));
}

mod good_configs {
    use super::*;

    #[test]
    fn the_taskmaster_example() {
        let out = sup(
            repo(),
            &["check", "-c", "fixtures/configs/good/taskmaster.yaml"],
            &[],
        );
        expect_ok(&out, "ok: 2 programs, 9 instances");
    }

    #[test]
    fn every_key() {
        let out = sup(
            repo(),
            &["-c", "fixtures/configs/good/every_key.yaml", "check"],
            &[],
        );
        expect_ok(&out, "ok: 3 programs, 5 instances");
    }

    #[test]
    fn a_directory() {
        let out = sup(repo(), &["check", "-c", "fixtures/configs/good/dir"], &[]);
        expect_ok(&out, "ok: 3 programs, 4 instances");
    }

    #[test]
    fn a_file_and_its_sup_d() {
        let out = sup(
            repo(),
            &[
                "check",
                "--config",
                "fixtures/configs/good/withincludes/sup.yaml",
            ],
            &[],
        );
        expect_ok(&out, "ok: 3 programs, 6 instances");
    }
}

mod bad_configs {
    use super::*;

    /// What `sup check` must print for one fixture: each expected error with the prefix (hint
    /// lines as they are), then the count.
    fn expected_stderr(fixture: &Path, expected: &str) -> String {
        let mut out = String::new();
        let mut count = 0;
        for line in expected.lines() {
            if line.starts_with("  hint: ") {
                out.push_str(line);
            } else {
                count += 1;
                out.push_str("sup: error: ");
                out.push_str(line);
            }
            out.push('\n');
        }
        let plural = if count == 1 { "" } else { "s" };
        out.push_str(&format!(
            "sup: {count} error{plural} in {}\n",
            repo().join(fixture).display()
        ));
        out
    }

    #[test]
    fn every_bad_fixture_prints_all_its_errors_and_exits_1() {
        let dir = repo().join("fixtures/configs/bad");
        let mut checked = 0;
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("fixtures")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        entries.sort();
        for path in entries {
            let rel = path.strip_prefix(repo()).expect("under the repo");
            let stem = path.file_stem().expect("stem").to_string_lossy();
            let expected = std::fs::read_to_string(dir.join(format!("{stem}.expected")))
                .expect(".expected file");
            let out = sup(repo(), &["check", "-c", &rel.to_string_lossy()], &[]);
            assert_eq!(out.status.code(), Some(1), "{}", rel.display());
            assert_eq!(text(&out.stdout), "", "{}", rel.display());
            assert_eq!(
                text(&out.stderr),
                expected_stderr(rel, &expected),
                "{}",
                rel.display()
            );
            checked += 1;
        }
        assert!(checked >= 12);
    }

    #[test]
    fn a_missing_config_exits_1_and_says_where_sup_looked() {
        let out = sup(repo(), &["check", "-c", "no/such.yaml"], &[]);
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(
            err.starts_with(
                "sup: error: no/such.yaml: unable to read: no such file or directory\n  hint: "
            ),
            "{err}"
        );
    }
}

/// A fresh folder under the system temp dir, removed on drop.
struct Sandbox(PathBuf);

impl Sandbox {
    fn new(name: &str) -> Sandbox {
        let dir = std::env::temp_dir().join(format!("sup-check-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("sandbox");
        Sandbox(dir)
    }

    fn write(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, content).expect("write");
        p
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

mod config_lookup {
    use super::*;

    #[test]
    fn flag_then_env_then_sup_yaml_then_sup_d() {
        let sb = Sandbox::new("lookup");
        let cwd = &sb.0;
        // Nothing at all: the error names ./sup.d, the last place looked.
        let out = sup(cwd, &["check"], &[]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).starts_with("sup: error: sup.d: unable to read"),
            "{}",
            text(&out.stderr)
        );

        // ./sup.d/ alone.
        sb.write("sup.d/a.job", "cmd: sleep 1\n");
        sb.write("sup.d/b.job", "cmd: sleep 1\nnumprocs: 2\n");
        expect_ok(&sup(cwd, &["check"], &[]), "ok: 2 programs, 3 instances");

        // ./sup.yaml wins over ./sup.d/ (and, with its default include, reads sup.d/*.job).
        sb.write("sup.yaml", "programs:\n  main:\n    cmd: sleep 1\n");
        expect_ok(&sup(cwd, &["check"], &[]), "ok: 3 programs, 4 instances");

        // $SUP_CONFIG wins over ./sup.yaml.
        let env_cfg = sb.write(
            "other/env.yaml",
            "programs:\n  e:\n    cmd: sleep 1\n    numprocs: 5\n",
        );
        expect_ok(
            &sup(cwd, &["check"], &[("SUP_CONFIG", &env_cfg)]),
            "ok: 1 program, 5 instances",
        );

        // -c wins over $SUP_CONFIG; a relative -c is taken from the working directory.
        sb.write(
            "flag.yaml",
            "include: []\nprograms:\n  f:\n    cmd: sleep 1\n",
        );
        expect_ok(
            &sup(
                cwd,
                &["check", "-c", "flag.yaml"],
                &[("SUP_CONFIG", &env_cfg)],
            ),
            "ok: 1 program, 1 instance",
        );
    }

    #[test]
    fn errors_in_the_working_directory_are_shown_relative_to_it() {
        let sb = Sandbox::new("relative");
        sb.write("sup.yaml", "programs:\n  web:\n    cmd: sleep 1\n");
        sb.write("sup.d/web.job", "cmd: sleep 2\n");
        let out = sup(&sb.0, &["check"], &[]);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            text(&out.stderr).lines().next(),
            Some("sup: error: program \"web\" is defined twice: sup.yaml:2:3 and sup.d/web.job")
        );
    }
}

mod what_fails_later {
    use super::*;

    #[test]
    fn a_single_job_file_is_checked_as_its_folder_would_read_it() {
        let sb = Sandbox::new("single-job");
        sb.write("web.job", "cmd: sleep 5\nnumprocs: 2\n");
        let out = sup(&sb.0, &["check", "-c", "web.job"], &[]);
        expect_ok(&out, "ok: 1 program, 2 instances");
        assert_eq!(text(&out.stderr), "");
    }

    #[test]
    fn a_missing_workingdir_is_a_warning_naming_the_line() {
        let sb = Sandbox::new("workingdir");
        sb.write(
            "web.job",
            "cmd: sleep 5\nworkingdir: /nonexistent/sup-dir\n",
        );
        let out = sup(&sb.0, &["check", "-c", "web.job"], &[]);
        expect_ok(&out, "ok: 1 program, 1 instance");
        assert_eq!(
            text(&out.stderr),
            "sup: warning: web.job:2:13: programs.web.workingdir: /nonexistent/sup-dir: \
             no such file or directory\n  hint: the job fails to start until it exists\n"
        );
    }

    /// A config with errors still shows its warnings: both are what needs fixing, and the
    /// exit status is the errors' (1), in text and in JSON alike.
    #[test]
    fn warnings_are_printed_beside_errors() {
        let sb = Sandbox::new("warn-and-error");
        sb.write(
            "web.job",
            "cmd: sleep 5\nworkingdir: /nonexistent/sup-dir\nnumproc: 2\n",
        );
        let out = sup(&sb.0, &["check", "-c", "web.job"], &[]);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(text(&out.stdout), "");
        let err = text(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(
            lines[0], "sup: error: web.job:3:1: programs.web.numproc: unknown key",
            "{err}"
        );
        let warning = lines
            .iter()
            .position(|l| {
                *l == "sup: warning: web.job:2:13: programs.web.workingdir: \
                       /nonexistent/sup-dir: no such file or directory"
            })
            .unwrap_or_else(|| panic!("no warning in:\n{err}"));
        // Errors first, the count of errors last, as before.
        assert!(warning > 0, "{err}");
        let count = format!("sup: 1 error in {}", sb.0.join("web.job").display());
        assert_eq!(lines.last().copied(), Some(count.as_str()), "{err}");

        let out = sup(&sb.0, &["check", "--json", "-c", "web.job"], &[]);
        assert_eq!(out.status.code(), Some(1));
        let doc: serde_json::Value =
            serde_json::from_str(text(&out.stdout).trim()).expect("one JSON document");
        assert_eq!(doc["ok"], false);
        assert_eq!(doc["errors"].as_array().map(Vec::len), Some(1), "{doc}");
        assert_eq!(doc["errors"][0]["key"], "programs.web.numproc");
        assert_eq!(doc["warnings"].as_array().map(Vec::len), Some(1), "{doc}");
        let w = &doc["warnings"][0];
        assert_eq!(
            (w["line"].as_u64(), w["column"].as_u64()),
            (Some(2), Some(13))
        );
        assert_eq!(w["key"], "programs.web.workingdir");
        assert_eq!(w["hint"], "the job fails to start until it exists");
    }
}

mod hostile_input {
    use super::*;

    /// Block style nests without any bracket to count; a recursive reader would overflow the
    /// stack (exit 134) long before 30,000 levels.
    #[test]
    fn deep_nesting_is_a_positioned_error_in_a_yaml_and_a_job_file() {
        let sb = Sandbox::new("deep");
        let deep = format!("{}x\n", "- ".repeat(30_000));
        sb.write("deep.yaml", &deep);
        sb.write("jobs/a.job", &deep);
        let mut map = String::new();
        for i in 0..20_000 {
            map.push_str(&"  ".repeat(i));
            map.push_str("a:\n");
        }
        sb.write("map.yaml", &map);
        for (config, at) in [
            ("deep.yaml", "deep.yaml:1:129: "),
            ("jobs", "jobs/a.job:1:129: programs.a: "),
            ("map.yaml", "map.yaml:65:130: a.a.a"),
        ] {
            let out = sup(&sb.0, &["check", "-c", config], &[]);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{config}: {err}");
            assert!(err.starts_with(&format!("sup: error: {at}")), "{err}");
            assert!(err.contains("nest deeper than 64 levels"), "{err}");
        }
    }
}
