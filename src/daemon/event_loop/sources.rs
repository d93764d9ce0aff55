//! Everything on the poll besides the signalfd and the listener: a slab of typed sources
//! (child pipes, clients, exec-status pipes, readiness and probe sockets, HTTP listeners and
//! connections, event listeners' stdins while bytes wait for them), each registered
//! under its slot's token, and the slots whose budget ran out last turn ("hot").
//!
//! It owns registration: `add` registers a source or gives it back dropped (a half-added
//! source cannot linger), `remove` deregisters before handing it back. What a removed source
//! meant to the rest of the daemon (a client count, a follower list) is the caller's.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};

use super::readiness::HealthSource;
use super::Source;
use crate::daemon::http::HttpSource;

/// Tokens below this are the fixed sources (the signalfd, the listener).
pub(super) const FIRST_SLOT: usize = 2;

pub(in crate::daemon) struct Sources {
    poll: Poll,
    slots: Vec<Option<Source>>,
    free: Vec<usize>,
    /// Output sources and clients whose budget ran out last turn: served again without
    /// waiting.
    hot: Vec<usize>,
    /// Returns from `poll`, for `/metrics`.
    wakeups: u64,
}

impl Sources {
    pub(in crate::daemon) fn new(poll: Poll) -> Sources {
        Sources {
            poll,
            slots: Vec::new(),
            free: Vec::new(),
            hot: Vec::new(),
            wakeups: 0,
        }
    }

    /// How many times `poll` has returned since the start.
    pub(in crate::daemon) fn wakeups(&self) -> u64 {
        self.wakeups
    }

    /// Wait for readiness; a source still hot means no waiting at all.
    pub(in crate::daemon) fn poll(
        &mut self,
        events: &mut Events,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let timeout = if self.hot.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        let polled = self.poll.poll(events, timeout);
        self.wakeups += 1;
        polled
    }

    /// The slot a token of the poll stands for.
    pub(in crate::daemon) fn slot_of(token: Token) -> Option<usize> {
        token.0.checked_sub(FIRST_SLOT)
    }

    /// Put `source` on the poll. On failure it is deregistered and dropped (closing its
    /// descriptor), and the error returned.
    pub(in crate::daemon) fn add(&mut self, source: Source) -> io::Result<usize> {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        let mut source = source;
        let token = Token(slot + FIRST_SLOT);
        if let Err(e) = source.register(self.poll.registry(), token) {
            source.deregister(self.poll.registry());
            self.free.push(slot);
            return Err(e);
        }
        self.slots[slot] = Some(source);
        Ok(slot)
    }

    pub(in crate::daemon) fn get(&self, slot: usize) -> Option<&Source> {
        self.slots.get(slot)?.as_ref()
    }

    pub(in crate::daemon) fn get_mut(&mut self, slot: usize) -> Option<&mut Source> {
        self.slots.get_mut(slot)?.as_mut()
    }

    /// Take `slot` off the poll and give its source back.
    pub(in crate::daemon) fn remove(&mut self, slot: usize) -> Option<Source> {
        let mut source = self.slots.get_mut(slot)?.take()?;
        source.deregister(self.poll.registry());
        self.hot.retain(|&s| s != slot);
        self.free.push(slot);
        Some(source)
    }

    /// Serve `slot` again next turn without waiting for the poll.
    pub(in crate::daemon) fn keep_hot(&mut self, slot: usize) {
        if !self.hot.contains(&slot) {
            self.hot.push(slot);
        }
    }

    pub(in crate::daemon) fn take_hot(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.hot)
    }

    /// How many slots the slab has, free ones included.
    pub(in crate::daemon) fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Drop the free slots at the end of the slab and the spare capacity (a start burst's
    /// exec pipes leave a free slot each). The slots left keep their numbers.
    pub(in crate::daemon) fn compact(&mut self) {
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        let len = self.slots.len();
        self.free.retain(|&slot| slot < len);
        self.slots.shrink_to_fit();
        self.free.shrink_to_fit();
    }

    /// The slots holding child output.
    pub(in crate::daemon) fn captures(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&s| matches!(self.slots[s], Some(Source::Capture(_))))
            .collect()
    }
}

impl Source {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            Source::Capture(c) => registry.register(
                &mut SourceFd(&c.capture.fd().as_raw_fd()),
                token,
                Interest::READABLE,
            ),
            Source::Exec(e) => {
                registry.register(&mut SourceFd(&e.fd.as_raw_fd()), token, Interest::READABLE)
            }
            Source::Client(c) => registry.register(
                &mut c.conn.stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            ),
            Source::Health(h) => h.register(registry, token),
            Source::Http(HttpSource::Listener { listener, .. }) => {
                registry.register(listener, token, Interest::READABLE)
            }
            Source::Http(HttpSource::Conn(c)) => registry.register(
                &mut c.stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            ),
            Source::Listener(p) => {
                registry.register(&mut SourceFd(&p.fd), token, Interest::WRITABLE)
            }
        }
    }

    fn deregister(&mut self, registry: &Registry) {
        match self {
            Source::Capture(c) => {
                let _ = registry.deregister(&mut SourceFd(&c.capture.fd().as_raw_fd()));
            }
            Source::Exec(e) => {
                let _ = registry.deregister(&mut SourceFd(&e.fd.as_raw_fd()));
            }
            Source::Client(c) => {
                let _ = registry.deregister(&mut c.conn.stream);
            }
            Source::Health(h) => h.deregister(registry),
            Source::Http(HttpSource::Listener { listener, .. }) => {
                let _ = registry.deregister(listener);
            }
            Source::Http(HttpSource::Conn(c)) => {
                let _ = registry.deregister(&mut c.stream);
            }
            Source::Listener(p) => {
                let _ = registry.deregister(&mut SourceFd(&p.fd));
            }
        }
    }
}

impl HealthSource {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            HealthSource::Notify { socket, .. } => {
                registry.register(&mut socket.socket, token, Interest::READABLE)
            }
            HealthSource::ReadyPipe { fd, .. } => {
                registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)
            }
            HealthSource::Probe { conn, .. } => registry.register(
                &mut conn.stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            ),
        }
    }
}
