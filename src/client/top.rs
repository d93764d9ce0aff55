//! `sup top`: a full-screen live table of every instance.
//!
//! Three parts, so that the middle one is tested without a terminal or a daemon:
//! - the feed: a reader thread holds a `subscribe` connection and turns its `status` snapshot
//!   and streamed `event`s into `Msg`s on a channel. A daemon that answers `subscribe` with an
//!   error (one that predates it) is polled with `status` once a second instead. A lost daemon
//!   is reported on the channel and retried every second, forever.
//! - the model (`Model`): what is shown, changed only by `Model::apply` (messages) and
//!   `Model::key` (key presses, which return the `Action` to carry out), drawn by `render`.
//! - the terminal loop (`run`): raw mode and the alternate screen, restored on exit, on panic
//!   and on SIGTERM; crossterm's key poll; CPU and memory sampled from `/proc` once a second;
//!   actions (stop, start, restart, signal, tail) run over their own connection on a short
//!   thread each, through `client::execute`, so they read exactly as in the CLI.
//!
//! The client is not the daemon: threads and a 100 ms key poll are fine here.

use std::collections::HashMap;
use std::io::{self, IsTerminal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crossterm::event::{self, Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::backend::CrosstermBackend;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};
use ratatui::{Frame, Terminal};

use super::status::{human_bytes, human_duration, tone, Tone};
use crate::cli::{Command, Global, Targets};
use crate::control::client::{cause, Conn, Endpoint};
use crate::control::proto::{DaemonInfo, InstanceStatus, Request, RequestBody, ResponseBody};
use crate::fail::{Fail, Outcome};

/// How often CPU and memory are sampled, and how often a daemon without `subscribe` is polled
/// or a lost one is retried.
const PERIOD: Duration = Duration::from_secs(1);
/// How long a key poll waits before the screen takes in what the feed sent.
const FRAME: Duration = Duration::from_millis(100);
/// A status answer is made from memory; a daemon silent this long is treated as lost.
const QUICK: Duration = Duration::from_secs(10);
/// `l` shows this many lines of the selected instance's output.
const OUTPUT_LINES: usize = 20;

// ---------------------------------------------------------------------------------------
// The feed

/// What the background threads tell the screen. A few a second at most, so the size of an
/// `Event` next to the small variants costs nothing worth a box.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Msg {
    /// Every instance as it is now (the subscription's first answer, or one poll).
    Snapshot {
        instances: Vec<InstanceStatus>,
        daemon: Option<DaemonInfo>,
        link: Link,
    },
    /// One instance changed.
    Event(InstanceStatus),
    /// The daemon cannot be reached; the feed retries.
    Lost(String),
    /// An action finished: what it printed, on one line.
    Done(String),
    /// `l`: the recent output of an instance, or why there is none.
    Output { name: String, text: String },
}

/// How the dashboard hears about changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Connecting,
    /// Events stream in over a subscription.
    Live,
    /// The daemon has no `subscribe`; `status` is asked once a second.
    Polling,
    /// No daemon: why, as the client's error message says it.
    Lost(String),
}

/// Follow the daemon until the receiver goes away (the dashboard quit).
fn feed(socket: Endpoint, tx: Sender<Msg>) {
    loop {
        let gone = match follow(&socket, &tx) {
            Ok(()) => return,
            Err(fail) => tx.send(Msg::Lost(fail.message)).is_err(),
        };
        if gone {
            return;
        }
        std::thread::sleep(PERIOD);
    }
}

/// One connection's life. `Ok` means the dashboard has gone; `Err` that the daemon has.
fn follow(socket: &Endpoint, tx: &Sender<Msg>) -> Result<(), Fail> {
    let mut conn = Conn::connect(socket)?;
    conn.send(&Request::new(RequestBody::Subscribe { names: Vec::new() }))?;
    conn.set_timeout(Some(QUICK))?;
    match conn.next() {
        // The daemon names the request it cannot serve: `subscribe is not built yet` now, or
        // `unknown variant subscribe` from an older build. Any transport trouble is not that.
        Err(fail) if fail.message.contains("subscribe") => return poll(conn, tx),
        Err(fail) => return Err(fail),
        Ok(None) => return Err(closed(socket)),
        Ok(Some(resp)) => {
            if send_snapshot(resp.body, Link::Live, tx).is_err() {
                return Ok(());
            }
        }
    }
    // Events come when something changes, which may be never: wait without a timeout. The
    // end of the stream (the daemon exiting) is what ends the wait.
    conn.set_timeout(None)?;
    loop {
        let msg = match conn.next()? {
            None => return Err(closed(socket)),
            Some(resp) => match resp.body {
                ResponseBody::Event { instance, .. } => Msg::Event(instance),
                other => {
                    if send_snapshot(other, Link::Live, tx).is_err() {
                        return Ok(());
                    }
                    continue;
                }
            },
        };
        if tx.send(msg).is_err() {
            return Ok(());
        }
    }
}

/// The fallback for a daemon without `subscribe`: the whole status once a second.
fn poll(mut conn: Conn, tx: &Sender<Msg>) -> Result<(), Fail> {
    loop {
        let resp = conn.request(
            &Request::new(RequestBody::Status {
                names: Vec::new(),
                rows: false,
            }),
            Some(QUICK),
        )?;
        if send_snapshot(resp.body, Link::Polling, tx).is_err() {
            return Ok(());
        }
        std::thread::sleep(PERIOD);
    }
}

