//! Which files make up a config and how they combine: a YAML file with `programs:`, `daemon:`
//! and `include:` globs, or a directory of `*.job` files with an optional `sup.yaml`. This file
//! also catches a program defined twice and decides how files are named in errors.
//!
//! Reading a key's value is `resolve`'s business. Every file is read even after errors, so one
//! `sup check` shows everything that needs fixing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::error::{ConfigError, Rejected};
use super::glob;
use super::health::DepPlaces;
use super::resolve::{self, JobCtx, Sink};
use super::spec::{Config, DaemonSpec, Origin, ProgramSpec};
use super::values::{self, Bad};
use super::yaml::{self, Kind, Node};

const TOP_KEYS: &[&str] = &["programs", "daemon", "include", "groups"];
const DEFAULT_INCLUDE: &str = "sup.d/*.job";

/// Load the config at `path`. Relative paths and the files named in errors are taken from
/// `cwd`: a file under it is shown relative to it, any other absolute.
pub fn load_in(path: &Path, cwd: &Path) -> Result<Config, Vec<ConfigError>> {
    check_in(path, cwd).map_err(|r| r.errors)
}

/// `load_in`, keeping the warnings of a config that has errors too (for `sup check`).
pub fn check_in(path: &Path, cwd: &Path) -> Result<Config, Rejected> {
    load_source(path, None, cwd)
}

/// Load a main file given as text, as if it were `cwd/sup.yaml`, without touching the disk:
/// its `include:` patterns are checked but not expanded. For fuzzing the whole load.
pub fn load_text(text: &str, cwd: &Path) -> Result<Config, Vec<ConfigError>> {
    load_source(&cwd.join("sup.yaml"), Some(text), cwd).map_err(|r| r.errors)
}

fn load_source(path: &Path, text: Option<&str>, cwd: &Path) -> Result<Config, Rejected> {
    let source = values::absolute(cwd, &path.to_string_lossy());
    let mut loader = Loader {
        cwd,
        text,
        sink: Sink::default(),
        seen_files: HashSet::new(),
        programs: BTreeMap::new(),
        origins: BTreeMap::new(),
        dep_places: BTreeMap::new(),
        defined: HashMap::new(),
        groups: Vec::new(),
        groups_file: String::new(),
    };
    let base_dir = source
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);

    let meta = match text.map_or_else(|| std::fs::metadata(&source).map(Some), |_| Ok(None)) {
        Ok(m) => m,
        Err(e) => {
            let shown = loader.show(&source);
            let hint = (e.kind() == std::io::ErrorKind::NotFound).then(|| {
                "sup reads -c/--config PATH, else $SUP_CONFIG, else ./sup.yaml, else ./sup.d/ \
                 (root then /etc/sup/sup.yaml, else /etc/sup/sup.d/)"
                    .to_string()
            });
            let bad = Bad {
                message: format!("unable to read: {}", io_reason(&e)),
                hint,
                at: None,
            };
            loader.sink.push(&shown, (0, 0), "", bad);
            return Err(loader.sink.into_rejected());
        }
    };

    // A directory's own `sup.yaml` plays the part of the main file; its includes are relative
    // to the directory, like those of a file to the file's folder.
    let (main_file, include_root, dir_jobs) = if meta.is_some_and(|m| m.is_dir()) {
        let yaml = source.join("sup.yaml");
        let main = yaml.is_file().then_some(yaml);
        // A directory's own `*.job` files: read by the same bounded walk as any include.
        let jobs = glob::files(&source, "*.job").unwrap_or_else(|why| {
            let shown = loader.show(&source);
            loader.sink.push(&shown, (0, 0), "", Bad::new(why));
            Vec::new()
        });
        (main, source.clone(), jobs)
    } else if source.extension().is_some_and(|e| e == "job") {
        // One job file, as its folder would read it (`sup check -c web.job`).
        (None, base_dir.clone(), vec![source.clone()])
    } else {
        (Some(source.clone()), base_dir.clone(), Vec::new())
    };

    let mut daemon = None;
    let mut includes = Vec::new();
    let mut main_tree = None;
    if let Some(main) = &main_file {
        loader.seen_files.insert(main.clone());
        let (d, inc, tree) = loader.main_file(main, &base_dir);
        daemon = Some(d);
        includes = inc;
        main_tree = tree.map(|t| (main, t));
    }
    let daemon = daemon.unwrap_or_else(|| resolve::daemon(None, "", &base_dir, &mut loader.sink));

    // Programs are resolved once the daemon settings are known, so that their default log
    // paths use the configured logdir whatever the order of keys in the file.
    if let Some((main, tree)) = &main_tree {
        loader.main_programs(main, tree, &base_dir, &daemon);
    }
    let mut job_files = dir_jobs;
    if text.is_none() {
        for pattern in &includes {
            match glob::files(&include_root, pattern) {
                Ok(found) => job_files.extend(found),
                Err(why) => {
                    let shown = main_file
                        .as_deref()
                        .map(|m| loader.show(m))
                        .unwrap_or_default();
                    loader.sink.push(&shown, (0, 0), "include", Bad::new(why));
                }
            }
        }
    }
    for file in job_files {
        if loader.seen_files.insert(file.clone()) {
            loader.job_file(&file, &base_dir, &daemon);
        }
    }

    // Group members name programs that exist; no group is named like a program.
    let written = std::mem::take(&mut loader.groups);
    let defined: BTreeSet<&str> = loader.defined.keys().map(String::as_str).collect();
    let groups = super::groups::check(written, &loader.groups_file, &defined, &mut loader.sink);
    // A group in `depends_on` stands for its programs, each with the condition written.
    if !groups.is_empty() {
        for spec in loader.programs.values_mut() {
            super::groups::expand_dependencies(&mut spec.health.depends_on, &groups);
        }
    }
    // `depends_on` names programs that exist, without cycles.
    super::health::check_dependencies(
        &loader.programs,
        &loader.origins,
        &loader.dep_places,
        &mut loader.sink,
    );
    if loader.sink.len() > 0 {
        return Err(loader.sink.into_rejected());
    }
    Ok(Config {
        groups,
        source,
        base_dir,
        daemon,
        programs: loader.programs,
        origins: loader.origins,
        warnings: loader.sink.take_warnings(),
    })
}

