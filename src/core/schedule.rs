//! When a scheduled job's ticks come: pure arithmetic over two clocks the loop passes in.
//!
//! The loop reads both clocks once per turn and hands them over as `Clocks`: the monotonic
//! instant (what deadlines are made of) and the wall-clock time (what cron and RFC 3339 speak).
//! Nothing here reads a clock or draws a random number: jitter comes in as a `roll` the loop
//! drew, so tests replay any sequence.
//!
//! The rules, each with its reason:
//!
//! - **Interval** (`every 5m`): tick k is due at `first + k × interval` on the monotonic clock,
//!   `first` being when the schedule was armed. A late wake-up or a long run never shifts the
//!   ticks after it (no drift). When the loop comes so late that later ticks are already past,
//!   they are dropped and the next one is the first still in the future (no backlog). The
//!   monotonic clock stops while the machine sleeps, so intervals count time awake.
//! - **Jitter**: each tick is delayed by `roll mod (jitter + 1ns)`, drawn anew per tick; the
//!   nominal grid above is unchanged by it.
//! - **Cron**: the next tick is a wall-clock time in the job's zone, turned into a deadline as
//!   `now_mono + (next_wall - now_wall)`. Since the wall clock can jump (`date -s`, NTP step,
//!   resume from suspend) without the monotonic clock noticing, a cron deadline is never more
//!   than `CHECK_IN` (60 s) away: at each check-in the distance is recomputed from the wall
//!   clock, so a jump is noticed within a minute. A tick fires when the wall clock has reached
//!   it; one noticed more than `LATE_LIMIT` (90 s) late was **missed** (the clock jumped
//!   forward, the machine slept, the daemon was down): it runs once if `catchup: once`, else
//!   not at all. Either way the next tick is the first one after the current wall time: never
//!   a backlog. A clock set back re-runs nothing: the pending tick stays the one that was due.
//! - **DST, spring forward**: a local time that does not exist that day (02:30 when clocks go
//!   from 02:00 to 03:00) runs once, at the first minute after the gap (03:00). Several such
//!   times fold into that one run.
//! - **DST, fall back**: a local time that happens twice (01:30 when clocks go from 03:00 back
//!   to 02:00 … in Paris, 02:30) runs once, at its first occurrence. During the repeated hour
//!   nothing that already ran runs again.

use std::time::{Duration, Instant};

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use croner::Cron;

use crate::config::{Catchup, FirstRun, ProgramSpec, Schedule};

/// The longest a cron deadline sleeps before re-checking the wall clock.
pub const CHECK_IN: Duration = Duration::from_secs(60);
/// A cron tick noticed later than this was missed rather than late.
pub const LATE_LIMIT: Duration = Duration::from_secs(90);
/// How many candidate times a search looks at before it gives up (a pattern that never
/// matches, such as 30 February, or a zone that skips a whole day).
const MAX_CANDIDATES: usize = 4096;

/// Both clocks, read together by the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clocks {
    pub mono: Instant,
    pub wall: DateTime<Utc>,
}

/// The zone a cron expression is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The daemon's local zone (`TZ`, else /etc/localtime).
    Local,
    Named(chrono_tz::Tz),
}

impl Zone {
    pub fn parse(name: Option<&str>) -> Result<Zone, String> {
        match name {
            None => Ok(Zone::Local),
            Some(n) => n
                .parse::<chrono_tz::Tz>()
                .map(Zone::Named)
                .map_err(|_| format!("unknown time zone {n:?}")),
        }
    }
}

/// What a tick means for the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing is due (an early wake-up, a check-in, a clock set back).
    Wait,
    /// A tick is due: run (or apply the overlap policy).
    Run,
    /// The tick due at `due` was missed; `run` says whether to run once now (`catchup`).
    Missed { due: DateTime<Utc>, run: bool },
}

#[derive(Debug, Clone)]
enum Plan {
    Every(Duration),
    Cron(Box<Cron>, Zone),
}

