//! Where things are: the config, the control socket, the pidfile. Pure functions of the flags,
//! the environment and the uid, so the lookup rules the README states are tested without touching the
//! machine.

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

/// `-c`, else `$SUP_CONFIG`, else `./sup.yaml` if it exists, else `./sup.d/`. Absolute.
pub fn config_path(flag: Option<&Path>, env: &Env) -> PathBuf {
    if let Some(p) = flag.or(env.sup_config.as_deref()) {
        return env.absolute(p);
    }
    let yaml = env.cwd.join("sup.yaml");
    if yaml.exists() {
        yaml
    } else {
        env.cwd.join("sup.d")
    }
}

/// `--socket`, else `$SUP_SOCKET`, else `daemon.socket`, else the per-user default.
pub fn socket_path(flag: Option<&Path>, configured: Option<&Path>, env: &Env) -> PathBuf {
    if let Some(p) = flag.or(env.sup_socket.as_deref()).or(configured) {
        return env.absolute(p);
    }
    default_socket(env)
}

fn default_socket(env: &Env) -> PathBuf {
    if let Some(dir) = &env.xdg_runtime_dir {
        return dir.join("sup").join("sup.sock");
    }
    if env.uid == 0 {
        PathBuf::from("/run/sup/sup.sock")
    } else {
        PathBuf::from(format!("/tmp/sup-{}/sup.sock", env.uid))
    }
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
