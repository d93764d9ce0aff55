//! Where things are: the config, the control socket, the pidfile. Pure functions of the flags,
//! the environment and the uid (and, for the config, of which candidate files exist, asked
//! through a function the caller gives), so the lookup rules the README states are tested
//! without touching the machine.

use std::path::{Path, PathBuf};

/// The environment the rules read, captured once so tests can supply their own.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub sup_socket: Option<PathBuf>,
    pub sup_config: Option<PathBuf>,
    pub xdg_runtime_dir: Option<PathBuf>,
    pub uid: u32,
    pub cwd: PathBuf,
}

impl Env {
    pub fn from_process() -> Env {
        let nonempty = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Env {
            sup_socket: nonempty("SUP_SOCKET"),
            sup_config: nonempty("SUP_CONFIG"),
            xdg_runtime_dir: nonempty("XDG_RUNTIME_DIR"),
            uid: nix::unistd::getuid().as_raw(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        }
    }

    fn absolute(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.cwd.join(p)
        }
    }
}

/// Root's config when nothing nearer is given: a system service's.
pub const ROOT_CONFIG_FILE: &str = "/etc/sup/sup.yaml";
pub const ROOT_CONFIG_DIR: &str = "/etc/sup/sup.d";
/// Root's socket, whatever `$XDG_RUNTIME_DIR` says (`sudo` and `su` often keep or set one),
/// so every root client finds the system daemon.
pub const ROOT_SOCKET: &str = "/run/sup/sup.sock";

/// `config_path_in`, asking the file system what exists.
pub fn config_path(flag: Option<&Path>, env: &Env) -> PathBuf {
    config_path_in(flag, env, &|p: &Path| p.exists())
}

/// `-c`, else `$SUP_CONFIG`, else `./sup.yaml` if it exists, else `./sup.d/`. For root, when
/// neither `./sup.yaml` nor `./sup.d/` exists: `/etc/sup/sup.yaml`, else `/etc/sup/sup.d/`,
/// whichever exists first. With nothing found, `./sup.d/` (whose absence the loader reports).
/// Absolute.
pub fn config_path_in(flag: Option<&Path>, env: &Env, exists: &dyn Fn(&Path) -> bool) -> PathBuf {
    if let Some(p) = flag.or(env.sup_config.as_deref()) {
        return env.absolute(p);
    }
    let yaml = env.cwd.join("sup.yaml");
    let dir = env.cwd.join("sup.d");
    if exists(&yaml) {
        return yaml;
    }
    if env.uid == 0 && !exists(&dir) {
        for system in [ROOT_CONFIG_FILE, ROOT_CONFIG_DIR] {
            if exists(Path::new(system)) {
                return PathBuf::from(system);
            }
        }
    }
    dir
}

/// `--socket`, else `$SUP_SOCKET`, else `daemon.socket`, else the per-user default.
pub fn socket_path(flag: Option<&Path>, configured: Option<&Path>, env: &Env) -> PathBuf {
    if let Some(p) = flag.or(env.sup_socket.as_deref()).or(configured) {
        return env.absolute(p);
    }
    default_socket(env)
}

/// Root: `/run/sup/sup.sock`. Others: `$XDG_RUNTIME_DIR/sup/sup.sock`, else
/// `/tmp/sup-$UID/sup.sock`.
fn default_socket(env: &Env) -> PathBuf {
    if env.uid == 0 {
        return PathBuf::from(ROOT_SOCKET);
    }
    if let Some(dir) = &env.xdg_runtime_dir {
        return dir.join("sup").join("sup.sock");
    }
    PathBuf::from(format!("/tmp/sup-{}/sup.sock", env.uid))
}

/// `--pidfile`, else `daemon.pidfile`, else `sup.pid` beside the socket.
pub fn pidfile_path(
    flag: Option<&Path>,
    configured: Option<&Path>,
    socket: &Path,
    env: &Env,
) -> PathBuf {
    if let Some(p) = flag.or(configured) {
        return env.absolute(p);
    }
    socket
        .parent()
        .unwrap_or_else(|| Path::new("/"))
        .join("sup.pid")
}