#[derive(Debug, Clone, Copy)]
enum Next {
    /// Tick k of the grid started at `first`.
    Every { first: Instant, k: u64 },
    /// The nominal wall time and the time it is due with its jitter.
    Cron {
        nominal: DateTime<Utc>,
        due: DateTime<Utc>,
    },
    /// The pattern never matches again.
    Never,
}

/// One instance's schedule, armed.
#[derive(Debug, Clone)]
pub struct Ticker {
    plan: Plan,
    jitter: Duration,
    catchup: Catchup,
    next: Next,
    /// The monotonic instant at which the loop should feed the next tick.
    pub at: Option<Instant>,
    /// Ticks up to this wall time are accounted for (run, skipped or missed); the state file
    /// keeps it so that `catchup: once` can tell what a downtime missed.
    pub last_tick: Option<DateTime<Utc>>,
}

impl Ticker {
    /// Arm the schedule at `now`. `last_tick` is what a previous daemon recorded. The outcome
    /// says whether to run at once (`first_run: now`, or a cron tick missed while down).
    pub fn arm(
        spec: &ProgramSpec,
        now: Clocks,
        roll: u64,
        last_tick: Option<DateTime<Utc>>,
    ) -> Result<(Ticker, Outcome), String> {
        let Some(schedule) = &spec.schedule else {
            return Err("the job has no schedule".into());
        };
        let plan = match schedule {
            Schedule::Every(d) => Plan::Every(*d),
            Schedule::Cron(expr) => {
                let cron = Cron::new(expr)
                    .parse()
                    .map_err(|e| format!("invalid cron expression {expr:?}: {e}"))?;
                Plan::Cron(Box::new(cron), Zone::parse(spec.timezone.as_deref())?)
            }
        };
        let mut t = Ticker {
            plan,
            jitter: spec.sched.jitter,
            catchup: spec.sched.catchup,
            next: Next::Never,
            at: None,
            last_tick: Some(now.wall),
        };
        let mut outcome = match spec.sched.first_run {
            FirstRun::Now => Outcome::Run,
            FirstRun::AfterInterval => Outcome::Wait,
        };
        match &t.plan {
            Plan::Every(_) => {
                t.next = Next::Every {
                    first: now.mono,
                    k: 1,
                };
            }
            Plan::Cron(cron, zone) => {
                if let (Catchup::Once, Some(last), Outcome::Wait) = (t.catchup, last_tick, outcome)
                {
                    if let Some(due) = next_after(cron, *zone, last).filter(|d| *d <= now.wall) {
                        outcome = Outcome::Missed { due, run: true };
                    }
                }
                t.next = t.cron_after(now.wall, roll);
            }
        }
        t.rearm(now, roll);
        Ok((t, outcome))
    }

    /// The tick deadline came (or a check-in): decide, and arm the next one.
    pub fn tick(&mut self, now: Clocks, roll: u64) -> Outcome {
        match self.next {
            Next::Never => Outcome::Wait,
            Next::Every { first, k } => {
                let Some(due) = self.at else {
                    return Outcome::Wait;
                };
                if now.mono < due {
                    return Outcome::Wait;
                }
                let Plan::Every(every) = self.plan else {
                    return Outcome::Wait;
                };
                // The first grid point still in the future: ticks the loop came too late for
                // are dropped, never run as a backlog.
                let passed =
                    now.mono.saturating_duration_since(first).as_nanos() / every.as_nanos();
                let k = k.max(u64::try_from(passed).unwrap_or(u64::MAX).saturating_add(1));
                self.next = Next::Every { first, k };
                self.last_tick = Some(now.wall);
                self.rearm(now, roll);
                Outcome::Run
            }
            Next::Cron { nominal, due } => {
                if now.wall < due {
                    self.rearm(now, 0);
                    return Outcome::Wait;
                }
                let late = (now.wall - due).to_std().unwrap_or(Duration::ZERO);
                self.last_tick = Some(now.wall.max(nominal));
                self.next = self.cron_after(now.wall.max(nominal), roll);
                self.rearm(now, roll);
                if late <= LATE_LIMIT {
                    Outcome::Run
                } else {
                    Outcome::Missed {
                        due: nominal,
                        run: self.catchup == Catchup::Once,
                    }
                }
            }
        }
    }

