//! The loop's side of the HTTP interface: accepting, serving a connection through its phases,
//! deadlines, and the answers (`/metrics`, `/healthz`, `/readyz`) built from the instance
//! table. The sockets and the request head are `daemon::http`'s; this file decides what a
//! request gets. An `/api/v1/…` request is routed by `http::api` to a control request and
//! joins the control path (`Daemon::handle`) with the connection's slot, like a socket
//! client's: it may be answered at once, parked as a waiter, or become a stream.
//!
//! Listeners and connections are `Source::Http` slots; one `TimerKey::Http(slot)` per slot
//! carries a connection's deadline or a listener's accept retry. Nothing is periodic: once the
//! last connection is gone its stale deadlines fire once each and an idle daemon sleeps.

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::TcpListener;

use super::follow::Stream;
use super::{Daemon, Source, TimerKey};
use crate::control::proto::Request as ControlRequest;
use crate::core::State;
use crate::daemon::http::request::{self, Method, Parsed, Request};
use crate::daemon::http::{self as wire, HttpConn, HttpSource, Progress};
use crate::daemon::http::{api, dashboard, guard};
use crate::daemon::procfs;
use crate::daemon::sockdiag::{Lookup, SockDiag};

/// More HTTP connections than this at once get a 503 (each costs a descriptor).
const MAX_CONNS: usize = 256;

/// The connection limit for a daemon that may open `nofile` descriptors: at most a quarter of
/// them, so HTTP clients cannot take the descriptors a job's restart needs.
fn conn_limit(nofile: u64) -> usize {
    usize::try_from(nofile / 4).map_or(MAX_CONNS, |q| q.clamp(4, MAX_CONNS))
}
/// At most this many of `max_conns` connections may be streams (`events`, `tail?follow=1`);
/// a stream past it gets 503 at once. The rest are for requests that are answered and close.
fn stream_limit(max_conns: usize) -> usize {
    (max_conns / 2).max(1)
}
/// At most this many connections are accepted per listener in one turn; the rest wait for the
/// next turn (the listener is kept hot), so a flood of requests cannot hold the loop away from
/// its children and the control socket.
const ACCEPTS_PER_TURN: usize = 32;
/// After an accept error (out of descriptors), accept again this soon.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Refused requests (a bad or missing token) are logged at most this often.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(1);

/// Every state `status` can show, in the order `sup_instance_state` lists them.
const STATES: [State; 8] = [
    State::Stopped,
    State::Starting,
    State::Running,
    State::Backoff,
    State::Stopping,
    State::Exited,
    State::Fatal,
    State::Scheduled,
];

/// The HTTP interface's own state.
#[derive(Default)]
pub(super) struct Http {
    token: Option<Vec<u8>>,
    /// `daemon.http.tls`: every connection speaks TLS.
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    conns: usize,
    /// `conn_limit` of the daemon's descriptor limit.
    max_conns: usize,
    /// Connections in the order they came (slot, when), oldest first; entries of closed
    /// connections are skipped when met and dropped when the list outgrows the limit.
    arrivals: std::collections::VecDeque<(usize, Instant)>,
    /// When a refused request was last logged, and how many since then were not.
    refusal_logged: Option<Instant>,
    refusals_unlogged: u64,
    /// What each streaming API connection follows, by slot (a control client keeps its own).
    pub(super) streams: std::collections::HashMap<usize, Stream>,
    /// Who owns a peer's socket, without a token (opened at the first lookup).
    diag: SockDiag,
}

impl Daemon {
    /// Put the listeners `sup daemon` bound on the poll.
    pub(super) fn start_http(&mut self, setup: wire::Setup) {
        self.http.token = setup.token;
        self.http.tls = setup.tls;
        let scheme = if self.http.tls.is_some() {
            "HTTPS"
        } else {
            "HTTP"
        };
        let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(u64::MAX, |(soft, _)| soft);
        self.http.max_conns = conn_limit(nofile);
        for (addr, listener) in setup.listeners {
            let source = Source::Http(HttpSource::Listener {
                listener,
                retry_at: None,
            });
            match self.sources.add(source) {
                Ok(_) => log::info!("serving {scheme} on {addr}"),
                Err(e) => log::error!("unable to watch the HTTP listener on {addr}: {e}"),
            }
        }
    }