/// `Err` when the dashboard has gone. Answers that are not a status are ignored: a newer
/// daemon may stream kinds this client does not show.
fn send_snapshot(body: ResponseBody, link: Link, tx: &Sender<Msg>) -> Result<(), ()> {
    if let ResponseBody::Status { instances, daemon } = body {
        tx.send(Msg::Snapshot {
            instances,
            daemon,
            link,
        })
        .map_err(|_| ())?;
    }
    Ok(())
}

fn closed(socket: &Endpoint) -> Fail {
    Fail::new(format!("the daemon on {socket} closed the connection"))
}

/// Run one client command on its own connection and thread; its output comes back as a
/// message. Using `execute` keeps every outcome worded as the CLI words it.
fn act(socket: &Endpoint, action: Action, tx: &Sender<Msg>) {
    let (command, tail_of) = match action {
        Action::Run(command) => (command, None),
        Action::Tail(name) => (
            Command::Tail {
                follow: false,
                lines: OUTPUT_LINES,
                stderr: false,
                json: false,
                events: false,
                name: Some(name.clone()),
            },
            Some(name),
        ),
        Action::None | Action::Quit => return,
    };
    let socket = socket.clone();
    let tx = tx.clone();
    std::thread::spawn(move || {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let result = Conn::connect(&socket)
            .and_then(|mut conn| super::execute(&mut conn, command, false, &mut out, &mut err));
        let mut text = String::from_utf8_lossy(&out).into_owned();
        text.push_str(&String::from_utf8_lossy(&err));
        if let Err(fail) = result {
            text.push_str(&format!("sup: error: {}", fail.message));
        }
        let msg = match tail_of {
            Some(name) => Msg::Output { name, text },
            None => Msg::Done(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        };
        // The dashboard may have quit meanwhile; nobody is left to tell.
        let _ = tx.send(msg);
    });
}

// ---------------------------------------------------------------------------------------
// The model

/// CPU and memory of an instance's leader process.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Usage {
    /// Percent of one CPU since the previous sample; `None` on the first sample.
    pub cpu: Option<f64>,
    pub rss_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    /// `/`: typing the filter.
    Filter,
    /// `K`: typing a signal name for the named instance.
    Signal {
        name: String,
        input: String,
    },
    Help,
    Output {
        name: String,
        text: String,
    },
}

/// What a key press asks the loop to do.
#[derive(Debug)]
pub enum Action {
    None,
    Quit,
    Run(Command),
    Tail(String),
}

pub struct Model {
    pub socket: String,
    /// Sorted by program, then instance number; each with the instant it was heard of, so
    /// uptimes keep counting between events.
    pub instances: Vec<(InstanceStatus, Instant)>,
    pub daemon: Option<(DaemonInfo, Instant)>,
    pub link: Link,
    pub selected: Option<String>,
    pub filter: String,
    pub mode: Mode,
    /// The last action's outcome, or a hint.
    pub message: String,
    pub usage: HashMap<u32, Usage>,
}

impl Model {
    pub fn new(socket: String) -> Model {
        Model {
            socket,
            instances: Vec::new(),
            daemon: None,
            link: Link::Connecting,
            selected: None,
            filter: String::new(),
            mode: Mode::Normal,
            message: String::new(),
            usage: HashMap::new(),
        }
    }

    pub fn apply(&mut self, msg: Msg, now: Instant) {
        match msg {
            Msg::Snapshot {
                instances,
                daemon,
                link,
            } => {
                self.instances = instances.into_iter().map(|i| (i, now)).collect();
                sort(&mut self.instances);
                self.daemon = daemon.map(|d| (d, now));
                self.link = link;
            }
            Msg::Event(inst) => {
                let at = self.instances.iter().position(|(i, _)| i.name == inst.name);
                // A removed instance (after a reload) is announced with the state `removed`.
                match (at, inst.state == "removed") {
                    (Some(k), true) => {
                        self.instances.remove(k);
                    }
                    (Some(k), false) => self.instances[k] = (inst, now),
                    (None, true) => {}
                    (None, false) => {
                        self.instances.push((inst, now));
                        sort(&mut self.instances);
                    }
                }
            }
            Msg::Lost(why) => self.link = Link::Lost(why),
            Msg::Done(text) => self.message = text,
            Msg::Output { name, text } => self.mode = Mode::Output { name, text },
        }
    }

    /// The instances the filter lets through, in order: those whose name contains it, and
    /// the members of a group it names whole.
    pub fn visible(&self) -> Vec<&InstanceStatus> {
        let f = self.filter.to_lowercase();
        let group = self.daemon.as_ref().and_then(|(d, _)| {
            d.groups
                .iter()
                .find(|(g, _)| g.to_lowercase() == f)
                .map(|(_, members)| members)
        });
        self.instances
            .iter()
            .map(|(i, _)| i)
            .filter(|i| {
                f.is_empty()
                    || i.name.to_lowercase().contains(&f)
                    || group.is_some_and(|m| m.contains(&i.program))
            })
            .collect()
    }

    /// The index of the selected row among the visible ones: the remembered name if it is
    /// still shown, else the first row.
    pub fn selected_index(&self) -> Option<usize> {
        let visible = self.visible();
        if visible.is_empty() {
            return None;
        }
        let at = self
            .selected
            .as_ref()
            .and_then(|s| visible.iter().position(|i| &i.name == s));
        Some(at.unwrap_or(0))
    }

    fn selected_name(&self) -> Option<String> {
        let k = self.selected_index()?;
        self.visible().get(k).map(|i| i.name.clone())
    }

