//! Streaming to clients: `tail` (the last lines of a log file, then with `-f` what is new),
//! `tail --events` (the same over the daemon's own event log) and `subscribe` (a status snapshot, then one event per change, for `sup top`).
//!
//! `tail -f` never polls the file: the daemon writes the file itself, so each time it pumps a
//! child's pipe it sends its followers the bytes that appeared since their offset. A follower
//! that stops reading is dropped once its unsent output passes the connection's limit. The
//! event log is the daemon's file too: its followers are fed after the turn's flush
//! (`feed_event_log`), so following it costs nothing while nothing is logged.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::Daemon;
use crate::control::proto::{Response, ResponseBody};

/// The most `tail` reads back from a file to find its last lines.
const MAX_TAIL_BYTES: u64 = 4 << 20;

pub(in crate::daemon) enum Stream {
    /// Following a log file from this offset.
    File { path: PathBuf, offset: u64 },
    /// Subscribed to the events of these names (all when empty).
    Events { names: Vec<String> },
}

impl Daemon {
    pub(super) fn tail(
        &mut self,
        slot: usize,
        name: &str,
        lines: usize,
        stderr: bool,
        follow: bool,
        now: Instant,
    ) -> Option<Response> {
        let ids = match self.select(&[name.to_string()]) {
            Ok(ids) => ids,
            Err(e) => return Some(*e),
        };
        let names: Vec<String> = ids
            .iter()
            .filter_map(|&id| self.sup.get(id))
            .map(|i| i.core().name().to_string())
            .collect();
        let [id] = ids[..] else {
            return Some(Response::new(ResponseBody::Error {
                message: format!("{name} has {} instances: {}", names.len(), names.join(", ")),
                hint: Some(format!("tail one of them, e.g. `sup tail {}`", names[0])),
            }));
        };
        let inst = self.sup.get(id)?;
        let (output, what) = if stderr {
            (&inst.spec.stderr, "stderr")
        } else {
            (&inst.spec.stdout, "stdout")
        };
        if *output == crate::config::Output::Inherit {
            return Some(Response::error(format!(
                "{}: its {what} goes to the daemon's own {what} (`inherit`), there is nothing \
                 to tail",
                inst.core().name()
            )));
        }
        let Some(path) = output.path_for(inst.core().name()) else {
            return Some(Response::error(format!(
                "{}: its {what} is discarded, there is nothing to tail",
                inst.core().name()
            )));
        };
        let (data, offset) = match last_lines(&path, lines) {
            Ok(found) => found,
            Err(e) => {
                return Some(Response::error(format!(
                    "{}: unable to read {}: {e}",
                    inst.core().name(),
                    path.display()
                )))
            }
        };
        let reply = Response::new(ResponseBody::Output { data });
        if !follow {
            return Some(reply);
        }
        self.peer_send(slot, &reply, now);
        if self.peer_stream(slot, Stream::File { path, offset }) {
            self.clients.follow(slot);
        }
        None
    }

    /// `sup tail --events`: the last `lines` lines of the event log, then with `follow` what
    /// the daemon appends to it. The file is read as a job's is (no symlink, FIFO or device).
    pub(super) fn event_log(
        &mut self,
        slot: usize,
        lines: usize,
        follow: bool,
        now: Instant,
    ) -> Option<Response> {
        let Some(path) = crate::logging::path() else {
            return Some(Response::error(
                "the event log goes only to the daemon's stderr: there is no file to tail",
            ));
        };
        // What this turn logged so far is in the file before it is read.
        log::logger().flush();
        let (data, offset) = match last_lines(&path, lines) {
            Ok(found) => found,
            Err(e) => {
                return Some(Response::error(format!(
                    "unable to read the event log {}: {e}",
                    path.display()
                )))
            }
        };
        let reply = Response::new(ResponseBody::Output { data });
        if !follow {
            return Some(reply);
        }
        self.peer_send(slot, &reply, now);
        if self.peer_stream(slot, Stream::File { path, offset }) {
            self.clients.follow(slot);
        }
        None
    }

    /// After the turn's flush: followers of the event log get what was appended.
    pub(super) fn feed_event_log(&mut self, now: Instant) {
        if !self.clients.has_followers() {
            return;
        }
        if let Some(path) = crate::logging::path() {
            self.feed_followers(&path, now);
        }
    }

    /// Send every follower of `path` what was appended since its offset.
    pub(super) fn feed_followers(&mut self, path: &Path, now: Instant) {
        for slot in self.clients.followers() {
            let Some(Stream::File { path: p, offset }) = self.peer_stream_mut(slot) else {
                continue;
            };
            if p != path {
                continue;
            }
            match read_from(path, offset) {
                Ok(data) if !data.is_empty() => {
                    self.peer_send(slot, &Response::new(ResponseBody::Output { data }), now);
                    self.peer_flush(slot, now);
                }
                Ok(_) => {}
                Err(e) => {
                    log::debug!("tail -f of {}: {e}", path.display());
                }
            }
        }
    }