struct Loader<'a> {
    cwd: &'a Path,
    /// The main file's text when it was given rather than read (`load_text`).
    text: Option<&'a str>,
    sink: Sink,
    /// Files already read, so that an include matching a directory's own `*.job` does not
    /// define its program twice.
    seen_files: HashSet<PathBuf>,
    programs: BTreeMap<String, ProgramSpec>,
    origins: BTreeMap<String, Origin>,
    /// Where each program wrote `depends_on`, so that its errors point at that line.
    dep_places: BTreeMap<String, DepPlaces>,
    /// Name → where it was first defined, as shown in the duplicate message.
    defined: HashMap<String, String>,
    /// The main file's `groups:` as written, checked once every program is known.
    groups: Vec<super::groups::Written>,
    /// The main file as shown in errors.
    groups_file: String,
}

impl Loader<'_> {
    /// A path as the user would type it from where they stand.
    fn show(&self, path: &Path) -> String {
        match path.strip_prefix(self.cwd) {
            Ok(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
            _ => path.display().to_string(),
        }
    }

    /// Read and parse a file; errors go to the sink, their key paths under `prefix` (a `.job`
    /// file's keys are `programs.NAME.…`). `Err(())` when there is no tree to use.
    fn parse(&mut self, path: &Path, prefix: &str) -> Result<Option<Node>, ()> {
        let shown = self.show(path);
        let read = match self.text {
            Some(t) => Ok(t.to_string()),
            None => std::fs::read_to_string(path),
        };
        let text = match read {
            Ok(t) => t,
            Err(e) => {
                let bad = Bad::new(format!("unable to read: {}", io_reason(&e)));
                self.sink.push(&shown, (0, 0), "", bad);
                return Err(());
            }
        };
        let (root, errors) = yaml::parse(&text);
        let had_syntax_error = root.is_none() && !errors.is_empty();
        for e in errors {
            let key = std::iter::once(prefix)
                .filter(|p| !p.is_empty())
                .chain(e.path.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(".");
            self.sink
                .push(&shown, (e.line, e.col), &key, Bad::new(e.message));
        }
        if had_syntax_error {
            Err(())
        } else {
            Ok(root)
        }
    }

    /// The main file's top level: checks its keys, resolves `daemon:`, and returns the include
    /// patterns and the tree, whose programs are resolved later by `main_programs`.
    fn main_file(
        &mut self,
        path: &Path,
        base_dir: &Path,
    ) -> (DaemonSpec, Vec<String>, Option<Node>) {
        let shown = self.show(path);
        let default_include = vec![DEFAULT_INCLUDE.to_string()];
        // An empty file, or one whose YAML is broken: without a tree there is no way to know
        // the includes, and the default still finds the usual job files, whose own errors are
        // worth showing.
        let Ok(Some(root)) = self.parse(path, "") else {
            let d = resolve::daemon(None, &shown, base_dir, &mut self.sink);
            return (d, default_include, None);
        };
        let entries = resolve::entries(
            &root,
            "a map with programs, daemon, include and groups",
            &shown,
            "",
            &mut self.sink,
        )
        .unwrap_or(&[]);
        let mut daemon_node = None;
        let mut include = None;
        for (k, v) in entries {
            let Some(key) = resolve::key_text(k, &shown, "", &mut self.sink) else {
                continue;
            };
            match key {
                "programs" => {}
                "daemon" => daemon_node = Some(v),
                "groups" => {
                    self.groups = super::groups::read(v, &shown, valid_name, &mut self.sink);
                    self.groups_file = shown.clone();
                }
                "include" => include = Some(self.include(v, &shown)),
                _ => resolve::unknown_key(k, key, TOP_KEYS, &shown, key, &mut self.sink),
            }
        }
        let daemon = resolve::daemon(daemon_node, &shown, base_dir, &mut self.sink);
        let include = include.unwrap_or(default_include);
        (daemon, include, Some(root))
    }

    /// `include:`: a list of globs, or one glob; null means none.
    fn include(&mut self, node: &Node, shown: &str) -> Vec<String> {
        let what = "a list of file patterns such as sup.d/*.job";
        let bad = |n: &Node| Bad::new(format!("expected {what}, found {}", n.describe()));
        match &node.kind {
            Kind::Scalar(s) if s.is_null() => Vec::new(),
            Kind::Scalar(_) => match node.text() {
                Some(t) if !t.is_empty() => vec![t.to_string()],
                _ => {
                    self.sink
                        .push(shown, (node.line, node.col), "include", bad(node));
                    Vec::new()
                }
            },
            Kind::Seq(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item.text() {
                        Some(t) if !t.is_empty() => out.push(t.to_string()),
                        _ => self
                            .sink
                            .push(shown, (item.line, item.col), "include", bad(item)),
                    }
                }
                out
            }
            Kind::Map(_) => {
                self.sink
                    .push(shown, (node.line, node.col), "include", bad(node));
                Vec::new()
            }
        }
    }

    /// The main file's `programs:` map (its top level was checked by `main_file`).
    fn main_programs(&mut self, path: &Path, root: &Node, base_dir: &Path, daemon: &DaemonSpec) {
        let Kind::Map(top) = &root.kind else {
            return;
        };
        let Some((_, programs)) = top.iter().find(|(k, _)| k.text() == Some("programs")) else {
            return;
        };
        let shown = self.show(path);
        let Some(jobs) = resolve::entries(
            programs,
            "a map of program name to job",
            &shown,
            "programs",
            &mut self.sink,
        ) else {
            return;
        };
        for (k, v) in jobs {
            let Some(name) = resolve::key_text(k, &shown, "programs", &mut self.sink) else {
                continue;
            };
            let origin = Origin {
                file: shown.clone(),
                line: k.line,
                col: k.col,
            };
            let cx = JobCtx {
                file: &shown,
                prefix: format!("programs.{name}"),
                at: (k.line, k.col),
                base_dir,
                logdir: &daemon.logdir,
            };
            self.define(name, v, &cx, (k.line, k.col), origin.to_string(), origin);
        }
    }

    /// A `*.job` file: one job, named after the file's stem.
    fn job_file(&mut self, path: &Path, base_dir: &Path, daemon: &DaemonSpec) {
        let shown = self.show(path);
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = format!("programs.{name}");
        let Ok(root) = self.parse(path, &prefix) else {
            return;
        };
        // An empty file is a job with no keys: it is reported as missing its cmd.
        let root = root.unwrap_or(Node {
            line: 1,
            col: 1,
            kind: Kind::Map(Vec::new()),
        });
        let origin = Origin {
            file: shown.clone(),
            line: 1,
            col: 1,
        };
        let cx = JobCtx {
            file: &shown,
            prefix,
            at: (1, 1),
            base_dir,
            logdir: &daemon.logdir,
        };
        self.define(&name, &root, &cx, (0, 0), shown.clone(), origin);
    }

    /// Check the name, catch a second definition, and resolve the job. `name_at` is where the
    /// name is written ((0, 0) for a file's stem); `shown` is how the definition is named in a
    /// duplicate message: `file:line:col`, or the file alone for a `.job`.
    fn define(
        &mut self,
        name: &str,
        node: &Node,
        cx: &JobCtx,
        name_at: (usize, usize),
        shown: String,
        origin: Origin,
    ) {
        let mut valid = true;
        if !valid_name(name) {
            valid = false;
            let bad = Bad::new(format!(
                "invalid program name {name:?}: use letters, digits, '_', '.' and '-'"
            ));
            self.sink.push(cx.file, name_at, "programs", bad);
        } else if let Some(why) = reserved_name(name) {
            valid = false;
            let bad = Bad::new(format!(
                "invalid program name {name:?}: {why}; any other name of letters, digits, '_', \
                 '.' and '-' is accepted"
            ));
            self.sink.push(cx.file, name_at, "programs", bad);
        }
        if let Some(first) = self.defined.get(name) {
            valid = false;
            let error = ConfigError {
                place: String::new(),
                key: String::new(),
                message: format!("program {name:?} is defined twice: {first} and {shown}"),
                hint: None,
            };
            self.sink
                .push_error((cx.file.to_string(), origin.line, origin.col), error);
        } else {
            self.defined.insert(name.to_string(), shown);
        }
        // The job is checked even when its name is wrong, so all its errors show at once.
        if let Some(spec) = resolve::job(name, node, cx, &mut self.sink) {
            if valid {
                self.programs.insert(name.to_string(), spec);
                self.origins.insert(name.to_string(), origin);
                if let Some(places) = DepPlaces::of(node) {
                    self.dep_places.insert(name.to_string(), places);
                }
            }
        }
    }
}

