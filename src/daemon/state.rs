//! The state file beside the pidfile: what a daemon killed outright leaves for the next one.
//!
//! Per instance it records the process group to clean up (with the leader's start time, so a
//! reused pid is never touched) and the operator's intent (`want_up`), which the next daemon
//! restores: what an operator stopped stays stopped.
//!
//! Two files. The snapshot, `sup.state`, is the whole set as one JSON object (the format
//! earlier versions wrote on every change). The journal, `sup.state.journal`, holds one JSON
//! line per change since that snapshot: a change costs one appended line, whatever the number
//! of instances. The journal is folded into a new snapshot at start and once it has about twice
//! as many lines as there are records, so that work is O(1) per change amortised too.
//! Loading replays the journal over the snapshot, the last line for an instance winning.
//!
//! The journal's first line names the snapshot it continues (a nonce the snapshot carries too).
//! A journal that does not match is stale and ignored: one from before a compaction (a daemon
//! killed between the two renames), or one beside the file of a version without journals.
//!
//! When to record (the loop does it after every turn that changed an instance, before it
//! polls again) and what to do with a loaded file is the loop's business; this file reads,
//! writes and cleans up.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
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
    /// The nonce on the first line of the journal that continues this snapshot; `None` in the
    /// files of versions that had no journal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
    #[serde(default)]
    pub instances: Vec<InstanceState>,
}

impl Default for StateFile {
    fn default() -> StateFile {
        StateFile {
            version: 1,
            journal: None,
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

fn is_false(b: &bool) -> bool {
    !*b
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
    /// Removed by a reload and still stopping: recorded so that the next daemon cleans up its
    /// group, not restored. A new instance may have the same name meanwhile, so the journal
    /// keys records by name and this flag.
    #[serde(default, skip_serializing_if = "is_false")]
    pub retiring: bool,
}

/// What identifies a record in the journal: the name, and whether it is a retiring instance.
type Key = (String, bool);

fn key_of(r: &InstanceState) -> Key {
    (r.name.clone(), r.retiring)
}

/// One journal line, as read.
#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    /// The first line: the snapshot this journal continues.
    Header {
        journal: u32,
        snapshot: String,
    },
    /// A tombstone: the instance is gone.
    Removed {
        removed: String,
        #[serde(default)]
        retiring: bool,
    },
    Record(InstanceState),
}

/// The first line, as written.
#[derive(Serialize)]
struct Header<'a> {
    journal: u32,
    snapshot: &'a str,
}

/// A tombstone, as written.
#[derive(Serialize)]
struct Tombstone<'a> {
    removed: &'a str,
    #[serde(skip_serializing_if = "is_false")]
    retiring: bool,
}

/// A snapshot, as written (borrowing the records).
#[derive(Serialize)]
struct Snapshot<'a> {
    version: u32,
    journal: &'a str,
    instances: &'a [InstanceState],
}

/// The journal version on the header line.
const JOURNAL_VERSION: u32 = 1;

/// Below this many records, the journal may still grow to twice this many lines before a
/// compaction: a handful of instances is not rewritten every other change.
const COMPACT_MIN_LIVE: usize = 32;

/// The state file and its journal, as the running daemon writes them.
///
/// No fsync, for either file: they matter after a daemon crash, which the page cache
/// survives; after a machine crash no process is left to clean up anyway.
pub struct Journal {
    /// The snapshot (`sup.state`).
    snapshot: PathBuf,
    /// The journal (`sup.state.journal`).
    path: PathBuf,
    /// The journal, open for appending. `None` before the first compaction and after a write
    /// failed: lines are then lost until the next compaction, which writes everything anew.
    file: Option<File>,
    /// Lines appended (or lost) since the last compaction.
    lines: usize,
    /// What the files say, by name: `[0]` instances, `[1]` retiring ones. A record equal to
    /// the one written is not written again, and a tombstone only for what is there.
    written: [HashMap<String, InstanceState>; 2],
    /// How many records the last compaction was given (written or not).
    compacted_len: usize,
    /// Whether a compaction was tried yet: the first one, at start, is due at once.
    compacted: bool,
    buf: Vec<u8>,
}