    /// An HTTP slot is ready (or was left hot).
    pub(super) fn http_ready(&mut self, slot: usize, now: Instant) {
        match self.sources.get(slot) {
            Some(Source::Http(HttpSource::Listener { .. })) => self.http_accept(slot, now),
            Some(Source::Http(HttpSource::Conn(_))) => self.http_serve(slot, now),
            _ => {}
        }
    }

    /// A `TimerKey::Http` deadline came: a listener's retry, or a connection's time is up.
    pub(super) fn http_timer(&mut self, slot: usize, at: Instant, now: Instant) {
        match self.sources.get(slot) {
            Some(Source::Http(HttpSource::Listener { retry_at, .. })) if *retry_at == Some(at) => {
                self.http_accept(slot, now)
            }
            Some(Source::Http(HttpSource::Conn(c))) if c.deadline == Some(at) && c.is_parked() => {
                // A request whose transitions outlast the bound: say so, and stop waiting.
                self.clients.forget(slot);
                let answer = api::refusal(&api::Refusal {
                    status: 504,
                    message: format!(
                        "the request did not end within {}s; what it started goes on",
                        wire::WAIT_DEADLINE.as_secs()
                    ),
                    allow: None,
                });
                if let Some(Source::Http(HttpSource::Conn(c))) = self.sources.get_mut(slot) {
                    let progress = c.respond(answer, now);
                    self.http_progress(slot, progress);
                }
            }
            Some(Source::Http(HttpSource::Conn(c))) if c.deadline == Some(at) => {
                log::debug!("http: closing the connection from {}: out of time", c.peer);
                self.release(slot);
            }
            _ => {}
        }
    }

    /// A released HTTP slot: forget the connection, and what the loop owed it.
    pub(super) fn http_released(&mut self, slot: usize, source: HttpSource) {
        if let HttpSource::Conn(conn) = source {
            self.http.conns = self.http.conns.saturating_sub(1);
            self.http.streams.remove(&slot);
            self.clients.forget(slot);
            drop(conn);
            // The descriptor may be one the control socket's reserve needs back.
            let _ = self.acceptor.top_up();
        }
    }

    fn http_accept(&mut self, slot: usize, now: Instant) {
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(Source::Http(HttpSource::Listener { listener, retry_at })) =
                self.sources.get_mut(slot)
            else {
                return;
            };
            *retry_at = None;
            match accept(listener) {
                Ok(Some((stream, peer))) => {
                    // Full: the oldest connection still sending its head, or answered and
                    // waiting for its peer to hang up, makes room, so clients that dribble
                    // their heads or hold refused connections cannot keep a probe out
                    // (streams have at most half the slots); a full house of requests
                    // being answered refuses the newcomer.
                    if self.http.conns >= self.http.max_conns && !self.evict_oldest_reader() {
                        // A plain-text 503 means nothing to a TLS client: just close.
                        if self.http.tls.is_none() {
                            wire::refuse(stream);
                        }
                        continue;
                    }
                    let mut conn = HttpConn::new(stream, peer, now);
                    if let Some(config) = &self.http.tls {
                        if !conn.start_tls(config) {
                            log::error!("http: unable to start TLS for {peer}");
                            continue;
                        }
                    }
                    match self
                        .sources
                        .add(Source::Http(HttpSource::Conn(Box::new(conn))))
                    {
                        Ok(conn_slot) => {
                            self.http.conns += 1;
                            self.http.arrivals.push_back((conn_slot, now));
                            if self.http.arrivals.len() > 2 * self.http.max_conns {
                                self.forget_closed_arrivals();
                            }
                            self.http_serve(conn_slot, now);
                        }
                        Err(e) => log::error!("http: unable to watch a connection: {e}"),
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    // Edge-triggered: a backlog left now would never wake the loop again.
                    log::debug!("http: accepting failed: {e}; trying again shortly");
                    let at = now + ACCEPT_RETRY;
                    *retry_at = Some(at);
                    self.sup.push_timer(at, TimerKey::Http(slot));
                    return;
                }
            }
        }
        // The budget is spent with clients perhaps still waiting: next turn, without a wakeup
        // (the listener is edge-triggered).
        self.sources.keep_hot(slot);
    }

