//! Where `ready: notify` sockets live, so that a job run as another `user:` can reach its own
//! socket and nobody else can.
//!
//! The tree, made the first time a notify job spawns:
//!
//! ```text
//! BASE/sup-notify/        0711, the daemon's uid   (BASE: /run for root, else the socket's directory)
//!     TAG/                0711, the daemon's uid   (TAG: the daemon's SUP_DAEMON tag)
//!         ID.SEQ/         0700, the job's uid      (one per spawn)
//!             notify.sock 0600, the job's uid
//! ```
//!
//! Root's socket directory is 0700, so root's tree is under `/run` instead: every directory
//! above a job's own is searchable by all but listable and writable by the daemon alone. A
//! spawn's directory is made by the daemon (`mkdirat` on the descriptor of `TAG/`), opened
//! without following links, the socket bound in it while it is still the daemon's, and only
//! then the socket and the directory are handed to the job's uid (`fchownat` with
//! `AT_SYMLINK_NOFOLLOW`, `fchown` on the directory's descriptor): there is no moment where
//! the job could swap a name under the daemon. Everything is removed when the socket is
//! dropped (the process is gone or its spawn failed), the tree's `TAG/` when the daemon ends;
//! what a killed daemon left under its tag is swept when the next one opens it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use mio::net::UnixDatagram;
use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fchmod, fstat, mkdirat, umask, Mode};
use nix::unistd::{fchown, fchownat, unlinkat, Gid, Uid, UnlinkatFlags};

/// The socket's name inside its spawn's directory.
const SOCKET: &str = "notify.sock";

/// `TAG/`: where this daemon's spawn directories go. Removed (if empty) when the last socket
/// made in it and the daemon's handle are both gone.
struct TagDir {
    fd: OwnedFd,
    path: PathBuf,
    /// `sup-notify/`, and this directory's name in it.
    parent: OwnedFd,
    name: String,
}

impl Drop for TagDir {
    fn drop(&mut self) {
        let _ = unlinkat(
            Some(self.parent.as_raw_fd()),
            self.name.as_str(),
            UnlinkatFlags::RemoveDir,
        );
    }
}

/// The daemon's handle on its notify tree.
pub struct NotifyDirs {
    tag: Rc<TagDir>,
    seq: u64,
}

/// One spawn's notify socket, bound and, for a job with `user:`, owned by the job's uid.
/// Dropping it removes the socket and its directory.
pub struct NotifySocket {
    pub socket: UnixDatagram,
    /// What the job gets as `$NOTIFY_SOCKET`.
    pub path: PathBuf,
    tag: Rc<TagDir>,
    /// The spawn's directory's name in `TAG/`.
    name: String,
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        remove_spawn_dir(self.tag.fd.as_raw_fd(), &self.name);
    }
}

impl std::fmt::Debug for NotifySocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifySocket")
            .field("path", &self.path)
            .finish()
    }
}

