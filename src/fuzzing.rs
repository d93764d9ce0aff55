//! Entry points for the fuzz targets in `fuzz/` and for `tests/fuzz_corpus.rs`, which replays
//! their corpora on the stable toolchain. Each takes raw bytes, feeds them to the real parser
//! the daemon uses, and returns nothing: a target fails only by panicking, hanging or
//! overflowing the stack. Not an API.

use std::io::Write;
use std::path::Path;

use chrono::{TimeZone, Utc};

use crate::config::{self, yaml, Schedule};
use crate::control::server::Conn;
use crate::core::schedule::{self, Zone};

/// One target: raw bytes in, a panic out if something is wrong.
pub type Target = fn(&[u8]);

/// Every target, by name, for the corpus replay (`fuzz/corpus/<name>/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("duration", duration),
    ("size", size),
    ("cron", cron),
    ("umask", umask),
    ("dotenv", dotenv),
    ("signal", signal),
    ("control", control),
    ("state", state),
    ("http", http),
    ("supervisord", supervisord),
    ("process_compose", process_compose),
];

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// A scalar node as a config value would be read, quoted when the input starts with a quote
/// byte so both readings are reached.
fn scalar(text: &str) -> yaml::Node {
    let (quoted, text) = match text.strip_prefix('"') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    yaml::Node {
        line: 1,
        col: 1,
        kind: yaml::Kind::Scalar(yaml::Scalar {
            text: text.to_string(),
            quoted,
        }),
    }
}

/// The whole load of a main config file from its text: YAML, every key, defaults, paths and
/// the dependency check. A config that loads is also planned against itself as a reload.
pub fn config(data: &[u8]) {
    let Some(text) = text(data) else { return };
    match config::load_text(text, Path::new("/nonexistent/sup-fuzz")) {
        Ok(cfg) => {
            let _ = cfg.instance_count();
            let _ = crate::core::reload::plan(&cfg.programs, &cfg.programs);
        }
        Err(errors) => {
            for e in &errors {
                let _ = e.to_string();
            }
        }
    }
}

/// `starttime: 1h30m`, bare and as a config value.
pub fn duration(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let _ = config::duration::parse_duration(text);
    let _ = config::values::duration(&scalar(text));
}

/// `stdout_maxbytes: 50MB`.
pub fn size(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let _ = config::logkeys::parse_size(text);
    let _ = config::logkeys::size(&scalar(text));
}

/// `schedule:` as the config reads it, then, for a cron expression, the next few ticks as the
/// daemon computes them, in UTC and in a zone with DST, from a date near a DST change.
pub fn cron(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let Ok(Schedule::Cron(expr)) = config::values::schedule(&scalar(text)) else {
        return;
    };
    let Ok(cron) = croner::Cron::new(&expr).parse() else {
        return;
    };
    let Some(start) = Utc.with_ymd_and_hms(2026, 3, 29, 0, 30, 0).single() else {
        return;
    };
    for zone in [
        Zone::Named(chrono_tz::UTC),
        Zone::Named(chrono_tz::Europe::Paris),
    ] {
        let mut at = start;
        for _ in 0..3 {
            match schedule::next_after(&cron, zone, at) {
                Some(next) => at = next,
                None => break,
            }
        }
    }
}

/// `umask: 022`.
pub fn umask(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let _ = config::values::umask(&scalar(text));
}

/// The contents of an `env_file`.
pub fn dotenv(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let (vars, errors) = config::dotenv::parse(text);
    for (name, _) in &vars {
        assert!(!name.is_empty() && !name.contains('='), "{name:?}");
    }
    for (line, _) in &errors {
        assert!(*line >= 1 && *line <= text.lines().count(), "line {line}");
    }
}

/// `stopsignal: TERM`, and the name a parsed signal is shown by.
pub fn signal(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Some(sig) = config::signal::parse(text) {
        let _ = config::signal::name(sig);
    }
    let _ = config::values::signal(&scalar(text));
}

