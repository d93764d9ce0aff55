//! Health-check results of one process: pass, ignored (grace), counted failure, or fault.
//!
//! The loop runs the probes and owns their timers; this is the counting, so the rules
//! (`start_period`, `retries`, `ready: health`, `on_unhealthy`) are tested without a probe.

use std::time::Instant;

use crate::config::spec::HealthCheck;
use crate::config::OnUnhealthy;

/// What `status` shows under `health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Starting,
    Healthy,
    Unhealthy,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Healthy => "healthy",
            Status::Unhealthy => "unhealthy",
        }
    }
}

/// What one check result means for the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Passed. `recovered`: it was not healthy before (worth a log line). `ready`: with
    /// `ready: health`, a starting process is now ready.
    Pass { recovered: bool, ready: bool },
    /// Failed inside the grace of a start: not counted.
    Grace { why: String },
    /// Failed and counted, not (yet, or again) enough to act on.
    Failed {
        failures: u32,
        retries: u32,
        why: String,
    },
    /// `retries` failures in a row: act as `on_unhealthy` says.
    Unhealthy {
        failures: u32,
        retries: u32,
        why: String,
        reason: String,
        then: OnUnhealthy,
    },
}

/// The count of one process's checks; a new one at each spawn.
#[derive(Debug, Clone)]
pub struct Checks {
    spawned_at: Instant,
    status: Status,
    failures: u32,
}

impl Checks {
    pub fn new(spawned_at: Instant) -> Checks {
        Checks {
            spawned_at,
            status: Status::Starting,
            failures: 0,
        }
    }

    pub fn status(&self) -> Status {
        self.status
    }

    /// Count one result. `ready_by_health`: the job has `ready: health`; `starting`: the
    /// instance is still starting.
    pub fn record(
        &mut self,
        check: &HealthCheck,
        ready_by_health: bool,
        starting: bool,
        result: Result<(), String>,
        now: Instant,
    ) -> Verdict {
        let why = match result {
            Ok(()) => {
                self.failures = 0;
                let recovered = self.status != Status::Healthy;
                self.status = Status::Healthy;
                return Verdict::Pass {
                    recovered,
                    ready: ready_by_health && starting,
                };
            }
            Err(why) => why,
        };
        // Before the first pass, failures inside `start_period` do not count; with
        // `ready: health` none count while starting: `ready_timeout` decides then.
        let grace = self.status == Status::Starting
            && (now.saturating_duration_since(self.spawned_at) < check.start_period
                || (ready_by_health && starting));
        if grace {
            return Verdict::Grace { why };
        }
        self.failures += 1;
        let (failures, retries) = (self.failures, check.retries);
        if failures < retries || self.status == Status::Unhealthy {
            return Verdict::Failed {
                failures,
                retries,
                why,
            };
        }
        self.status = Status::Unhealthy;
        Verdict::Unhealthy {
            failures,
            retries,
            reason: format!(
                "health check failed {failures} time{} in a row, last: {why}",
                if failures == 1 { "" } else { "s" }
            ),
            why,
            then: check.on_unhealthy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Probe;
    use std::time::Duration;

    fn check(retries: u32, start_period: u64) -> HealthCheck {
        HealthCheck {
            probe: Probe::Tcp("127.0.0.1:1".parse().expect("addr")),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            retries,
            start_period: Duration::from_secs(start_period),
            on_unhealthy: OnUnhealthy::Restart,
        }
    }

    fn fail() -> Result<(), String> {
        Err("refused".into())
    }

    #[test]
    fn failures_in_the_start_period_do_not_count_until_a_pass() {
        let t0 = Instant::now();
        let c = check(2, 10);
        let mut k = Checks::new(t0);
        let at = |s| t0 + Duration::from_secs(s);
        assert!(matches!(
            k.record(&c, false, false, fail(), at(1)),
            Verdict::Grace { .. }
        ));
        assert!(matches!(
            k.record(&c, false, false, fail(), at(9)),
            Verdict::Grace { .. }
        ));
        // Past the start period they count.
        assert!(matches!(
            k.record(&c, false, false, fail(), at(10)),
            Verdict::Failed {
                failures: 1,
                retries: 2,
                ..
            }
        ));
        match k.record(&c, false, false, fail(), at(11)) {
            Verdict::Unhealthy { reason, then, .. } => {
                assert_eq!(
                    reason,
                    "health check failed 2 times in a row, last: refused"
                );
                assert_eq!(then, OnUnhealthy::Restart);
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(k.status(), Status::Unhealthy);
        // Acted on once: more failures are only counted.
        assert!(matches!(
            k.record(&c, false, false, fail(), at(12)),
            Verdict::Failed { failures: 3, .. }
        ));
        assert_eq!(
            k.record(&c, false, false, Ok(()), at(13)),
            Verdict::Pass {
                recovered: true,
                ready: false
            }
        );
        assert_eq!(
            k.record(&c, false, false, Ok(()), at(14)),
            Verdict::Pass {
                recovered: false,
                ready: false
            }
        );
    }

    #[test]
    fn after_a_first_pass_the_start_period_no_longer_shields() {
        let t0 = Instant::now();
        let c = check(1, 60);
        let mut k = Checks::new(t0);
        k.record(&c, false, false, Ok(()), t0);
        match k.record(&c, false, false, fail(), t0 + Duration::from_secs(1)) {
            Verdict::Unhealthy { reason, .. } => {
                assert_eq!(reason, "health check failed 1 time in a row, last: refused")
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn with_ready_health_a_pass_makes_a_starting_process_ready_and_failures_wait() {
        let t0 = Instant::now();
        let c = check(1, 0);
        let mut k = Checks::new(t0);
        let late = t0 + Duration::from_secs(100);
        assert!(matches!(
            k.record(&c, true, true, fail(), late),
            Verdict::Grace { .. }
        ));
        assert_eq!(
            k.record(&c, true, true, Ok(()), late),
            Verdict::Pass {
                recovered: true,
                ready: true
            }
        );
        assert!(matches!(
            k.record(&c, true, false, fail(), late),
            Verdict::Unhealthy { .. }
        ));
    }
}
