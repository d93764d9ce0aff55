//! Tests for the tick arithmetic on a fake pair of clocks: one `Instant` and one UTC time,
//! moved forward together (or apart, for a clock jump or a suspend).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::*;
use crate::config::{AutoRestart, Catchup, FirstRun, ProgramSpec, Schedule};

fn spec(schedule: Schedule, tz: Option<&str>) -> ProgramSpec {
    ProgramSpec {
        autorestart: AutoRestart::Never,
        schedule: Some(schedule),
        timezone: tz.map(str::to_string),
        ..ProgramSpec::for_tests("job", &["true"])
    }
}

fn cron(expr: &str, tz: &str) -> ProgramSpec {
    spec(Schedule::Cron(expr.into()), Some(tz))
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("a valid RFC 3339 time")
        .with_timezone(&Utc)
}

/// A fake pair of clocks.
struct Clock {
    now: Clocks,
}

impl Clock {
    fn new(wall: &str) -> Clock {
        Clock {
            now: Clocks {
                mono: Instant::now(),
                wall: utc(wall),
            },
        }
    }

    /// Both clocks move together.
    fn advance(&mut self, d: Duration) {
        self.now.mono += d;
        self.now.wall += chrono::Duration::from_std(d).expect("small");
    }

    /// Move both clocks to the monotonic instant `at` (a deadline the loop waits for).
    fn until(&mut self, at: Instant) {
        let d = at.saturating_duration_since(self.now.mono);
        self.advance(d);
    }
}

/// Feed ticks at every deadline until the wall clock passes `end`; the wall times of the
/// outcomes that are not `Wait`.
fn run_until(t: &mut Ticker, clock: &mut Clock, end: &str) -> Vec<(DateTime<Utc>, Outcome)> {
    let end = utc(end);
    let mut seen = Vec::new();
    while let Some(at) = t.at {
        clock.until(at);
        if clock.now.wall > end {
            break;
        }
        let o = t.tick(clock.now, 0);
        if o != Outcome::Wait {
            seen.push((clock.now.wall, o));
        }
    }
    seen
}

fn runs(seen: &[(DateTime<Utc>, Outcome)]) -> Vec<String> {
    seen.iter()
        .map(|(w, o)| match o {
            Outcome::Run => w.to_rfc3339(),
            other => format!("{} {other:?}", w.to_rfc3339()),
        })
        .collect()
}

// --- intervals ---

#[test]
fn interval_drift_over_ten_thousand_ticks_is_zero() {
    let every = Duration::from_millis(7300);
    let s = spec(Schedule::Every(every), None);
    let mut clock = Clock::new("2026-01-01T00:00:00Z");
    let t0 = clock.now.mono;
    let (mut t, first) = Ticker::arm(&s, clock.now, 0, None).expect("arms");
    assert_eq!(first, Outcome::Wait);
    let mut lateness = 12345u64;
    for k in 1..=10_000u32 {
        let at = t.at.expect("a next tick");
        assert_eq!(at, t0 + every * k, "tick {k}");
        // The loop wakes late by a varying amount (under one interval) and runs take time.
        lateness = lateness
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        clock.until(at);
        clock.advance(Duration::from_micros((lateness >> 33) % 7_000_000));
        assert_eq!(t.tick(clock.now, 0), Outcome::Run, "tick {k}");
    }
    assert_eq!(t.at, Some(t0 + every * 10_001));
}

#[test]
fn an_early_wake_does_not_tick() {
    let s = spec(Schedule::Every(Duration::from_secs(10)), None);
    let mut clock = Clock::new("2026-01-01T00:00:00Z");
    let (mut t, _) = Ticker::arm(&s, clock.now, 0, None).expect("arms");
    clock.advance(Duration::from_millis(9999));
    assert_eq!(t.tick(clock.now, 0), Outcome::Wait);
    clock.advance(Duration::from_millis(1));
    assert_eq!(t.tick(clock.now, 0), Outcome::Run);
}

