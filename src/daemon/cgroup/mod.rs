//! cgroup containment: each instance in a cgroup of its own, limits written to it, a stop that
//! kills the whole cgroup, usage read for the whole cgroup, and OOM kills told apart.
//!
//! `detect` decides from the files' text which mode the host offers (pure v2, hybrid, v1, or
//! none); `setup` reads those files, builds the daemon's subtree and removes what a previous
//! daemon on the same state file left. Layout, in each hierarchy used (`<own>` is the daemon's
//! cgroup when it started, `<tag>` the daemon's tag):
//!
//! ```text
//! <own>/sup-<tag>/                  the daemon's subtree
//! <own>/sup-<tag>/sup:daemon        the daemon itself, on v2 with controllers only
//! <own>/sup-<tag>/<program>/<inst>  one instance (`web/web:1`)
//! ```
//!
//! On v2 a cgroup that enables controllers for its children may hold no process itself, so
//! when there are controllers to delegate the daemon moves into the `sup:daemon` leaf (a name
//! no program has: program names have no colon) and enables them in `<own>` and the subtree.
//! On hybrid and v1 hosts the daemon stays where it is.
//!
//! Every directory is made with `mkdirat` under a directory descriptor opened
//! `O_DIRECTORY|O_NOFOLLOW`, and every interface file opened with `openat(…, O_NOFOLLOW)`;
//! cgroupfs holds no symlinks of its own. On v2 the child is born in its cgroup
//! (`clone3(CLONE_INTO_CGROUP)` on the instance's directory descriptor opened here); it joins
//! the others itself, before exec (`spawn` writes `0` to each `cgroup.procs` descriptor
//! opened here, the v2 one too when clone3 is refused), so nothing it starts runs outside
//! them.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::libc;

pub mod detect;

use detect::{Plan, CPU, CPUACCT, FREEZER, MEMORY, PIDS};

/// One hierarchy the daemon uses: its subtree directory and what it does there.
#[derive(Debug)]
struct Tree {
    v2: bool,
    /// The controllers of `detect` this tree serves (v2: delegated ones, plus usage and freezer).
    controllers: u8,
    /// `<own>/sup-<tag>`.
    path: PathBuf,
    fd: OwnedFd,
}

/// The mode, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    V2,
    Hybrid,
    V1,
}

/// The daemon's cgroups. `Cgroups::none` when the host offers nothing usable.
#[derive(Debug)]
pub struct Cgroups {
    /// The first is the membership tree (v2 when there is one): kill, populated.
    trees: Vec<Tree>,
    /// The line logged at start.
    summary: String,
    /// On v2 with controllers: the daemon's own cgroup it left for its leaf, and what it
    /// enabled there, so shutdown can put things back.
    moved: Option<(PathBuf, String)>,
}

/// The limits one instance asks for (the job keys `memory_max`, `cpu_max`, `pids_max`).
pub type Limits = crate::config::spec::CgroupLimits;

/// An instance's cgroup, made for a spawn.
#[derive(Debug)]
pub struct Joined {
    /// `cgroup.procs` of each hierarchy, write-only and close-on-exec: the child writes `0`.
    /// The v2 one, when there is one, is first.
    pub procs: Vec<OwnedFd>,
    /// The instance's v2 directory (close-on-exec), for `clone3(CLONE_INTO_CGROUP)`: a child
    /// born there skips `procs[0]`.
    pub v2_dir: Option<OwnedFd>,
    /// The limits the host could not apply (no such controller), by key name.
    pub unapplied: Vec<&'static str>,
    /// The OOM-kill counter at the spawn, to tell an OOM kill from another SIGKILL.
    pub oom_base: Option<u64>,
    /// The hierarchies the child joins (bit `i`: the daemon's `i`-th tree; the membership
    /// tree, bit 0, always): `usage`, `oom_kills` and `remove` look only there.
    pub trees: Trees,
    /// Every directory joined was made by this spawn: its counters (CPU, OOM kills) are 0.
    pub fresh: bool,
    /// The hierarchies that may hold a directory of the instance now (those joined, and any
    /// a limit no longer needs whose directory could not be removed yet).
    pub made: Trees,
}

/// A set of the daemon's hierarchies, bit `i` for its `i`-th tree.
pub type Trees = u8;

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn last() -> io::Error {
    io::Error::last_os_error()
}