/// Where the tree starts: `/run` for root (its socket directory is private), the socket's
/// directory for any other user (whose jobs all run as that user).
pub fn base_for(socket_dir: &Path, root: bool) -> PathBuf {
    if !root {
        return socket_dir.to_path_buf();
    }
    let run = Path::new("/run");
    if run.is_dir() {
        run.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

impl NotifyDirs {
    /// Make (or take over) `BASE/sup-notify/TAG/`, sweeping what a killed daemon with the
    /// same tag left in it.
    pub fn open(base: &Path, tag: &str) -> Result<NotifyDirs, String> {
        let at = |e: Errno, p: &Path| format!("notify directory {}: {}", p.display(), e.desc());
        let base_fd = open_dir(None, base).map_err(|e| at(e, base))?;
        let top_path = base.join("sup-notify");
        let top = private_dir(&base_fd, "sup-notify", 0o711)
            .map_err(|e| format!("notify directory {}: {e}", top_path.display()))?;
        let path = top_path.join(tag);
        let fd = private_dir(&top, tag, 0o711)
            .map_err(|e| format!("notify directory {}: {e}", path.display()))?;
        sweep(&fd, &path);
        Ok(NotifyDirs {
            tag: Rc::new(TagDir {
                fd,
                path,
                parent: top,
                name: tag.to_string(),
            }),
            seq: 0,
        })
    }

    /// A fresh socket for one spawn of instance `id`, handed to `owner` (uid, gid) when the
    /// job runs as another user.
    pub fn socket(
        &mut self,
        id: impl std::fmt::Display,
        owner: Option<(u32, u32)>,
    ) -> Result<NotifySocket, String> {
        let tag = Rc::clone(&self.tag);
        // A name left behind that could not be swept (its job filled it) is skipped; a few
        // tries, not a loop without end.
        let mut tries = 0;
        let (name, dir) = loop {
            self.seq += 1;
            tries += 1;
            let name = format!("{id}.{}", self.seq);
            match mkdirat(
                Some(tag.fd.as_raw_fd()),
                name.as_str(),
                Mode::from_bits_truncate(0o700),
            ) {
                Ok(()) => {}
                Err(Errno::EEXIST) if tries < 16 => continue,
                Err(e) => {
                    return Err(format!(
                        "notify socket {}/{name}: {}",
                        tag.path.display(),
                        e.desc()
                    ))
                }
            }
            match open_dir(Some(&tag.fd), Path::new(&name)) {
                Ok(fd) => break (name, fd),
                Err(e) => {
                    remove_spawn_dir(tag.fd.as_raw_fd(), &name);
                    return Err(format!(
                        "notify socket {}/{name}: {}",
                        tag.path.display(),
                        e.desc()
                    ));
                }
            }
        };
        let path = tag.path.join(&name).join(SOCKET);
        // Dropping `made` on any error below removes the directory again.
        let made = NotifySocket {
            socket: bind_private(&path)
                .map_err(|e| format!("notify socket {}: {e}", path.display()))?,
            path,
            tag,
            name,
        };
        if let Some((uid, gid)) = owner {
            let (uid, gid) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
            let give = fchownat(
                Some(dir.as_raw_fd()),
                SOCKET,
                uid,
                gid,
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .and_then(|()| fchown(dir.as_raw_fd(), uid, gid));
            if let Err(e) = give {
                return Err(format!(
                    "notify socket {}: giving it to uid {}: {}",
                    made.path.display(),
                    uid.map_or(0, |u| u.as_raw()),
                    e.desc()
                ));
            }
        }
        Ok(made)
    }
}

/// `openat(dir, path, O_DIRECTORY | O_NOFOLLOW)`.
fn open_dir(dir: Option<&OwnedFd>, path: &Path) -> Result<OwnedFd, Errno> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    // The base itself may be a link (`/run` → `/var/run`); below it, nothing is followed.
    let flags = if dir.is_some() {
        flags | OFlag::O_NOFOLLOW
    } else {
        flags
    };
    let fd = openat(dir.map(|d| d.as_raw_fd()), path, flags, Mode::empty())?;
    // SAFETY: openat just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `name` in `parent`, made with `mode` if missing; one that exists must be a directory of
/// the daemon's uid that nobody else can write in. Its mode is then set to `mode` (the umask
/// may have taken bits the jobs' users need to pass through).
fn private_dir(parent: &OwnedFd, name: &str, mode: u32) -> Result<OwnedFd, String> {
    match mkdirat(
        Some(parent.as_raw_fd()),
        name,
        Mode::from_bits_truncate(mode),
    ) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e.desc().to_string()),
    }
    let fd = open_dir(Some(parent), Path::new(name)).map_err(|e| match e {
        Errno::ELOOP | Errno::ENOTDIR => "it is not a directory".to_string(),
        e => e.desc().to_string(),
    })?;
    let st = fstat(fd.as_raw_fd()).map_err(|e| e.desc().to_string())?;
    let euid = nix::unistd::geteuid().as_raw();
    if st.st_uid != euid {
        return Err(format!(
            "it is owned by uid {}, not by this daemon's uid {euid}",
            st.st_uid
        ));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(format!(
            "its mode {:04o} lets others write in it",
            st.st_mode & 0o7777
        ));
    }
    fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(mode)).map_err(|e| e.desc().to_string())?;
    Ok(fd)
}