    /// Close the longest-connected connection still reading its request head, or done and
    /// draining. False when every connection is being answered or streams.
    fn evict_oldest_reader(&mut self) -> bool {
        let mut kept = std::collections::VecDeque::new();
        let mut evicted = false;
        while let Some((slot, at)) = self.http.arrivals.pop_front() {
            match self.sources.get(slot) {
                // The same connection (a reused slot has a later arrival).
                Some(Source::Http(HttpSource::Conn(c))) if c.reading_since() == Some(at) => {
                    log::debug!(
                        "http: closing the connection from {}: room for a new one",
                        c.peer
                    );
                    self.release(slot);
                    evicted = true;
                    break;
                }
                Some(Source::Http(HttpSource::Conn(c))) if c.reading_since().is_none() => {
                    kept.push_back((slot, at));
                }
                _ => {}
            }
        }
        // Those answered meanwhile stay listed, in order, before the rest.
        kept.append(&mut self.http.arrivals);
        self.http.arrivals = kept;
        evicted
    }

    /// Drop the entries of connections that are closed (or whose slot is another's now).
    fn forget_closed_arrivals(&mut self) {
        let sources = &self.sources;
        self.http.arrivals.retain(|&(slot, at)| {
            matches!(sources.get(slot),
                Some(Source::Http(HttpSource::Conn(c))) if c.accepted_at() == at)
        });
    }

    /// Move a connection on as far as its socket allows, answering its request when it is
    /// in, then arm its deadline.
    fn http_serve(&mut self, slot: usize, now: Instant) {
        let Some(Source::Http(HttpSource::Conn(c))) = self.sources.get_mut(slot) else {
            return;
        };
        let mut progress = c.io(now);
        if let Progress::Request(parsed, body) = progress {
            let peer = c.peer;
            if let Some(answer) = self.http_answer(slot, parsed, &body, peer, now) {
                let Some(Source::Http(HttpSource::Conn(c))) = self.sources.get_mut(slot) else {
                    return;
                };
                progress = c.respond(answer, now);
            } else {
                // The control path took it: answered, parked or streaming through `peer_*`.
                self.http_flush(slot, now);
                return;
            }
        }
        self.http_progress(slot, progress);
    }

    /// After the control path sent to a connection: write, and keep or close it.
    pub(super) fn http_flush(&mut self, slot: usize, now: Instant) {
        let Some(Source::Http(HttpSource::Conn(c))) = self.sources.get_mut(slot) else {
            return;
        };
        let progress = c.io(now);
        self.http_progress(slot, progress);
    }

    /// Close a connection that is done, else (re)arm its deadline.
    fn http_progress(&mut self, slot: usize, progress: Progress) {
        let Some(Source::Http(HttpSource::Conn(c))) = self.sources.get_mut(slot) else {
            return;
        };
        match progress {
            Progress::Close => {
                self.release(slot);
                return;
            }
            Progress::TooSlow => {
                log::warn!(
                    "http: dropped the stream to {}: more than {} MiB unread",
                    c.peer,
                    wire::MAX_STREAM_OUT >> 20
                );
                self.release(slot);
                return;
            }
            Progress::Idle | Progress::Request(..) => {}
        }
        let due = c.due();
        if c.deadline != due {
            c.deadline = due;
            if let Some(at) = due {
                self.sup.push_timer(at, TimerKey::Http(slot));
            }
        }
    }

