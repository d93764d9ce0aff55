//! The state file beside the pidfile: what a daemon killed outright leaves for the next one.
//!
//! Per instance it records the process group to clean up (with the leader's start time, so a
//! reused pid is never touched) and the operator's intent (`want_up`), which the next daemon
//! restores: what an operator stopped stays stopped. YAML, so an operator can read it.
//!
//! When to save (after each spawn, exit and operator stop) and what to do with a loaded file
//! is the loop's business; this file reads, writes and cleans up.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::libc;
use serde::{Deserialize, Serialize};

use super::reap;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// Format version, for a later change of shape. Files without it are version 1.
    #[serde(default = "version_1")]
    pub version: u32,
    #[serde(default)]
    pub instances: Vec<InstanceState>,
}

impl Default for StateFile {
    fn default() -> StateFile {
        StateFile {
            version: 1,
            instances: Vec::new(),
        }
    }
}

fn version_1() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// One instance as the daemon last knew it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceState {
    /// `web:1`.
    pub name: String,
    /// The live process group, if any (the leader's pid).
    #[serde(default)]
    pub pgid: Option<u32>,
    /// Field 22 of the leader's /proc/PID/stat at spawn: with the pid, it names one process
    /// for the life of the machine.
    #[serde(default)]
    pub start_ticks: Option<u64>,
    #[serde(default)]
    pub restarts: u32,
    /// Operator intent: false once someone stopped it.
    #[serde(default = "yes")]
    pub want_up: bool,
    /// A scheduled job's last tick (RFC 3339): ticks up to it are accounted for, so the next
    /// daemon knows what a downtime missed (`catchup: once`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tick: Option<String>,
}

/// Write the file atomically: a temporary file in the same directory, then a rename, so a crash
/// mid-write leaves the old file whole. No fsync: the file matters after a daemon crash, which
/// the page cache survives; after a machine crash no process is left to clean up anyway.
pub fn save(path: &Path, state: &StateFile) -> io::Result<()> {
    // JSON, not YAML: it is written on every change, and serde_yaml made it most of what a
    // restart cost the daemon at a few thousand instances.
    let text = serde_json::to_vec(state).map_err(io::Error::other)?;
    let tmp = tmp_path(path);
    // A leftover temp file (or a symlink planted in its place) is removed, never followed;
    // O_EXCL then makes sure the file written is the one just created.
    let _ = std::fs::remove_file(&tmp);
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(crate::daemon::output::nofollow_cloexec())
        .open(&tmp)
        .and_then(|mut f| f.write_all(&text))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    path.with_file_name(format!(".{name}.tmp"))
}

/// The file, or `None` when it is missing or unreadable: a daemon then starts from the config
/// alone, as on a first start.
///
/// The file names process groups to adopt and later signal, so it is only believed when no one
/// else could have written it: a regular file, not a symlink, owned by our uid and not writable
/// by group or others. Anything else is logged and ignored.
pub fn load(path: &Path) -> Option<StateFile> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(crate::daemon::output::nofollow_cloexec())
        .open(path)
        .map_err(|e| {
            if e.kind() != io::ErrorKind::NotFound {
                let e = crate::daemon::output::symlink_refused(e);
                log::warn!("state file {} ignored: {e}", path.display());
            }
        })
        .ok()?;
    let meta = file.metadata().ok()?;
    let uid = nix::unistd::geteuid().as_raw();
    if !meta.is_file() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
        log::warn!(
            "state file {} ignored: owner uid {}, mode {:04o}; only a regular file owned by uid {uid} and not writable by group or others is trusted",
            path.display(),
            meta.uid(),
            meta.mode() & 0o7777,
        );
        return None;
    }
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    // A file from a version that wrote YAML is still read once, so an upgrade keeps intent.
    serde_json::from_str(&text)
        .ok()
        .or_else(|| serde_yaml::from_str(&text).ok())
}

/// The process's start time in clock ticks since boot, or `None` if it does not exist.
pub fn proc_start_ticks(pid: u32) -> Option<u64> {
    super::procfs::stat(pid).map(|s| s.start_ticks)
}

