//! The client commands: find the socket, send the request, print the answer. One
//! implementation (`execute`) for the CLI and, later, the shell; `run` adds only what a
//! one-shot process needs (socket resolution, stdout, Ctrl-C for `tail -f`).
//!
//! How each answer reads is in `status` and `report`; terminal concerns are in `output`; the
//! transport is `crate::control::client`. Exit codes stay with `main`: this module returns
//! `Outcome::Partial` when a command worked but not everything reached the wanted state.

pub mod completion;
mod fg;
pub mod output;
pub mod report;
pub mod shell;
pub mod status;
pub mod top;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{Command, Global};
use crate::config;
use crate::control::client::{cause, Conn, Endpoint, Timeouts, QUICK, WAIT_MARGIN};
use crate::control::http_client::Url;
use crate::control::proto::{self, Request, RequestBody, ResponseBody, SignalTarget};
use crate::fail::{Fail, Outcome};
use crate::paths::{self, Env};
use output::Sink;
use report::Report;

pub fn run(global: &Global, command: Command) -> Result<Outcome, Fail> {
    if let Command::Fg { name } = command {
        return fg::run(global, name);
    }
    // `status` is answered from the daemon's memory: it never waits on jobs, so the config's
    // bound for waits is not worth reading the config for.
    let quick = matches!(command, Command::Status { .. });
    let mut conn = connect_to(global, quick)?;
    if let Command::Tail { follow: true, .. } = command {
        close_on_interrupt(&conn)?;
    }
    let colour = output::colour_for_stdout();
    // Buffered: `status` of a thousand instances is one write. Streaming output flushes
    // itself (`Sink::raw`).
    let mut stdout = io::BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let mut stderr = io::stderr().lock();
    let result = execute(&mut conn, command, colour, &mut stdout, &mut stderr);
    let _ = stdout.flush();
    result
}

/// The socket a client should use. `daemon.socket` from the config counts only when neither
/// `--socket` nor `$SUP_SOCKET` is set.
pub fn socket_path(global: &Global) -> PathBuf {
    target(global).socket
}

/// The daemon a client should talk to: its HTTP API when `--url`/`$SUP_URL` names one (with
/// the token of `--token-file`/`$SUP_TOKEN_FILE`), else its socket.
pub fn endpoint(global: &Global) -> Result<Endpoint, Fail> {
    match remote(global)? {
        Some(url) => Ok(Endpoint::Http(url)),
        None => Ok(Endpoint::Socket(socket_path(global))),
    }
}

fn remote(global: &Global) -> Result<Option<Url>, Fail> {
    let Some(text) = global.url.as_deref().filter(|u| !u.is_empty()) else {
        if let Some(path) = &global.token_file {
            return Err(Fail::new(format!(
                "--token-file {}: a token is for the HTTP API, and no --url is given",
                path.display()
            ))
            .hint("pass --url (or $SUP_URL) too"));
        }
        return Ok(None);
    };
    let mut url = Url::parse(text)?;
    if let Some(path) = &global.ca_file {
        if !url.tls {
            return Err(Fail::new(format!(
                "--ca-file {}: a CA is for an https:// URL, and {text} is plain HTTP",
                path.display()
            ))
            .hint("use https:// in --url (the daemon needs daemon.http.tls)"));
        }
        url = url.with_ca_file(path);
    }
    Ok(Some(match &global.token_file {
        Some(path) => url.with_token_file(path)?,
        None => url,
    }))
}

/// Connect to the daemon. A config with errors cannot say where its socket is: the defaults
/// are tried, and when nothing listens there the config's errors are what the user needs to
/// hear, not only "no daemon". A remote daemon (`--url`) is not described by the local
/// config: its waits get the default bounds unless `--timeout` says otherwise.
pub fn connect(global: &Global) -> Result<Conn, Fail> {
    connect_to(global, false)
}

/// `connect`; `quick` for a command that only makes requests answered at once, whose
/// connection needs no bound for waits.
fn connect_to(global: &Global, quick: bool) -> Result<Conn, Fail> {
    if let Some(url) = remote(global)? {
        return Conn::connect_with(Endpoint::Http(url), timeouts(global.timeout, None));
    }
    let t = target_for(global, quick);
    Conn::connect_with(&t.socket, t.timeouts).map_err(|fail| match t.unreadable {
        None => fail,
        Some((path, errors)) => config_errors_fail(&fail, &path, &errors),
    })
}

type ConfigErrors = (PathBuf, Vec<config::ConfigError>);

/// What a client takes from its flags, the environment and the config, which is read once
/// (and not at all when `--socket`/`$SUP_SOCKET` names the socket and either `--timeout` or
/// the command (`status`) leaves no wait to bound).
struct Target {
    socket: PathBuf,
    timeouts: Timeouts,
    /// The config exists but does not load (a missing config is normal: the defaults apply).
    unreadable: Option<ConfigErrors>,
}

fn target(global: &Global) -> Target {
    target_for(global, false)
}