    /// The whole response to a request, or `None` when it joined the control path (which
    /// answers through `peer_send`).
    fn http_answer(
        &mut self,
        slot: usize,
        parsed: Parsed,
        body: &[u8],
        peer: std::net::SocketAddr,
        now: Instant,
    ) -> Option<Vec<u8>> {
        let req = match parsed {
            Parsed::Bad(status) => {
                return Some(request::text(
                    status,
                    &format!("{}\n", request::reason(status)),
                    "",
                    false,
                ))
            }
            Parsed::Request(r) => r,
        };
        let local = match self.sources.get(slot) {
            Some(Source::Http(HttpSource::Conn(c))) => c.stream.local_addr().ok(),
            _ => None,
        };
        if let Err(refused) = guard::check_host(&req, local) {
            log::warn!(
                "http: refused {} from {peer}: {}",
                req.path,
                refused.message
            );
            return Some(request::text(
                refused.status,
                &format!("{}\n", refused.message),
                "",
                false,
            ));
        }
        let is_api = req.path.starts_with(api::PREFIX) || req.path == "/api/v1";
        if is_api {
            return self.api_answer(slot, &req, body, peer, now);
        }
        let head = req.method == Method::Head;
        if matches!(req.method, Method::Other | Method::Post) {
            return Some(request::text(
                405,
                "only GET and HEAD\n",
                "Allow: GET, HEAD\r\n",
                false,
            ));
        }
        if req.path == "/" {
            return Some(dashboard::response(head));
        }
        if req.path == "/healthz" {
            return Some(request::text(200, "ok\n", "", head));
        }
        // A probe (Kubernetes, Nomad, a load balancer) carries no secret: without a token it
        // gets the verdict alone; the names of what is not ready need the token.
        if req.path == "/readyz" && req.authorization.is_none() && self.http.token.is_some() {
            let (ready, _) = self.readiness_report();
            let (status, body) = if ready {
                (200, "{\"ready\":true}\n")
            } else {
                (503, "{\"ready\":false}\n")
            };
            return Some(request::response(
                status,
                "application/json",
                "",
                body.as_bytes(),
                head,
            ));
        }
        if !self.http_authorized(&req, peer, now) {
            return Some(request::text(
                401,
                "a valid bearer token is required\n",
                "WWW-Authenticate: Bearer\r\n",
                head,
            ));
        }
        Some(match req.path.as_str() {
            "/metrics" => {
                let body = self.metrics(now);
                request::response(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    "",
                    body.as_bytes(),
                    head,
                )
            }
            "/readyz" => {
                let (ready, body) = self.readiness_report();
                let status = if ready { 200 } else { 503 };
                request::response(status, "application/json", "", body.as_bytes(), head)
            }
            _ => request::text(404, "not found\n", "", head),
        })
    }

    /// `/api/v1/…`: the token first (every endpoint needs it when one is configured), then
    /// the route, then the control path with this connection's slot.
    fn api_answer(
        &mut self,
        slot: usize,
        req: &Request,
        body: &[u8],
        peer: std::net::SocketAddr,
        now: Instant,
    ) -> Option<Vec<u8>> {
        if !self.http_authorized(req, peer, now) {
            return Some(api::refusal(&api::Refusal {
                status: 401,
                message: "a valid bearer token is required".into(),
                allow: None,
            }));
        }
        // Past `http_authorized`, a configured token was in the request.
        let token_ok = self.http.token.is_some();
        if let Err(refused) = guard::check_json(req, token_ok) {
            return Some(api::refusal(&api::Refusal {
                status: refused.status,
                message: refused.message,
                allow: None,
            }));
        }
        let call = match api::route(req.method, &req.path, &req.query, body) {
            Ok(call) => call,
            Err(refusal) => return Some(api::refusal(&refusal)),
        };
        // Streams hold their slot for as long as the reader likes: at most half the slots,
        // so the other half stays for requests that end (a probe among them).
        if matches!(call.shape, api::Shape::Events)
            && self.http.streams.len() >= stream_limit(self.http.max_conns)
        {
            return Some(api::refusal(&api::Refusal {
                status: 503,
                message: format!(
                    "{}: {} streams are open, the most this daemon serves at once",
                    req.path,
                    self.http.streams.len()
                ),
                allow: None,
            }));
        }
        if self.http.token.is_none() && api::needs_token(&call.body) {
            if let Err(why) = self.http_peer_trusted(slot, peer) {
                return Some(api::refusal(&api::Refusal {
                    status: 403,
                    message: format!(
                        "{}: {why}; without daemon.http.token_file only the daemon's own \
                         user and root may change things or read output over HTTP",
                        req.path
                    ),
                    allow: None,
                }));
            }
        }
        if let Some(Source::Http(HttpSource::Conn(c))) = self.sources.get_mut(slot) {
            c.set_shape(call.shape);
        }
        let response = self.handle(slot, ControlRequest::new(call.body), now)?;
        Some(api::answer(
            &response,
            match call.shape {
                api::Shape::StatusArray => api::Shape::StatusArray,
                api::Shape::Json | api::Shape::Events => api::Shape::Json,
            },
        ))
    }