#[test]
fn a_loop_that_comes_late_runs_one_tick_not_a_backlog() {
    let every = Duration::from_secs(1);
    let s = spec(Schedule::Every(every), None);
    let mut clock = Clock::new("2026-01-01T00:00:00Z");
    let t0 = clock.now.mono;
    let (mut t, _) = Ticker::arm(&s, clock.now, 0, None).expect("arms");
    clock.advance(Duration::from_millis(5500));
    assert_eq!(t.tick(clock.now, 0), Outcome::Run);
    // Ticks 2 to 5 are gone; the grid keeps its phase.
    assert_eq!(t.at, Some(t0 + every * 6));
    assert_eq!(t.tick(clock.now, 0), Outcome::Wait);
}

#[test]
fn first_run_now_ticks_at_once_then_on_the_grid() {
    let mut s = spec(Schedule::Every(Duration::from_secs(60)), None);
    s.sched.first_run = FirstRun::Now;
    let clock = Clock::new("2026-01-01T00:00:00Z");
    let (t, first) = Ticker::arm(&s, clock.now, 0, None).expect("arms");
    assert_eq!(first, Outcome::Run);
    assert_eq!(t.at, Some(clock.now.mono + Duration::from_secs(60)));
}

#[test]
fn jitter_delays_each_tick_within_bounds_and_keeps_the_grid() {
    let every = Duration::from_secs(60);
    let mut s = spec(Schedule::Every(every), None);
    s.sched.jitter = Duration::from_secs(10);
    let mut clock = Clock::new("2026-01-01T00:00:00Z");
    let t0 = clock.now.mono;
    let (mut t, _) = Ticker::arm(&s, clock.now, 3_000_000_000, None).expect("arms");
    assert_eq!(t.at, Some(t0 + every + Duration::from_secs(3)));
    for (k, roll) in (2u32..50).zip([7u64, 10_000_000_000, 0, u64::MAX].into_iter().cycle()) {
        clock.until(t.at.expect("next"));
        assert_eq!(t.tick(clock.now, roll), Outcome::Run);
        let at = t.at.expect("next");
        let nominal = t0 + every * k;
        assert!(
            at >= nominal && at <= nominal + Duration::from_secs(10),
            "tick {k}"
        );
    }
    assert_eq!(
        jitter(Duration::from_secs(10), 10_000_000_000),
        Duration::from_secs(10)
    );
    assert_eq!(jitter(Duration::ZERO, 12345), Duration::ZERO);
}

// --- cron ---

#[test]
fn cron_runs_at_the_wall_clock_minute() {
    let s = cron("*/15 9-10 * * mon-fri", "UTC");
    // A Friday.
    let mut clock = Clock::new("2026-01-02T08:50:00Z");
    let (mut t, _) = Ticker::arm(&s, clock.now, 0, None).expect("arms");
    assert_eq!(t.next_run(clock.now), Some(utc("2026-01-02T09:00:00Z")));
    let seen = run_until(&mut t, &mut clock, "2026-01-05T09:20:00Z");
    assert_eq!(
        runs(&seen),
        [
            "2026-01-02T09:00:00+00:00",
            "2026-01-02T09:15:00+00:00",
            "2026-01-02T09:30:00+00:00",
            "2026-01-02T09:45:00+00:00",
            "2026-01-02T10:00:00+00:00",
            "2026-01-02T10:15:00+00:00",
            "2026-01-02T10:30:00+00:00",
            "2026-01-02T10:45:00+00:00",
            "2026-01-05T09:00:00+00:00",
            "2026-01-05T09:15:00+00:00",
        ]
    );
}

#[test]
fn a_cron_deadline_is_never_more_than_a_check_in_away() {
    let s = cron("@daily", "UTC");
    let clock = Clock::new("2026-01-02T08:50:00Z");
    let (t, _) = Ticker::arm(&s, clock.now, 0, None).expect("arms");
    assert_eq!(t.at, Some(clock.now.mono + CHECK_IN));
    assert_eq!(t.next_run(clock.now), Some(utc("2026-01-03T00:00:00Z")));
}

