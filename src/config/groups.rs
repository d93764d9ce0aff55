//! `groups:` at the top level of the main file: a map of group name to a list of program
//! names. A group is only a name for several programs at once (`sup stop web`): it is not part
//! of any program's resolved spec, so changing a group never restarts its members.
//!
//! A group in `depends_on` stands for its programs (`expand_dependencies`), so the resolved
//! spec names programs only and the dependency check and the loop never see a group.
//!
//! `read` takes the map as written (its shape errors go to the sink at once); whether each
//! member is a program, and whether a group name clashes with one, needs every program and
//! is `check`'s, run once the whole config is loaded.

use std::collections::{BTreeMap, BTreeSet};

use super::resolve::{self, Sink};
use super::spec::Dependency;
use super::values::{self, Bad};
use super::yaml::{Kind, Node};

/// One group as written: where its name is, and each member with where it is.
#[derive(Debug)]
pub struct Written {
    name: String,
    at: (usize, usize),
    members: Vec<(String, (usize, usize))>,
}

/// The `groups:` map of `file`. A duplicate group name is already refused by the YAML reader
/// (which names both lines); a program named twice in one group is refused here.
pub fn read(
    node: &Node,
    file: &str,
    valid_name: fn(&str) -> bool,
    sink: &mut Sink,
) -> Vec<Written> {
    let what = "a map of group name to a list of program names";
    let Some(entries) = resolve::entries(node, what, file, "groups", sink) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        let Some(name) = resolve::key_text(k, file, "groups", sink) else {
            continue;
        };
        let key = format!("groups.{name}");
        if !valid_name(name) {
            let bad = Bad::new(format!(
                "invalid group name {name:?}: use letters, digits, '_', '.' and '-'"
            ));
            sink.push(file, (k.line, k.col), "groups", bad);
        }
        if name == "all" {
            let bad = Bad::new("\"all\" already means every program: name the group otherwise");
            sink.push(file, (k.line, k.col), "groups", bad);
        }
        let items = match &v.kind {
            Kind::Seq(items) => &items[..],
            Kind::Scalar(s) if s.is_null() => &[][..],
            Kind::Scalar(_) => std::slice::from_ref(v),
            Kind::Map(_) => {
                let bad = Bad::new(format!(
                    "expected a list of program names, found {}",
                    v.describe()
                ));
                sink.push(file, (v.line, v.col), &key, bad);
                continue;
            }
        };
        let mut members: Vec<(String, (usize, usize))> = Vec::new();
        for item in items {
            let Some(t) = item.text().map(str::trim).filter(|t| !t.is_empty()) else {
                let bad = Bad::new(format!(
                    "expected a program name, found {}",
                    item.describe()
                ));
                sink.push(file, (item.line, item.col), &key, bad);
                continue;
            };
            if let Some((_, first)) = members.iter().find(|(m, _)| m == t) {
                let bad = Bad::new(format!(
                    "duplicate program {t:?} in group {name:?}: first at {}:{}",
                    first.0, first.1
                ));
                sink.push(file, (item.line, item.col), &key, bad);
                continue;
            }
            members.push((t.to_string(), (item.line, item.col)));
        }
        out.push(Written {
            name: name.to_string(),
            at: (k.line, k.col),
            members,
        });
    }
    out
}

/// Every member is a program and no group is named like one: the groups by name, each with
/// its members in the order written. `programs` are the names defined, those whose job has
/// errors too (their errors are reported already; a group naming them is not wrong).
pub fn check(
    written: Vec<Written>,
    file: &str,
    programs: &BTreeSet<&str>,
    sink: &mut Sink,
) -> BTreeMap<String, Vec<String>> {
    let mut groups = BTreeMap::new();
    for g in written {
        let key = format!("groups.{}", g.name);
        if programs.contains(g.name.as_str()) {
            let bad = Bad::new(format!(
                "group {:?} has the name of a program: a name must mean one thing",
                g.name
            ))
            .with_hint("rename the group or the program");
            sink.push(file, g.at, "groups", bad);
        }
        for (member, at) in &g.members {
            if !programs.contains(member.as_str()) {
                let mut bad = Bad::new(format!("unknown program {member:?} in group {:?}", g.name));
                if let Some(s) = values::suggest(member, programs.iter().copied()) {
                    bad = bad.with_hint(format!("did you mean {s}?"));
                }
                sink.push(file, *at, &key, bad);
            }
        }
        groups.insert(g.name, g.members.into_iter().map(|(m, _)| m).collect());
    }
    groups
}

/// `depends_on` with each group replaced by its programs, each with the group's condition;
/// sorted by program, one entry per program (the strictest condition when a program is named
/// twice, directly and through a group). No group is named like a program, so a name is one
/// or the other.
pub fn expand_dependencies(deps: &mut Vec<Dependency>, groups: &BTreeMap<String, Vec<String>>) {
    if !deps.iter().any(|d| groups.contains_key(&d.program)) {
        return;
    }
    let mut out: Vec<Dependency> = Vec::new();
    for d in deps.drain(..) {
        match groups.get(&d.program) {
            Some(members) => out.extend(members.iter().map(|m| Dependency {
                program: m.clone(),
                condition: d.condition,
            })),
            None => out.push(d),
        }
    }
    // By program, strictest condition first; then keep the first of each program.
    out.sort_by(|a, b| {
        a.program
            .cmp(&b.program)
            .then(b.condition.cmp(&a.condition))
    });
    out.dedup_by(|a, b| a.program == b.program);
    *deps = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Condition;

    #[test]
    fn a_group_in_depends_on_is_its_programs_with_the_strictest_condition() {
        let groups = BTreeMap::from([(
            "data".to_string(),
            vec!["db".to_string(), "cache".to_string()],
        )]);
        let mut deps = vec![
            Dependency {
                program: "data".into(),
                condition: Condition::Healthy,
            },
            Dependency::started("db"),
            Dependency::started("queue"),
        ];
        expand_dependencies(&mut deps, &groups);
        let got: Vec<(&str, Condition)> = deps
            .iter()
            .map(|d| (d.program.as_str(), d.condition))
            .collect();
        assert_eq!(
            got,
            [
                ("cache", Condition::Healthy),
                ("db", Condition::Healthy),
                ("queue", Condition::Started)
            ]
        );
    }
}