/// `target`; with `quick`, the config is read only for the socket it names (the wait bound
/// it gives goes unused).
fn target_for(global: &Global, quick: bool) -> Target {
    let env = Env::from_process();
    let socket_given = global.socket.is_some() || env.sup_socket.is_some();
    let path = paths::config_path(global.config.as_deref(), &env);
    let wait_known = quick || global.timeout.is_some();
    let loaded = (!socket_given || !wait_known).then(|| config::load(&path));
    let (cfg, unreadable) = match loaded {
        Some(Ok(cfg)) => (Some(cfg), None),
        Some(Err(_)) if !path.exists() => (None, None),
        Some(Err(errors)) if !socket_given => (None, Some((path, errors))),
        Some(Err(_)) | None => (None, None),
    };
    // A relative socket in the config means beside the config, not beside the caller; an
    // absolute one is kept as it is by `join`.
    let configured = cfg
        .as_ref()
        .filter(|_| !socket_given)
        .and_then(|c| c.daemon.socket.as_ref().map(|s| c.base_dir.join(s)));
    Target {
        socket: paths::socket_path(global.socket.as_deref(), configured.as_deref(), &env),
        timeouts: timeouts(global.timeout, cfg.as_ref()),
        unreadable,
    }
}

fn config_errors_fail(fail: &Fail, path: &Path, errors: &[config::ConfigError]) -> Fail {
    let mut message = format!(
        "{}\n  the config {} has {} error{}, so the socket it names (daemon.socket) is unknown:",
        fail.message,
        path.display(),
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    for e in errors {
        for (i, line) in e.to_string().lines().enumerate() {
            message.push_str(if i == 0 { "\n    " } else { "\n  " });
            message.push_str(line);
        }
    }
    Fail::new(message).hint(
        "fix the config (`sup check` lists its errors), or name the socket with --socket or \
         $SUP_SOCKET",
    )
}

/// `--timeout`/`$SUP_TIMEOUT` bounds every answer. Without it, a waiting request gets what
/// its jobs may take: every instance's start bound plus stop bound, one after another (an
/// ordered or rolling wait is never longer), plus a margin.
fn timeouts(given: Option<Duration>, cfg: Option<&config::Config>) -> Timeouts {
    if let Some(t) = given {
        return Timeouts { quick: t, wait: t };
    }
    let Some(cfg) = cfg else {
        return Timeouts::default();
    };
    let jobs: Duration = cfg
        .programs
        .values()
        .map(|p| {
            let start = match p.health.ready {
                config::Ready::Starttime => p.starttime,
                _ => p.health.ready_timeout,
            };
            (start + p.stoptime) * p.numprocs
        })
        .sum();
    Timeouts {
        quick: QUICK,
        wait: jobs + WAIT_MARGIN,
    }
}

/// `tail -f` runs until the daemon closes the stream or the user interrupts. On SIGINT or
/// SIGTERM, close the connection: the blocked read then sees end-of-file and the command ends
/// through its normal path, with stdout flushed and the terminal untouched.
fn close_on_interrupt(conn: &Conn) -> Result<(), Fail> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let closer = conn.closer()?;
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| Fail::new(format!("cannot watch for Ctrl-C: {}", cause(&e))))?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            closer.close();
        }
    });
    Ok(())
}