/// `openat(dir, name)` with `O_NOFOLLOW|O_CLOEXEC` and `flags`.
fn open_at(dir: RawFd, name: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: a plain syscall on a NUL-terminated path; the result is a new descriptor.
    let fd = unsafe { libc::openat(dir, c.as_ptr(), flags | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(last());
    }
    // SAFETY: a descriptor just returned to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_dir(dir: RawFd, name: &str) -> io::Result<OwnedFd> {
    open_at(dir, name, libc::O_RDONLY | libc::O_DIRECTORY)
}

fn open_path_dir(path: &Path) -> io::Result<OwnedFd> {
    let s = path
        .to_str()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    open_dir(libc::AT_FDCWD, s)
}

/// `mkdirat`, an existing directory being fine: whether it was made now.
fn mkdir_at(dir: RawFd, name: &str) -> io::Result<bool> {
    let c = cstr(name)?;
    // SAFETY: a plain syscall on a NUL-terminated path.
    if unsafe { libc::mkdirat(dir, c.as_ptr(), 0o755) } == 0 {
        return Ok(true);
    }
    let e = last();
    if e.raw_os_error() == Some(libc::EEXIST) {
        Ok(false)
    } else {
        Err(e)
    }
}

fn rmdir_at(dir: RawFd, name: &str) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: a plain syscall on a NUL-terminated path.
    if unsafe { libc::unlinkat(dir, c.as_ptr(), libc::AT_REMOVEDIR) } == 0 {
        Ok(())
    } else {
        Err(last())
    }
}

/// Write `data` to the interface file `name` under `dir` in one write.
fn write_at(dir: RawFd, name: &str, data: &str) -> io::Result<()> {
    let fd = open_at(dir, name, libc::O_WRONLY)?;
    write_fd(fd.as_raw_fd(), data.as_bytes())
}