impl Journal {
    /// The journal for the state file `snapshot`. Nothing is opened until `compact`.
    pub fn new(snapshot: &Path) -> Journal {
        Journal {
            snapshot: snapshot.to_path_buf(),
            path: journal_path(snapshot),
            file: None,
            lines: 0,
            written: Default::default(),
            compacted_len: 0,
            compacted: false,
            buf: Vec::with_capacity(256),
        }
    }

    /// Whether the caller should `compact` rather than `record`: nothing was written yet (a
    /// daemon's first write is a snapshot), or the journal has about twice as many lines as
    /// there are live records (or as the last compaction was given, if that was more). After
    /// a failed compaction, the next one waits for as many lines again, so a disk that keeps
    /// failing costs O(1) per change, not a rewrite each.
    pub fn wants_compaction(&self) -> bool {
        let live = self.written[0].len() + self.written[1].len();
        let live = live.max(self.compacted_len).max(COMPACT_MIN_LIVE);
        !self.compacted || self.lines >= 2 * live
    }

    /// Append one instance's record (unless it is the one last written): one line, one
    /// write(2). When this returns, a daemon killed at any later moment leaves the record for
    /// the next one.
    pub fn record(&mut self, r: &InstanceState) -> io::Result<()> {
        self.record_all(std::slice::from_ref(r))
    }

    /// Append the records of `all` that differ from the ones last written, one line each, in
    /// a single write(2): a turn that changed a thousand instances costs one syscall, not a
    /// thousand. A daemon killed in the middle of it leaves whole lines and at most the last
    /// one cut short, at the end, as with one line. When this returns, a daemon killed at any
    /// later moment leaves every record for the next one.
    pub fn record_all(&mut self, all: &[InstanceState]) -> io::Result<()> {
        self.buf.clear();
        let mut fresh = Vec::new();
        for r in all {
            if self.written[usize::from(r.retiring)].get(&r.name) == Some(r) {
                continue;
            }
            serde_json::to_writer(&mut self.buf, r).map_err(io::Error::other)?;
            self.buf.push(b'\n');
            fresh.push(r);
        }
        if fresh.is_empty() {
            return Ok(());
        }
        if self.append(fresh.len())? {
            for r in fresh {
                self.written[usize::from(r.retiring)].insert(r.name.clone(), r.clone());
            }
        }
        Ok(())
    }

    /// Append a tombstone: the instance (or, with `retiring`, the retiring instance) of that
    /// name is gone, and the next daemon forgets it.
    pub fn remove(&mut self, name: &str, retiring: bool) -> io::Result<()> {
        if self.file.is_some() && !self.written[usize::from(retiring)].contains_key(name) {
            return Ok(());
        }
        self.buf.clear();
        let line = Tombstone {
            removed: name,
            retiring,
        };
        serde_json::to_writer(&mut self.buf, &line).map_err(io::Error::other)?;
        self.buf.push(b'\n');
        if self.append(1)? {
            self.written[usize::from(retiring)].remove(name);
        }
        Ok(())
    }