/// The state file lives beside the pidfile: `sup.pid` → `sup.state`.
pub fn state_path(pidfile: &Path) -> PathBuf {
    pidfile.with_extension("state")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            uid: 1000,
            cwd: PathBuf::from("/home/u/proj"),
            ..Env::default()
        }
    }

    #[test]
    fn socket_flag_then_env_then_config_then_defaults() {
        let mut e = env();
        let conf = Some(Path::new("/etc/sup.sock"));
        assert_eq!(
            socket_path(Some(Path::new("s.sock")), conf, &e),
            PathBuf::from("/home/u/proj/s.sock")
        );
        e.sup_socket = Some(PathBuf::from("/e.sock"));
        assert_eq!(socket_path(None, conf, &e), PathBuf::from("/e.sock"));
        e.sup_socket = None;
        assert_eq!(socket_path(None, conf, &e), PathBuf::from("/etc/sup.sock"));
        assert_eq!(
            socket_path(None, None, &e),
            PathBuf::from("/tmp/sup-1000/sup.sock")
        );
        e.xdg_runtime_dir = Some(PathBuf::from("/run/user/1000"));
        assert_eq!(
            socket_path(None, None, &e),
            PathBuf::from("/run/user/1000/sup/sup.sock")
        );
        let root = Env { uid: 0, ..env() };
        assert_eq!(
            socket_path(None, None, &root),
            PathBuf::from("/run/sup/sup.sock")
        );
    }

    #[test]
    fn root_uses_run_sup_whatever_xdg_runtime_dir_says() {
        let root = Env {
            uid: 0,
            xdg_runtime_dir: Some(PathBuf::from("/run/user/0")),
            ..env()
        };
        let sock = socket_path(None, None, &root);
        assert_eq!(sock, PathBuf::from("/run/sup/sup.sock"));
        // The pidfile and the state file follow it into /run/sup/.
        let pid = pidfile_path(None, None, &sock, &root);
        assert_eq!(pid, PathBuf::from("/run/sup/sup.pid"));
        assert_eq!(state_path(&pid), PathBuf::from("/run/sup/sup.state"));
        // Still overridable: --socket, then $SUP_SOCKET, then daemon.socket.
        let conf = Some(Path::new("/srv/sup.sock"));
        assert_eq!(
            socket_path(None, conf, &root),
            PathBuf::from("/srv/sup.sock")
        );
        let with_env = Env {
            sup_socket: Some(PathBuf::from("/e.sock")),
            ..root.clone()
        };
        assert_eq!(socket_path(None, conf, &with_env), PathBuf::from("/e.sock"));
        assert_eq!(
            socket_path(Some(Path::new("/f.sock")), conf, &with_env),
            PathBuf::from("/f.sock")
        );
        assert_eq!(
            pidfile_path(None, None, Path::new("/srv/sup.sock"), &root),
            PathBuf::from("/srv/sup.pid")
        );
    }

    /// `config_path_in` with these paths existing and no others.
    fn found(flag: Option<&str>, env: &Env, existing: &[&str]) -> PathBuf {
        let exists = |p: &Path| existing.iter().any(|e| Path::new(e) == p);
        config_path_in(flag.map(Path::new), env, &exists)
    }

    #[test]
    fn root_finds_etc_sup_after_the_nearer_configs() {
        let root = Env { uid: 0, ..env() };
        let etc = ["/etc/sup/sup.yaml", "/etc/sup/sup.d"];
        assert_eq!(found(None, &root, &etc), PathBuf::from("/etc/sup/sup.yaml"));
        assert_eq!(
            found(None, &root, &["/etc/sup/sup.d"]),
            PathBuf::from("/etc/sup/sup.d")
        );
        // Nearer ones first: ./sup.yaml, then ./sup.d/.
        let near = [
            "/home/u/proj/sup.yaml",
            "/home/u/proj/sup.d",
            etc[0],
            etc[1],
        ];
        assert_eq!(
            found(None, &root, &near),
            PathBuf::from("/home/u/proj/sup.yaml")
        );
        assert_eq!(
            found(None, &root, &near[1..]),
            PathBuf::from("/home/u/proj/sup.d")
        );
        // -c and $SUP_CONFIG before everything.
        assert_eq!(
            found(Some("x.yaml"), &root, &near),
            PathBuf::from("/home/u/proj/x.yaml")
        );
        let with_env = Env {
            sup_config: Some(PathBuf::from("/srv/sup.yaml")),
            ..root.clone()
        };
        assert_eq!(
            found(None, &with_env, &near),
            PathBuf::from("/srv/sup.yaml")
        );
        // Nothing anywhere: ./sup.d/, whose absence the loader reports.
        assert_eq!(found(None, &root, &[]), PathBuf::from("/home/u/proj/sup.d"));
        // Only root looks in /etc/sup.
        assert_eq!(
            found(None, &env(), &etc),
            PathBuf::from("/home/u/proj/sup.d")
        );
    }

    #[test]
    fn pidfile_defaults_beside_the_socket() {
        let e = env();
        let sock = Path::new("/run/sup/sup.sock");
        assert_eq!(
            pidfile_path(None, None, sock, &e),
            PathBuf::from("/run/sup/sup.pid")
        );
        assert_eq!(
            state_path(Path::new("/run/sup/sup.pid")),
            PathBuf::from("/run/sup/sup.state")
        );
    }

    #[test]
    fn config_flag_then_env_then_cwd() {
        let mut e = env();
        assert_eq!(config_path(None, &e), PathBuf::from("/home/u/proj/sup.d"));
        e.sup_config = Some(PathBuf::from("/etc/sup.yaml"));
        assert_eq!(config_path(None, &e), PathBuf::from("/etc/sup.yaml"));
        assert_eq!(
            config_path(Some(Path::new("x.yaml")), &e),
            PathBuf::from("/home/u/proj/x.yaml")
        );
    }
}
