//! Resolving the NAME arguments of `status`, `start`, `stop` … against the instances:
//! `all`, a group (all its programs' instances), a program (all its instances) or one
//! instance (`web:1`). `web:*` and `front:*` mean the program or group, as supervisorctl
//! writes them; there are no other patterns: a name is matched whole.

use std::collections::BTreeMap;

/// Indices into `instances` (given as `(program, instance_name)` pairs, in display order)
/// that `names` select, in display order without duplicates; or the names that match nothing.
/// No names select nothing: every instance takes an explicit `all`, so a request that lost
/// its names on the way cannot stop everything. `groups` maps a group name to its programs
/// (the config check made sure no group is named like a program).
pub fn resolve<'a>(
    instances: &[(&str, &str)],
    groups: &BTreeMap<String, Vec<String>>,
    names: &'a [String],
) -> Result<Vec<usize>, Vec<&'a str>> {
    if names.iter().any(|n| n == "all") {
        return Ok((0..instances.len()).collect());
    }
    let mut picked = vec![false; instances.len()];
    let mut unknown = Vec::new();
    for name in names {
        // `NAME:*`: every instance of a program or group, never one instance.
        let (whole, starred) = match name.strip_suffix(":*") {
            Some(w) => (w, true),
            None => (name.as_str(), false),
        };
        let mut hit = false;
        let members = groups.get(whole);
        // A group that exists is a hit even when it has no members: it names nothing to do,
        // which is not a typo.
        hit |= members.is_some();
        for (i, (program, instance)) in instances.iter().enumerate() {
            let in_group = members.is_some_and(|m| m.iter().any(|p| p == program));
            if in_group || *program == whole || (!starred && instance == name) {
                picked[i] = true;
                hit = true;
            }
        }
        if !hit {
            unknown.push(name.as_str());
        }
    }
    if unknown.is_empty() {
        Ok((0..instances.len()).filter(|&i| picked[i]).collect())
    } else {
        Err(unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SET: &[(&str, &str)] = &[("db", "db"), ("web", "web:0"), ("web", "web:1")];

    fn resolve<'a>(set: &[(&str, &str)], names: &'a [String]) -> Result<Vec<usize>, Vec<&'a str>> {
        super::resolve(set, &BTreeMap::new(), names)
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn program_instance_and_all() {
        assert_eq!(resolve(SET, &names(&["web"])), Ok(vec![1, 2]));
        assert_eq!(resolve(SET, &names(&["web:1", "db"])), Ok(vec![0, 2]));
        assert_eq!(resolve(SET, &names(&["all"])), Ok(vec![0, 1, 2]));
        assert_eq!(resolve(SET, &[]), Ok(vec![]));
    }

    #[test]
    fn a_star_after_a_program_or_group_means_all_its_instances() {
        assert_eq!(resolve(SET, &names(&["web:*"])), Ok(vec![1, 2]));
        assert_eq!(resolve(SET, &names(&["db:*"])), Ok(vec![0]));
        // An instance name with a star is not a program: nothing matches it.
        assert_eq!(resolve(SET, &names(&["web:1:*"])), Err(vec!["web:1:*"]));
        let groups = BTreeMap::from([("front".to_string(), vec!["web".to_string()])]);
        assert_eq!(
            super::resolve(SET, &groups, &names(&["front:*"])),
            Ok(vec![1, 2])
        );
        assert_eq!(resolve(SET, &names(&["nope:*"])), Err(vec!["nope:*"]));
    }

    #[test]
    fn unknown_names_are_all_reported() {
        assert_eq!(
            resolve(SET, &names(&["nope", "web", "web:7"])),
            Err(vec!["nope", "web:7"])
        );
    }

    #[test]
    fn a_group_selects_its_programs_instances_once() {
        let groups = BTreeMap::from([
            ("front".to_string(), vec!["web".to_string()]),
            (
                "everything".to_string(),
                vec!["web".to_string(), "db".to_string()],
            ),
            ("empty".to_string(), vec![]),
        ]);
        let r = |v: &[&str]| super::resolve(SET, &groups, &names(v)).map_err(|e| e.len());
        assert_eq!(r(&["front"]), Ok(vec![1, 2]));
        assert_eq!(r(&["everything", "web:1"]), Ok(vec![0, 1, 2]));
        assert_eq!(r(&["empty"]), Ok(vec![]));
        assert_eq!(
            super::resolve(SET, &groups, &names(&["front", "back"])),
            Err(vec!["back"])
        );
    }
}
