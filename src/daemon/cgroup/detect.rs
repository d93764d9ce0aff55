//! Which cgroup hierarchies this daemon can use, decided from the text of
//! `/proc/self/cgroup`, `/proc/self/mountinfo` and the unified hierarchy's
//! `cgroup.controllers`: pure functions, so every host shape is a unit test with fixture
//! strings. `super::setup` does the reading and the writing.

use std::path::{Path, PathBuf};

/// The controllers sup uses, as bits.
pub const MEMORY: u8 = 1;
pub const PIDS: u8 = 2;
/// Quotas: v2 `cpu.max`, v1 `cpu.cfs_quota_us`.
pub const CPU: u8 = 4;
/// Usage: v2 `cpu.stat` (every v2 cgroup has it), v1 `cpuacct.usage`.
pub const CPUACCT: u8 = 8;
pub const FREEZER: u8 = 16;

/// One v1 hierarchy the daemon is in, and the controllers of ours it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Tree {
    /// The daemon's own cgroup directory in it.
    pub dir: PathBuf,
    pub controllers: u8,
}

/// Where the daemon's own cgroups are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// The daemon's own cgroup directory in the unified (v2) hierarchy.
    pub unified: Option<PathBuf>,
    /// The v1 hierarchies of memory, pids, cpu, cpuacct and freezer, one entry per mount.
    pub v1: Vec<V1Tree>,
}

/// What the daemon will use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Pure v2: membership, kill, and the limits of the controllers available (`controllers`,
    /// from `cgroup.controllers`; none means membership and kill only).
    V2 { dir: PathBuf, controllers: u8 },
    /// The v2 hierarchy for membership and `cgroup.kill`, v1 controllers for limits and usage.
    Hybrid { unified: PathBuf, v1: Vec<V1Tree> },
    /// v1 only: membership in the v1 hierarchies, kill by freezer (or signals).
    V1 { v1: Vec<V1Tree> },
    /// Nothing usable; why.
    None(String),
}

fn controller_bit(name: &str) -> u8 {
    match name {
        "memory" => MEMORY,
        "pids" => PIDS,
        "cpu" => CPU,
        "cpuacct" => CPUACCT,
        "freezer" => FREEZER,
        _ => 0,
    }
}

/// The bits of a space-separated controller list (`cgroup.controllers`).
pub fn controller_bits(list: &str) -> u8 {
    list.split_whitespace()
        .map(controller_bit)
        .fold(0, |a, b| a | b)
}