#[test]
fn spring_forward_in_paris_runs_a_0230_job_once_at_0300() {
    // 2026-03-29: at 02:00 CET clocks go to 03:00 CEST; 02:30 does not exist.
    let s = cron("30 2 * * *", "Europe/Paris");
    let mut clock = Clock::new("2026-03-28T12:00:00Z");
    let (mut t, _) = Ticker::arm(&s, clock.now, 0, None).expect("arms");
    let seen = run_until(&mut t, &mut clock, "2026-03-31T12:00:00Z");
    assert_eq!(
        runs(&seen),
        [
            "2026-03-29T01:00:00+00:00", // 03:00 CEST, the end of the gap
            "2026-03-30T00:30:00+00:00", // 02:30 CEST
            "2026-03-31T00:30:00+00:00",
        ]
    );
}

#[test]
fn spring_forward_folds_every_time_in_the_gap_into_one_run() {
    let s = cron("*/30 * * * *", "Europe/Paris");
    let mut clock = Clock::new("2026-03-29T00:10:00Z"); // 01:10 CET
    let (mut t, _) = Ticker::arm(&s, clock.now, 0, None).expect("arms");
    let seen = run_until(&mut t, &mut clock, "2026-03-29T01:40:00Z");
    assert_eq!(
        runs(&seen),
        [
            "2026-03-29T00:30:00+00:00", // 01:30 CET
            "2026-03-29T01:00:00+00:00", // 02:00 and 02:30 (gap) and 03:00 CEST: one run
            "2026-03-29T01:30:00+00:00", // 03:30 CEST
        ]
    );
}

#[test]
fn fall_back_in_paris_runs_a_job_in_the_repeated_hour_once() {
    // 2026-10-25: at 03:00 CEST clocks go back to 02:00 CET; 02:00-02:59 happens twice.
    let s = cron("30 2 * * *", "Europe/Paris");
    let mut clock = Clock::new("2026-10-24T12:00:00Z");
    let (mut t, _) = Ticker::arm(&s, clock.now, 0, None).expect("arms");
    let seen = run_until(&mut t, &mut clock, "2026-10-26T12:00:00Z");
    assert_eq!(
        runs(&seen),
        [
            "2026-10-25T00:30:00+00:00", // 02:30 CEST, the first of the two
            "2026-10-26T01:30:00+00:00", // 02:30 CET
        ]
    );
    // Armed inside the second pass of the fold, it does not run the first pass's times.
    let s = cron("*/20 * * * *", "Europe/Paris");
    let mut clock = Clock::new("2026-10-25T01:05:00Z"); // 02:05 CET, second pass
    let (mut t, _) = Ticker::arm(&s, clock.now, 0, None).expect("arms");
    let seen = run_until(&mut t, &mut clock, "2026-10-25T02:25:00Z");
    assert_eq!(
        runs(&seen),
        ["2026-10-25T02:00:00+00:00", "2026-10-25T02:20:00+00:00"]
    );
}

#[test]
fn spring_forward_in_new_york() {
    // 2026-03-08: 02:00 EST becomes 03:00 EDT.
    let s = cron("30 2 * * *", "America/New_York");
    let mut clock = Clock::new("2026-03-07T12:00:00Z");
    let (mut t, _) = Ticker::arm(&s, clock.now, 0, None).expect("arms");
    let seen = run_until(&mut t, &mut clock, "2026-03-09T12:00:00Z");
    assert_eq!(
        runs(&seen),
        [
            "2026-03-08T07:00:00+00:00", // 03:00 EDT
            "2026-03-09T06:30:00+00:00", // 02:30 EDT
        ]
    );
}

// --- clock jumps ---

#[test]
fn a_forward_jump_is_noticed_within_a_check_in_and_fires_no_backlog() {
    let s = cron("0 * * * *", "UTC");
    let mut clock = Clock::new("2026-01-01T10:10:00Z");
    let (mut t, _) = Ticker::arm(&s, clock.now, 0, None).expect("arms");
    clock.until(t.at.expect("a check-in"));
    // Someone runs `date -s` three hours ahead.
    clock.now.wall += chrono::Duration::hours(3);
    assert_eq!(
        t.tick(clock.now, 0),
        Outcome::Missed {
            due: utc("2026-01-01T11:00:00Z"),
            run: false
        }
    );
    assert_eq!(t.next_run(clock.now), Some(utc("2026-01-01T14:00:00Z")));
    let seen = run_until(&mut t, &mut clock, "2026-01-01T15:30:00Z");
    assert_eq!(
        runs(&seen),
        ["2026-01-01T14:00:00+00:00", "2026-01-01T15:00:00+00:00"]
    );
}