    /// Without a token, who may change things: the rule of the control socket (the daemon's
    /// uid, or root), with the owner of the peer's socket asked of the kernel by its exact
    /// addresses (`sockdiag`; a listener without a token is on loopback, so the peer is on
    /// this host). Only a connected socket a process holds counts: a client that closed
    /// after sending its request has left a socket the kernel owns, and is refused.
    fn http_peer_trusted(&mut self, slot: usize, peer: std::net::SocketAddr) -> Result<(), String> {
        let Some(Source::Http(HttpSource::Conn(c))) = self.sources.get(slot) else {
            return Err("the connection is gone".into());
        };
        let local = c
            .stream
            .local_addr()
            .map_err(|e| format!("cannot tell who is asking: {e}"))?;
        let ours = nix::unistd::geteuid().as_raw();
        match self.http.diag.peer(peer, local) {
            Lookup::Owner(uid) if uid == ours || uid == 0 => Ok(()),
            Lookup::Owner(uid) => Err(format!("refused to uid {uid}")),
            Lookup::NotFull(state) => Err(format!(
                "cannot tell who is asking (the client's socket is closed: TCP state {state})"
            )),
            Lookup::NotFound => Err("cannot tell who is asking (no such socket)".into()),
            Lookup::Failed(why) => Err(format!("cannot tell who is asking ({why})")),
        }
    }

    /// With a token configured, the request must carry it; refusals are logged at most once
    /// a second, with a count of those left out.
    fn http_authorized(&mut self, req: &Request, peer: std::net::SocketAddr, now: Instant) -> bool {
        let Some(token) = &self.http.token else {
            return true;
        };
        if request::authorized(req.authorization.as_deref(), token) {
            return true;
        }
        let due = self
            .http
            .refusal_logged
            .is_none_or(|at| now.saturating_duration_since(at) >= REFUSAL_LOG_EVERY);
        if due {
            let more = std::mem::take(&mut self.http.refusals_unlogged);
            let also = if more > 0 {
                format!(" ({more} more refused since the last report)")
            } else {
                String::new()
            };
            let why = if req.authorization.is_some() {
                "a wrong token"
            } else {
                "no token"
            };
            log::warn!("http: refused {} from {peer}: {why}{also}", req.path);
            self.http.refusal_logged = Some(now);
        } else {
            self.http.refusals_unlogged += 1;
        }
        false
    }

    /// `/readyz`: ready when every autostart instance meant to be up is running or scheduled,
    /// or exited with an expected code. The body lists those that are not.
    fn readiness_report(&self) -> (bool, String) {
        let mut waiting = Vec::new();
        for id in self.sup.ordered() {
            let Some(inst) = self.sup.get(id) else {
                continue;
            };
            let c = inst.core();
            // An instance the operator stopped is where it is meant to be.
            let stopped_by_hand = !c.want_up() && inst.spec.schedule.is_none();
            if !inst.spec.autostart || stopped_by_hand {
                continue;
            }
            let ready = match c.state() {
                State::Running | State::Scheduled => true,
                State::Exited => c
                    .last_exit()
                    .is_some_and(|code| inst.spec.exitcodes.contains(&code)),
                _ => false,
            };
            if !ready {
                waiting.push(serde_json::json!({
                    "instance": c.name(),
                    "program": c.program(),
                    "state": c.state().as_str(),
                }));
            }
        }
        let ready = waiting.is_empty();
        let body = serde_json::json!({ "ready": ready, "not_ready": waiting });
        (ready, format!("{body}\n"))
    }