/// The names of `bits`, for the log: `memory pids cpu`.
pub fn controller_names(bits: u8) -> String {
    let names = [
        (MEMORY, "memory"),
        (PIDS, "pids"),
        (CPU, "cpu"),
        (CPUACCT, "cpuacct"),
        (FREEZER, "freezer"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(" ")
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let n = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(n as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One cgroup mount: its root within the hierarchy, where it is mounted, v2 or not, and its
/// controllers (v1, from the super options).
struct Mount {
    root: String,
    point: String,
    v2: bool,
    controllers: Vec<String>,
}

fn mounts(mountinfo: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        let v2 = match r[0] {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        out.push(Mount {
            root: unescape(l[3]),
            point: unescape(l[4]),
            v2,
            controllers: r[2].split(',').map(str::to_string).collect(),
        });
    }
    out
}

/// The directory of cgroup `path` (as `/proc/self/cgroup` names it) under `mount`, if the
/// mount shows it (a container may mount only a subtree).
fn dir_under(mount: &Mount, path: &str) -> Option<PathBuf> {
    let rel = if mount.root == "/" {
        path
    } else {
        let rest = path.strip_prefix(mount.root.as_str())?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        rest
    };
    let rel = rel.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    let base = Path::new(&mount.point);
    Some(if rel.is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    })
}

/// Where the daemon's cgroups are, from `/proc/self/cgroup` and `/proc/self/mountinfo`.
pub fn locate(proc_cgroup: &str, mountinfo: &str) -> Found {
    let mounts = mounts(mountinfo);
    let mut found = Found::default();
    for line in proc_cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(id), Some(ctls), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if id == "0" && ctls.is_empty() {
            if let Some(m) = mounts.iter().find(|m| m.v2) {
                found.unified = dir_under(m, path);
            }
            continue;
        }
        let names: Vec<&str> = ctls.split(',').collect();
        let bits = names
            .iter()
            .map(|n| controller_bit(n))
            .fold(0, |a, b| a | b);
        if bits == 0 {
            continue;
        }
        let Some(m) = mounts
            .iter()
            .find(|m| !m.v2 && names.iter().all(|n| m.controllers.iter().any(|c| c == n)))
        else {
            continue;
        };
        if let Some(dir) = dir_under(m, path) {
            if !found.v1.iter().any(|t| t.dir == dir) {
                found.v1.push(V1Tree {
                    dir,
                    controllers: bits,
                });
            }
        }
    }
    found
}

/// What to use, given where the cgroups are and the unified hierarchy's `cgroup.controllers`
/// (`None` when it could not be read).
pub fn decide(found: Found, v2_controllers: Option<&str>) -> Plan {
    let v2_bits = v2_controllers.map_or(0, controller_bits) & (MEMORY | PIDS | CPU);
    match found.unified {
        Some(dir) if v2_bits != 0 || found.v1.is_empty() => Plan::V2 {
            dir,
            controllers: v2_bits,
        },
        Some(unified) => Plan::Hybrid {
            unified,
            v1: found.v1,
        },
        None if !found.v1.is_empty() => Plan::V1 { v1: found.v1 },
        None => Plan::None("no cgroup hierarchy is mounted".into()),
    }
}

/// The name of a daemon's subtree: `sup-<tag>`, so that daemons on other state files have
/// their own, and the next daemon on this one finds what the last one left.
pub fn subtree_name(tag: &str) -> String {
    format!("sup-{tag}")
}

/// The daemon's own leaf on v2 with controllers (no internal processes): a name no program
/// can have, since program names have no colon.
pub const DAEMON_LEAF: &str = "sup:daemon";

/// The daemon's own cgroup when it was started inside a predecessor's leaf (`…/sup-T/sup:daemon`):
/// the directory above that subtree, so the layout does not nest on every restart.
pub fn own_base(dir: &Path, tag: &str) -> PathBuf {
    let sub = subtree_name(tag);
    if dir.file_name().and_then(|n| n.to_str()) == Some(DAEMON_LEAF) {
        if let Some(parent) = dir.parent() {
            if parent.file_name().and_then(|n| n.to_str()) == Some(sub.as_str()) {
                if let Some(base) = parent.parent() {
                    return base.to_path_buf();
                }
            }
        }
    }
    dir.to_path_buf()
}

/// An instance's directory below the subtree: `PROGRAM/INSTANCE`, or `None` for a name that
/// is not one directory entry (`.`, `..`, or a cgroup interface file's prefix such as
/// `cgroup.procs`).
pub fn instance_path(program: &str, instance: &str) -> Option<(String, String)> {
    let ok = |n: &str| {
        !n.is_empty()
            && n != "."
            && n != ".."
            && !n.contains('/')
            && !n.contains('\0')
            && !n.starts_with("cgroup.")
            && n != DAEMON_LEAF
    };
    (ok(program) && ok(instance)).then(|| (program.to_string(), instance.to_string()))
}

/// A `key value` line's value in a flat-keyed file (`cgroup.events`, `memory.events`,
/// `cpu.stat`, `memory.stat`, `memory.oom_control`).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Whether `cgroup.procs` text lists no process.
pub fn procs_empty(text: &str) -> bool {
    text.split_whitespace().next().is_none()
}

/// The pids in `cgroup.procs` text.
pub fn procs(text: &str) -> Vec<i32> {
    text.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|&p| p > 0)
        .collect()
}

/// v2 `cpu.max` for a quota in thousandths of a CPU: `quota period`, the period 100 ms.
pub fn cpu_max_v2(millicpus: u32) -> String {
    let (quota, period) = cfs(millicpus);
    format!("{quota} {period}")
}

/// (quota, period) in µs for thousandths of a CPU; the kernel's minimum quota is 1 ms.
pub fn cfs(millicpus: u32) -> (u64, u64) {
    let period = 100_000u64;
    let quota = (u64::from(millicpus) * period / 1000).max(1000);
    (quota, period)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_CGROUP: &str = "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n\
        5:devices:/\n4:memory:/process_api/bc71\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n";
    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn a_hybrid_host_uses_v2_for_membership_and_v1_for_limits() {
        let found = locate(HYBRID_CGROUP, HYBRID_MOUNTS);
        assert_eq!(found.unified, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let dirs: Vec<(&Path, u8)> = found
            .v1
            .iter()
            .map(|t| (t.dir.as_path(), t.controllers))
            .collect();
        assert_eq!(
            dirs,
            [
                (Path::new("/sys/fs/cgroup/pids"), PIDS),
                (Path::new("/sys/fs/cgroup/freezer"), FREEZER),
                (Path::new("/sys/fs/cgroup/memory/process_api/bc71"), MEMORY),
                (Path::new("/sys/fs/cgroup/cpuacct"), CPUACCT),
                (Path::new("/sys/fs/cgroup/cpu"), CPU),
            ]
        );
        match decide(found, Some("")) {
            Plan::Hybrid { unified, v1 } => {
                assert_eq!(unified, Path::new("/sys/fs/cgroup/unified"));
                assert_eq!(v1.len(), 5);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pure_v2_takes_its_controllers_from_cgroup_controllers() {
        let cg = "0::/system.slice/sup.service\n";
        let mounts = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let found = locate(cg, mounts);
        assert_eq!(
            found.unified,
            Some(PathBuf::from("/sys/fs/cgroup/system.slice/sup.service"))
        );
        assert_eq!(
            decide(
                found.clone(),
                Some("cpuset cpu io memory hugetlb pids rdma misc\n")
            ),
            Plan::V2 {
                dir: PathBuf::from("/sys/fs/cgroup/system.slice/sup.service"),
                controllers: MEMORY | PIDS | CPU
            }
        );
        // Nothing delegated: membership and kill still work.
        assert_eq!(
            decide(found, Some("")),
            Plan::V2 {
                dir: PathBuf::from("/sys/fs/cgroup/system.slice/sup.service"),
                controllers: 0
            }
        );
    }

    #[test]
    fn a_container_sees_its_subtree_and_the_rest_is_none() {
        // A bind mount of our own subtree: the mount root is our path.
        let cg = "0::/docker/abc\n";
        let mounts = "50 40 0:26 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
        assert_eq!(
            locate(cg, mounts).unified,
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        // A path the mount does not show.
        let cg = "0::/elsewhere\n";
        assert_eq!(locate(cg, mounts).unified, None);
        // No cgroup mount at all.
        assert_eq!(
            decide(
                locate("0::/\n", "22 1 0:21 / / rw - ext4 /dev/sda rw\n"),
                None
            ),
            Plan::None("no cgroup hierarchy is mounted".into())
        );
        // v1 only, cpu and cpuacct on one mount.
        let cg = "3:cpu,cpuacct:/a\n2:memory:/a\n";
        let mounts = "30 20 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                      31 20 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        match decide(locate(cg, mounts), None) {
            Plan::V1 { v1 } => {
                assert_eq!(v1[0].dir, Path::new("/sys/fs/cgroup/cpu,cpuacct/a"));
                assert_eq!(v1[0].controllers, CPU | CPUACCT);
                assert_eq!(v1[1].controllers, MEMORY);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mount_points_are_unescaped() {
        let mounts = "41 31 0:38 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            locate("0::/x\n", mounts).unified,
            Some(PathBuf::from("/mnt/my cgroups/x"))
        );
    }

    #[test]
    fn the_layout_is_a_subtree_per_daemon_and_a_directory_per_instance() {
        assert_eq!(subtree_name("1a2b"), "sup-1a2b");
        assert_eq!(
            instance_path("web", "web:1"),
            Some(("web".into(), "web:1".into()))
        );
        assert_eq!(instance_path("..", ".."), None);
        assert_eq!(instance_path("cgroup.procs", "cgroup.procs"), None);
        // A daemon started in a predecessor's leaf builds beside it, not inside it.
        let base = Path::new("/sys/fs/cgroup/system.slice/sup.service");
        assert_eq!(own_base(&base.join("sup-1a2b/sup:daemon"), "1a2b"), base);
        assert_eq!(own_base(base, "1a2b"), base);
        assert_eq!(
            own_base(&base.join("sup-other/sup:daemon"), "1a2b"),
            base.join("sup-other/sup:daemon")
        );
    }

    #[test]
    fn keyed_files_and_procs() {
        assert_eq!(keyed("populated 1\nfrozen 0\n", "populated"), Some(1));
        assert_eq!(
            keyed("low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n", "oom_kill"),
            Some(2)
        );
        assert_eq!(
            keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 4\n", "oom_kill"),
            Some(4)
        );
        assert_eq!(
            keyed("usage_usec 1234\nuser_usec 1000\n", "usage_usec"),
            Some(1234)
        );
        assert_eq!(keyed("", "populated"), None);
        assert!(procs_empty(""));
        assert!(procs_empty("\n"));
        assert!(!procs_empty("12\n"));
        assert_eq!(procs("12\n34\n"), [12, 34]);
    }

    #[test]
    fn cpu_quotas() {
        assert_eq!(cpu_max_v2(500), "50000 100000");
        assert_eq!(cpu_max_v2(1500), "150000 100000");
        assert_eq!(cfs(1), (1000, 100_000), "the kernel's minimum quota");
    }
}