/// Run one client command over `conn`, writing its answer to `out` and per-item errors to
/// `err`. A failure of the command as a whole is the returned `Fail`.
pub fn execute(
    conn: &mut Conn,
    command: Command,
    colour: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, Fail> {
    let mut sink = Sink::new(out);
    match command {
        Command::Status { names, json: false } if conn.is_socket() => {
            status_table(conn, names, colour, &mut sink)
        }
        Command::Status { names, json } => {
            let named = !names.is_empty();
            let body = ask(
                conn,
                RequestBody::Status { names, rows: false },
                Some(conn.quick()),
            )?;
            let ResponseBody::Status { instances, .. } = body else {
                return Err(unexpected("status", &body));
            };
            if json {
                let text = status::json(&instances)
                    .map_err(|e| Fail::new(format!("cannot encode the status as JSON: {e}")))?;
                sink.line(&text)?;
            } else {
                let rows: Vec<_> = instances.iter().map(proto::StatusRow::of).collect();
                print_table(&rows, named, colour, &mut sink)?;
            }
            Ok(Outcome::Ok)
        }
        Command::Start(t) => transition(
            conn,
            "start",
            RequestBody::Start {
                names: t.names,
                wait: !t.no_wait,
            },
            (!t.no_wait, t.json),
            &mut sink,
            err,
        ),
        Command::Stop(t) => transition(
            conn,
            "stop",
            RequestBody::Stop {
                names: t.names,
                wait: !t.no_wait,
            },
            (!t.no_wait, t.json),
            &mut sink,
            err,
        ),
        Command::Restart {
            targets: t,
            rolling: true,
        } if !t.no_wait && !t.json => rolling_restart(conn, t.names, &mut sink, err),
        Command::Restart {
            targets: t,
            rolling,
        } => transition(
            conn,
            "restart",
            RequestBody::Restart {
                names: t.names,
                wait: !t.no_wait,
                rolling,
            },
            (!t.no_wait, t.json),
            &mut sink,
            err,
        ),
        Command::Signal {
            signal,
            names,
            main,
            group,
            json,
        } => transition(
            conn,
            "signal",
            RequestBody::Signal {
                signal,
                names,
                target: match (main, group) {
                    (true, _) => Some(SignalTarget::Main),
                    (false, true) => Some(SignalTarget::Group),
                    (false, false) => None,
                },
            },
            (false, json),
            &mut sink,
            err,
        ),
        Command::Reload { dry_run, json } => {
            // Applying a reload may restart changed programs, which takes their stoptime.
            let timeout = Some(if dry_run {
                conn.quick()
            } else {
                conn.wait_bound()
            });
            reload(
                conn,
                RequestBody::Reload { dry_run },
                timeout,
                json,
                &mut sink,
                err,
            )
        }
        Command::Add { names, json } => {
            let timeout = Some(conn.wait_bound());
            reload(
                conn,
                RequestBody::Add { names },
                timeout,
                json,
                &mut sink,
                err,
            )
        }
        Command::Remove { names, json } => {
            let timeout = Some(conn.wait_bound());
            reload(
                conn,
                RequestBody::Remove { names },
                timeout,
                json,
                &mut sink,
                err,
            )
        }
        Command::Pid { name, json } => {
            let body = ask(
                conn,
                RequestBody::Pid { name: name.clone() },
                Some(conn.quick()),
            )?;
            let ResponseBody::Pids { daemon, pids } = body else {
                return Err(unexpected("pid", &body));
            };
            let r = report::pids(name.as_deref(), daemon, &pids);
            if json {
                let pids: Vec<_> = pids
                    .iter()
                    .map(|(name, pid)| serde_json::json!({"name": name, "pid": pid}))
                    .collect();
                let doc = match name {
                    None => serde_json::json!({ "daemon": daemon }),
                    Some(_) => serde_json::json!({ "instances": pids }),
                };
                sink.line(&to_json(&doc)?)?;
                return Ok(if r.complete {
                    Outcome::Ok
                } else {
                    Outcome::Partial
                });
            }
            emit(&r, &mut sink, err)
        }
        Command::Tail {
            follow,
            lines,
            stderr,
            json,
            events,
            name,
        } => {
            let how = TailHow {
                lines,
                stderr,
                follow,
                json,
            };
            // clap takes a name or --events, never both.
            tail(conn, name.filter(|_| !events), how, &mut sink)
        }
        // It owns the terminal's Ctrl-C and several connections: only `run` starts it.
        Command::Fg { .. } => Err(Fail::new("fg runs from the command line only")
            .hint("run `sup fg NAME` outside the shell")),
        Command::Clear { names, json } => transition(
            conn,
            "clear",
            RequestBody::Clear { names },
            (false, json),
            &mut sink,
            err,
        ),
        Command::Logreopen => {
            let body = ask(conn, RequestBody::Logreopen, Some(conn.quick()))?;
            let ResponseBody::Done { message } = body else {
                return Err(unexpected("logreopen", &body));
            };
            sink.line(&message)?;
            Ok(Outcome::Ok)
        }
        Command::Shutdown => {
            conn.send(&Request::new(RequestBody::Shutdown))?;
            // Stopping every job takes as long as the slowest stoptime.
            conn.set_timeout(Some(conn.wait_bound()))?;
            match conn.next()? {
                Some(resp) => match resp.body {
                    ResponseBody::Done { message } => sink.line(&message)?,
                    other => return Err(unexpected("shutdown", &other)),
                },
                // A daemon that exits before its answer is flushed has still done what we
                // asked; the connection closing is the proof that it is gone.
                None => sink.line("the daemon has shut down")?,
            }
            Ok(Outcome::Ok)
        }
        Command::Daemon(_)
        | Command::Check { .. }
        | Command::Shell
        | Command::Top
        | Command::Import { .. }
        | Command::Completions { .. } => Err(Fail::new(
            "this subcommand does not talk to a daemon over the control socket",
        )),
    }
}

/// `sup status` as a table over the socket: asked for as rows, which are read in place from
/// the answer's bytes. A daemon that answers with the list instead (one that predates rows)
/// gets the same table.
fn status_table(
    conn: &mut Conn,
    names: Vec<String>,
    colour: bool,
    sink: &mut Sink,
) -> Result<Outcome, Fail> {
    let named = !names.is_empty();
    conn.send(&Request::new(RequestBody::Status { names, rows: true }))?;
    conn.set_timeout(Some(conn.quick()))?;
    let line = conn.next_line()?.ok_or_else(|| conn.no_answer())?;
    // A row takes some 80 bytes of the answer.
    let mut table = status::Table::with_capacity(line.len() / 80);
    let mut history = Vec::new();
    let read = proto::StatusRows::each(&line, |mut row| {
        output::clean_row(&mut row);
        table.push(&row);
        if named {
            history.extend(status::history_lines(std::slice::from_ref(&row)));
        }
    });
    if let Some(read) = read {
        read.map_err(|e| conn.unreadable(&e.to_string()))?;
        table.each_line(colour, output::terminal_width(), |line| sink.line(line))?;
        for line in &history {
            sink.line(line)?;
        }
        return Ok(Outcome::Ok);
    }
    let body = conn.decode(&line)?.body;
    let ResponseBody::Status { instances, .. } = body else {
        return Err(unexpected("status", &body));
    };
    let rows: Vec<_> = instances.iter().map(proto::StatusRow::of).collect();
    print_table(&rows, named, colour, sink)?;
    Ok(Outcome::Ok)
}

fn print_table(
    rows: &[proto::StatusRow],
    named: bool,
    colour: bool,
    sink: &mut Sink,
) -> Result<(), Fail> {
    status::each_line(rows, colour, output::terminal_width(), |line| {
        sink.line(line)
    })?;
    // `sup status NAME`: a scheduled job's last runs too.
    if named {
        for line in status::history_lines(rows) {
            sink.line(&line)?;
        }
    }
    Ok(())
}

/// Send one request and return the body of its answer.
fn ask(
    conn: &mut Conn,
    body: RequestBody,
    timeout: Option<Duration>,
) -> Result<ResponseBody, Fail> {
    Ok(conn.request(&Request::new(body), timeout)?.body)
}

/// start, stop, restart and signal all answer with per-instance outcomes.
fn transition(
    conn: &mut Conn,
    cmd: &str,
    body: RequestBody,
    (wait, json): (bool, bool),
    sink: &mut Sink,
    err: &mut dyn Write,
) -> Result<Outcome, Fail> {
    // Waiting on a stop can take as long as the jobs' stoptime; only `--no-wait` and signals
    // are answered at once.
    let timeout = Some(if wait {
        conn.wait_bound()
    } else {
        conn.quick()
    });
    let body = ask(conn, body, timeout)?;
    let ResponseBody::Outcomes { outcomes } = body else {
        return Err(unexpected(cmd, &body));
    };
    let r = report::outcomes(&outcomes);
    if json {
        sink.line(&to_json(&serde_json::json!({ "outcomes": outcomes }))?)?;
        return Ok(if r.complete {
            Outcome::Ok
        } else {
            Outcome::Partial
        });
    }
    emit(&r, sink, err)
}

/// `reload`, and `add`/`remove` (a reload of some programs): the report, and exit 1 when
/// the config is invalid or a job it started did not come up.
fn reload(
    conn: &mut Conn,
    body: RequestBody,
    timeout: Option<std::time::Duration>,
    json: bool,
    sink: &mut Sink,
    err: &mut dyn Write,
) -> Result<Outcome, Fail> {
    let body = ask(conn, body, timeout)?;
    let ResponseBody::Reload { report } = body else {
        return Err(unexpected("reload", &body));
    };
    let r = report::reload(&report);
    if json {
        sink.line(&to_json(&reload_json(&report)?)?)?;
        // The same exit status as the text: an added or changed job that did not come
        // up fails the reload, though the new config is in force.
        return Ok(if r.complete {
            Outcome::Ok
        } else {
            Outcome::Partial
        });
    }
    let outcome = emit(&r, sink, err)?;
    if !report.errors.is_empty() {
        let n = report.errors.len();
        let _ = writeln!(
            err,
            "sup: {n} error{} in the new config; nothing changed, the running config stays in force",
            if n == 1 { "" } else { "s" }
        );
    }
    Ok(outcome)
}

/// `restart --rolling` can take minutes: while the daemon works through the instances, a
/// second connection subscribed to them prints each state change as `status` names it, then
/// the outcomes come as for any restart. A daemon that cannot stream just gives the outcomes.
fn rolling_restart(
    conn: &mut Conn,
    names: Vec<String>,
    sink: &mut Sink,
    err: &mut dyn Write,
) -> Result<Outcome, Fail> {
    enum Msg {
        Progress(String),
        Done(Box<Result<ResponseBody, Fail>>),
    }
    let watcher = Conn::connect(conn.endpoint()).ok().and_then(|mut w| {
        let subscribe = RequestBody::Subscribe {
            names: names.clone(),
        };
        w.send(&Request::new(subscribe)).ok()?;
        let closer = w.closer().ok()?;
        Some((w, closer))
    });
    let body = RequestBody::Restart {
        names,
        wait: true,
        rolling: true,
    };
    let bound = Some(conn.wait_bound());
    let (tx, rx) = std::sync::mpsc::channel();
    let answer = std::thread::scope(|scope| {
        let closer = watcher.map(|(mut w, closer)| {
            let tx = tx.clone();
            scope.spawn(move || {
                let mut last: std::collections::HashMap<String, String> = Default::default();
                while let Ok(Some(resp)) = w.next() {
                    match resp.body {
                        ResponseBody::Status { instances, .. } => {
                            last.extend(instances.into_iter().map(|i| (i.name, i.state)));
                        }
                        ResponseBody::Event { instance: i, .. } => {
                            if last.get(&i.name) != Some(&i.state) {
                                let line = format!("{}: {}", i.name, i.state);
                                last.insert(i.name, i.state);
                                if tx.send(Msg::Progress(line)).is_err() {
                                    break;
                                }
                            }
                        }
                        _ => break,
                    }
                }
            });
            closer
        });
        scope.spawn(move || {
            let _ = tx.send(Msg::Done(Box::new(ask(conn, body, bound))));
        });
        let mut answer = Err(Fail::new("the restart ended without an answer"));
        for msg in &rx {
            match msg {
                // stdout gone is no reason to abandon the restart: the outcome still counts.
                Msg::Progress(line) => {
                    let _ = sink.raw(&format!("{line}\n"));
                }
                Msg::Done(result) => {
                    answer = *result;
                    break;
                }
            }
        }
        // The last instance's `running` is sent in the same turn as the answer, on the other
        // connection: give it a moment so the progress reads complete (cosmetic only).
        while let Ok(Msg::Progress(line)) = rx.recv_timeout(Duration::from_millis(50)) {
            let _ = sink.raw(&format!("{line}\n"));
        }
        // The watcher is blocked reading its stream; the scope joins it only once it is closed.
        if let Some(c) = closer {
            c.close();
        }
        answer
    })?;
    let ResponseBody::Outcomes { outcomes } = answer else {
        return Err(unexpected("restart", &answer));
    };
    emit(&report::outcomes(&outcomes), sink, err)
}

/// `reload --json`: the report as the daemon sent it, with `outcomes` always present (the wire
/// leaves an empty list out), so a script can read `.outcomes[]` without a special case.
fn reload_json(report: &crate::control::proto::ReloadReport) -> Result<serde_json::Value, Fail> {
    let mut doc =
        serde_json::to_value(report).map_err(|e| Fail::new(format!("cannot encode JSON: {e}")))?;
    if let Some(map) = doc.as_object_mut() {
        map.entry("outcomes")
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    }
    Ok(doc)
}

fn to_json(value: &impl serde::Serialize) -> Result<String, Fail> {
    serde_json::to_string(value).map_err(|e| Fail::new(format!("cannot encode JSON: {e}")))
}

struct TailHow {
    lines: usize,
    stderr: bool,
    follow: bool,
    json: bool,
}

/// `sup tail NAME`, or with no name (`--events`) the daemon's event log.
fn tail(
    conn: &mut Conn,
    name: Option<String>,
    how: TailHow,
    sink: &mut Sink,
) -> Result<Outcome, Fail> {
    let TailHow {
        lines,
        stderr,
        follow,
        json,
    } = how;
    let events = name.is_none();
    conn.send(&Request::new(match name {
        Some(name) => RequestBody::Tail {
            name,
            lines,
            stderr,
            follow,
        },
        None => RequestBody::EventLog { lines, follow },
    }))?;
    let stream = match (events, stderr) {
        (true, _) => "events",
        (false, true) => "stderr",
        (false, false) => "stdout",
    };
    // A chunk may end inside a line: the rest comes with the next chunk.
    let mut partial = String::new();
    // Following waits for new output for as long as the user likes; the first chunk of a
    // plain tail comes from the daemon's files at once.
    conn.set_timeout(if follow { None } else { Some(conn.quick()) })?;
    while let Some(resp) = conn.next()? {
        match resp.body {
            ResponseBody::Output { data } if json => {
                partial.push_str(&data);
                json_lines(&mut partial, stream, false, sink)?;
            }
            ResponseBody::Output { data } => sink.raw(&data)?,
            ResponseBody::Done { .. } => break,
            other => return Err(unexpected("tail", &other)),
        }
        // A plain tail is one answer; only a follower keeps reading.
        if sink.closed() || !follow {
            break;
        }
    }
    if json {
        json_lines(&mut partial, stream, true, sink)?;
    }
    Ok(Outcome::Ok)
}

/// Print each whole line of `buf` as `{"stream","time","line"}` and keep the unfinished rest
/// (all of it when `last`). `time` is the RFC 3339 prefix that `timestamps: true` writes, else
/// null: the client cannot know when an untimed line was written.
fn json_lines(buf: &mut String, stream: &str, last: bool, sink: &mut Sink) -> Result<(), Fail> {
    let end = if last {
        buf.len()
    } else {
        buf.rfind('\n').map_or(0, |i| i + 1)
    };
    for line in buf[..end].lines() {
        let (time, text) = split_timestamp(line);
        let doc = serde_json::json!({"stream": stream, "time": time, "line": text});
        sink.line(&to_json(&doc)?)?;
    }
    buf.drain(..end);
    Ok(())
}

/// `2026-12-02T16:00:00.123+00:00 text` → (Some(time), "text"); anything else is all text.
fn split_timestamp(line: &str) -> (Option<&str>, &str) {
    let Some((head, rest)) = line.split_once(' ') else {
        return (None, line);
    };
    let b = head.as_bytes();
    let looks_like_time = b.len() >= 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':';
    if looks_like_time {
        (Some(head), rest)
    } else {
        (None, line)
    }
}

/// Print a report: lines to stdout, errors to stderr in the same shape `main` uses.
fn emit(r: &Report, sink: &mut Sink, err: &mut dyn Write) -> Result<Outcome, Fail> {
    for line in &r.out {
        sink.line(line)?;
    }
    for e in &r.errors {
        // stderr going away is not worth failing over; the exit status still tells.
        let _ = writeln!(err, "sup: error: {e}");
    }
    Ok(if r.complete {
        Outcome::Ok
    } else {
        Outcome::Partial
    })
}

/// An answer of the wrong kind means client and daemon disagree about the protocol even
/// though the versions match: most likely two builds of the same version.
fn unexpected(cmd: &str, body: &ResponseBody) -> Fail {
    Fail::new(format!(
        "the daemon answered `{cmd}` with a `{}` message",
        kind(body)
    ))
    .hint("use the sup binary that matches the running daemon")
}

fn kind(body: &ResponseBody) -> &'static str {
    match body {
        ResponseBody::Error { .. } => "error",
        ResponseBody::Status { .. } => "status",
        ResponseBody::Outcomes { .. } => "outcomes",
        ResponseBody::Pids { .. } => "pids",
        ResponseBody::Reload { .. } => "reload",
        ResponseBody::Output { .. } => "output",
        ResponseBody::Done { .. } => "done",
        ResponseBody::Event { .. } => "event",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Targets;
    use crate::control::client::tests::{fake_daemon, line, TempDir};
    use crate::control::proto::{self, ReloadReport};

    /// Run `command` against a daemon that answers with `answers`; return the outcome, what
    /// went to stdout and stderr, and the request line the daemon saw.
    fn check(
        command: Command,
        answers: Vec<ResponseBody>,
    ) -> (Result<Outcome, Fail>, String, String, String) {
        check_lines(command, answers.into_iter().map(line).collect())
    }

    fn check_lines(
        command: Command,
        lines: Vec<String>,
    ) -> (Result<Outcome, Fail>, String, String, String) {
        let dir = TempDir::new("cmd");
        let daemon = fake_daemon(&dir.sock(), lines);
        let mut conn = Conn::connect(dir.sock()).expect("connects");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let result = execute(&mut conn, command, false, &mut out, &mut err);
        drop(conn);
        let request = daemon.join().expect("daemon thread");
        (
            result,
            String::from_utf8(out).expect("utf-8"),
            String::from_utf8(err).expect("utf-8"),
            request,
        )
    }

    fn targets(names: &[&str], no_wait: bool) -> Targets {
        Targets {
            names: names.iter().map(|s| s.to_string()).collect(),
            no_wait,
            json: false,
        }
    }

    #[test]
    fn status_prints_aligned_lines() {
        let (result, out, _, request) = check(
            Command::Status {
                names: vec!["web".into()],
                json: false,
            },
            vec![ResponseBody::Status {
                instances: status::tests::sample(),
                daemon: None,
            }],
        );
        assert_eq!(result, Ok(Outcome::Ok));
        // The table asks for rows; this daemon predates them and answers with the list.
        assert_eq!(
            request,
            "{\"v\":1,\"cmd\":\"status\",\"names\":[\"web\"],\"rows\":true}\n"
        );
        assert_eq!(out.lines().count(), 5);
        assert!(out.contains("web:0   running  pid=4312  restarts=1"));
    }

    #[test]
    fn status_reads_rows_into_the_same_table() {
        let mut instances = status::tests::sample();
        instances[1].reason = Some("bad \u{1b}]0;title\u{7}".into());
        instances[0].history = vec![proto::RunStatus {
            started: "2026-05-01T12:00:00+00:00".into(),
            duration_s: 1.25,
            exit: Some(0),
        }];
        let mut line = Vec::new();
        let mut rows = proto::RowsWriter::new(&mut line);
        for i in &instances {
            rows.push(&proto::StatusRow::of(i)).expect("encodes");
        }
        rows.finish();
        let dir = TempDir::new("rows");
        let daemon = fake_daemon(&dir.sock(), vec![String::from_utf8(line).expect("utf-8")]);
        let mut conn = Conn::connect(dir.sock()).expect("connects");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let command = Command::Status {
            names: vec!["api".into()],
            json: false,
        };
        let result = execute(&mut conn, command, false, &mut out, &mut err);
        drop(conn);
        assert_eq!(result, Ok(Outcome::Ok));
        assert!(daemon.join().expect("daemon").contains("\"rows\":true"));
        // What the list gives, cleaned as every answer is.
        let mut list = ResponseBody::Status {
            instances,
            daemon: None,
        };
        output::clean_answer(&mut list);
        let ResponseBody::Status { instances, .. } = list else {
            unreachable!()
        };
        let rows: Vec<_> = instances.iter().map(proto::StatusRow::of).collect();
        let mut want = status::lines(&instances, false, None);
        want.extend(status::history_lines(&rows));
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            want.join("\n") + "\n"
        );
        assert!(want[1].contains("(bad ?]0;title?)"), "{want:?}");
        assert_eq!(want[5], "api last runs:");
    }

    #[test]
    fn rows_that_do_not_read_fail_the_command() {
        let (result, out, _, _) = check_lines(
            Command::Status {
                names: vec![],
                json: false,
            },
            vec![r#"{"v":1,"kind":"status_rows","rows":[["a","running","#.into()],
        );
        let fail = result.expect_err("fails");
        assert!(fail.message.contains("cannot read"), "{}", fail.message);
        assert!(out.is_empty());
    }

    #[test]
    fn status_json_is_one_line_of_the_array() {
        let instances = status::tests::sample();
        let (result, out, _, request) = check(
            Command::Status {
                names: vec![],
                json: true,
            },
            vec![ResponseBody::Status {
                instances: instances.clone(),
                daemon: None,
            }],
        );
        assert_eq!(result, Ok(Outcome::Ok));
        let parsed: Vec<proto::InstanceStatus> =
            serde_json::from_str(out.trim_end()).expect("valid JSON");
        assert_eq!(parsed, instances);
        assert_eq!(out.matches('\n').count(), 1);
        // `--json` is the list, as it always was.
        assert!(!request.contains("rows"), "{request}");
    }

    #[test]
    fn an_unknown_name_fails_the_command_with_the_daemon_hint() {
        let (result, out, _, _) = check(
            Command::Status {
                names: vec!["wbe".into()],
                json: false,
            },
            vec![ResponseBody::Error {
                message: "no program or instance named \"wbe\"".into(),
                hint: Some("`sup status` lists them".into()),
            }],
        );
        let fail = result.expect_err("unknown name");
        assert_eq!(fail.hint.as_deref(), Some("`sup status` lists them"));
        assert!(out.is_empty());
    }

    #[test]
    fn start_waits_and_a_failed_instance_makes_it_partial() {
        let (result, out, _, request) = check(
            Command::Start(targets(&["web"], false)),
            vec![ResponseBody::Outcomes {
                outcomes: vec![
                    proto::Outcome {
                        name: "web:0".into(),
                        ok: true,
                        message: "started".into(),
                    },
                    proto::Outcome {
                        name: "web:1".into(),
                        ok: false,
                        message: "spawn failed: no such file or directory".into(),
                    },
                ],
            }],
        );
        assert_eq!(result, Ok(Outcome::Partial));
        assert!(request.contains("\"wait\":true"));
        assert_eq!(
            out,
            "web:0: started\nweb:1: ERROR spawn failed: no such file or directory\n"
        );
    }

    #[test]
    fn no_wait_asks_not_to_wait() {
        let (result, _, _, request) = check(
            Command::Stop(targets(&["all"], true)),
            vec![ResponseBody::Outcomes { outcomes: vec![] }],
        );
        assert_eq!(result, Ok(Outcome::Ok));
        assert_eq!(
            request,
            "{\"v\":1,\"cmd\":\"stop\",\"names\":[\"all\"],\"wait\":false}\n"
        );
    }

    #[test]
    fn reload_errors_go_to_stderr_and_fail() {
        let (result, out, err, _) = check(
            Command::Reload {
                dry_run: false,
                json: false,
            },
            vec![ResponseBody::Reload {
                report: ReloadReport {
                    errors: vec!["sup.yaml:2:3: programs.x: unknown key \"cmdd\"".into()],
                    ..ReloadReport::default()
                },
            }],
        );
        assert_eq!(result, Ok(Outcome::Partial));
        assert!(out.is_empty());
        assert!(err.starts_with("sup: error: sup.yaml:2:3: programs.x: unknown key \"cmdd\"\n"));
        assert!(err.contains("the running config stays in force"));
    }

    #[test]
    fn reload_json_fails_like_the_text_when_an_added_job_does_not_come_up() {
        let report = ReloadReport {
            added: vec!["broken".into()],
            outcomes: vec![proto::Outcome {
                name: "broken".into(),
                ok: false,
                message: "fatal: exited too quickly".into(),
            }],
            ..ReloadReport::default()
        };
        for json in [false, true] {
            let (result, out, _, _) = check(
                Command::Reload {
                    dry_run: false,
                    json,
                },
                vec![ResponseBody::Reload {
                    report: report.clone(),
                }],
            );
            assert_eq!(result, Ok(Outcome::Partial), "json: {json}");
            if json {
                let doc: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
                assert_eq!(
                    doc["outcomes"],
                    serde_json::json!([{"name": "broken", "ok": false,
                        "message": "fatal: exited too quickly"}])
                );
            }
        }
        // Nothing to report is still an `outcomes` list, and success.
        let (result, out, _, _) = check(
            Command::Reload {
                dry_run: true,
                json: true,
            },
            vec![ResponseBody::Reload {
                report: ReloadReport::default(),
            }],
        );
        assert_eq!(result, Ok(Outcome::Ok));
        let doc: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
        assert_eq!(doc["outcomes"], serde_json::json!([]));
    }

    #[test]
    fn pid_of_a_stopped_instance_exits_one() {
        let (result, out, err, _) = check(
            Command::Pid {
                name: Some("web".into()),
                json: false,
            },
            vec![ResponseBody::Pids {
                daemon: Some(1),
                pids: vec![("web".into(), None)],
            }],
        );
        assert_eq!(result, Ok(Outcome::Partial));
        assert!(out.is_empty());
        assert_eq!(err, "sup: error: web: not running\n");
    }

    #[test]
    fn json_forms_print_one_document_and_keep_the_exit_status() {
        let (result, out, err, _) = check(
            Command::Pid {
                name: Some("web".into()),
                json: true,
            },
            vec![ResponseBody::Pids {
                daemon: Some(1),
                pids: vec![("web:0".into(), Some(42)), ("web:1".into(), None)],
            }],
        );
        assert_eq!(result, Ok(Outcome::Partial));
        assert_eq!(
            out,
            "{\"instances\":[{\"name\":\"web:0\",\"pid\":42},{\"name\":\"web:1\",\"pid\":null}]}\n"
        );
        assert_eq!(err, "");

        let mut t = targets(&["web"], false);
        t.json = true;
        let (result, out, _, _) = check(
            Command::Stop(t),
            vec![ResponseBody::Outcomes {
                outcomes: vec![proto::Outcome {
                    name: "web".into(),
                    ok: false,
                    message: "still stopping".into(),
                }],
            }],
        );
        assert_eq!(result, Ok(Outcome::Partial));
        assert_eq!(
            out,
            "{\"outcomes\":[{\"message\":\"still stopping\",\"name\":\"web\",\"ok\":false}]}\n"
        );
    }

    #[test]
    fn tail_json_splits_lines_across_chunks_and_reads_timestamps() {
        let (result, out, _, _) = check(
            Command::Tail {
                follow: true,
                lines: 2,
                stderr: false,
                json: true,
                events: false,
                name: Some("web".into()),
            },
            vec![
                ResponseBody::Output {
                    data: "2026-12-02T16:00:00.123+00:00 hel".into(),
                },
                ResponseBody::Output {
                    data: "lo\nplain\n".into(),
                },
                ResponseBody::Done {
                    message: "end".into(),
                },
            ],
        );
        assert_eq!(result, Ok(Outcome::Ok));
        assert_eq!(
            out,
            "{\"line\":\"hello\",\"stream\":\"stdout\",\"time\":\"2026-12-02T16:00:00.123+00:00\"}\n\
             {\"line\":\"plain\",\"stream\":\"stdout\",\"time\":null}\n"
        );
    }

    #[test]
    fn tail_prints_chunks_as_they_come_until_the_end() {
        let (result, out, _, request) = check(
            Command::Tail {
                follow: true,
                lines: 2,
                stderr: true,
                json: false,
                events: false,
                name: Some("web".into()),
            },
            vec![
                ResponseBody::Output {
                    data: "a\nb\n".into(),
                },
                ResponseBody::Output {
                    data: "partial".into(),
                },
                ResponseBody::Output {
                    data: " line\n".into(),
                },
            ],
        );
        assert_eq!(result, Ok(Outcome::Ok));
        assert_eq!(out, "a\nb\npartial line\n");
        assert_eq!(
            request,
            "{\"v\":1,\"cmd\":\"tail\",\"name\":\"web\",\"lines\":2,\"stderr\":true,\"follow\":true}\n"
        );
    }

    #[test]
    fn a_wrong_kind_of_answer_is_named() {
        let (result, _, _, _) = check(
            Command::Logreopen,
            vec![ResponseBody::Status {
                instances: vec![],
                daemon: None,
            }],
        );
        assert_eq!(
            result.expect_err("wrong kind").message,
            "the daemon answered `logreopen` with a `status` message"
        );
    }

    #[test]
    fn shutdown_prints_the_daemon_message() {
        let (result, out, _, _) = check(
            Command::Shutdown,
            vec![ResponseBody::Done {
                message: "stopping 3 instances, then exiting".into(),
            }],
        );
        assert_eq!(result, Ok(Outcome::Ok));
        assert_eq!(out, "stopping 3 instances, then exiting\n");
    }

    #[test]
    fn explicit_socket_wins_without_reading_the_config() {
        let global = Global {
            socket: Some(PathBuf::from("/x/y.sock")),
            config: Some(PathBuf::from("/nonexistent/sup.yaml")),
            timeout: None,
            url: None,
            token_file: None,
            ca_file: None,
        };
        assert_eq!(socket_path(&global), PathBuf::from("/x/y.sock"));
    }
}
