//! Restart delays. Two rules, both pure:
//!
//! - A failed start (the process died before `starttime`, or could not be spawned) waits
//!   1 s, 2 s, 4 s … before the next try, capped at 60 s; after more than `startretries` such
//!   failures in a row the instance is `fatal`.
//! - A crash after a successful start restarts at once the first time. If the run before it
//!   was not stable (shorter than `stable_after`), each further crash waits 1 s, 2 s, 4 s …
//!   capped at 60 s. A stable run resets the streak, so a service that crashes once a day is
//!   always restarted at once, and a crash loop costs at most one spawn a minute.

use std::time::Duration;

pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// A run at least this long counts as stable: `starttime`, but never less than 10 s.
pub fn stable_after(starttime: Duration) -> Duration {
    starttime.max(Duration::from_secs(10))
}

/// `2^(n-1)` seconds, capped at `MAX_DELAY`; `n` ≥ 1.
fn exponential(n: u32) -> Duration {
    let exp = n.saturating_sub(1).min(6);
    Duration::from_secs(1u64 << exp).min(MAX_DELAY)
}

/// The wait after the `failed`-th failed start in a row (1-based).
pub fn start_delay(failed: u32) -> Duration {
    exponential(failed.max(1))
}

/// The wait before retrying a spawn the daemon had to defer for want of its own resources
/// (the `n`-th in a row, 1-based): 100 ms doubling to 5 s, quick since the job is not at fault.
pub fn deferred_delay(n: u32) -> Duration {
    let exp = n.saturating_sub(1).min(6);
    (Duration::from_millis(100) * (1u32 << exp)).min(Duration::from_secs(5))
}

/// The wait before restarting after a crash, given the crashes since the last stable run
/// (`streak` = 0 for the first one): `None` means restart at once.
pub fn crash_delay(streak: u32) -> Option<Duration> {
    if streak == 0 {
        None
    } else {
        Some(exponential(streak))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_delays_double_up_to_a_minute() {
        let secs: Vec<u64> = (1..=9).map(|n| start_delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn first_crash_restarts_at_once_then_doubles() {
        assert_eq!(crash_delay(0), None);
        assert_eq!(crash_delay(1), Some(Duration::from_secs(1)));
        assert_eq!(crash_delay(2), Some(Duration::from_secs(2)));
        assert_eq!(crash_delay(3), Some(Duration::from_secs(4)));
        assert_eq!(crash_delay(40), Some(MAX_DELAY));
    }

    #[test]
    fn stable_is_at_least_ten_seconds() {
        assert_eq!(
            stable_after(Duration::from_millis(200)),
            Duration::from_secs(10)
        );
        assert_eq!(
            stable_after(Duration::from_secs(30)),
            Duration::from_secs(30)
        );
    }
}