    pub(super) fn subscribe(
        &mut self,
        slot: usize,
        names: Vec<String>,
        now: Instant,
    ) -> Option<Response> {
        let ids = match self.select_or_all(&names) {
            Ok(ids) => ids,
            Err(e) => return Some(*e),
        };
        let snapshot = Response::new(ResponseBody::Status {
            instances: self.status_list(&ids, now),
            daemon: Some(self.info(now)),
        });
        self.peer_send(slot, &snapshot, now);
        if self.peer_stream(slot, Stream::Events { names }) {
            self.clients.subscribe(slot);
        }
        None
    }

    /// After a reload the set of instances changed: every subscriber gets a fresh snapshot
    /// (a dashboard replaces its whole list on a `status` message).
    pub(super) fn resnapshot(&mut self, now: Instant) {
        for slot in self.clients.subscribers() {
            let names = match self.peer_stream_of(slot) {
                Some(Stream::Events { names }) => names.clone(),
                _ => continue,
            };
            // Names that a reload removed select nothing now: fall back to everything.
            let ids = self
                .select_or_all(&names)
                .unwrap_or_else(|_| self.sup.ordered());
            let snapshot = Response::new(ResponseBody::Status {
                instances: self.status_list(&ids, now),
                daemon: Some(self.info(now)),
            });
            self.peer_send(slot, &snapshot, now);
            self.peer_flush(slot, now);
        }
    }

    /// Send the turn's events to every subscriber that selected their instance.
    pub(super) fn publish(&mut self, now: Instant) {
        let events = self.clients.take_published();
        if events.is_empty() {
            return;
        }
        let at = crate::logging::timestamp();
        for slot in self.clients.subscribers() {
            for (id, message) in &events {
                let Some(inst) = self.sup.get(*id) else {
                    continue;
                };
                let wanted = match self.peer_stream_of(slot) {
                    Some(Stream::Events { names }) => {
                        names.is_empty()
                            || names.iter().any(|n| {
                                n == "all"
                                    || *n == inst.core().name()
                                    || *n == inst.core().program()
                                    || self.settings.config.groups.get(n).is_some_and(|m| {
                                        m.iter().any(|p| p == inst.core().program())
                                    })
                            })
                    }
                    _ => false,
                };
                if !wanted {
                    continue;
                }
                let Some(instance) = self.status_of(*id, now) else {
                    continue;
                };
                let event = Response::new(ResponseBody::Event {
                    at: at.clone(),
                    instance,
                    message: message.clone(),
                });
                self.peer_send(slot, &event, now);
            }
            self.peer_flush(slot, now);
        }
    }
}

/// The last `n` lines of a file (at most `MAX_TAIL_BYTES` of it), and its length. A file that
/// does not exist yet is empty: the job has not written anything.
fn last_lines(path: &Path, n: usize) -> std::io::Result<(String, u64)> {
    let mut file = match open_read(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((String::new(), 0)),
        Err(e) => return Err(e),
    };
    let len = file.seek(SeekFrom::End(0))?;
    let start = len.saturating_sub(MAX_TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    // Never past the length seen: a file growing meanwhile must not be read without end.
    file.take(len - start).read_to_end(&mut buf)?;
    // Skip a final newline, then walk back over n line breaks.
    let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
    let mut cut = 0;
    let mut seen = 0;
    for (i, &b) in body.iter().enumerate().rev() {
        if b == b'\n' {
            seen += 1;
            if seen == n {
                cut = i + 1;
                break;
            }
        }
    }
    if n == 0 {
        cut = buf.len();
    }
    Ok((String::from_utf8_lossy(&buf[cut..]).into_owned(), len))
}

/// What the file holds past `offset`, moving `offset` to its end. A file shorter than the
/// offset was truncated or rotated: start again from its beginning.
fn read_from(path: &Path, offset: &mut u64) -> std::io::Result<String> {
    let file = open_read(path)?;
    let len = file.metadata()?.len();
    if len < *offset {
        *offset = 0;
    }
    let mut buf = vec![0u8; (len - *offset).min(MAX_TAIL_BYTES) as usize];
    let n = file.read_at(&mut buf, *offset)?;
    buf.truncate(n);
    *offset += n as u64;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The file a job writes, for reading: a symlink, FIFO or device planted in its place is
/// refused (a FIFO would block the open, `/dev/zero` would never end).
fn open_read(path: &Path) -> std::io::Result<File> {
    crate::daemon::output::open_regular(std::fs::OpenOptions::new().read(true), path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_counts_from_the_end() {
        let dir = std::env::temp_dir().join(format!("sup-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("f");
        std::fs::write(&p, "a\nb\nc\nd\n").expect("write");
        assert_eq!(last_lines(&p, 2).expect("read").0, "c\nd\n");
        assert_eq!(last_lines(&p, 10).expect("read").0, "a\nb\nc\nd\n");
        assert_eq!(last_lines(&p, 0).expect("read").0, "");
        std::fs::write(&p, "x\ny").expect("write");
        assert_eq!(last_lines(&p, 1).expect("read").0, "y");
        assert_eq!(last_lines(&dir.join("none"), 3).expect("read").0, "");
        let mut off = 2;
        assert_eq!(read_from(&p, &mut off).expect("read"), "y");
        assert_eq!(off, 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
