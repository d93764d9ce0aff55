//! Resolving the NAME arguments of `status`, `start`, `stop` … against the instances:
//! `all`, a program (all its instances) or one instance (`web:1`).

/// Indices into `instances` (given as `(program, instance_name)` pairs, in display order)
/// that `names` select, in display order without duplicates; or the names that match nothing.
/// No names select nothing: every instance takes an explicit `all`, so a request that lost
/// its names on the way cannot stop everything.
pub fn resolve<'a>(
    instances: &[(&str, &str)],
    names: &'a [String],
) -> Result<Vec<usize>, Vec<&'a str>> {
    if names.iter().any(|n| n == "all") {
        return Ok((0..instances.len()).collect());
    }
    let mut picked = vec![false; instances.len()];
    let mut unknown = Vec::new();
    for name in names {
        let mut hit = false;
        for (i, (program, instance)) in instances.iter().enumerate() {
            if program == name || instance == name {
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
    fn unknown_names_are_all_reported() {
        assert_eq!(
            resolve(SET, &names(&["nope", "web", "web:7"])),
            Err(vec!["nope", "web:7"])
        );
    }
}
