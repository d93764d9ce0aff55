//! The loop's side of event listeners (`listen.rs`): events and health changes handed over,
//! their stdins put on and taken off the poll, their deadlines armed, their children reaped.

use std::os::fd::RawFd;
use std::time::Instant;

use super::{Daemon, InstId, Source, TimerKey};
use crate::config::spec::ListenerSpec;
use crate::core::event::Event;
use crate::core::health::Status;
use crate::core::ExitStatus;
use crate::daemon::notify::{event_name, Report};

/// A listener's stdin while bytes wait for it: on the poll for writable readiness.
pub(in crate::daemon) struct ListenerPipe {
    pub(super) serial: u64,
    pub(super) fd: RawFd,
}

impl Daemon {
    /// Start (at start-up) or change (at a reload) the listeners.
    pub(super) fn configure_listeners(&mut self, specs: &[ListenerSpec], now: Instant) {
        self.listeners.configure(specs, &mut self.pids, now);
        self.sync_listeners();
    }

    /// An instance logged `event`: every listener that asked for it gets its line.
    pub(super) fn listen_event(&mut self, id: InstId, event: &Event) {
        let Some(kind) = event_name(event) else {
            return;
        };
        let Some(inst) = self.sup.get(id) else {
            return;
        };
        let is_exit = matches!(event, Event::Exited { .. } | Event::RunFinished { .. });
        let report = Report::of(inst.core(), event, kind, self.notifier.host());
        self.listeners.deliver(&report, is_exit);
        self.sync_listeners();
    }

    /// An instance's health check status changed to `status`.
    pub(super) fn listen_health(&mut self, id: InstId, status: Status, why: &str) {
        if status == Status::Starting {
            return;
        }
        let Some(inst) = self.sup.get(id) else {
            return;
        };
        let core = inst.core();
        let name = core.name().to_string();
        let report = Report {
            event: "health".into(),
            message: match status {
                Status::Unhealthy => format!("{name} unhealthy: {why}"),
                _ => format!("{name} {}", status.as_str()),
            },
            instance: name,
            program: core.program().to_string(),
            exit_code: core.last_exit(),
            reason: if status == Status::Unhealthy {
                why.to_string()
            } else {
                String::new()
            },
            host: self.notifier.host().to_string(),
            at: crate::logging::timestamp(),
        };
        self.listeners.deliver(&report, false);
        self.sync_listeners();
    }

    pub(super) fn listener_writable(&mut self, slot: usize) {
        let Some(Source::Listener(p)) = self.sources.get(slot) else {
            return;
        };
        let serial = p.serial;
        self.listeners.writable(serial);
        self.sync_listeners();
    }

    pub(super) fn listener_reaped(&mut self, pid: u32, status: ExitStatus, now: Instant) {
        self.listeners.reaped(pid, status, &mut self.pids, now);
        self.sync_listeners();
    }

    pub(super) fn listeners_due(&mut self, at: Instant, now: Instant) {
        self.listeners.due(at, &mut self.pids, now);
        self.sync_listeners();
    }

    /// The shutdown: true once every listener is stopped (the first call stops them).
    pub(super) fn listeners_stopped(&mut self, now: Instant) -> bool {
        if !self.listeners.is_stopping() {
            self.listeners.stop_all(now);
            self.sync_listeners();
        }
        self.listeners.all_gone(now)
    }

    /// Carry out what the listeners want of the poll and the heap.
    fn sync_listeners(&mut self) {
        let sync = self.listeners.sync();
        // Off the poll before the descriptor closes: its number may be reused at once.
        for slot in sync.release {
            self.sources.remove(slot);
        }
        drop(sync.close);
        for (serial, fd) in sync.add {
            match self
                .sources
                .add(Source::Listener(ListenerPipe { serial, fd }))
            {
                Ok(slot) => self.listeners.registered(serial, slot),
                Err(e) => log::error!("unable to watch a listener's stdin: {e}"),
            }
        }
        if let Some(at) = self.listeners.arm() {
            self.sup.push_timer(at, TimerKey::Listeners);
        }
    }
}