/// The control socket's framing and request parsing: the daemon's own `Conn` on one end of a
/// socket pair, fed in chunks the way reads arrive (the first byte picks the chunk size).
pub fn control(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok((mut peer, ours)) = mio::net::UnixStream::pair() else {
        return;
    };
    let mut conn = Conn::new(ours);
    let chunk = usize::from(first).max(1);
    for piece in rest.chunks(chunk) {
        // Each piece is read before the next is written, so the socket never fills.
        if peer.write_all(piece).is_err() || !answer(&mut conn) {
            return;
        }
    }
    drop(peer);
    answer(&mut conn);
}

/// Read what is there and take every request, as the loop does. `false` once the connection
/// is done (a fatal framing error, end of stream, or a read error).
fn answer(conn: &mut Conn) -> bool {
    loop {
        let more = match conn.fill() {
            Ok(more) => more,
            Err(_) => return false,
        };
        while conn.next_request().is_some() {
            if conn.closing {
                return false;
            }
        }
        if !more {
            return !conn.read_closed;
        }
    }
}

/// What a starting daemon reads of the state file a previous one left: the snapshot (JSON, or
/// YAML) before the first NUL byte, its journal after it, replayed over it. A snapshot that
/// names no journal is taken to name `f`, as the corpus's journal headers do.
pub fn state(data: &[u8]) {
    use crate::daemon::state;
    let (snapshot, journal) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    let mut file = state::parse_snapshot(snapshot).unwrap_or_default();
    file.journal.get_or_insert_with(|| "f".into());
    state::replay(
        &mut file,
        journal,
        Path::new("/nonexistent/sup-fuzz.journal"),
    );
    let _ = file.instances.len();
}

/// An HTTP request as the daemon reads it: the first byte picks the size of the pieces the
/// rest arrives in (so a blank line split across reads is reached), each piece pushed until
/// the head is complete, its token, `Host` and `Content-Type` checked; the body (what followed the head, cut to its
/// `Content-Length`) and the path and query then go through the API's routing, as the loop
/// would take them. Last, the whole bytes are parsed at once.
pub fn http(data: &[u8]) {
    use crate::daemon::http::api;
    use crate::daemon::http::request::{self, Head, Parsed};
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first).max(1);
    let mut head = Head::default();
    let mut pieces = rest.chunks(chunk);
    for piece in pieces.by_ref() {
        if let Some(parsed) = head.push(piece) {
            if let Parsed::Request(r) = &parsed {
                let _ = request::authorized(r.authorization.as_deref(), b"token");
                // The browser rules, as a loopback listener applies them.
                let local = std::net::SocketAddr::from(([127, 0, 0, 1], 9273));
                let _ = crate::daemon::http::guard::check_host(r, Some(local));
                let _ = crate::daemon::http::guard::check_json(r, false);
                let mut body = head.rest().to_vec();
                for more in pieces.by_ref() {
                    if body.len() >= r.body_len {
                        break;
                    }
                    body.extend_from_slice(more);
                }
                body.truncate(r.body_len);
                if let Ok(call) = api::route(r.method, &r.path, &r.query, &body) {
                    let _ = crate::control::http_client::target_of(&call.body);
                }
                let _ = api::decode(&r.path);
            }
            break;
        }
    }
    let _ = request::parse(rest);
}

/// `sup import supervisord`: a supervisord config's text through the INI parser and the
/// translation; the YAML written must then parse as YAML (whatever sup's check says of its
/// values), and every `environment=` value goes through its own reader.
pub fn supervisord(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let _ = crate::import::ini::environment(text);
    if let Some(t) = crate::import::translate_text(text) {
        translated(&t);
    }
}

/// What an import wrote must parse as YAML, and its notes must print.
fn translated(t: &crate::import::supervisord::Translation) {
    let (_, errors) = yaml::parse(&t.yaml);
    assert!(
        errors.is_empty(),
        "unparsable YAML written: {errors:?}\n{}",
        t.yaml
    );
    for note in &t.notes {
        let _ = note.to_string();
    }
}

/// `sup import process-compose`: a process-compose file's text through sup's YAML tree and the
/// translation; the YAML written must parse as YAML, whatever sup's check says of its values.
pub fn process_compose(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Some(t) = crate::import::translate_compose_text(text) {
        translated(&t);
    }
}