    /// When the next tick is due, as a wall-clock time (for `status`).
    pub fn next_run(&self, now: Clocks) -> Option<DateTime<Utc>> {
        match self.next {
            Next::Never => None,
            Next::Every { .. } => {
                let left = self.at?.saturating_duration_since(now.mono);
                Some(now.wall + chrono::Duration::from_std(left).ok()?)
            }
            Next::Cron { due, .. } => Some(due),
        }
    }

    fn cron_after(&self, after: DateTime<Utc>, roll: u64) -> Next {
        let Plan::Cron(cron, zone) = &self.plan else {
            return Next::Never;
        };
        match next_after(cron, *zone, after) {
            Some(nominal) => {
                let offset = chrono::Duration::from_std(jitter(self.jitter, roll))
                    .unwrap_or(chrono::Duration::zero());
                Next::Cron {
                    nominal,
                    due: nominal + offset,
                }
            }
            None => Next::Never,
        }
    }

    /// Set `at` from `next` as seen at `now`.
    fn rearm(&mut self, now: Clocks, roll: u64) {
        self.at = match (self.next, &self.plan) {
            (Next::Never, _) => None,
            (Next::Every { first, k }, Plan::Every(every)) => {
                Some(grid(first, *every, k) + jitter(self.jitter, roll))
            }
            (Next::Every { .. }, Plan::Cron(..)) => None,
            (Next::Cron { due, .. }, _) => {
                let left = (due - now.wall).to_std().unwrap_or(Duration::ZERO);
                Some(now.mono + left.min(CHECK_IN))
            }
        };
    }
}

/// `first + k × every`, saturating a century out rather than overflowing.
fn grid(first: Instant, every: Duration, k: u64) -> Instant {
    let nanos = every.as_nanos().saturating_mul(u128::from(k));
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    let d = Duration::new(secs, (nanos % 1_000_000_000) as u32);
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    first
        .checked_add(d)
        .or_else(|| first.checked_add(CENTURY))
        .unwrap_or(first)
}

/// The delay a roll gives within `[0, jitter]`.
pub fn jitter(jitter: Duration, roll: u64) -> Duration {
    if jitter.is_zero() {
        return Duration::ZERO;
    }
    let span = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(roll % span.saturating_add(1))
}

/// The first tick of `cron` in `zone` strictly after `after`, with the DST rules of the module
/// doc. `None` when the pattern never matches again.
pub fn next_after(cron: &Cron, zone: Zone, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match zone {
        Zone::Local => next_in(cron, &chrono::Local, after),
        Zone::Named(tz) => next_in(cron, &tz, after),
    }
}

fn next_in<Tz: TimeZone>(cron: &Cron, tz: &Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut naive = after.with_timezone(tz).naive_local();
    for _ in 0..MAX_CANDIDATES {
        // croner walks the calendar as written when given UTC (which has no DST); turning the
        // local time it finds into an instant is ours to decide.
        let found = cron
            .find_next_occurrence(&Utc.from_utc_datetime(&naive), false)
            .ok()?
            .naive_utc();
        naive = found;
        let at = match tz.from_local_datetime(&found) {
            LocalResult::Single(t) => t.with_timezone(&Utc),
            // Fall back: the first of the two instants only.
            LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
            // Spring forward: the first minute after the gap.
            LocalResult::None => gap_end(tz, found)?,
        };
        if at > after {
            return Some(at);
        }
    }
    None
}

/// The first instant whose local time is after `naive`, a time that falls in a DST gap.
fn gap_end<Tz: TimeZone>(tz: &Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    (1..=48 * 60).find_map(|m| {
        match tz.from_local_datetime(&(naive + chrono::Duration::minutes(m))) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
            LocalResult::None => None,
        }
    })
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