fn write_fd(fd: RawFd, data: &[u8]) -> io::Result<()> {
    loop {
        // SAFETY: writes from a live buffer.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n >= 0 {
            return Ok(());
        }
        let e = last();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// A small interface file under `dir`, whole (they are a page at most).
fn read_at(dir: RawFd, name: &str) -> Option<String> {
    let fd = open_at(dir, name, libc::O_RDONLY).ok()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reads into a live buffer.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => break,
            n if n > 0 => {
                out.extend_from_slice(&buf[..n as usize]);
                if out.len() > 1 << 20 {
                    return None;
                }
            }
            _ if last().raw_os_error() == Some(libc::EINTR) => {}
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// `read_at` for an interface file of a few lines (`cgroup.events`): one `read`, since the
/// kernel hands out such a file whole when the buffer can hold it; a full buffer reads on.
fn read_small_at(dir: RawFd, name: &str) -> Option<String> {
    let fd = open_at(dir, name, libc::O_RDONLY).ok()?;
    let mut buf = [0u8; 1024];
    let n = loop {
        // SAFETY: reads into a live buffer.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            n if n >= 0 => break n as usize,
            _ if last().raw_os_error() == Some(libc::EINTR) => {}
            _ => return None,
        }
    };
    if n == buf.len() {
        drop(fd);
        return read_at(dir, name);
    }
    String::from_utf8(buf[..n].to_vec()).ok()
}

fn read_path(path: &Path) -> Option<String> {
    let s = path.to_str()?;
    read_at(libc::AT_FDCWD, s)
}

fn text(e: &io::Error) -> String {
    super::reap::io_text(e)
}

/// Open (making it if need be) the subtree directory under `own`.
fn subtree(own: &Path, name: &str) -> io::Result<(OwnedFd, OwnedFd)> {
    let own_fd = open_path_dir(own)?;
    mkdir_at(own_fd.as_raw_fd(), name)?;
    let fd = open_dir(own_fd.as_raw_fd(), name)?;
    Ok((own_fd, fd))
}

/// The subdirectories of an open directory (names only).
fn subdirs(dir: RawFd) -> Vec<String> {
    let Ok(fd) = open_dir(dir, ".") else {
        return Vec::new();
    };
    // Through /proc/self/fd: std's read_dir wants a path, and the descriptor pins the
    // directory we opened without following links.
    let Ok(rd) = std::fs::read_dir(format!("/proc/self/fd/{}", fd.as_raw_fd())) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

impl Cgroups {
    /// No cgroups: every operation does nothing and says so.
    pub fn none(reason: &str) -> Cgroups {
        Cgroups {
            trees: Vec::new(),
            summary: format!(
                "cgroups: none ({reason}); stop uses process groups and the environment-tag sweep"
            ),
            moved: None,
        }
    }

    /// The line to log at start.
    pub fn summary(&self) -> &str {
        &self.summary
    }

    fn tree(&self, ctl: u8) -> Option<&Tree> {
        self.trees.iter().find(|t| t.controllers & ctl != 0)
    }

    /// Detect, build the subtree, move into the leaf where v2 needs it, and kill and remove
    /// whatever a previous daemon with this tag left.
    pub fn setup(tag: &str) -> Cgroups {
        // Not only for root: a delegated subtree (systemd's Delegate=yes) is writable
        // without it. A refused mkdir below is mode none.
        let (Some(cg), Some(mi)) = (
            read_path(Path::new("/proc/self/cgroup")),
            read_path(Path::new("/proc/self/mountinfo")),
        ) else {
            return Cgroups::none("/proc/self/cgroup or mountinfo unreadable");
        };
        let mut found = detect::locate(&cg, &mi);
        if let Some(u) = &mut found.unified {
            *u = detect::own_base(u, tag);
        }
        for t in &mut found.v1 {
            t.dir = detect::own_base(&t.dir, tag);
        }
        let v2_ctl = found
            .unified
            .as_ref()
            .and_then(|u| read_path(&u.join("cgroup.controllers")));
        let plan = detect::decide(found, v2_ctl.as_deref());
        Cgroups::build(plan, tag)
    }

    fn build(plan: Plan, tag: &str) -> Cgroups {
        let name = detect::subtree_name(tag);
        let mut notes = Vec::new();
        let v1_trees = |v1: Vec<detect::V1Tree>, skip: u8, notes: &mut Vec<String>| {
            let mut trees = Vec::new();
            for t in v1 {
                let controllers = t.controllers & !skip;
                if controllers == 0 {
                    continue;
                }
                match subtree(&t.dir, &name) {
                    Ok((_, fd)) => trees.push(Tree {
                        v2: false,
                        controllers,
                        path: t.dir.join(&name),
                        fd,
                    }),
                    Err(e) => notes.push(format!(
                        "{} not usable: {}",
                        detect::controller_names(controllers),
                        text(&e)
                    )),
                }
            }
            trees
        };
        let (mode, trees, moved) = match plan {
            Plan::None(reason) => return Cgroups::none(&reason),
            Plan::V2 { dir, controllers } => {
                let (own_fd, fd) = match subtree(&dir, &name) {
                    Ok(x) => x,
                    Err(e) => {
                        return Cgroups::none(&format!("{}: {}", dir.display(), text(&e)));
                    }
                };
                let mut tree = Tree {
                    v2: true,
                    controllers: CPUACCT | FREEZER,
                    path: dir.join(&name),
                    fd,
                };
                stale(&tree, &mut notes);
                let mut moved = None;
                if controllers != 0 {
                    let mut left = false;
                    match delegate(&own_fd, &tree, controllers, &mut left) {
                        Ok(enabled) => {
                            tree.controllers |= controllers;
                            moved = Some((dir.clone(), enabled));
                        }
                        Err(e) => {
                            notes.push(format!("limits unavailable: {e}"));
                            // In its leaf all the same: shutdown moves it back.
                            moved = left.then(|| (dir.clone(), String::new()));
                        }
                    }
                } else {
                    notes.push("no controllers delegated: limits unavailable".into());
                }
                (Mode::V2, vec![tree], moved)
            }
            Plan::Hybrid { unified, v1 } => {
                let fd = match subtree(&unified, &name) {
                    Ok((_, fd)) => fd,
                    Err(e) => {
                        // The v1 controllers may still be ours: v1 alone, then.
                        notes.push(format!("{} not usable: {}", unified.display(), text(&e)));
                        let trees = v1_trees(v1, 0, &mut notes);
                        if trees.is_empty() {
                            return Cgroups::none(&notes.join("; "));
                        }
                        for t in &trees {
                            stale(t, &mut notes);
                        }
                        return Cgroups::finish(Mode::V1, trees, None, notes);
                    }
                };
                let mut trees = vec![Tree {
                    v2: true,
                    controllers: CPUACCT | FREEZER,
                    path: unified.join(&name),
                    fd,
                }];
                trees.extend(v1_trees(v1, CPUACCT | FREEZER, &mut notes));
                for t in &trees {
                    stale(t, &mut notes);
                }
                (Mode::Hybrid, trees, None)
            }
            Plan::V1 { v1 } => {
                let trees = v1_trees(v1, 0, &mut notes);
                if trees.is_empty() {
                    return Cgroups::none(&notes.join("; "));
                }
                for t in &trees {
                    stale(t, &mut notes);
                }
                (Mode::V1, trees, None)
            }
        };
        Cgroups::finish(mode, trees, moved, notes)
    }

    /// The start line, and the result.
    fn finish(
        mode: Mode,
        trees: Vec<Tree>,
        moved: Option<(PathBuf, String)>,
        notes: Vec<String>,
    ) -> Cgroups {
        let label = match mode {
            Mode::V2 => "v2",
            Mode::Hybrid => "hybrid",
            Mode::V1 => "v1",
        };
        let all = trees.iter().fold(0, |a, t| a | t.controllers);
        let mut summary = format!(
            "cgroups: {label} at {} (controllers: {})",
            trees
                .first()
                .map_or(String::new(), |t| t.path.display().to_string()),
            detect::controller_names(all & (MEMORY | PIDS | CPU | CPUACCT))
        );
        if mode == Mode::Hybrid {
            let limits: Vec<String> = trees
                .iter()
                .skip(1)
                .map(|t| t.path.display().to_string())
                .collect();
            summary.push_str(&format!("; v1 at {}", limits.join(", ")));
        }
        if !notes.is_empty() {
            summary.push_str(&format!("; {}", notes.join("; ")));
        }
        Cgroups {
            trees,
            summary,
            moved,
        }
    }

    /// The hierarchies an instance with limits `l` joins: the membership tree (which also
    /// serves CPU usage and the freeze), and a v1 hierarchy only for a controller the instance
    /// needs: `memory` with `memory_max`, `pids` with `pids_max`, `cpu` with `cpu_max`, and on
    /// v1 alone the `cpuacct` and `freezer` hierarchies (usage, kill). Joining a v1 hierarchy
    /// costs the child a cgroup migration (the kernel's threadgroup lock, an RCU grace
    /// period) and a directory per controller, so a job without limits has none.
    fn needed(&self, l: &Limits) -> Trees {
        let mut want = CPUACCT | FREEZER;
        for (set, ctl) in [
            (l.memory_max.is_some(), MEMORY),
            (l.pids_max.is_some(), PIDS),
            (l.cpu_max.is_some(), CPU),
        ] {
            if set {
                want |= ctl;
            }
        }
        let mut mask = 0;
        for (i, t) in self.trees.iter().enumerate().take(Trees::BITS as usize) {
            if i == 0 || t.controllers & want != 0 {
                mask |= 1 << i;
            }
        }
        mask
    }

    /// The trees of `mask`.
    fn trees_in(&self, mask: Trees) -> impl Iterator<Item = &Tree> {
        self.trees
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i < Trees::BITS as usize && mask & (1 << i) != 0)
            .map(|(_, t)| t)
    }

    /// The tree serving `ctl`, if it is in `mask`.
    fn tree_in(&self, ctl: u8, mask: Trees) -> Option<&Tree> {
        self.trees_in(mask).find(|t| t.controllers & ctl != 0)
    }

    /// Make the instance's cgroup in the hierarchies it needs (`needed`), write its limits,
    /// and open each `cgroup.procs`. Only what changes is written: a new directory starts
    /// without limits, and one kept from the last spawn (`previous`, what was written then;
    /// `None` when unknown) gets only the limits that differ, an unset one reset to `max` (a
    /// restart after a reload keeps the directory). A directory kept in a hierarchy the
    /// instance no longer needs (`made`, a limit a reload removed) is removed. A limit the
    /// kernel refuses fails the spawn; a reset that fails is only logged.
    /// The error is the reason and whether it was the daemon's own resources running out
    /// (descriptors), as `SpawnError` has it.
    pub fn prepare(
        &self,
        program: &str,
        instance: &str,
        l: &Limits,
        previous: Option<&Limits>,
        made: Trees,
    ) -> Result<Joined, (String, bool)> {
        let mut unapplied = Vec::new();
        let have = self.trees.iter().fold(0, |a, t| a | t.controllers);
        for (set, ctl, key) in [
            (l.memory_max.is_some(), MEMORY, "memory_max"),
            (l.cpu_max.is_some(), CPU, "cpu_max"),
            (l.pids_max.is_some(), PIDS, "pids_max"),
        ] {
            if set && have & ctl == 0 {
                unapplied.push(key);
            }
        }
        if self.trees.is_empty() {
            return Ok(Joined {
                procs: Vec::new(),
                v2_dir: None,
                unapplied,
                oom_base: None,
                trees: 0,
                fresh: false,
                made: 0,
            });
        }
        let (program, instance) = detect::instance_path(program, instance).ok_or_else(|| {
            (
                format!("cgroup: {instance}: not a usable directory name"),
                false,
            )
        })?;
        let needed = self.needed(l);
        let had = made;
        let mut made = made & !needed;
        if made != 0 {
            // Left by a run with a limit this one does not have: empty, since that run is
            // down.
            made &= !self.remove_in(&program, &instance, made, true);
        }
        let rel = format!("{program}/{instance}");
        let mut procs = Vec::new();
        let mut v2_dir = None;
        let mut fresh = true;
        for (i, t) in self
            .trees
            .iter()
            .enumerate()
            .filter(|(i, _)| *i < Trees::BITS as usize && needed & (1 << i) != 0)
        {
            let at = |e: io::Error, what: &str| {
                let resource = matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)
                );
                let reason = format!(
                    "cgroup {}/{program}/{instance}: {what}: {}",
                    t.path.display(),
                    text(&e)
                );
                (reason, resource)
            };
            // Most spawns are restarts into the directory the last run left: one open. An
            // instance with none there (a first spawn) makes it first: one mkdirat, with the
            // program's directory already made by its first instance.
            let first = match had & (1 << i) {
                0 => match mkdir_at(t.fd.as_raw_fd(), &rel) {
                    Ok(created) => Some(created),
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
                    Err(e) => return Err(at(e, "mkdir")),
                },
                _ => Some(false),
            };
            let opened = match first {
                Some(created) => open_dir(t.fd.as_raw_fd(), &rel).map(|fd| (created, fd)),
                None => Err(io::Error::from_raw_os_error(libc::ENOENT)),
            };
            let (created, ifd) = match opened {
                Ok(made) => made,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let new_program =
                        mkdir_at(t.fd.as_raw_fd(), &program).map_err(|e| at(e, "mkdir"))?;
                    let pfd = open_dir(t.fd.as_raw_fd(), &program).map_err(|e| at(e, "open"))?;
                    if t.v2 && new_program {
                        let want = v2_enable(t.controllers);
                        if !want.is_empty() {
                            write_at(pfd.as_raw_fd(), "cgroup.subtree_control", &want)
                                .map_err(|e| at(e, "cgroup.subtree_control"))?;
                        }
                    }
                    let created =
                        mkdir_at(pfd.as_raw_fd(), &instance).map_err(|e| at(e, "mkdir"))?;
                    let ifd = open_dir(pfd.as_raw_fd(), &instance).map_err(|e| at(e, "open"))?;
                    (created, ifd)
                }
                Err(e) => return Err(at(e, "open")),
            };
            fresh &= created;
            let dir = ifd.as_raw_fd();
            // What the directory holds now: nothing for a new one, else what was written.
            let before = if created {
                Some(Limits::default())
            } else {
                previous.copied()
            };
            let put = |file: &str, value: &str, set: bool| match write_at(dir, file, value) {
                Ok(()) => Ok(()),
                Err(e) if set => Err(at(e, file)),
                Err(e) => {
                    log::warn!("{instance}: resetting {file}: {}", text(&e));
                    Ok(())
                }
            };
            let memory = l.memory_max;
            if t.controllers & MEMORY != 0 && before.map(|b| b.memory_max) != Some(memory) {
                match t.v2 {
                    true => put(
                        "memory.max",
                        &memory.map_or("max".into(), |n| n.to_string()),
                        memory.is_some(),
                    )?,
                    false => put(
                        "memory.limit_in_bytes",
                        &memory.map_or("-1".into(), |n| n.to_string()),
                        memory.is_some(),
                    )?,
                }
            }
            let pids = l.pids_max;
            if t.controllers & PIDS != 0 && before.map(|b| b.pids_max) != Some(pids) {
                put(
                    "pids.max",
                    &pids.map_or("max".into(), |n| n.to_string()),
                    pids.is_some(),
                )?;
            }
            let cpu = l.cpu_max;
            if t.controllers & CPU != 0 && before.map(|b| b.cpu_max) != Some(cpu) {
                if t.v2 {
                    put(
                        "cpu.max",
                        &cpu.map_or("max 100000".into(), detect::cpu_max_v2),
                        cpu.is_some(),
                    )?;
                } else {
                    match cpu.map(detect::cfs) {
                        Some((quota, period)) => {
                            put("cpu.cfs_period_us", &period.to_string(), true)?;
                            put("cpu.cfs_quota_us", &quota.to_string(), true)?;
                        }
                        None => put("cpu.cfs_quota_us", "-1", false)?,
                    }
                }
            }
            procs.push(
                open_at(dir, "cgroup.procs", libc::O_WRONLY).map_err(|e| at(e, "cgroup.procs"))?,
            );
            // The membership tree is first, and the only v2 one.
            if t.v2 && procs.len() == 1 {
                v2_dir = Some(ifd);
            }
        }
        // A directory made now has counted nothing yet.
        let oom_base = match fresh {
            true => self.tree_in(MEMORY, needed).map(|_| 0),
            false => self.oom_kills(&program, &instance, needed),
        };
        Ok(Joined {
            procs,
            v2_dir,
            unapplied,
            oom_base,
            trees: needed,
            fresh,
            made: made | needed,
        })
    }

    fn rel(program: &str, instance: &str) -> Option<String> {
        let (p, i) = detect::instance_path(program, instance)?;
        Some(format!("{p}/{i}"))
    }

    /// Whether the instance's cgroup still holds a process (`None`: no cgroup to ask).
    pub fn populated(&self, program: &str, instance: &str) -> Option<bool> {
        let t = self.trees.first()?;
        let rel = Cgroups::rel(program, instance)?;
        if t.v2 {
            let events = read_small_at(t.fd.as_raw_fd(), &format!("{rel}/cgroup.events"))?;
            detect::keyed(&events, "populated").map(|n| n != 0)
        } else {
            let procs = read_at(t.fd.as_raw_fd(), &format!("{rel}/cgroup.procs"))?;
            Some(!detect::procs_empty(&procs))
        }
    }

    /// SIGKILL every process in the instance's cgroup: `cgroup.kill` where the kernel has it
    /// (5.14), else freeze, SIGKILL each listed pid, thaw.
    pub fn kill(&self, program: &str, instance: &str) -> Result<(), String> {
        let Some(t) = self.trees.first() else {
            return Ok(());
        };
        let Some(rel) = Cgroups::rel(program, instance) else {
            return Ok(());
        };
        let fd = t.fd.as_raw_fd();
        if t.v2 {
            match write_at(fd, &format!("{rel}/cgroup.kill"), "1") {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(format!("cgroup.kill: {}", text(&e))),
            }
        }
        // Frozen, nobody forks while the list is read and signalled.
        let freezer = self.tree(FREEZER);
        let freeze = |on: bool| {
            if let Some(f) = freezer {
                let (file, value) = match (f.v2, on) {
                    (true, true) => ("cgroup.freeze", "1"),
                    (true, false) => ("cgroup.freeze", "0"),
                    (false, true) => ("freezer.state", "FROZEN"),
                    (false, false) => ("freezer.state", "THAWED"),
                };
                let _ = write_at(f.fd.as_raw_fd(), &format!("{rel}/{file}"), value);
            }
        };
        freeze(true);
        if let Some(list) = read_at(fd, &format!("{rel}/cgroup.procs")) {
            for pid in detect::procs(&list) {
                // SAFETY: signals a process listed in our own job's cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        freeze(false);
        Ok(())
    }

    /// The cgroup's CPU time in µs (the membership tree's `cpu.stat` on v2, else the
    /// `cpuacct` hierarchy's, if the instance joined it).
    pub fn cpu_us(&self, program: &str, instance: &str, mask: Trees) -> Option<u64> {
        let rel = Cgroups::rel(program, instance)?;
        let t = self.tree_in(CPUACCT, mask)?;
        if t.v2 {
            let s = read_at(t.fd.as_raw_fd(), &format!("{rel}/cpu.stat"))?;
            detect::keyed(&s, "usage_usec")
        } else {
            let s = read_at(t.fd.as_raw_fd(), &format!("{rel}/cpuacct.usage"))?;
            s.trim().parse::<u64>().ok().map(|ns| ns / 1000)
        }
    }

    /// Read the subtree's own `cpu.stat` (v2), for its side effect: the kernel folds every
    /// instance's pending CPU figures in at once. Each CPU keeps a singly linked list of the
    /// cgroups whose figures changed since their parent was last read, and reading one
    /// instance's `cpu.stat` (`cpu_us`, at every spawn) walks its siblings on that list to
    /// unlink it: after a start of N instances, O(N) per restart until something reads the
    /// parent. Called after a burst of spawns (`trim_memory`).
    pub fn flush_usage(&self) {
        if let Some(t) = self.tree(CPUACCT).filter(|t| t.v2) {
            let _ = read_at(t.fd.as_raw_fd(), "cpu.stat");
        }
    }

    /// The cgroup's CPU time in µs and resident memory in bytes. Memory comes from the
    /// memory controller's `memory.stat` where the instance is in one (anonymous plus mapped
    /// files: page cache the job only read or wrote is not counted, as RSS does not count
    /// it), else it is the sum of the resident sets of the processes its membership cgroup
    /// lists (`/proc/PID/statm`), which counts a page two of them share twice.
    pub fn usage(&self, program: &str, instance: &str, mask: Trees) -> (Option<u64>, Option<u64>) {
        let Some(rel) = Cgroups::rel(program, instance) else {
            return (None, None);
        };
        let cpu = self.cpu_us(program, instance, mask);
        let mem = match self.tree_in(MEMORY, mask) {
            Some(t) => read_at(t.fd.as_raw_fd(), &format!("{rel}/memory.stat")).and_then(|s| {
                let (anon, mapped) = if t.v2 {
                    ("anon", "file_mapped")
                } else {
                    ("total_rss", "total_mapped_file")
                };
                Some(detect::keyed(&s, anon)? + detect::keyed(&s, mapped).unwrap_or(0))
            }),
            None => self.trees.first().and_then(|t| {
                let list = read_at(t.fd.as_raw_fd(), &format!("{rel}/cgroup.procs"))?;
                let pids = detect::procs(&list);
                if pids.is_empty() {
                    return None;
                }
                Some(
                    pids.into_iter()
                        .filter_map(|p| u32::try_from(p).ok())
                        .filter_map(super::procfs::rss)
                        .sum(),
                )
            }),
        };
        (cpu, mem)
    }

    /// How many processes the kernel's OOM killer killed in the cgroup so far (`None` unless
    /// the instance is in a memory controller's cgroup: only `memory_max` puts it in one on
    /// a hybrid or v1 host).
    pub fn oom_kills(&self, program: &str, instance: &str, mask: Trees) -> Option<u64> {
        let t = self.tree_in(MEMORY, mask)?;
        let rel = Cgroups::rel(program, instance)?;
        let file = if t.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        let s = read_at(t.fd.as_raw_fd(), &format!("{rel}/{file}"))?;
        detect::keyed(&s, "oom_kill")
    }

    /// Remove the instance's cgroup in the hierarchies of `made`. False while a process is
    /// still in one (`EBUSY`): try again once it is reaped. The program's directory stays:
    /// the caller removes it with `remove_program` once no instance has one left, since a
    /// refused `rmdir` of a directory with children costs the kernel a walk over all of them.
    pub fn remove(&self, program: &str, instance: &str, made: Trees) -> bool {
        self.remove_in(program, instance, made, false) == made
    }

    /// Remove the program's directory in every hierarchy (where it is empty).
    pub fn remove_program(&self, program: &str) {
        let Some((p, _)) = detect::instance_path(program, program) else {
            return;
        };
        for t in &self.trees {
            let _ = rmdir_at(t.fd.as_raw_fd(), &p);
        }
    }

    /// `remove`: the trees of `made` where the directory is gone now; with `program`, the
    /// program's directory in those trees too, where no other instance has one.
    fn remove_in(&self, program: &str, instance: &str, made: Trees, with_program: bool) -> Trees {
        let Some((p, i)) = detect::instance_path(program, instance) else {
            return made;
        };
        let mut gone = 0;
        for (n, t) in self.trees.iter().enumerate() {
            if n >= Trees::BITS as usize || made & (1 << n) == 0 {
                continue;
            }
            match rmdir_at(t.fd.as_raw_fd(), &format!("{p}/{i}")) {
                Ok(()) => gone |= 1 << n,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => gone |= 1 << n,
                Err(_) => {}
            }
            if with_program {
                // Another instance of the program may still have its directory.
                let _ = rmdir_at(t.fd.as_raw_fd(), &p);
            }
        }
        gone
    }

    /// At shutdown, once every job is down: remove the subtree, and on v2 give the daemon's
    /// own cgroup back what was enabled in it and move the daemon back.
    pub fn teardown(&self) {
        for t in &self.trees {
            for p in subdirs(t.fd.as_raw_fd()) {
                if p == detect::DAEMON_LEAF {
                    continue;
                }
                if let Ok(pfd) = open_dir(t.fd.as_raw_fd(), &p) {
                    for i in subdirs(pfd.as_raw_fd()) {
                        let _ = rmdir_at(pfd.as_raw_fd(), &i);
                    }
                }
                let _ = rmdir_at(t.fd.as_raw_fd(), &p);
            }
        }
        if let (Some((own, enabled)), Some(t)) = (&self.moved, self.trees.first()) {
            // The subtree's first: a controller stays enabled in a cgroup while a child
            // still hands it on.
            let mine = v2_enable(t.controllers).replace('+', "-");
            if !mine.is_empty() {
                let _ = write_at(t.fd.as_raw_fd(), "cgroup.subtree_control", &mine);
            }
            let disable = enabled.replace('+', "-");
            if let Ok(own_fd) = open_path_dir(own) {
                if !enabled.is_empty() {
                    let _ = write_at(own_fd.as_raw_fd(), "cgroup.subtree_control", &disable);
                }
                let _ = write_at(own_fd.as_raw_fd(), "cgroup.procs", "0");
            }
            let _ = rmdir_at(t.fd.as_raw_fd(), detect::DAEMON_LEAF);
        }
        for t in &self.trees {
            if let Some(parent) = t.path.parent() {
                if let (Ok(pfd), Some(name)) = (
                    open_path_dir(parent),
                    t.path.file_name().and_then(|n| n.to_str()),
                ) {
                    let _ = rmdir_at(pfd.as_raw_fd(), name);
                }
            }
        }
    }
}

/// `+memory +pids +cpu` for the delegated controllers of a v2 tree.
fn v2_enable(controllers: u8) -> String {
    let mut v = Vec::new();
    for (bit, name) in [(MEMORY, "+memory"), (PIDS, "+pids"), (CPU, "+cpu")] {
        if controllers & bit != 0 {
            v.push(name);
        }
    }
    v.join(" ")
}

/// v2 with controllers: the daemon moves into its leaf, then the controllers are enabled in
/// its own cgroup and in the subtree. What it enabled in its own cgroup, for `teardown`.
fn delegate(
    own: &OwnedFd,
    tree: &Tree,
    controllers: u8,
    left: &mut bool,
) -> Result<String, String> {
    let fd = tree.fd.as_raw_fd();
    mkdir_at(fd, detect::DAEMON_LEAF)
        .map_err(|e| format!("{}: {}", detect::DAEMON_LEAF, text(&e)))?;
    write_at(fd, &format!("{}/cgroup.procs", detect::DAEMON_LEAF), "0").map_err(|e| {
        format!(
            "moving the daemon into {}: {}",
            detect::DAEMON_LEAF,
            text(&e)
        )
    })?;
    *left = true;
    let want = v2_enable(controllers);
    let already = read_at(own.as_raw_fd(), "cgroup.subtree_control").unwrap_or_default();
    let missing = controllers & !detect::controller_bits(&already);
    let enabled = v2_enable(missing);
    if !enabled.is_empty() {
        write_at(own.as_raw_fd(), "cgroup.subtree_control", &enabled).map_err(|e| {
            format!(
                "enabling {enabled} in the daemon's cgroup: {} (other processes share it?)",
                text(&e)
            )
        })?;
    }
    write_at(fd, "cgroup.subtree_control", &want)
        .map_err(|e| format!("enabling {want} in the subtree: {}", text(&e)))?;
    Ok(enabled)
}

/// Kill and remove every instance cgroup a previous daemon with this tag left in `tree`: kill
/// them all first, then remove them as their processes go, waiting at most 2 s in all (at
/// start only, before the loop runs).
fn stale(tree: &Tree, notes: &mut Vec<String>) {
    let fd = tree.fd.as_raw_fd();
    let mut dirs = Vec::new();
    for p in subdirs(fd) {
        if p == detect::DAEMON_LEAF {
            continue;
        }
        for i in open_dir(fd, &p).map_or(Vec::new(), |pfd| subdirs(pfd.as_raw_fd())) {
            dirs.push(format!("{p}/{i}"));
        }
    }
    let mut killed = 0;
    for rel in &dirs {
        let busy = if tree.v2 {
            read_at(fd, &format!("{rel}/cgroup.events"))
                .and_then(|s| detect::keyed(&s, "populated"))
                .is_some_and(|n| n != 0)
        } else {
            read_at(fd, &format!("{rel}/cgroup.procs")).is_some_and(|s| !detect::procs_empty(&s))
        };
        if !busy {
            continue;
        }
        killed += 1;
        if tree.v2 && write_at(fd, &format!("{rel}/cgroup.kill"), "1").is_ok() {
            continue;
        }
        if let Some(list) = read_at(fd, &format!("{rel}/cgroup.procs")) {
            for pid in detect::procs(&list) {
                // SAFETY: a process in a cgroup of our own subtree.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut left = dirs;
    loop {
        left.retain(|rel| rmdir_at(fd, rel).is_err_and(|e| e.raw_os_error() == Some(libc::EBUSY)));
        if left.is_empty() || std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for p in subdirs(fd) {
        if p != detect::DAEMON_LEAF {
            let _ = rmdir_at(fd, &p);
        }
    }
    if killed > 0 {
        notes.push(format!(
            "killed what a previous daemon left in {killed} cgroup(s)"
        ));
    }
    if !left.is_empty() {
        notes.push(format!("{} stale cgroup(s) still busy", left.len()));
    }
}

/// The child's side, between its creation and exec: join each cgroup. Async-signal-safe: a
/// raw write of a static `0` (the writer itself) to descriptors opened by the parent.
///
/// # Safety
/// Only in the child, on descriptors the parent keeps open until the child has exec'd.
pub unsafe fn join_in_child(fds: &[RawFd]) -> bool {
    for &fd in fds {
        // SAFETY: a raw write of a static buffer.
        let r = unsafe {
            libc::syscall(
                libc::SYS_write,
                fd as libc::c_long,
                c"0".as_ptr() as libc::c_long,
                1 as libc::c_long,
            )
        };
        if r < 0 {
            return false;
        }
    }
    true
}
