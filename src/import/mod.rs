//! `sup import supervisord FILE`: a pure translator from a supervisord config to sup's YAML,
//! printed on stdout, with what it could not translate on stderr. No daemon is involved.
//!
//! This file does the reading: the main file, then each `[include] files = …` glob (relative
//! to the including file's folder, as supervisord takes them) as a queue, not a recursion,
//! bounded by `MAX_FILES` and `MAX_DEPTH`, each file read once (a cycle is noted and cut).
//! `ini.rs` parses a file's text, `supervisord.rs` translates the merged sections,
//! `yaml_out.rs` writes YAML strings.

pub mod ini;
pub mod process_compose;
pub mod supervisord;
mod yaml_out;

#[cfg(test)]
mod tests;

use std::collections::{HashSet, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::config::glob;
use crate::fail::{Fail, Outcome};
use supervisord::{Context, FileInfo, Item, Merged, Note};

/// Files one import reads at most, includes included.
pub const MAX_FILES: usize = 256;
/// Includes of includes followed at most this deep.
pub const MAX_DEPTH: usize = 8;
/// A config file larger than this is refused (a supervisord config is a few KiB).
const MAX_BYTES: u64 = 4 << 20;

/// Every file read, and the sections merged over them.
pub struct Tree {
    pub files: Vec<FileInfo>,
    pub sections: Vec<Merged>,
    pub notes: Vec<Note>,
}

/// Read a config to translate. Opened non-blocking and kept only when it is a regular file: a
/// FIFO (or a device) named as the file would otherwise hang the import in `open` or `read`.
fn read_text(path: &Path, what: &str) -> Result<String, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(|e| format!("unable to read: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("unable to read: {e}"))?;
    if !meta.is_file() {
        return Err(format!("not a regular file: not a {what}"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("unable to read: {e}"))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(format!("larger than {} MiB: not a {what}", MAX_BYTES >> 20));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())
}

fn folder(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    abs.parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

/// Read `main` and every file its includes name. `Err` (a message naming file:line) when a
/// file cannot be read or is not INI.
pub fn read_tree(main: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Tree, Fail> {
    let mut files: Vec<FileInfo> = Vec::new();
    let mut sections: Vec<Merged> = Vec::new();
    let mut notes: Vec<Note> = Vec::new();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    // (file, include depth, the file index and line of the include that named it).
    type Queued = (PathBuf, usize, Option<(usize, usize)>);
    let mut queue: VecDeque<Queued> = VecDeque::new();
    queue.push_back((main.to_path_buf(), 0, None));
    while let Some((path, depth, from)) = queue.pop_front() {
        let shown = path.display().to_string();
        let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if !seen.insert(key) {
            if let Some((f, line)) = from {
                notes.push(Note {
                    file: files.get(f).map(|x| x.shown.clone()).unwrap_or_default(),
                    line,
                    section: "include".into(),
                    key: "files".into(),
                    message: format!(
                        "{shown} is already read (an include cycle or a repeat): skipped"
                    ),
                });
            }
            continue;
        }
        if files.len() >= MAX_FILES {
            return Err(Fail::new(format!(
                "{shown}: more than {MAX_FILES} files through [include]: stopped there"
            )));
        }
        let text = read_text(&path, "supervisord config")
            .map_err(|why| Fail::new(format!("{shown}: {why}")))?;
        let parsed = ini::parse(&text)
            .map_err(|e| Fail::new(format!("{shown}:{}: {}", e.line, e.message)))?;
        let index = files.len();
        let dir = folder(&path);
        files.push(FileInfo {
            shown: shown.clone(),
            dir: dir.display().to_string(),
        });
        for section in parsed {
            if section.name == "include" {
                let Some(entry) = section.get("files") else {
                    return Err(Fail::new(format!(
                        "{shown}:{}: [include] without files=",
                        section.line
                    )));
                };
                if depth > 0 {
                    notes.push(Note {
                        file: shown.clone(),
                        line: entry.line,
                        section: "include".into(),
                        key: "files".into(),
                        message: "followed, though supervisord reads [include] in its main file only (\"included files cannot include files themselves\"): leave out what it names if supervisord never ran it".into(),
                    });
                }
                if depth + 1 > MAX_DEPTH {
                    notes.push(Note {
                        file: shown.clone(),
                        line: entry.line,
                        section: "include".into(),
                        key: "files".into(),
                        message: format!("includes nested deeper than {MAX_DEPTH}: not followed"),
                    });
                    continue;
                }
                let here = dir.display().to_string();
                let lookup = |name: &str| -> Option<ini::Expansion> {
                    if name == "here" {
                        return Some(ini::Expansion::Text(here.clone()));
                    }
                    name.strip_prefix("ENV_")
                        .and_then(env)
                        .map(ini::Expansion::Text)
                };
                let value = ini::expand(&entry.value, &lookup, &mut |_| {}).map_err(|why| {
                    Fail::new(format!("{shown}:{}: [include] files: {why}", entry.line))
                })?;
                for pattern in value.split_whitespace() {
                    let found = glob::files(&dir, pattern).map_err(|why| {
                        Fail::new(format!("{shown}:{}: [include] files: {why}", entry.line))
                    })?;
                    if found.is_empty() {
                        notes.push(Note {
                            file: shown.clone(),
                            line: entry.line,
                            section: "include".into(),
                            key: "files".into(),
                            message: format!("{pattern:?} matches no file"),
                        });
                    }
                    for f in found {
                        queue.push_back((f, depth + 1, Some((index, entry.line))));
                    }
                }
                continue;
            }
            merge(&mut sections, section, index);
        }
    }
    Ok(Tree {
        files,
        sections,
        notes,
    })
}

/// Add one file's section to the merged ones: a name seen before gets these keys after its own
/// (configparser's merge; the last value of a key wins).
fn merge(sections: &mut Vec<Merged>, section: ini::Section, index: usize) {
    let items = section.entries.into_iter().map(|e| Item {
        key: e.key,
        value: e.value,
        file: index,
        line: e.line,
    });
    match sections.iter_mut().find(|m| m.name == section.name) {
        Some(m) => m.items.extend(items),
        None => sections.push(Merged {
            name: section.name,
            file: index,
            line: section.line,
            items: items.collect(),
        }),
    }
}

/// One file's text translated without touching the disk (its `[include]` is not followed),
/// with no environment: for the fuzz target. `None` when the text is not INI.
pub fn translate_text(text: &str) -> Option<supervisord::Translation> {
    let parsed = ini::parse(text).ok()?;
    let mut sections = Vec::new();
    for section in parsed {
        merge(&mut sections, section, 0);
    }
    let files = [FileInfo {
        shown: "supervisord.conf".into(),
        dir: "/nonexistent".into(),
    }];
    let ctx = Context {
        env: &|_| None,
        host: "host".into(),
    };
    Some(supervisord::translate(&sections, &files, &ctx))
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// One note, one line of stderr: a name or value from the input may hold a newline or an
/// escape sequence, which becomes `?` here (the YAML on stdout quotes it instead).
fn print_note(note: &impl std::fmt::Display) {
    eprintln!(
        "sup: note: {}",
        crate::client::output::clean(&note.to_string())
    );
}

/// `sup import supervisord FILE`.
pub fn supervisord(path: &Path) -> Result<Outcome, Fail> {
    let env = |name: &str| std::env::var(name).ok();
    let read = read_tree(path, &env)?;
    let ctx = Context {
        env: &env,
        host: host_name(),
    };
    let t = supervisord::translate(&read.sections, &read.files, &ctx);
    print!("{}", t.yaml);
    for note in read.notes.iter().chain(&t.notes) {
        print_note(note);
    }
    eprintln!(
        "sup: translated {} program{} from {}; check it with `sup check -c FILE`",
        t.programs,
        if t.programs == 1 { "" } else { "s" },
        path.display()
    );
    Ok(Outcome::Ok)
}

/// A process-compose file's text translated with no environment, shown as
/// `process-compose.yaml`: for the fuzz target. `None` when the text is not YAML.
pub fn translate_compose_text(text: &str) -> Option<supervisord::Translation> {
    process_compose::translate(text, "process-compose.yaml", &|_| None).ok()
}

/// `sup import process-compose FILE`.
pub fn process_compose(path: &Path) -> Result<Outcome, Fail> {
    let shown = path.display().to_string();
    let text = read_text(path, "process-compose file")
        .map_err(|why| Fail::new(format!("{shown}: {why}")))?;
    let env = |name: &str| std::env::var(name).ok();
    let t = process_compose::translate(&text, &shown, &env)
        .map_err(|(line, why)| Fail::new(format!("{shown}:{line}: {why}")))?;
    print!("{}", t.yaml);
    for note in &t.notes {
        print_note(note);
    }
    if folder(path).join(".env").is_file() {
        eprintln!(
            "sup: note: {shown}: process-compose loads .env from the folder it runs in into its environment; sup reads none: add `env_file: .env` to the programs that need it"
        );
    }
    eprintln!(
        "sup: translated {} program{} from {shown}; check it with `sup check -c FILE`",
        t.programs,
        if t.programs == 1 { "" } else { "s" },
    );
    Ok(Outcome::Ok)
}