#[test]
fn a_suspend_fires_no_backlog_and_catchup_once_runs_one() {
    for (catchup, run) in [(Catchup::None, false), (Catchup::Once, true)] {
        let mut s = cron("*/5 * * * *", "UTC");
        s.sched.catchup = catchup;
        let mut clock = Clock::new("2026-01-01T10:01:00Z");
        let (mut t, _) = Ticker::arm(&s, clock.now, 0, None).expect("arms");
        // The machine sleeps eight hours: the monotonic clock stands still.
        clock.now.wall += chrono::Duration::hours(8);
        clock.until(t.at.expect("a deadline"));
        assert_eq!(
            t.tick(clock.now, 0),
            Outcome::Missed {
                due: utc("2026-01-01T10:05:00Z"),
                run
            }
        );
        assert_eq!(t.tick(clock.now, 0), Outcome::Wait);
        assert_eq!(t.next_run(clock.now), Some(utc("2026-01-01T18:05:00Z")));
    }
}

#[test]
fn a_small_jump_past_a_tick_still_runs_it_late() {
    let s = cron("0 * * * *", "UTC");
    let mut clock = Clock::new("2026-01-01T10:59:30Z");
    let (mut t, _) = Ticker::arm(&s, clock.now, 0, None).expect("arms");
    clock.now.wall += chrono::Duration::seconds(40);
    clock.until(t.at.expect("deadline"));
    assert_eq!(t.tick(clock.now, 0), Outcome::Run);
}

#[test]
fn a_clock_set_back_reruns_nothing() {
    let s = cron("0 * * * *", "UTC");
    let mut clock = Clock::new("2026-01-01T10:59:00Z");
    let (mut t, _) = Ticker::arm(&s, clock.now, 0, None).expect("arms");
    let seen = run_until(&mut t, &mut clock, "2026-01-01T11:00:30Z");
    assert_eq!(runs(&seen), ["2026-01-01T11:00:00+00:00"]);
    clock.now.wall -= chrono::Duration::hours(1); // 10:00:30 again
    let seen = run_until(&mut t, &mut clock, "2026-01-01T12:00:30Z");
    assert_eq!(runs(&seen), ["2026-01-01T12:00:00+00:00"]);
}

#[test]
fn catchup_once_runs_a_tick_missed_while_down() {
    let mut s = cron("0 2 * * *", "UTC");
    let clock = Clock::new("2026-01-01T03:00:00Z");
    let last = Some(utc("2026-01-01T01:00:00Z"));
    let (_, o) = Ticker::arm(&s, clock.now, 0, last).expect("arms");
    assert_eq!(o, Outcome::Wait, "catchup: none");
    s.sched.catchup = Catchup::Once;
    let (t, o) = Ticker::arm(&s, clock.now, 0, last).expect("arms");
    assert_eq!(
        o,
        Outcome::Missed {
            due: utc("2026-01-01T02:00:00Z"),
            run: true
        }
    );
    assert_eq!(t.last_tick, Some(clock.now.wall));
    // Nothing was missed when the last tick is after the due time.
    let (_, o) = Ticker::arm(&s, clock.now, 0, Some(utc("2026-01-01T02:30:00Z"))).expect("arms");
    assert_eq!(o, Outcome::Wait);
}

#[test]
fn a_pattern_that_never_matches_has_no_deadline() {
    let s = cron("0 0 30 2 *", "UTC");
    let clock = Clock::new("2026-01-01T00:00:00Z");
    let (t, _) = Ticker::arm(&s, clock.now, 0, None).expect("arms");
    assert_eq!(t.at, None);
    assert_eq!(t.next_run(clock.now), None);
}

#[test]
fn an_unknown_zone_is_an_error_not_a_panic() {
    let s = cron("0 0 * * *", "Mars/Olympus");
    let clock = Clock::new("2026-01-01T00:00:00Z");
    assert!(Ticker::arm(&s, clock.now, 0, None).is_err());
}