    fn step(&mut self, delta: isize) {
        let visible = self.visible();
        if visible.is_empty() {
            return;
        }
        let k = self.selected_index().unwrap_or(0) as isize + delta;
        let k = k.clamp(0, visible.len() as isize - 1) as usize;
        self.selected = Some(visible[k].name.clone());
    }

    /// Pids whose CPU and memory are worth sampling.
    pub fn pids(&self) -> Vec<u32> {
        self.instances.iter().filter_map(|(i, _)| i.pid).collect()
    }

    pub fn key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Normal => self.normal_key(key.code),
            Mode::Filter => {
                match key.code {
                    KeyCode::Enter => {}
                    KeyCode::Esc => self.filter.clear(),
                    KeyCode::Backspace => {
                        self.filter.pop();
                        self.mode = Mode::Filter;
                    }
                    KeyCode::Char(c) => {
                        self.filter.push(c);
                        self.mode = Mode::Filter;
                    }
                    _ => self.mode = Mode::Filter,
                }
                Action::None
            }
            Mode::Signal { name, mut input } => match key.code {
                KeyCode::Enter => {
                    let signal = if input.trim().is_empty() {
                        "TERM".to_string()
                    } else {
                        input.trim().to_string()
                    };
                    self.message = format!("sending {signal} to {name}…");
                    Action::Run(Command::Signal {
                        signal,
                        names: vec![name],
                        main: false,
                        group: false,
                        json: false,
                    })
                }
                KeyCode::Esc => Action::None,
                KeyCode::Backspace => {
                    input.pop();
                    self.mode = Mode::Signal { name, input };
                    Action::None
                }
                KeyCode::Char(c) => {
                    input.push(c);
                    self.mode = Mode::Signal { name, input };
                    Action::None
                }
                _ => {
                    self.mode = Mode::Signal { name, input };
                    Action::None
                }
            },
            // Any key closes a popup; `q` there closes it rather than quitting, since a user
            // reading a popup means "away with this".
            mode @ (Mode::Help | Mode::Output { .. }) => match key.code {
                KeyCode::Esc | KeyCode::Char('q' | '?' | 'l') | KeyCode::Enter => Action::None,
                _ => {
                    self.mode = mode;
                    Action::None
                }
            },
        }
    }

    fn normal_key(&mut self, code: KeyCode) -> Action {
        let transition = |name: String, verb: &str| {
            let t = Targets {
                names: vec![name],
                no_wait: false,
                json: false,
            };
            match verb {
                "stop" => Command::Stop(t),
                "start" => Command::Start(t),
                _ => Command::Restart {
                    targets: t,
                    rolling: false,
                },
            }
        };
        match code {
            KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
            KeyCode::Up | KeyCode::Char('k') => {
                self.step(-1);
                Action::None
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.step(1);
                Action::None
            }
            KeyCode::Home | KeyCode::Char('g') => {
                self.step(isize::MIN / 2);
                Action::None
            }
            KeyCode::End | KeyCode::Char('G') => {
                self.step(isize::MAX / 2);
                Action::None
            }
            KeyCode::Char('/') => {
                self.mode = Mode::Filter;
                Action::None
            }
            KeyCode::Char('?') => {
                self.mode = Mode::Help;
                Action::None
            }
            KeyCode::Char(c @ ('s' | 'S' | 'r' | 'K' | 'l')) => {
                let Some(name) = self.selected_name() else {
                    self.message = "no instance selected".to_string();
                    return Action::None;
                };
                match c {
                    's' => {
                        self.message = format!("stopping {name}…");
                        Action::Run(transition(name, "stop"))
                    }
                    'S' => {
                        self.message = format!("starting {name}…");
                        Action::Run(transition(name, "start"))
                    }
                    'r' => {
                        self.message = format!("restarting {name}…");
                        Action::Run(transition(name, "restart"))
                    }
                    'K' => {
                        self.mode = Mode::Signal {
                            name,
                            input: String::new(),
                        };
                        Action::None
                    }
                    _ => {
                        self.message = format!("reading the output of {name}…");
                        Action::Tail(name)
                    }
                }
            }
            _ => Action::None,
        }
    }
}

/// By program, then instance number (`w:2` before `w:10`), as `sup status` orders them.
fn sort(instances: &mut [(InstanceStatus, Instant)]) {
    instances.sort_by(|(a, _), (b, _)| {
        let num = |i: &InstanceStatus| {
            i.name
                .rsplit_once(':')
                .and_then(|(_, n)| n.parse::<u64>().ok())
        };
        (a.program.as_str(), num(a), a.name.as_str()).cmp(&(b.program.as_str(), num(b), &b.name))
    });
}

// ---------------------------------------------------------------------------------------
// Drawing

const STATES: &[&str] = &[
    "running",
    "starting",
    "backoff",
    "stopping",
    "exited",
    "fatal",
    "stopped",
    "scheduled",
];

fn state_colour(i: &InstanceStatus) -> Color {
    match tone(i) {
        Tone::Good => Color::Green,
        Tone::Busy => Color::Yellow,
        Tone::Bad => Color::Red,
        Tone::Waiting => Color::Cyan,
        Tone::Quiet => Color::DarkGray,
        Tone::Plain => Color::Reset,
    }
}

/// Seconds since `seen`, added to a duration the daemon reported then.
fn since(secs: f64, seen: Instant, now: Instant) -> f64 {
    secs + now.saturating_duration_since(seen).as_secs_f64()
}