/// How long `cleanup_leftovers` waits for the groups it killed to disappear.
const CLEANUP_WAIT: Duration = Duration::from_secs(2);
const CLEANUP_POLL: Duration = Duration::from_millis(10);

/// SIGKILL every process group a previous daemon left, when its leader is still the very process
/// that daemon spawned (same pid and start time). A group whose leader is gone cannot be
/// verified and is left alone. Returns `(instance, pgid)` for each group killed, after waiting
/// (at most 2 s) for them to disappear. Runs at startup, before the loop.
pub fn cleanup_leftovers(state: &StateFile) -> Vec<(String, u32)> {
    let me = std::process::id();
    let my_group = nix::unistd::getpgrp().as_raw() as u32;
    let mut killed = Vec::new();
    for inst in &state.instances {
        let (Some(pgid), Some(ticks)) = (inst.pgid, inst.start_ticks) else {
            continue;
        };
        if pgid <= 1 || pgid == me || pgid == my_group {
            continue;
        }
        match super::procfs::stat(pgid) {
            Some(st) if st.start_ticks == ticks => {}
            _ => continue,
        }
        let _ = reap::signal_group(pgid, crate::core::instance::SIGKILL);
        // The leader too, by pid: it is verified, and it may have moved to another group.
        // SAFETY: plain kill of a process verified above; pgid > 1.
        unsafe { libc::kill(pgid as libc::pid_t, libc::SIGKILL) };
        killed.push((inst.name.clone(), pgid));
    }
    let deadline = std::time::Instant::now() + CLEANUP_WAIT;
    loop {
        let mut pending = false;
        for (_, pgid) in &killed {
            // Members that are our own children (when we are init, or in tests) would stay as
            // zombies until reaped; reap exactly that group.
            reap::reap_matching(-(*pgid as libc::pid_t));
            pending |= group_has_live_member(*pgid);
        }
        if !pending || std::time::Instant::now() >= deadline {
            // Those that turned zombie since the reap above.
            for (_, pgid) in &killed {
                reap::reap_matching(-(*pgid as libc::pid_t));
            }
            break;
        }
        std::thread::sleep(CLEANUP_POLL);
    }
    killed
}

