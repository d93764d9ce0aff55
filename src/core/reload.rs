//! The reload plan: which programs a new config adds, changes, scales, removes or leaves alone.
//!
//! Pure: two resolved program maps in, a plan out. Resolved specs compare equal when only
//! comments, key order or spelled-out defaults differ, so "unchanged" means exactly what
//! the README's Reload section promises: same pid, same counts.

use std::collections::BTreeMap;

use crate::config::spec::ListenerSpec;
use crate::config::ProgramSpec;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub added: Vec<String>,
    /// Restarted with the new definition (instances keep their names).
    pub changed: Vec<String>,
    /// Only `numprocs` changed, between two values above 1: start or stop the difference.
    pub scaled: Vec<(String, u32, u32)>,
    /// Going between 1 and more instances renames them: stopped and started afresh.
    pub renamed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
}

/// How `groups:` changed, one entry per group: `web (added)`, `web (changed)`,
/// `web (removed)`. Groups are only names for programs: a change here restarts nothing.
pub fn group_changes(
    old: &BTreeMap<String, Vec<String>>,
    new: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, members) in new {
        match old.get(name) {
            None => out.push(format!("{name} (added)")),
            Some(before) if before != members => out.push(format!("{name} (changed)")),
            Some(_) => {}
        }
    }
    out.extend(
        old.keys()
            .filter(|name| !new.contains_key(*name))
            .map(|name| format!("{name} (removed)")),
    );
    out.sort();
    out
}

/// How `daemon.notify.listeners` changed, matched as the daemon matches them when it
/// applies a reload: a listener with the same `cmd` and `events` keeps running, whatever its
/// position. Added ones are named by their new position, `1: logger --json (added)`; removed
/// ones by their old, `0: old-logger (removed)`.
pub fn listener_changes(old: &[ListenerSpec], new: &[ListenerSpec]) -> Vec<String> {
    let mut kept = vec![false; old.len()];
    let mut out = Vec::new();
    for (i, spec) in new.iter().enumerate() {
        match (0..old.len()).find(|&j| !kept[j] && old[j] == *spec) {
            Some(j) => kept[j] = true,
            None => out.push(format!("{i}: {} (added)", shell_words::join(&spec.cmd))),
        }
    }
    for (j, spec) in old.iter().enumerate() {
        if !kept[j] {
            out.push(format!("{j}: {} (removed)", shell_words::join(&spec.cmd)));
        }
    }
    out
}

pub fn plan(old: &BTreeMap<String, ProgramSpec>, new: &BTreeMap<String, ProgramSpec>) -> Plan {
    let mut p = Plan::default();
    for (name, spec) in new {
        let Some(before) = old.get(name) else {
            p.added.push(name.clone());
            continue;
        };
        if before == spec {
            p.unchanged.push(name.clone());
        } else if (before.numprocs == 1) != (spec.numprocs == 1)
            || before.schedule.is_some() != spec.schedule.is_some()
        {
            p.renamed.push(name.clone());
        } else if before.numprocs != spec.numprocs && same_but_numprocs(before, spec) {
            p.scaled
                .push((name.clone(), before.numprocs, spec.numprocs));
        } else {
            p.changed.push(name.clone());
        }
    }
    p.removed = old
        .keys()
        .filter(|name| !new.contains_key(*name))
        .cloned()
        .collect();
    p
}

fn same_but_numprocs(a: &ProgramSpec, b: &ProgramSpec) -> bool {
    let mut b = b.clone();
    b.numprocs = a.numprocs;
    *a == b
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(name: &str, numprocs: u32) -> ProgramSpec {
        ProgramSpec {
            numprocs,
            ..ProgramSpec::for_tests(name, &["sleep", "100"])
        }
    }

    fn map(specs: &[ProgramSpec]) -> BTreeMap<String, ProgramSpec> {
        specs.iter().map(|s| (s.name.clone(), s.clone())).collect()
    }

    #[test]
    fn each_kind_of_difference() {
        let mut changed = spec("c", 1);
        changed.cmd = vec!["sleep".into(), "200".into()];
        let old = map(&[
            spec("a", 1),
            spec("c", 1),
            spec("r", 1),
            spec("s", 2),
            spec("n", 1),
        ]);
        let new = map(&[
            spec("a", 1),
            changed,
            spec("s", 4),
            spec("n", 3),
            spec("z", 1),
        ]);
        let p = plan(&old, &new);
        assert_eq!(p.unchanged, ["a"]);
        assert_eq!(p.changed, ["c"]);
        assert_eq!(p.scaled, [("s".to_string(), 2, 4)]);
        assert_eq!(p.renamed, ["n"]);
        assert_eq!(p.removed, ["r"]);
        assert_eq!(p.added, ["z"]);
    }

    #[test]
    fn numprocs_and_another_key_is_a_change_not_a_scale() {
        let mut s = spec("s", 4);
        s.stoptime = Duration::from_secs(1);
        let p = plan(&map(&[spec("s", 2)]), &map(&[s]));
        assert_eq!(p.changed, ["s"]);
        assert!(p.scaled.is_empty());
    }

    #[test]
    fn identical_configs_plan_nothing() {
        let old = map(&[spec("a", 2), spec("b", 1)]);
        let p = plan(&old, &old.clone());
        assert!(p.added.is_empty() && p.changed.is_empty() && p.removed.is_empty());
        assert_eq!(p.unchanged, ["a", "b"]);
    }

    #[test]
    fn listener_changes_match_as_a_reload_applies_them() {
        let l = |cmd: &str, events: &[&str]| ListenerSpec {
            cmd: shell_words::split(cmd).expect("words"),
            events: events.iter().map(|e| e.to_string()).collect(),
        };
        let old = [l("a", &["fatal"]), l("b", &["exit"]), l("b", &["exit"])];
        // `b` moved to the front and one copy went; `a` asks for other events now.
        let new = [l("b", &["exit"]), l("a", &["fatal", "exit"])];
        assert_eq!(
            listener_changes(&old, &new),
            vec!["1: a (added)", "0: a (removed)", "2: b (removed)"]
        );
        assert!(listener_changes(&new, &new).is_empty());
        assert_eq!(
            listener_changes(&[], &[l("log 'x y'", &["fatal"])]),
            vec!["0: log 'x y' (added)"]
        );
    }

    #[test]
    fn group_changes_name_each_group_once() {
        let g = |v: &[(&str, &[&str])]| -> BTreeMap<String, Vec<String>> {
            v.iter()
                .map(|(n, m)| (n.to_string(), m.iter().map(|x| x.to_string()).collect()))
                .collect()
        };
        let old = g(&[
            ("web", &["api", "static"]),
            ("batch", &["nightly"]),
            ("same", &["a"]),
        ]);
        let new = g(&[("web", &["api"]), ("ops", &["a"]), ("same", &["a"])]);
        assert_eq!(
            group_changes(&old, &new),
            ["batch (removed)", "ops (added)", "web (changed)"]
        );
        assert!(group_changes(&new, &new).is_empty());
    }
}