    /// `/metrics` in the Prometheus text format 0.0.4.
    fn metrics(&self, now: Instant) -> String {
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let hz = procfs::ticks_per_s().max(1) as f64;
        let mut state = String::new();
        let mut restarts = String::new();
        let mut exit = String::new();
        let mut start = String::new();
        let mut cpu = String::new();
        let mut rss = String::new();
        let mut desired = String::new();
        let mut running = String::new();
        let mut healthy = String::new();
        let mut next_run = String::new();
        let mut runs = String::new();
        let wall = chrono::Utc::now();
        for (name, program) in self.sup.programs() {
            let p = escape(name);
            let (mut want, mut up) = (0usize, 0usize);
            for &id in program.instances() {
                let Some(inst) = self.sup.get(id) else {
                    continue;
                };
                let c = inst.core();
                let labels = format!("program=\"{p}\",instance=\"{}\"", escape(c.name()));
                let current = c.state();
                for s in STATES {
                    let v = u8::from(s == current);
                    let _ = writeln!(
                        state,
                        "sup_instance_state{{{labels},state=\"{}\"}} {v}",
                        s.as_str()
                    );
                }
                let _ = writeln!(
                    restarts,
                    "sup_instance_restarts_total{{{labels}}} {}",
                    c.restarts()
                );
                if let Some(code) = c.last_exit() {
                    let _ = writeln!(exit, "sup_instance_last_exit_code{{{labels}}} {code}");
                }
                let live = matches!(current, State::Starting | State::Running | State::Stopping);
                if let (true, Some(at)) = (live, c.started_at()) {
                    let t = unix_now - now.saturating_duration_since(at).as_secs_f64();
                    let _ = writeln!(
                        start,
                        "sup_instance_start_time_seconds{{{labels}}} {:.3}",
                        t
                    );
                }
                if let Some((ticks, bytes)) = c.pid().and_then(|pid| self.usage_sample(id, pid)) {
                    let _ = writeln!(
                        cpu,
                        "sup_instance_cpu_seconds_total{{{labels}}} {}",
                        ticks as f64 / hz
                    );
                    let _ = writeln!(rss, "sup_instance_memory_rss_bytes{{{labels}}} {bytes}");
                }
                if let Some(h) = self.health_status(id) {
                    let v = u8::from(h == crate::core::health::Status::Healthy);
                    let _ = writeln!(healthy, "sup_instance_healthy{{{labels}}} {v}");
                }
                if inst.spec.schedule.is_some() {
                    let clocks = crate::core::schedule::Clocks { mono: now, wall };
                    if let Some(at) = c.next_run(clocks) {
                        let t = at.timestamp_millis() as f64 / 1000.0;
                        let _ = writeln!(
                            next_run,
                            "sup_schedule_next_run_timestamp_seconds{{{labels}}} {t:.3}"
                        );
                    }
                    let r = c.runs();
                    for (result, n) in [("ok", r.ok), ("failed", r.failed), ("skipped", r.skipped)]
                    {
                        let _ = writeln!(
                            runs,
                            "sup_schedule_runs_total{{{labels},result=\"{result}\"}} {n}"
                        );
                    }
                }
                want += usize::from(c.want_up());
                up += usize::from(current == State::Running);
            }
            let _ = writeln!(
                desired,
                "sup_program_desired_instances{{program=\"{p}\"}} {want}"
            );
            let _ = writeln!(
                running,
                "sup_program_running_instances{{program=\"{p}\"}} {up}"
            );
        }
        let mut out = String::with_capacity(
            state.len() + restarts.len() + exit.len() + start.len() + cpu.len() + rss.len() + 4096,
        );
        let families = [
            (
                "sup_instance_state",
                "gauge",
                "1 for the instance's current state, 0 for the others.",
                state,
            ),
            (
                "sup_instance_restarts_total",
                "counter",
                "Restarts of the instance, as `sup status` counts them.",
                restarts,
            ),
            (
                "sup_instance_last_exit_code",
                "gauge",
                "The last exit code (128 + signal number when killed by a signal).",
                exit,
            ),
            (
                "sup_instance_start_time_seconds",
                "gauge",
                "Unix time the current process started.",
                start,
            ),
            (
                "sup_instance_cpu_seconds_total",
                "counter",
                "CPU time (user + system) of the instance's process.",
                cpu,
            ),
            (
                "sup_instance_memory_rss_bytes",
                "gauge",
                "Resident memory of the instance's process.",
                rss,
            ),
            (
                "sup_instance_healthy",
                "gauge",
                "1 while the instance's health check passes, 0 otherwise (instances with a check).",
                healthy,
            ),
            (
                "sup_schedule_next_run_timestamp_seconds",
                "gauge",
                "Unix time of a scheduled job's next run.",
                next_run,
            ),
            (
                "sup_schedule_runs_total",
                "counter",
                "A scheduled job's runs since the daemon started: ok (expected exit), failed, skipped (a tick that did not run).",
                runs,
            ),
            (
                "sup_program_desired_instances",
                "gauge",
                "Instances of the program meant to be up.",
                desired,
            ),
            (
                "sup_program_running_instances",
                "gauge",
                "Instances of the program in the running state.",
                running,
            ),
        ];
        for (name, kind, help, samples) in families {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{samples}");
        }
        let fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count().saturating_sub(1))
            .ok();
        if let Some(fds) = fds {
            let _ = write!(
                out,
                "# HELP sup_daemon_open_fds Descriptors the daemon holds open.\n\
                 # TYPE sup_daemon_open_fds gauge\nsup_daemon_open_fds {fds}\n"
            );
        }
        let (sent, failed) = self.notifier.counts();
        let _ = write!(
            out,
            "# HELP sup_daemon_loop_wakeups_total Returns from the loop's poll.\n\
             # TYPE sup_daemon_loop_wakeups_total counter\nsup_daemon_loop_wakeups_total {}\n\
             # HELP sup_daemon_event_log_lines_total Lines written to the event log.\n\
             # TYPE sup_daemon_event_log_lines_total counter\nsup_daemon_event_log_lines_total {}\n\
             # HELP sup_daemon_notifications_total Notifications (mail, reports, hooks) by outcome.\n\
             # TYPE sup_daemon_notifications_total counter\n\
             sup_daemon_notifications_total{{result=\"sent\"}} {sent}\n\
             sup_daemon_notifications_total{{result=\"failed\"}} {failed}\n",
            self.sources.wakeups(),
            crate::logging::lines(),
        );
        let dropped = self.listeners.dropped();
        if !dropped.is_empty() {
            let _ = write!(
                out,
                "# HELP sup_listener_events_dropped_total Events an event listener was not sent: \
                 its buffer was full.\n# TYPE sup_listener_events_dropped_total counter\n"
            );
            for (label, n) in dropped {
                let _ = writeln!(
                    out,
                    "sup_listener_events_dropped_total{{listener=\"{}\"}} {n}",
                    escape(&label)
                );
            }
        }
        if let Some((_, bytes)) = procfs::usage(std::process::id()) {
            let _ = write!(
                out,
                "# HELP sup_daemon_memory_rss_bytes Resident memory of the daemon.\n\
                 # TYPE sup_daemon_memory_rss_bytes gauge\nsup_daemon_memory_rss_bytes {bytes}\n"
            );
        }
        let _ = write!(
            out,
            "# HELP sup_build_info The running sup's version.\n# TYPE sup_build_info gauge\n\
             sup_build_info{{version=\"{}\"}} 1\n",
            escape(env!("CARGO_PKG_VERSION"))
        );
        out
    }
}

/// One accept: a connection, nothing waiting (`None`), or an error other than an interrupt.
fn accept(
    listener: &TcpListener,
) -> std::io::Result<Option<(mio::net::TcpStream, std::net::SocketAddr)>> {
    loop {
        match listener.accept() {
            Ok(c) => return Ok(Some(c)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // The peer gave up before we took it: nothing to serve, keep accepting.
            Err(e) if e.raw_os_error() == Some(nix::libc::ECONNABORTED) => {}
            Err(e) => return Err(e),
        }
    }
}

/// A label value as the exposition format writes it: backslash, double quote and newline
/// escaped.
pub(super) fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{conn_limit, escape, MAX_CONNS};

    #[test]
    fn http_connections_take_at_most_a_quarter_of_the_descriptors() {
        assert_eq!(conn_limit(64), 16);
        assert_eq!(conn_limit(8), 4, "never fewer than a few");
        assert_eq!(conn_limit(1024), MAX_CONNS);
        assert_eq!(conn_limit(u64::MAX), MAX_CONNS);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("web:0"), "web:0");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