/// Whether any process of the group is still running (not a zombie). Zombies do not count:
/// the killed processes were reparented to an init that may never reap them.
fn group_has_live_member(pgid: u32) -> bool {
    if !reap::group_alive(pgid) {
        return false;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return true; // no /proc: trust kill(2)
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(super::procfs::stat)
        .any(|st| st.pgrp == i64::from(pgid) && st.state != 'Z' && st.state != 'X')
}

/// The environment variable every job carries with its daemon's tag (see `daemon_tag`).
pub const DAEMON_VAR: &str = "SUP_DAEMON";
/// The variable naming the instance a process was started for (`web:1`).
pub const INSTANCE_VAR: &str = "SUP_PROCESS_NAME";
/// An environment longer than this is not read to its end (its process is left alone).
const ENVIRON_MAX: usize = 1 << 20;

/// A tag for the daemon that owns this state file, the same for every daemon started on it,
/// so the next one recognises what an earlier one left: FNV-1a of the state file's path.
pub fn daemon_tag(state_path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in state_path.as_os_str().as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// SIGKILL every live process whose environment carries `SUP_DAEMON=tag` (and, when
/// `instances` is given, `SUP_PROCESS_NAME` = one of them): the escapees that left their
/// process group (`setsid`, a double fork into a new group), which no group signal reaches.
///
/// Best effort without cgroups: a process that rewrote its environment is not found. Cost:
/// one open and read of /proc/PID/environ per process we may read (every process when root,
/// our own uid's otherwise), synchronous but bounded (at most 1 MiB each, nothing blocks on
/// /proc). Members of the groups in `spare` (live instances: a restart's new process carries
/// the same name) are left alone. Returns the pids killed.
pub fn kill_tagged(tag: &str, instances: Option<&[String]>, spare: &[u32]) -> Vec<u32> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let me = std::process::id();
    let uid = nix::unistd::geteuid().as_raw();
    let needle = format!("{DAEMON_VAR}={tag}");
    let mut killed = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return killed;
    };
    let mut buf = Vec::new();
    for entry in dir.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid <= 1 || pid == me {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if uid != 0 && meta.uid() != uid {
            continue;
        }
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(format!("/proc/{pid}/environ"));
        let Ok(file) = file else { continue };
        buf.clear();
        if file
            .take(ENVIRON_MAX as u64 + 1)
            .read_to_end(&mut buf)
            .is_err()
            || buf.len() > ENVIRON_MAX
        {
            continue;
        }
        let mut ours = false;
        let mut instance = None;
        for var in buf.split(|&b| b == 0) {
            if var == needle.as_bytes() {
                ours = true;
            } else if let Some(v) = var
                .strip_prefix(INSTANCE_VAR.as_bytes())
                .and_then(|v| v.strip_prefix(b"="))
            {
                instance = Some(v);
            }
        }
        let wanted = match instances {
            None => true,
            Some(names) => instance.is_some_and(|i| names.iter().any(|n| n.as_bytes() == i)),
        };
        if !ours || !wanted {
            continue;
        }
        match super::procfs::stat(pid) {
            Some(st) if st.state == 'Z' || st.state == 'X' => continue,
            Some(st) if spare.iter().any(|&g| i64::from(g) == st.pgrp) => continue,
            Some(_) => {}
            None => continue,
        }
        // SAFETY: plain kill of one pid > 1 that is not us.
        if unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } == 0 {
            killed.push(pid);
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ExitStatus;
    use crate::daemon::spawn::{spawn, SpawnRequest, Stdio};
    use crate::daemon::testutil::{spec, temp_dir, wait_exit};

    fn sample() -> StateFile {
        StateFile {
            version: 1,
            instances: vec![
                InstanceState {
                    name: "web:0".into(),
                    pgid: Some(4312),
                    start_ticks: Some(123_456),
                    restarts: 2,
                    want_up: true,
                    last_tick: None,
                },
                InstanceState {
                    name: "cron".into(),
                    pgid: None,
                    start_ticks: None,
                    restarts: 0,
                    want_up: false,
                    last_tick: None,
                },
            ],
        }
    }

    #[test]
    fn state_survives_a_save_and_load() {
        let dir = temp_dir("state");
        let path = dir.join("sup.state");
        assert_eq!(load(&path), None, "missing");
        save(&path, &sample()).expect("save");
        assert_eq!(load(&path), Some(sample()));
        save(&path, &StateFile::default()).expect("save over");
        assert_eq!(load(&path), Some(StateFile::default()));
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("ls")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(names, ["sup.state"], "no temporary file left behind");
        assert!(
            std::fs::read_to_string(&path).is_ok_and(|t| t.starts_with('{')),
            "JSON"
        );
        // What an earlier version wrote (YAML) is still read after an upgrade.
        let yaml = serde_yaml::to_string(&sample()).expect("yaml");
        std::fs::write(&path, yaml).expect("write");
        assert_eq!(load(&path), Some(sample()));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_planted_temp_symlink_is_not_followed_and_an_untrusted_file_is_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("symstate");
        let path = dir.join("sup.state");
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious\n").expect("write");
        std::os::unix::fs::symlink(&victim, tmp_path(&path)).expect("symlink");
        save(&path, &sample()).expect("save");
        assert_eq!(
            std::fs::read_to_string(&victim).ok().as_deref(),
            Some("precious\n")
        );
        assert_eq!(load(&path), Some(sample()));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        assert_eq!(load(&path), None, "group/other writable");
        std::fs::remove_file(&path).expect("rm");
        save(&victim, &sample()).expect("save");
        std::os::unix::fs::symlink(&victim, &path).expect("symlink");
        assert_eq!(load(&path), None, "a symlink");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_corrupt_or_partial_file_loads_as_nothing_or_defaults() {
        let dir = temp_dir("corrupt");
        let path = dir.join("sup.state");
        std::fs::write(&path, "instances: [ {name: 3, pgid: [").expect("write");
        assert_eq!(load(&path), None);
        std::fs::write(&path, [0xff, 0xfe, 0x00]).expect("write");
        assert_eq!(load(&path), None);
        std::fs::write(&path, "instances:\n  - name: web\n").expect("write");
        let got = load(&path).expect("old or hand-written files load");
        assert_eq!(got.version, 1);
        assert!(got.instances[0].want_up);
        assert_eq!(got.instances[0].pgid, None);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn our_own_start_time_is_readable_and_stable() {
        let me = std::process::id();
        let a = proc_start_ticks(me).expect("our own stat");
        assert_eq!(proc_start_ticks(me), Some(a));
        assert_eq!(proc_start_ticks(u32::MAX), None);
    }

    fn sleeper() -> u32 {
        let s = spec(&["sleep", "30"]);
        let req = SpawnRequest {
            spec: &s,
            name: "t",
            num: 0,
            stdout: Stdio::Null,
            stderr: Stdio::Null,
        };
        spawn(&req).expect("spawn").pid
    }

    #[test]
    fn tagged_processes_are_found_by_daemon_and_instance() {
        assert_eq!(
            daemon_tag(Path::new("/run/sup/sup.state")),
            daemon_tag(Path::new("/run/sup/sup.state"))
        );
        assert_ne!(
            daemon_tag(Path::new("/run/sup/sup.state")),
            daemon_tag(Path::new("/run/sup2/sup.state"))
        );
        let tag = format!("unit-{}", std::process::id());
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env(DAEMON_VAR, &tag)
            .env(INSTANCE_VAR, "web:1")
            .spawn()
            .expect("spawn");
        let pid = child.id();
        // The environment is readable once the exec is done.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !std::fs::read(format!("/proc/{pid}/environ"))
            .unwrap_or_default()
            .windows(tag.len())
            .any(|w| w == tag.as_bytes())
        {
            assert!(std::time::Instant::now() < deadline, "exec");
            std::thread::sleep(CLEANUP_POLL);
        }
        assert!(kill_tagged(&tag, Some(&["web:0".into()]), &[]).is_empty());
        assert!(kill_tagged("another-daemon", None, &[]).is_empty());
        let own_group = nix::unistd::getpgrp().as_raw() as u32;
        assert!(kill_tagged(&tag, None, &[own_group]).is_empty(), "spared");
        assert_eq!(kill_tagged(&tag, Some(&["web:1".into()]), &[]), vec![pid]);
        let status = child.wait().expect("wait");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
    }

    #[test]
    fn leftovers_are_killed_only_when_the_start_time_matches() {
        let (old, reused) = (sleeper(), sleeper());
        let ticks = |pid| proc_start_ticks(pid).expect("running");
        let state = StateFile {
            version: 1,
            instances: vec![
                InstanceState {
                    name: "old".into(),
                    pgid: Some(old),
                    start_ticks: Some(ticks(old)),
                    restarts: 0,
                    want_up: true,
                    last_tick: None,
                },
                InstanceState {
                    // The pid was recorded for another process that has since died.
                    name: "reused".into(),
                    pgid: Some(reused),
                    start_ticks: Some(ticks(reused) + 1),
                    restarts: 0,
                    want_up: true,
                    last_tick: None,
                },
                InstanceState {
                    name: "never-started".into(),
                    pgid: None,
                    start_ticks: None,
                    restarts: 0,
                    want_up: false,
                    last_tick: None,
                },
            ],
        };
        let killed = cleanup_leftovers(&state);
        assert_eq!(killed, vec![("old".to_string(), old)]);
        assert!(!reap::group_alive(old), "killed and reaped");
        assert!(reap::group_alive(reused), "a reused pid is never touched");
        assert_eq!(
            reap::signal_group(reused, crate::config::Signal(libc::SIGTERM)),
            Ok(())
        );
        assert_eq!(wait_exit(reused), ExitStatus::Signaled(libc::SIGTERM));
    }
}
