//! The loop's side of scheduled jobs: feeding `Tick`s with both clocks, status fields, the
//! state file's `last_tick`. A reload keeps an instance (and so its phase) when its schedule
//! keys did not change.
//!
//! The arithmetic is `core::schedule`'s and the transitions are `core::instance`'s; this file
//! only reads the wall clock, draws the jitter roll, and converts times for the wire. Each
//! instance has one tick deadline (`Instance::tick_at`), kept in the heap under
//! `TimerKey::Tick` beside its process deadline (`TimerKey::Instance`): a tick needs the wall
//! clock and a roll, which a plain deadline does not carry.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};

use super::{Daemon, Inputs, InstId};
use crate::control::proto::RunStatus;
use crate::core::schedule::Clocks;
use crate::core::{Input, Instance};

impl Daemon {
    /// Arm a scheduled instance just created (start-up, or a program a reload added), with the
    /// last tick a previous daemon recorded (RFC 3339) for `catchup: once`. Jobs without a
    /// schedule, and instances an operator stopped, are left alone.
    pub(super) fn arm_schedule(&mut self, id: InstId, last_tick: Option<&str>) -> Inputs {
        let Some(inst) = self.sup.get_mut(id) else {
            return Vec::new();
        };
        if inst.spec.schedule.is_none() || !inst.spec.autostart {
            return Vec::new();
        }
        let last = last_tick
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        inst.restore_last_tick(last);
        vec![tick(id)]
    }

    /// A `TimerKey::Tick` entry came due: feed the tick unless the entry is stale.
    pub(super) fn fire_tick(&self, id: InstId, at: Instant) -> Inputs {
        if self.sup.tick_due(id, at) {
            vec![tick(id)]
        } else {
            Vec::new()
        }
    }

    /// `next_run` for `status`: RFC 3339, or `None` for a job with no armed schedule.
    pub(super) fn next_run_of(&self, id: InstId, now: Instant) -> Option<String> {
        let inst = self.sup.get(id)?;
        let wall = Utc::now();
        let at = inst.core().next_run(Clocks { mono: now, wall })?;
        Some(rfc3339(at))
    }

    /// The last runs for `status`, with each start turned into a wall-clock time.
    pub(super) fn history_of(&self, id: InstId, now: Instant) -> Vec<RunStatus> {
        let Some(inst) = self.sup.get(id).filter(|i| !i.core().history().is_empty()) else {
            return Vec::new();
        };
        let wall = Utc::now();
        inst.core()
            .history()
            .iter()
            .map(|r| {
                let ago = now.saturating_duration_since(r.started);
                let started = chrono::Duration::from_std(ago)
                    .ok()
                    .and_then(|d| wall.checked_sub_signed(d))
                    .unwrap_or(wall);
                RunStatus {
                    started: rfc3339(started),
                    duration_s: (r.duration.as_secs_f64() * 1000.0).round() / 1000.0,
                    exit: r.exit,
                }
            })
            .collect()
    }
}

/// A tick for `id`, with the wall clock and a roll for jitter.
fn tick(id: InstId) -> (InstId, Input) {
    let input = Input::Tick {
        wall: Utc::now(),
        roll: roll(),
    };
    (id, input)
}

/// What the state file records as an instance's last tick (RFC 3339).
pub(super) fn last_tick(core: &Instance) -> Option<String> {
    core.last_tick().map(rfc3339)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono::Local)
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// A random number for jitter, without a dependency: std's per-process random hash keys,
/// over a counter so successive draws differ.
fn roll() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}