/// When the instance will next start on its own: a backoff's retry or a schedule's tick.
fn next_cell(i: &InstanceStatus, seen: Instant, now: Instant, wall: DateTime<Utc>) -> String {
    if i.state == "backoff" {
        if let Some(left) = i.next_restart_in {
            let left = (left - now.saturating_duration_since(seen).as_secs_f64()).max(0.0);
            return format!("in {}", human_duration(left.ceil()));
        }
    }
    match i
        .next_run
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    {
        Some(at) => {
            let left = (at.with_timezone(&Utc) - wall).num_milliseconds() as f64 / 1000.0;
            format!("in {}", human_duration(left.ceil()))
        }
        None => String::new(),
    }
}

/// Draw the whole screen. `now` and `wall` are passed in so that tests draw fixed frames.
pub fn render(f: &mut Frame, m: &Model, now: Instant, wall: DateTime<Utc>) {
    let [head, summary, table, message, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(2),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(f.area());

    // Header: what we watch, and how.
    let (link, link_style) = match &m.link {
        Link::Connecting => ("connecting…".to_string(), Style::default()),
        Link::Live => ("live".to_string(), Style::default().fg(Color::Green)),
        Link::Polling => (
            "polling every 1s".to_string(),
            Style::default().fg(Color::Yellow),
        ),
        Link::Lost(_) => (
            "daemon lost".to_string(),
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
    };
    let title = format!("sup top  {}", m.socket);
    let room = (head.width as usize).saturating_sub(link.chars().count() + 1);
    let title: String = title.chars().take(room).collect();
    let gap = (head.width as usize).saturating_sub(title.chars().count() + link.chars().count());
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(title, Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(" ".repeat(gap)),
            Span::styled(link, link_style),
        ])),
        head,
    );

    // Summary: counts per state and the daemon's uptime, or why there is no daemon.
    let summary_line = match &m.link {
        Link::Lost(why) => Line::from(Span::styled(
            format!("{why}; retrying every second"),
            Style::default().fg(Color::Red),
        )),
        _ => {
            let mut spans = vec![Span::raw(format!(
                "{} instance{}",
                m.instances.len(),
                if m.instances.len() == 1 { "" } else { "s" }
            ))];
            for state in STATES {
                let n = m
                    .instances
                    .iter()
                    .filter(|(i, _)| i.state == *state)
                    .count();
                if n > 0 {
                    spans.push(Span::raw(format!(", {n} {state}")));
                }
            }
            if let Some((d, seen)) = &m.daemon {
                spans.push(Span::raw(format!(
                    "  ·  daemon up {}",
                    human_duration(since(d.uptime_s, *seen, now))
                )));
            }
            Line::from(spans)
        }
    };
    f.render_widget(Paragraph::new(summary_line), summary);

    // The table.
    let seen_of: HashMap<&str, Instant> = m
        .instances
        .iter()
        .map(|(i, s)| (i.name.as_str(), *s))
        .collect();
    const HEADER: [&str; 9] = [
        "NAME", "STATE", "PID", "UPTIME", "RESTARTS", "EXIT", "CPU%", "RSS", "NEXT",
    ];
    let texts: Vec<(&InstanceStatus, [String; 9])> = m
        .visible()
        .into_iter()
        .map(|i| {
            let seen = seen_of.get(i.name.as_str()).copied().unwrap_or(now);
            let usage = i.pid.and_then(|p| m.usage.get(&p));
            let cells = [
                i.name.clone(),
                i.state.clone(),
                i.pid.map(|p| p.to_string()).unwrap_or_default(),
                i.uptime_s
                    .map(|u| human_duration(since(u, seen, now)))
                    .unwrap_or_default(),
                i.restarts.to_string(),
                i.last_exit.map(|c| c.to_string()).unwrap_or_default(),
                usage
                    .and_then(|u| u.cpu)
                    .or(i.cpu_percent.filter(|_| usage.is_none()))
                    .map(|c| format!("{c:.1}"))
                    .unwrap_or_default(),
                usage
                    .map(|u| u.rss_bytes)
                    .or(i.rss_bytes)
                    .map(human_bytes)
                    .unwrap_or_default(),
                next_cell(i, seen, now, wall),
            ];
            (i, cells)
        })
        .collect();
    // Every column as wide as its widest cell (or heading); NEXT, the last, takes what is
    // left, so a short name does not leave half the screen empty.
    let mut width = HEADER.map(|h| h.chars().count() as u16);
    for (_, cells) in &texts {
        for (w, c) in width.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count().min(u16::MAX as usize) as u16);
        }
    }
    let widths: Vec<Constraint> = width
        .iter()
        .enumerate()
        .map(|(col, &w)| {
            if col == HEADER.len() - 1 {
                Constraint::Min(w)
            } else {
                Constraint::Length(w)
            }
        })
        .collect();
    let rows: Vec<Row> = texts
        .into_iter()
        .map(|(i, cells)| {
            Row::new(cells.into_iter().enumerate().map(|(col, text)| {
                if col == 1 {
                    Cell::from(Span::styled(text, Style::default().fg(state_colour(i))))
                } else {
                    Cell::from(text)
                }
            }))
        })
        .collect();
    let empty = rows.is_empty();
    let header = Row::new(HEADER).style(Style::default().add_modifier(Modifier::REVERSED));
    let widget = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .row_highlight_style(Style::default().add_modifier(Modifier::BOLD))
        .highlight_symbol("›");
    let mut state = TableState::default().with_selected(m.selected_index());
    f.render_stateful_widget(widget, table, &mut state);
    if empty {
        let note = if m.filter.is_empty() {
            "no instances"
        } else {
            "no instance matches the filter"
        };
        let area = Rect {
            y: table.y + 1,
            height: 1,
            ..table
        };
        f.render_widget(
            Paragraph::new(note).style(Style::default().fg(Color::DarkGray)),
            area,
        );
    }

    // The message line: a prompt while one is open, else the last outcome.
    let message_line = match &m.mode {
        Mode::Filter => Line::from(format!("filter: {}▏", m.filter)),
        Mode::Signal { name, input } => {
            Line::from(format!("signal to send to {name} [TERM]: {input}▏"))
        }
        _ if !m.filter.is_empty() && m.message.is_empty() => {
            Line::from(format!("filter: {}  (/ then Esc clears it)", m.filter))
        }
        _ => Line::from(m.message.clone()),
    };
    f.render_widget(Paragraph::new(message_line), message);
    f.render_widget(
        Paragraph::new(
            "↑↓/jk  s stop  S start  r restart  K signal  / filter  l output  ? help  q quit",
        )
        .style(Style::default().add_modifier(Modifier::REVERSED)),
        keys,
    );

    match &m.mode {
        Mode::Help => popup(f, "keys", help_text(), 54, 15),
        Mode::Output { name, text } => {
            let area = f.area();
            let body = if text.trim().is_empty() {
                "(no output yet)".to_string()
            } else {
                text.clone()
            };
            // Show the end: the newest lines matter most when they do not all fit.
            let lines: Vec<&str> = body.lines().collect();
            let room = area.height.saturating_sub(4) as usize;
            let shown = lines[lines.len().saturating_sub(room)..].join("\n");
            popup(
                f,
                &format!("output of {name} (any key closes)"),
                shown,
                area.width.saturating_sub(4),
                area.height.saturating_sub(2),
            );
        }
        _ => {}
    }
}

