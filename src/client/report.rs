//! How the answers to start/stop/restart/signal, pid and reload read. Pure: each function
//! turns an answer into the lines for stdout, the error lines for stderr and whether the
//! command got everything it asked for. `mod.rs` does the writing.

use crate::control::proto::{Outcome, ReloadReport};

/// What a command prints: `out` to stdout, `errors` to stderr (each as `sup: error: …`), and
/// `complete` false when the exit status should be 1 although the request as a whole worked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub out: Vec<String>,
    pub errors: Vec<String>,
    pub complete: bool,
}

/// `web:0: started`, or `web:1: ERROR spawn failed: …`. Complete when every outcome is ok.
pub fn outcomes(outcomes: &[Outcome]) -> Report {
    let out = outcomes
        .iter()
        .map(|o| {
            if o.ok {
                format!("{}: {}", o.name, o.message)
            } else {
                format!("{}: ERROR {}", o.name, o.message)
            }
        })
        .collect();
    Report {
        out,
        errors: Vec::new(),
        complete: outcomes.iter().all(|o| o.ok),
    }
}

/// `sup pid [NAME]`. With no name the daemon's pid; for one instance just its pid; for several,
/// `NAME PID` lines (single-spaced, so `read name pid` works). An instance that is not
/// running is an error line and makes the command incomplete.
pub fn pids(asked: Option<&str>, daemon: Option<u32>, pids: &[(String, Option<u32>)]) -> Report {
    let mut r = Report {
        complete: true,
        ..Report::default()
    };
    let Some(asked) = asked else {
        match daemon {
            Some(pid) => r.out.push(pid.to_string()),
            None => {
                r.errors.push("the daemon did not say its pid".to_string());
                r.complete = false;
            }
        }
        return r;
    };
    match pids {
        [] => {
            r.errors.push(format!("{asked}: no instance matched"));
            r.complete = false;
        }
        [(name, pid)] => match pid {
            Some(pid) => r.out.push(pid.to_string()),
            None => {
                r.errors.push(format!("{name}: not running"));
                r.complete = false;
            }
        },
        several => {
            for (name, pid) in several {
                match pid {
                    Some(pid) => r.out.push(format!("{name} {pid}")),
                    None => {
                        r.errors.push(format!("{name}: not running"));
                        r.complete = false;
                    }
                }
            }
        }
    }
    r
}

/// `added: a, b` / `changed: …` / `removed: …` (each only when there is something to say),
/// then `unchanged: N`. With errors, only the errors: the old config stays in force.
pub fn reload(report: &ReloadReport) -> Report {
    if !report.errors.is_empty() {
        return Report {
            out: Vec::new(),
            errors: report.errors.clone(),
            complete: false,
        };
    }
    let mut out = Vec::new();
    for (word, names) in [
        ("added", &report.added),
        ("changed", &report.changed),
        ("removed", &report.removed),
        ("groups", &report.groups),
        ("listeners", &report.listeners),
    ] {
        if !names.is_empty() {
            out.push(format!("{word}: {}", names.join(", ")));
        }
    }
    if report.daemon_changed {
        out.push("daemon settings: changed, in force at the next daemon start".to_string());
    }
    out.push(format!("unchanged: {}", report.unchanged.len()));
    if report.dry_run {
        out.push("dry run: nothing changed".to_string());
    }
    // The config is in force either way; what did not come up is still the caller's problem.
    let errors: Vec<String> = report
        .outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(|o| format!("{}: {}", o.name, o.message))
        .collect();
    Report {
        out,
        complete: errors.is_empty(),
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(name: &str, ok: bool, message: &str) -> Outcome {
        Outcome {
            name: name.into(),
            ok,
            message: message.into(),
        }
    }

    #[test]
    fn outcomes_one_line_each_and_incomplete_on_any_failure() {
        let r = outcomes(&[
            o("web:0", true, "started"),
            o("web:1", true, "already running"),
            o(
                "web:2",
                false,
                "spawn failed: /usr/bin/webd: no such file or directory",
            ),
        ]);
        assert_eq!(
            r.out,
            [
                "web:0: started",
                "web:1: already running",
                "web:2: ERROR spawn failed: /usr/bin/webd: no such file or directory"
            ]
        );
        assert!(!r.complete);
        assert!(outcomes(&[o("web", true, "stopped")]).complete);
    }

    #[test]
    fn pid_of_the_daemon_of_one_and_of_several() {
        assert_eq!(pids(None, Some(77), &[]).out, ["77"]);
        let one = pids(Some("web"), None, &[("web".into(), Some(4312))]);
        assert_eq!((one.out, one.complete), (vec!["4312".to_string()], true));
        let several = pids(
            Some("web"),
            None,
            &[("web:0".into(), Some(10)), ("web:1".into(), None)],
        );
        assert_eq!(several.out, ["web:0 10"]);
        assert_eq!(several.errors, ["web:1: not running"]);
        assert!(!several.complete);
    }

    #[test]
    fn pid_of_a_stopped_instance_is_an_error() {
        let r = pids(Some("web"), None, &[("web".into(), None)]);
        assert!(r.out.is_empty());
        assert_eq!(r.errors, ["web: not running"]);
        assert!(!r.complete);
    }

    #[test]
    fn reload_names_what_changed() {
        let report = ReloadReport {
            added: vec!["a".into(), "b".into()],
            removed: vec!["old".into()],
            unchanged: vec!["x".into(), "y".into(), "z".into()],
            ..ReloadReport::default()
        };
        let r = reload(&report);
        assert_eq!(r.out, ["added: a, b", "removed: old", "unchanged: 3"]);
        assert!(r.complete);
        let dry = reload(&ReloadReport {
            dry_run: true,
            ..report
        });
        assert_eq!(
            dry.out.last().map(String::as_str),
            Some("dry run: nothing changed")
        );
    }

    #[test]
    fn reload_names_listener_and_daemon_changes() {
        let r = reload(&ReloadReport {
            listeners: vec!["0: log (added)".into()],
            daemon_changed: true,
            ..ReloadReport::default()
        });
        assert_eq!(
            r.out,
            [
                "listeners: 0: log (added)",
                "daemon settings: changed, in force at the next daemon start",
                "unchanged: 0"
            ]
        );
    }

    #[test]
    fn reload_with_errors_prints_only_them_and_fails() {
        let r = reload(&ReloadReport {
            added: vec!["a".into()],
            errors: vec!["sup.yaml:3:5: programs.a.cmd: must not be empty".into()],
            ..ReloadReport::default()
        });
        assert!(r.out.is_empty());
        assert_eq!(r.errors.len(), 1);
        assert!(!r.complete);
    }
}