    /// Append the `lines` whole lines in `buf`: whether they were written (`false`: lost, as
    /// the journal is not open; the next compaction writes everything).
    fn append(&mut self, lines: usize) -> io::Result<bool> {
        self.lines += lines;
        let Some(file) = self.file.as_mut() else {
            return Ok(false);
        };
        // One write(2) of them all: with O_APPEND, a daemon killed in the middle leaves at
        // most the last line cut short, at the end, where loading ignores it.
        let result = loop {
            match file.write(&self.buf) {
                Ok(n) if n == self.buf.len() => break Ok(true),
                Ok(n) => {
                    break Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("short write ({n} of {} bytes)", self.buf.len()),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
        };
        if result.is_err() {
            // A partial line must stay the last one: nothing more is appended to this file.
            self.file = None;
        }
        result
    }

    /// Write `all` as a new snapshot and start an empty journal after it. Each file is written
    /// to a fresh temporary file (`O_EXCL`) and renamed: the snapshot first, then the journal,
    /// so a daemon killed in between leaves a whole snapshot and a journal that names the old
    /// one, which loading ignores.
    pub fn compact(&mut self, all: &[InstanceState]) -> io::Result<()> {
        self.compacted = true;
        self.file = None;
        self.lines = 0;
        self.written = Default::default();
        self.compacted_len = all.len();
        let nonce = nonce();
        let snapshot = Snapshot {
            version: 1,
            journal: &nonce,
            instances: all,
        };
        let text = serde_json::to_vec(&snapshot).map_err(io::Error::other)?;
        write_fresh(&self.snapshot, 0o644, false, |f| f.write_all(&text))?;
        let mut header = serde_json::to_vec(&Header {
            journal: JOURNAL_VERSION,
            snapshot: &nonce,
        })
        .map_err(io::Error::other)?;
        header.push(b'\n');
        let file = write_fresh(&self.path, 0o600, true, |f| f.write_all(&header))?;
        self.file = Some(file);
        for r in all {
            self.written[usize::from(r.retiring)].insert(r.name.clone(), r.clone());
        }
        Ok(())
    }

    /// What the files at `snapshot` say: the snapshot with the journal replayed over it, or
    /// `None` when the snapshot is missing or unreadable (a daemon then starts from the config
    /// alone, as on a first start). A file of an earlier version (one JSON or YAML object, no
    /// journal) is read as it is.
    ///
    /// The files name process groups to adopt and later signal, so they are only believed when
    /// no one else could have written them: regular files, not symlinks, owned by our uid and
    /// not writable by group or others. Anything else is logged and ignored.
    ///
    /// In the journal, a line cut short at the end (a daemon killed while writing it) is
    /// ignored, and a line that does not parse is skipped with a warning.
    pub fn load(snapshot: &Path) -> Option<StateFile> {
        let mut state = parse_snapshot(&read_trusted(snapshot, "state file")?)?;
        if state.journal.is_some() {
            let path = journal_path(snapshot);
            if let Some(journal) = read_trusted(&path, "state journal") {
                replay(&mut state, &journal, &path);
            }
        }
        Some(state)
    }
}

/// A snapshot's text: JSON, or the YAML of versions before, which is still read once, so an
/// upgrade keeps intent.
pub fn parse_snapshot(text: &[u8]) -> Option<StateFile> {
    let text = std::str::from_utf8(text).ok()?;
    serde_json::from_str(text)
        .ok()
        .or_else(|| serde_yaml::from_str(text).ok())
}

/// `sup.state` → `sup.state.journal`.
fn journal_path(snapshot: &Path) -> PathBuf {
    let mut name = snapshot
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "state".into());
    name.push(".journal");
    snapshot.with_file_name(name)
}

/// A name no earlier snapshot had: the time in nanoseconds, our pid and a counter.
fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}-{:x}-{n:x}", std::process::id())
}

/// Apply the lines of `journal` (read from `path`, for the log) to `state`, the last line for a
/// key winning, when its header names the snapshot `state` came from.
pub fn replay(state: &mut StateFile, journal: &[u8], path: &Path) {
    let Some(nonce) = state.journal.clone() else {
        return;
    };
    let mut lines = journal.split(|&b| b == b'\n');
    // The piece after the last newline is empty, or a line cut short: not a line.
    let torn = journal.last().is_some_and(|&b| b != b'\n');
    let mut count = journal.iter().filter(|&&b| b == b'\n').count();
    let header = match lines.next() {
        Some(first) if count > 0 => match serde_json::from_slice::<Line>(first) {
            Ok(Line::Header { journal, snapshot }) => Some((journal, snapshot)),
            _ => None,
        },
        _ => None,
    };
    match header {
        Some((JOURNAL_VERSION, snapshot)) if snapshot == nonce => {}
        Some((version, _)) if version != JOURNAL_VERSION => {
            log::warn!(
                "state journal {} ignored: version {version} (this daemon reads {JOURNAL_VERSION})",
                path.display(),
            );
            return;
        }
        // One from before the last compaction, or beside an older version's file.
        Some(_) => return,
        None => {
            log::warn!(
                "state journal {} ignored: its first line is not a journal header",
                path.display()
            );
            return;
        }
    }
    count -= 1;
    if torn {
        log::info!(
            "state journal {}: its last line was cut short (a daemon killed while writing it) and is ignored",
            path.display()
        );
    }
    let mut index: HashMap<Key, usize> = HashMap::new();
    let mut records: Vec<Option<InstanceState>> = Vec::new();
    for r in std::mem::take(&mut state.instances) {
        match index.get(&key_of(&r)) {
            Some(&i) => records[i] = Some(r),
            None => {
                index.insert(key_of(&r), records.len());
                records.push(Some(r));
            }
        }
    }
    for (n, line) in lines.take(count).enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Line>(line) {
            Ok(Line::Record(r)) => match index.get(&key_of(&r)) {
                Some(&i) => records[i] = Some(r),
                None => {
                    index.insert(key_of(&r), records.len());
                    records.push(Some(r));
                }
            },
            Ok(Line::Removed { removed, retiring }) => {
                if let Some(i) = index.remove(&(removed, retiring)) {
                    records[i] = None;
                }
            }
            Ok(Line::Header { .. }) | Err(_) => {
                log::warn!(
                    "state journal {} line {}: not a record, skipped",
                    path.display(),
                    n + 2
                );
            }
        }
    }
    state.instances = records.into_iter().flatten().collect();
}