fn help_text() -> String {
    [
        "↑ ↓ / j k   move the selection (g G: first, last)",
        "s           stop the selected instance",
        "S           start it",
        "r           restart it",
        "K           send it a signal (asks for the name)",
        "l           show its recent output",
        "/           filter by name (Enter keeps, Esc clears)",
        "?           this help",
        "q, Esc      quit",
        "",
        "CPU% and RSS are the instance's main process.",
    ]
    .join("\n")
}

fn popup(f: &mut Frame, title: &str, text: String, width: u16, height: u16) {
    let area = f.area();
    let w = width.min(area.width);
    let h = height.min(area.height);
    let rect = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    f.render_widget(Clear, rect);
    f.render_widget(
        Paragraph::new(Text::from(text))
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(title.to_string())),
        rect,
    );
}

// ---------------------------------------------------------------------------------------
// /proc sampling

/// CPU time and resident memory of processes, from `/proc/PID/stat`.
struct Sampler {
    ticks_per_s: f64,
    page: u64,
    last: HashMap<u32, (u64, Instant)>,
}

impl Sampler {
    fn new() -> Sampler {
        use nix::unistd::{sysconf, SysconfVar};
        let ticks = sysconf(SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100);
        let page = sysconf(SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .unwrap_or(4096);
        Sampler {
            ticks_per_s: ticks.max(1) as f64,
            page: page.max(1) as u64,
            last: HashMap::new(),
        }
    }

    fn sample(&mut self, pids: &[u32], now: Instant) -> HashMap<u32, Usage> {
        let mut out = HashMap::new();
        let mut last = HashMap::new();
        for &pid in pids {
            // One read: CPU time and resident pages come from the same line.
            let Some(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| crate::core::usage::parse_stat(&s))
            else {
                continue;
            };
            let (ticks, rss_bytes) = (stat.cpu_ticks, stat.rss_pages * self.page);
            let cpu = self.last.get(&pid).and_then(|&(before, at)| {
                let dt = now.saturating_duration_since(at).as_secs_f64();
                (dt > 0.0 && ticks >= before)
                    .then(|| (ticks - before) as f64 / self.ticks_per_s / dt * 100.0)
            });
            out.insert(pid, Usage { cpu, rss_bytes });
            last.insert(pid, (ticks, now));
        }
        self.last = last;
        out
    }
}

// ---------------------------------------------------------------------------------------
// The terminal

/// Puts the terminal back as it was. Used by the guard's drop, the panic hook and SIGTERM.
fn restore_terminal() {
    use crossterm::{cursor, execute, terminal};
    let _ = terminal::disable_raw_mode();
    let _ = execute!(io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
}

struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> Result<TerminalGuard, Fail> {
        use crossterm::{cursor, execute, terminal};
        terminal::enable_raw_mode()
            .map_err(|e| Fail::new(format!("cannot set up the terminal: {}", cause(&e))))?;
        // From here on the guard restores whatever was done, even if the next step fails.
        let guard = TerminalGuard;
        execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)
            .map_err(|e| Fail::new(format!("cannot set up the terminal: {}", cause(&e))))?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

pub fn run(global: &Global) -> Result<Outcome, Fail> {
    if !io::stdout().is_terminal() || !io::stdin().is_terminal() {
        return Err(Fail::new("`sup top` needs a terminal")
            .hint("use `sup status` (or `sup status --json`) in scripts"));
    }
    let socket = super::endpoint(global)?;
    let home = std::env::var("HOME").ok();
    let label = super::shell::prompt_for_endpoint(&socket, home.as_deref());
    let label = label
        .trim_start_matches("sup ")
        .trim_end_matches("> ")
        .to_string();

    // SIGTERM and SIGHUP (the terminal closing) end the loop on its next turn, so that the
    // terminal is restored by the same path as a normal quit. But a terminal that hung up can
    // leave crossterm spinning on end-of-file inside its poll, never back in our loop: so the
    // watcher does not wait for the loop forever, it restores the terminal and exits itself.
    let stop = Arc::new(AtomicBool::new(false));
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(|e| Fail::new(format!("cannot watch for SIGTERM: {}", cause(&e))))?;
    {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                stop.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(500));
                restore_terminal();
                std::process::exit(0);
            }
        });
    }

    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));

    let (tx, rx) = mpsc::channel();
    {
        let (socket, tx) = (socket.clone(), tx.clone());
        std::thread::spawn(move || feed(socket, tx));
    }

    let guard = TerminalGuard::enter()?;
    let result = event_loop(&socket, Model::new(label), &tx, &rx, &stop);
    drop(guard);
    result.map(|()| Outcome::Ok)
}