/// `[A-Za-z0-9_.-]+`: safe in file names (`{name}`), instance names (`web:1`) and shells.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Why a name made of valid characters still cannot be a program's: a program's name is its
/// cgroup directory's, and `.`, `..` and `cgroup.…` (the kernel's interface files) cannot be.
fn reserved_name(name: &str) -> Option<&'static str> {
    if name == "." || name == ".." {
        Some("'.' and '..' are not names")
    } else if name.starts_with("cgroup.") {
        Some("names starting with 'cgroup.' are the kernel's in a cgroup directory")
    } else {
        None
    }
}

/// `no such file or directory` rather than `No such file or directory (os error 2)`.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => "unknown error".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["web", "web-2", "a.b_c", "0"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "my web", "web:1", "a/b", "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
        for reserved in [".", "..", "cgroup.procs", "cgroup.x"] {
            assert!(
                valid_name(reserved) && reserved_name(reserved).is_some(),
                "{reserved}"
            );
        }
        for ok in ["web", "...", ".web", "cgroup", "cgroupx", "my.cgroup.x"] {
            assert!(reserved_name(ok).is_none(), "{ok}");
        }
    }

    #[test]
    fn an_include_that_matches_the_directory_itself_reads_each_file_once() {
        let dir = std::env::temp_dir().join(format!("sup-load-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("conf")).unwrap();
        std::fs::write(dir.join("conf/sup.yaml"), "include: ['*.job']\n").unwrap();
        std::fs::write(dir.join("conf/web.job"), "cmd: x\n").unwrap();
        let c = load_in(Path::new("conf"), &dir).unwrap();
        assert_eq!(c.programs.len(), 1);
        assert_eq!(c.origins["web"].file, "conf/web.job");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn io_reasons_read_like_our_messages() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(io_reason(&e), "no such file or directory");
    }
}