/// Bind a datagram socket that only its owner may write to (umask around bind, as for the
/// control socket: no window where it is open to others).
fn bind_private(path: &Path) -> std::io::Result<UnixDatagram> {
    let old = umask(Mode::from_bits_truncate(0o177));
    let result = UnixDatagram::bind(path);
    umask(old);
    result
}

/// Remove a spawn's directory: its socket, then the directory (left alone if its job put
/// more in it). One level, no recursion.
fn remove_spawn_dir(tag: RawFd, name: &str) {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    if let Ok(fd) = openat(Some(tag), name, flags, Mode::empty()) {
        // SAFETY: openat just returned this descriptor and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let _ = unlinkat(Some(fd.as_raw_fd()), SOCKET, UnlinkatFlags::NoRemoveDir);
    }
    let _ = unlinkat(Some(tag), name, UnlinkatFlags::RemoveDir);
}

/// What a killed daemon with this tag left: every spawn directory in `TAG/`.
fn sweep(tag: &OwnedFd, path: &Path) {
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        if let Some(name) = entry.file_name().to_str() {
            remove_spawn_dir(tag.as_raw_fd(), name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sup-notifydir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("mkdir");
        dir
    }

    #[test]
    fn a_spawn_gets_its_own_private_directory_removed_with_the_socket() {
        let base = scratch("own");
        let mut dirs = NotifyDirs::open(&base, "t1").expect("open");
        let tag = base.join("sup-notify/t1");
        for p in [base.join("sup-notify"), tag.clone()] {
            let mode = std::fs::metadata(&p).expect("stat").permissions().mode() & 0o7777;
            assert_eq!(mode, 0o711, "{}", p.display());
        }
        let s = dirs.socket(7, None).expect("socket");
        assert_eq!(s.path, tag.join("7.1/notify.sock"));
        let dir = std::fs::metadata(tag.join("7.1")).expect("stat");
        assert_eq!(dir.permissions().mode() & 0o7777, 0o700);
        let sock = std::fs::symlink_metadata(&s.path).expect("stat");
        assert_eq!(sock.permissions().mode() & 0o777, 0o600);
        let again = dirs.socket(7, None).expect("socket");
        assert_eq!(again.path, tag.join("7.2/notify.sock"));
        drop(s);
        assert!(!tag.join("7.1").exists());
        drop(again);
        drop(dirs);
        assert!(!tag.exists(), "the tag directory goes with the daemon");
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn a_socket_is_handed_to_the_jobs_user() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let base = scratch("user");
        let mut dirs = NotifyDirs::open(&base, "t2").expect("open");
        let s = dirs.socket(3, Some((65534, 65534))).expect("socket");
        let dir = std::fs::metadata(s.path.parent().expect("dir")).expect("stat");
        assert_eq!((dir.uid(), dir.gid()), (65534, 65534));
        let sock = std::fs::symlink_metadata(&s.path).expect("stat");
        assert_eq!((sock.uid(), sock.gid()), (65534, 65534));
        drop(s);
        drop(dirs);
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn a_planted_tree_is_refused_and_leftovers_are_swept() {
        let base = scratch("planted");
        std::fs::create_dir(base.join("sup-notify")).expect("mkdir");
        std::fs::set_permissions(
            base.join("sup-notify"),
            std::fs::Permissions::from_mode(0o777),
        )
        .expect("chmod");
        let err = NotifyDirs::open(&base, "t3").err().expect("refused");
        assert!(err.contains("lets others write"), "{err}");
        std::fs::remove_dir(base.join("sup-notify")).expect("rmdir");
        std::os::unix::fs::symlink("/tmp", base.join("sup-notify")).expect("symlink");
        let err = NotifyDirs::open(&base, "t3").err().expect("refused");
        assert!(err.contains("not a directory"), "{err}");
        std::fs::remove_file(base.join("sup-notify")).expect("rm");

        let dirs = NotifyDirs::open(&base, "t3").expect("open");
        let left = base.join("sup-notify/t3/1.1");
        std::fs::create_dir(&left).expect("mkdir");
        std::fs::write(left.join(SOCKET), "").expect("write");
        drop(dirs);
        let _dirs = NotifyDirs::open(&base, "t3").expect("open");
        assert!(!left.exists(), "a killed daemon's leftovers are swept");
        let _ = std::fs::remove_dir_all(&base);
    }
}