/// Whether the terminal on stdin is gone (its other side closed).
fn terminal_hung_up() -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let stdin = io::stdin();
    let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(_) => fds[0].revents().is_some_and(|r| {
            r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL)
        }),
        Err(_) => false,
    }
}

fn event_loop(
    socket: &Endpoint,
    mut model: Model,
    tx: &Sender<Msg>,
    rx: &Receiver<Msg>,
    stop: &AtomicBool,
) -> Result<(), Fail> {
    let term_fail = |e: io::Error| Fail::new(format!("cannot draw on the terminal: {}", cause(&e)));
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout())).map_err(term_fail)?;
    let mut sampler = Sampler::new();
    let mut next_sample = Instant::now();
    // Drawing is most of what an idle dashboard costs: draw only when something it shows has
    // changed (a message, a key, a resize, or the once-a-second sample that also moves the
    // uptimes and countdowns).
    let mut dirty = true;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        while let Ok(msg) = rx.try_recv() {
            model.apply(msg, now);
            dirty = true;
        }
        if now >= next_sample {
            // A remote daemon's pids are not ours to read: its own figures are shown.
            if matches!(socket, Endpoint::Socket(_)) {
                model.usage = sampler.sample(&model.pids(), now);
            }
            next_sample = now + PERIOD;
            dirty = true;
        }
        if dirty {
            terminal
                .draw(|f| render(f, &model, now, Utc::now()))
                .map_err(term_fail)?;
            dirty = false;
        }
        if terminal_hung_up() {
            // Nobody is left to read the screen; crossterm would spin on end-of-file.
            break;
        }
        if !event::poll(FRAME).map_err(term_fail)? {
            continue;
        }
        match event::read().map_err(term_fail)? {
            TermEvent::Key(key) => {
                dirty = true;
                match model.key(key) {
                    Action::Quit => break,
                    action => act(socket, action, tx),
                }
            }
            TermEvent::Resize(..) => dirty = true,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::status::tests::inst;
    use crate::control::client::tests::{line, TempDir};
    use ratatui::backend::TestBackend;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixListener;
    use std::path::Path;

    /// A daemon for one connection: for each request line it reads, it writes the next group
    /// of answers; then it closes. Returns the requests it saw.
    fn scripted_daemon(
        path: &Path,
        script: Vec<Vec<ResponseBody>>,
    ) -> std::thread::JoinHandle<Vec<String>> {
        let listener = UnixListener::bind(path).expect("bind");
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut w = stream;
            let mut seen = Vec::new();
            for answers in script {
                let mut request = String::new();
                if reader.read_line(&mut request).unwrap_or(0) == 0 {
                    break;
                }
                seen.push(request);
                for a in answers {
                    w.write_all(format!("{}\n", line(a)).as_bytes())
                        .expect("write");
                }
            }
            seen
        })
    }

    fn event(i: InstanceStatus) -> ResponseBody {
        ResponseBody::Event {
            at: "2025-01-01T12:00:00Z".into(),
            message: format!("{} {}", i.name, i.state),
            instance: i,
        }
    }

    #[test]
    fn the_feed_subscribes_then_streams_events_until_the_daemon_goes() {
        let dir = TempDir::new("top-feed");
        let daemon = scripted_daemon(
            &dir.sock(),
            vec![vec![
                ResponseBody::Status {
                    instances: vec![inst("web", "running")],
                    daemon: None,
                },
                event(inst("web", "backoff")),
            ]],
        );
        let (tx, rx) = mpsc::channel();
        let end = follow(&dir.sock().into(), &tx).expect_err("the daemon closed");
        assert!(end.message.contains("closed the connection"), "{end}");
        let requests = daemon.join().expect("daemon");
        assert_eq!(requests, ["{\"v\":1,\"cmd\":\"subscribe\",\"names\":[]}\n"]);
        let got: Vec<Msg> = rx.try_iter().collect();
        assert_eq!(
            got,
            [
                Msg::Snapshot {
                    instances: vec![inst("web", "running")],
                    daemon: None,
                    link: Link::Live,
                },
                Msg::Event(inst("web", "backoff")),
            ]
        );
    }

    #[test]
    fn a_daemon_without_subscribe_is_polled_with_status() {
        let dir = TempDir::new("top-poll");
        let daemon = scripted_daemon(
            &dir.sock(),
            vec![
                vec![ResponseBody::Error {
                    message: "subscribe is not built yet".into(),
                    hint: None,
                }],
                vec![ResponseBody::Status {
                    instances: vec![inst("web", "running")],
                    daemon: None,
                }],
            ],
        );
        let (tx, rx) = mpsc::channel();
        assert!(follow(&dir.sock().into(), &tx).is_err());
        let requests = daemon.join().expect("daemon");
        assert!(requests[1].contains("\"cmd\":\"status\""), "{requests:?}");
        assert_eq!(
            rx.try_iter().next(),
            Some(Msg::Snapshot {
                instances: vec![inst("web", "running")],
                daemon: None,
                link: Link::Polling,
            })
        );
    }

    fn base() -> (Instant, DateTime<Utc>) {
        let wall = DateTime::parse_from_rfc3339("2025-01-01T12:00:00Z")
            .expect("valid")
            .with_timezone(&Utc);
        (Instant::now(), wall)
    }

    fn sample_model(now: Instant) -> Model {
        let mut web0 = inst("web:0", "running");
        web0.program = "web".into();
        web0.pid = Some(4312);
        web0.uptime_s = Some(192.0);
        web0.restarts = 1;
        web0.last_exit = Some(0);
        let mut web1 = inst("web:1", "backoff");
        web1.program = "web".into();
        web1.restarts = 3;
        web1.last_exit = Some(137);
        web1.next_restart_in = Some(4.0);
        let mut job = inst("backup", "scheduled");
        job.last_exit = Some(0);
        job.next_run = Some("2025-01-01T12:04:30Z".into());
        let mut m = Model::new("/tmp/sup-1000/sup.sock".into());
        m.apply(
            Msg::Snapshot {
                instances: vec![web1, job, web0],
                daemon: Some(DaemonInfo {
                    pid: 99,
                    version: "0.1.0".into(),
                    uptime_s: 3725.0,
                    groups: Default::default(),
                }),
                link: Link::Live,
            },
            now,
        );
        m.usage.insert(
            4312,
            Usage {
                cpu: Some(12.5),
                rss_bytes: 12 * 1024 * 1024 + 300 * 1024,
            },
        );
        m
    }

    /// Draw `m` at 80×24 and return the screen's text, one trimmed line per row.
    fn frame(m: &Model, now: Instant, wall: DateTime<Utc>) -> (String, ratatui::buffer::Buffer) {
        let mut t = Terminal::new(TestBackend::new(80, 24)).expect("test terminal");
        t.draw(|f| render(f, m, now, wall)).expect("draws");
        let buf = t.backend().buffer().clone();
        let mut text = String::new();
        for y in 0..buf.area.height {
            let mut line = String::new();
            for x in 0..buf.area.width {
                line.push_str(buf.cell((x, y)).map_or(" ", |c| c.symbol()));
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        (text, buf)
    }

    /// Compare with a golden frame; trailing blank lines of the golden text may be left out.
    fn check(m: &Model, golden: &str) {
        let (now, wall) = base();
        let (text, _) = frame(m, now, wall);
        let got: Vec<&str> = text.lines().collect();
        let want: Vec<&str> = golden.lines().collect();
        for (k, row) in got.iter().enumerate() {
            let expected = want.get(k).copied().unwrap_or("");
            assert_eq!(*row, expected, "row {k} differs; whole frame:\n{text}");
        }
    }

    const KEYS: &str =
        "↑↓/jk  s stop  S start  r restart  K signal  / filter  l output  ? help  q quit";

    #[test]
    fn golden_a_live_table() {
        let (now, _) = base();
        let m = sample_model(now);
        let golden = format!(
            "\
sup top  /tmp/sup-1000/sup.sock                                             live
3 instances, 1 running, 1 backoff, 1 scheduled  ·  daemon up 1h2m
 NAME   STATE     PID  UPTIME RESTARTS EXIT CPU% RSS   NEXT
›backup scheduled             0        0               in 4m30s
 web:0  running   4312 3m12s  1        0    12.5 12.3M
 web:1  backoff               3        137             in 4s
{}
{KEYS}
",
            "\n".repeat(16)
        );
        check(&m, &golden);
    }

    #[test]
    fn golden_the_daemon_lost() {
        let (now, _) = base();
        let mut m = sample_model(now);
        m.apply(
            Msg::Lost(
                "no daemon is listening on /tmp/sup-1000/sup.sock: connection refused".into(),
            ),
            now,
        );
        let (text, _) = frame(&m, now, base().1);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "sup top  /tmp/sup-1000/sup.sock                                      daemon lost"
        );
        assert_eq!(
            lines[1],
            "no daemon is listening on /tmp/sup-1000/sup.sock: connection refused; retrying e"
        );
    }

    #[test]
    fn a_filter_that_names_a_group_shows_its_members() {
        let (now, _) = base();
        let mut m = sample_model(now);
        if let Some((d, _)) = m.daemon.as_mut() {
            d.groups.insert("front".into(), vec!["web".into()]);
        }
        m.filter = "front".into();
        let shown: Vec<&str> = m.visible().iter().map(|i| i.name.as_str()).collect();
        assert_eq!(shown, ["web:0", "web:1"]);
        // Part of a group's name is not the group: it filters by instance name as before.
        m.filter = "fro".into();
        assert!(m.visible().is_empty());
    }

    #[test]
    fn golden_filter_and_signal_prompt() {
        let (now, _) = base();
        let mut m = sample_model(now);
        for c in "/web:1".chars() {
            m.key(KeyEvent::from(KeyCode::Char(c)));
        }
        let (text, _) = frame(&m, now, base().1);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[3],
            "›web:1 backoff            3        137           in 4s"
        );
        assert_eq!(lines[4], "");
        assert_eq!(lines[22], "filter: web:1▏");
        m.key(KeyEvent::from(KeyCode::Enter));
        m.key(KeyEvent::from(KeyCode::Char('K')));
        let (text, _) = frame(&m, now, base().1);
        assert_eq!(
            text.lines().nth(22),
            Some("signal to send to web:1 [TERM]: ▏")
        );
        match m.key(KeyEvent::from(KeyCode::Enter)) {
            Action::Run(Command::Signal { signal, names, .. }) => {
                assert_eq!(signal, "TERM");
                assert_eq!(names, ["web:1"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn golden_help_fits_in_80x24() {
        let (now, _) = base();
        let mut m = sample_model(now);
        m.key(KeyEvent::from(KeyCode::Char('?')));
        let (text, _) = frame(&m, now, base().1);
        assert!(text.contains("┌keys"), "{text}");
        assert!(
            text.contains("│s           stop the selected instance"),
            "{text}"
        );
        assert!(text.contains("│q, Esc      quit"), "{text}");
        // Any key closes it, and does not act.
        assert!(matches!(
            m.key(KeyEvent::from(KeyCode::Char('q'))),
            Action::None
        ));
        assert_eq!(m.mode, Mode::Normal);
    }

    #[test]
    fn states_are_coloured() {
        let (now, wall) = base();
        let m = sample_model(now);
        let (_, buf) = frame(&m, now, wall);
        let colour_at = |x: u16, y: u16| buf.cell((x, y)).map(|c| c.fg);
        assert_eq!(colour_at(8, 4), Some(Color::Green));
        assert_eq!(colour_at(8, 5), Some(Color::Yellow));
        assert_eq!(colour_at(8, 3), Some(Color::Cyan));
    }

    #[test]
    fn events_replace_insert_and_remove_instances() {
        let (now, _) = base();
        let mut m = sample_model(now);
        let mut web0 = inst("web:0", "backoff");
        web0.program = "web".into();
        m.apply(Msg::Event(web0), now);
        assert_eq!(m.instances[1].0.state, "backoff");
        let mut added = inst("api", "starting");
        added.program = "api".into();
        m.apply(Msg::Event(added), now);
        assert_eq!(m.instances[0].0.name, "api");
        m.apply(Msg::Event(inst("api", "removed")), now);
        assert_eq!(m.instances.len(), 3);
    }

    #[test]
    fn keys_act_on_the_selected_instance() {
        let (now, _) = base();
        let mut m = sample_model(now);
        m.key(KeyEvent::from(KeyCode::Down));
        match m.key(KeyEvent::from(KeyCode::Char('s'))) {
            Action::Run(Command::Stop(t)) => assert_eq!(t.names, ["web:0"]),
            other => panic!("{other:?}"),
        }
        m.key(KeyEvent::from(KeyCode::Char('j')));
        m.key(KeyEvent::from(KeyCode::Char('j')));
        match m.key(KeyEvent::from(KeyCode::Char('r'))) {
            Action::Run(Command::Restart { targets: t, .. }) => {
                assert_eq!(t.names, ["web:1"])
            }
            other => panic!("{other:?}"),
        }
        match m.key(KeyEvent::from(KeyCode::Char('l'))) {
            Action::Tail(name) => assert_eq!(name, "web:1"),
            other => panic!("{other:?}"),
        }
        m.apply(
            Msg::Output {
                name: "web:1".into(),
                text: "hello\n".into(),
            },
            now,
        );
        assert!(matches!(m.mode, Mode::Output { .. }));
        // `q` closes the popup first, then quits.
        assert!(matches!(
            m.key(KeyEvent::from(KeyCode::Char('q'))),
            Action::None
        ));
        assert!(matches!(
            m.key(KeyEvent::from(KeyCode::Char('q'))),
            Action::Quit
        ));
    }

    #[test]
    fn the_selection_follows_its_instance_across_updates() {
        let (now, _) = base();
        let mut m = sample_model(now);
        m.key(KeyEvent::from(KeyCode::Char('G')));
        assert_eq!(m.selected_name().as_deref(), Some("web:1"));
        let mut first = inst("aaa", "running");
        first.program = "aaa".into();
        m.apply(Msg::Event(first), now);
        assert_eq!(m.selected_name().as_deref(), Some("web:1"));
    }

    #[test]
    fn proc_stat_fields_count_from_the_last_parenthesis() {
        let stat = "4312 (we ird) job) S 1 4312 4312 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 12345 1000 100";
        let cpu_ticks = |s| crate::core::usage::parse_stat(s).map(|s| s.cpu_ticks);
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn sizes_read_short() {
        assert_eq!(human_bytes(812 * 1024), "812K");
        assert_eq!(human_bytes(12 * 1024 * 1024 + 300 * 1024), "12.3M");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024 / 2), "1.5G");
    }

    #[test]
    fn this_process_can_be_sampled() {
        let mut s = Sampler::new();
        let me = std::process::id();
        let t0 = Instant::now();
        let first = s.sample(&[me], t0);
        assert!(first[&me].cpu.is_none());
        assert!(first[&me].rss_bytes > 0);
        let second = s.sample(&[me], t0 + Duration::from_secs(1));
        assert!(second[&me].cpu.is_some());
    }
}