/// Create `path` anew with `write`: a fresh temporary file in the same directory, written,
/// then renamed over `path`, so a crash mid-write leaves the old file whole. Returns the file,
/// still open (for appending, with `append`).
fn write_fresh(
    path: &Path,
    mode: u32,
    append: bool,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<File> {
    let tmp = tmp_path(path);
    // A leftover temp file (or a symlink planted in its place) is removed, never followed;
    // O_EXCL then makes sure the file written is the one just created.
    let _ = std::fs::remove_file(&tmp);
    let result = OpenOptions::new()
        .write(true)
        .append(append)
        .create_new(true)
        .mode(mode)
        .custom_flags(crate::daemon::output::nofollow_cloexec())
        .open(&tmp)
        .and_then(|mut f| {
            write(&mut f)?;
            std::fs::rename(&tmp, path)?;
            Ok(f)
        });
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

/// The whole of `path`, or `None` when it is missing, unreadable or not trusted (logged).
fn read_trusted(path: &Path, what: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(crate::daemon::output::nofollow_cloexec())
        .open(path)
        .map_err(|e| {
            if e.kind() != io::ErrorKind::NotFound {
                let e = crate::daemon::output::symlink_refused(e);
                log::warn!("{what} {} ignored: {e}", path.display());
            }
        })
        .ok()?;
    let meta = file.metadata().ok()?;
    let uid = nix::unistd::geteuid().as_raw();
    if !meta.is_file() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
        log::warn!(
            "{what} {} ignored: owner uid {}, mode {:04o}; only a regular file owned by uid {uid} and not writable by group or others is trusted",
            path.display(),
            meta.uid(),
            meta.mode() & 0o7777,
        );
        return None;
    }
    let mut text = Vec::new();
    file.read_to_end(&mut text).ok()?;
    Some(text)
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
/// the same name) are left alone, and so is a process of a name in `fresh` that started no
/// earlier than that name's live run (given as its leader's start ticks): a restart spawned
/// the run this turn, exec'd already, and it may have sent its own escapee out of its group.
/// Returns the pids killed.
pub fn kill_tagged(
    tag: &str,
    instances: Option<&[String]>,
    spare: &[u32],
    fresh: &[(&str, u64)],
) -> Vec<u32> {
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
        // Root reads every process's environ: no stat of each /proc entry to ask whose it is.
        if uid != 0 && entry.metadata().is_ok_and(|m| m.uid() != uid) {
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
            Some(st)
                if fresh
                    .iter()
                    .any(|&(n, t)| instance == Some(n.as_bytes()) && st.start_ticks >= t) =>
            {
                continue
            }
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

    fn inst(name: &str, pgid: Option<u32>, want_up: bool) -> InstanceState {
        InstanceState {
            name: name.into(),
            pgid,
            start_ticks: pgid.map(|p| u64::from(p) * 10),
            restarts: 0,
            want_up,
            last_tick: None,
            retiring: false,
        }
    }

    fn sample() -> Vec<InstanceState> {
        let mut web = inst("web:0", Some(4312), true);
        web.restarts = 2;
        let mut cron = inst("cron", None, false);
        cron.last_tick = Some("2026-03-01T10:00:00+00:00".into());
        vec![web, cron]
    }

    fn loaded(path: &Path) -> Option<Vec<InstanceState>> {
        Journal::load(path).map(|s| s.instances)
    }

    fn ls(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("ls")
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        names.sort();
        names
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(path)
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn a_snapshot_and_its_journal_replay_with_the_last_record_winning() {
        let dir = temp_dir("journal");
        let path = dir.join("sup.state");
        assert_eq!(loaded(&path), None, "missing");
        let mut j = Journal::new(&path);
        assert!(j.wants_compaction(), "the first write is a snapshot");
        j.compact(&sample()).expect("compact");
        assert!(!j.wants_compaction());
        assert_eq!(loaded(&path), Some(sample()));
        assert_eq!(ls(&dir), ["sup.state", "sup.state.journal"], "no temp file");
        assert_eq!(mode(&journal_path(&path)), 0o600);
        assert!(
            std::fs::read_to_string(&path).is_ok_and(|t| t.starts_with('{')),
            "JSON"
        );

        // A restart of web:0, a new instance, then web:0 again: the last record wins.
        let mut web = inst("web:0", Some(5000), true);
        web.restarts = 3;
        j.record(&web).expect("record");
        j.record(&inst("new", Some(77), true)).expect("record");
        web.pgid = Some(5001);
        web.restarts = 4;
        j.record(&web).expect("record");
        let mut want = sample();
        want[0] = web.clone();
        want.push(inst("new", Some(77), true));
        assert_eq!(loaded(&path), Some(want.clone()));
        // Each change is one line; the snapshot is untouched.
        let journal = std::fs::read_to_string(journal_path(&path)).expect("journal");
        assert_eq!(journal.lines().count(), 4, "{journal}");
        assert!(journal.ends_with('\n'));
        assert!(!std::fs::read_to_string(&path)
            .expect("snapshot")
            .contains("5001"));

        // A compaction folds it all into the snapshot and starts an empty journal.
        j.compact(&want).expect("compact");
        assert_eq!(loaded(&path), Some(want));
        let journal = std::fs::read_to_string(journal_path(&path)).expect("journal");
        assert_eq!(journal.lines().count(), 1, "only the header: {journal}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_batch_is_one_line_per_changed_record_and_a_torn_end_loses_only_its_last() {
        let dir = temp_dir("batch");
        let path = dir.join("sup.state");
        let mut j = Journal::new(&path);
        j.compact(&sample()).expect("compact");
        let mut all: Vec<InstanceState> = (0..50)
            .map(|i| inst(&format!("w:{i}"), Some(1000 + i), true))
            .collect();
        // The unchanged web:0 and cron are not written again.
        all.extend(sample());
        j.record_all(&all).expect("record_all");
        let journal = std::fs::read_to_string(journal_path(&path)).expect("journal");
        assert_eq!(journal.lines().count(), 1 + 50, "{journal}");
        let mut want = sample();
        want.extend(all[..50].iter().cloned());
        want.sort_by(|a, b| a.name.cmp(&b.name));
        let sorted = |mut v: Vec<InstanceState>| {
            v.sort_by(|a, b| a.name.cmp(&b.name));
            v
        };
        assert_eq!(loaded(&path).map(sorted), Some(want.clone()));
        // Written again unchanged: nothing more.
        j.record_all(&all).expect("record_all");
        let again = std::fs::read_to_string(journal_path(&path)).expect("journal");
        assert_eq!(again, journal);
        // A daemon killed in the middle of a batch's write: the whole lines count.
        for r in &mut all[..3] {
            r.pgid = None;
        }
        let mut text = journal;
        for r in &all[..3] {
            text.push_str(&serde_json::to_string(r).expect("json"));
            text.push('\n');
        }
        text.truncate(text.len() - 10);
        std::fs::write(journal_path(&path), text).expect("write");
        let got = loaded(&path).map(sorted).expect("loads");
        let pgid = |name: &str| got.iter().find(|r| r.name == name).map(|r| r.pgid);
        assert_eq!(pgid("w:0"), Some(None));
        assert_eq!(pgid("w:1"), Some(None));
        assert_eq!(
            pgid("w:2"),
            Some(Some(1002)),
            "the torn last line is ignored"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_tombstone_removes_one_key_and_a_retiring_namesake_is_kept_apart() {
        let dir = temp_dir("tombstone");
        let path = dir.join("sup.state");
        let mut j = Journal::new(&path);
        j.compact(&sample()).expect("compact");
        j.remove("cron", false).expect("remove");
        assert_eq!(loaded(&path), Some(vec![sample()[0].clone()]));
        // web:0 retires (a reload removed it) while a new web:0 starts: two records.
        let mut old = sample()[0].clone();
        old.retiring = true;
        j.record(&old).expect("record");
        j.remove("web:0", false).expect("remove");
        let new = inst("web:0", Some(6000), true);
        j.record(&new).expect("record");
        assert_eq!(loaded(&path), Some(vec![old.clone(), new.clone()]));
        // The old one is down and freed: only its record goes.
        j.remove("web:0", true).expect("remove");
        assert_eq!(loaded(&path), Some(vec![new.clone()]));
        // A name removed and added again comes back; removing what is not there is harmless.
        j.remove("nothing", false).expect("remove");
        j.record(&inst("cron", None, true)).expect("record");
        assert_eq!(loaded(&path), Some(vec![new, inst("cron", None, true)]));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_a_corrupt_line_skipped() {
        let dir = temp_dir("torn");
        let path = dir.join("sup.state");
        let mut j = Journal::new(&path);
        j.compact(&sample()).expect("compact");
        j.record(&inst("a", Some(10), true)).expect("record");
        let journal = journal_path(&path);
        let append = |bytes: &[u8]| {
            let mut f = OpenOptions::new()
                .append(true)
                .open(&journal)
                .expect("open");
            f.write_all(bytes).expect("append");
        };
        // Garbage, a line that is JSON but no record, invalid UTF-8, a blank line.
        append(b"{\"name\": \"b\", \"pgid\": [\n[1,2]\n\xff\xfe\n\n");
        j.record(&inst("c", Some(30), true)).expect("record");
        // The daemon was killed in the middle of writing a record of `a`.
        append(br#"{"name":"a","pgid":11,"start_ti"#);
        let mut want = sample();
        want.push(inst("a", Some(10), true));
        want.push(inst("c", Some(30), true));
        assert_eq!(loaded(&path), Some(want.clone()));
        // A cut-short header (nothing but it) leaves the snapshot alone.
        std::fs::write(&journal, b"{\"journal\":1,\"snap").expect("write");
        assert_eq!(loaded(&path), Some(sample()));
        std::fs::write(&journal, b"").expect("write");
        assert_eq!(loaded(&path), Some(sample()));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_stale_journal_is_ignored() {
        let dir = temp_dir("stale");
        let path = dir.join("sup.state");
        let mut j = Journal::new(&path);
        j.compact(&sample()).expect("compact");
        j.record(&inst("gone", Some(10), true)).expect("record");
        let old_journal = std::fs::read(journal_path(&path)).expect("journal");
        // Killed between the snapshot's rename and the journal's: the new snapshot and the
        // journal of the one before.
        j.compact(&sample()).expect("compact");
        std::fs::write(journal_path(&path), &old_journal).expect("write");
        assert_eq!(loaded(&path), Some(sample()));
        // A journal of another version is not guessed at.
        let nonce = Journal::load(&path).and_then(|s| s.journal).expect("nonce");
        let other = format!(
            "{{\"journal\":2,\"snapshot\":\"{nonce}\"}}\n{}\n",
            serde_json::to_string(&inst("x", None, true)).expect("json")
        );
        std::fs::write(journal_path(&path), other).expect("write");
        assert_eq!(loaded(&path), Some(sample()));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn compaction_comes_at_twice_the_live_records() {
        let dir = temp_dir("compact");
        let path = dir.join("sup.state");
        let mut all: Vec<InstanceState> = (0..100)
            .map(|i| inst(&format!("w:{i}"), Some(1000 + i), true))
            .collect();
        let mut j = Journal::new(&path);
        j.compact(&all).expect("compact");
        // A record equal to the one written is not a line.
        j.record(&all[5]).expect("record");
        assert_eq!(j.lines, 0);
        for i in 0..199 {
            all[i % 100].restarts += 1;
            j.record(&all[i % 100]).expect("record");
            assert!(!j.wants_compaction(), "after {} lines", i + 1);
        }
        j.remove("w:0", false).expect("remove");
        assert!(j.wants_compaction(), "200 lines for 100 records");
        j.compact(&all[1..]).expect("compact");
        assert!(!j.wants_compaction());
        assert_eq!(loaded(&path), Some(all[1..].to_vec()));
        // A few instances: not rewritten every other change.
        let mut few = all[..2].to_vec();
        j.compact(&few).expect("compact");
        for i in 0..2 * COMPACT_MIN_LIVE - 1 {
            few[i % 2].restarts += 1;
            j.record(&few[i % 2]).expect("record");
        }
        assert!(!j.wants_compaction());
        j.remove("w:1", false).expect("remove");
        assert!(j.wants_compaction());
        assert_eq!(loaded(&path), Some(few[..1].to_vec()));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_failing_directory_costs_one_retry_per_journal_length() {
        let dir = temp_dir("failing");
        let path = dir.join("missing").join("sup.state");
        let mut j = Journal::new(&path);
        assert!(j.compact(&sample()).is_err(), "no such directory");
        // Until as many lines again have been lost, no compaction is asked for.
        for _ in 0..2 * COMPACT_MIN_LIVE - 1 {
            j.record(&sample()[0]).expect("lost, not an error again");
            assert!(!j.wants_compaction());
        }
        j.record(&sample()[0]).expect("lost");
        assert!(j.wants_compaction());
        std::fs::create_dir(dir.join("missing")).expect("mkdir");
        j.compact(&sample()).expect("compact");
        assert_eq!(loaded(&path), Some(sample()));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn files_of_earlier_versions_are_read_and_their_journal_is_not() {
        let dir = temp_dir("oldformat");
        let path = dir.join("sup.state");
        // What the previous version wrote: one JSON object, no journal.
        let old = StateFile {
            version: 1,
            journal: None,
            instances: sample(),
        };
        let json = serde_json::to_string(&old).expect("json");
        assert!(
            !json.contains("journal") && !json.contains("retiring"),
            "{json}"
        );
        std::fs::write(&path, &json).expect("write");
        assert_eq!(Journal::load(&path), Some(old.clone()));
        // A journal beside it (from a newer daemon before a downgrade) is not replayed over it.
        let mut j = Journal::new(&dir.join("other.state"));
        j.compact(&[]).expect("compact");
        j.record(&inst("web:0", Some(1), false)).expect("record");
        std::fs::rename(dir.join("other.state.journal"), journal_path(&path)).expect("mv");
        assert_eq!(Journal::load(&path), Some(old.clone()));
        // And the YAML of the versions before.
        let yaml = serde_yaml::to_string(&old).expect("yaml");
        std::fs::write(&path, yaml).expect("write");
        assert_eq!(Journal::load(&path), Some(old));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn planted_symlinks_are_not_followed_and_untrusted_files_are_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("symstate");
        let path = dir.join("sup.state");
        let journal = journal_path(&path);
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious\n").expect("write");
        std::os::unix::fs::symlink(&victim, tmp_path(&path)).expect("symlink");
        std::os::unix::fs::symlink(&victim, tmp_path(&journal)).expect("symlink");
        std::os::unix::fs::symlink(&victim, &journal).expect("symlink");
        let mut j = Journal::new(&path);
        j.compact(&sample()).expect("compact");
        j.record(&inst("more", None, true)).expect("record");
        assert_eq!(
            std::fs::read_to_string(&victim).ok().as_deref(),
            Some("precious\n")
        );
        let mut want = sample();
        want.push(inst("more", None, true));
        assert_eq!(loaded(&path), Some(want));

        // An untrusted journal is ignored, the snapshot still read.
        std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o620)).expect("chmod");
        assert_eq!(loaded(&path), Some(sample()), "group-writable journal");
        std::fs::remove_file(&journal).expect("rm");
        std::os::unix::fs::symlink(&victim, &journal).expect("symlink");
        assert_eq!(loaded(&path), Some(sample()), "a symlinked journal");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        assert_eq!(loaded(&path), None, "group/other writable");
        std::fs::remove_file(&path).expect("rm");
        Journal::new(&victim).compact(&sample()).expect("compact");
        std::os::unix::fs::symlink(&victim, &path).expect("symlink");
        assert_eq!(loaded(&path), None, "a symlink");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_corrupt_or_partial_file_loads_as_nothing_or_defaults() {
        let dir = temp_dir("corrupt");
        let path = dir.join("sup.state");
        std::fs::write(&path, "instances: [ {name: 3, pgid: [").expect("write");
        assert_eq!(loaded(&path), None);
        std::fs::write(&path, [0xff, 0xfe, 0x00]).expect("write");
        assert_eq!(loaded(&path), None);
        std::fs::write(&path, "instances:\n  - name: web\n").expect("write");
        let got = Journal::load(&path).expect("old or hand-written files load");
        assert_eq!(got.version, 1);
        assert!(got.instances[0].want_up);
        assert!(!got.instances[0].retiring);
        assert_eq!(got.instances[0].pgid, None);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// What a change costs the daemon, with the journal and with the whole file written as
    /// before, at 100 and 5000 instances. `cargo test --release --lib journal_flush_cost --
    /// --ignored --nocapture`. The journal's figure includes its compactions (a loop that
    /// records a change, or compacts when asked, as the daemon's does).
    #[test]
    #[ignore = "a measurement: run with --ignored --nocapture"]
    fn journal_flush_cost() {
        let changes = 100_000;
        let mut per_change = Vec::new();
        for n in [100usize, 5000] {
            let dir = temp_dir("flushcost");
            let path = dir.join("sup.state");
            let mut all: Vec<InstanceState> = (0..n)
                .map(|i| inst(&format!("w:{i}"), Some(100_000 + i as u32), true))
                .collect();
            let mut j = Journal::new(&path);
            j.compact(&all).expect("compact");
            let mut compactions = 0;
            let start = std::time::Instant::now();
            for c in 0..changes {
                let r = &mut all[(c * 7919) % n];
                r.pgid = r.pgid.map(|p| p + 1);
                r.restarts += 1;
                if j.wants_compaction() {
                    j.compact(&all).expect("compact");
                    compactions += 1;
                } else {
                    let r = all[(c * 7919) % n].clone();
                    j.record(&r).expect("record");
                }
            }
            let journal = start.elapsed().as_secs_f64() * 1e6 / changes as f64;
            assert_eq!(
                loaded(&path),
                Some(all.clone()),
                "the files say what was recorded"
            );
            // The whole file per change, as before (no journal): a few hundred suffice.
            let whole_changes = 300;
            let start = std::time::Instant::now();
            for c in 0..whole_changes {
                all[c % n].restarts += 1;
                j.compact(&all).expect("compact");
            }
            let whole = start.elapsed().as_secs_f64() * 1e6 / whole_changes as f64;
            println!(
                "N={n:5}: journal {journal:7.2} µs per change ({compactions} compactions in {changes} changes); whole file {whole:9.2} µs per change"
            );
            per_change.push(journal);
            let _ = std::fs::remove_dir_all(dir);
        }
        // Independent of N: a generous bound for a loaded machine, far below the 50-fold of
        // rewriting the whole file.
        assert!(
            per_change[1] < per_change[0] * 4.0,
            "per-change cost grows with N: {per_change:?}"
        );
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
        assert!(kill_tagged(&tag, Some(&["web:0".into()]), &[], &[]).is_empty());
        assert!(kill_tagged("another-daemon", None, &[], &[]).is_empty());
        let own_group = nix::unistd::getpgrp().as_raw() as u32;
        assert!(
            kill_tagged(&tag, None, &[own_group], &[]).is_empty(),
            "spared"
        );
        let started = proc_start_ticks(pid).expect("running");
        let web1 = Some(&["web:1".to_string()][..]);
        assert!(
            kill_tagged(&tag, web1, &[], &[("web:1", started)]).is_empty(),
            "started with the live run: spared"
        );
        assert_eq!(
            kill_tagged(&tag, web1, &[], &[("web:1", started + 1)]),
            vec![pid],
            "older than the live run: killed"
        );
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
            journal: None,
            instances: vec![
                InstanceState {
                    name: "old".into(),
                    pgid: Some(old),
                    start_ticks: Some(ticks(old)),
                    restarts: 0,
                    want_up: true,
                    last_tick: None,
                    retiring: false,
                },
                InstanceState {
                    // The pid was recorded for another process that has since died.
                    name: "reused".into(),
                    pgid: Some(reused),
                    start_ticks: Some(ticks(reused) + 1),
                    restarts: 0,
                    want_up: true,
                    last_tick: None,
                    retiring: false,
                },
                InstanceState {
                    name: "never-started".into(),
                    pgid: None,
                    start_ticks: None,
                    restarts: 0,
                    want_up: false,
                    last_tick: None,
                    retiring: false,
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
