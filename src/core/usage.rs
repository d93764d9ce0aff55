//! Resource figures of a process and the sustained-usage rule (`max_memory`, `max_cpu`, `for`).
//!
//! The one parser of `/proc/PID/stat` lives here; the daemon and the clients read the file and
//! hand the text over, so this module stays free of files and clocks.

use std::time::{Duration, Instant};

use crate::config::spec::Watch;

/// What `/proc/PID/stat` says that sup uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: `R`, `S`, `Z`, ...
    pub state: char,
    /// Field 5: the process group.
    pub pgrp: i64,
    /// Fields 14 + 15: utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Field 22: start time in clock ticks since boot; with the pid it names one process for
    /// the life of the machine.
    pub start_ticks: u64,
    /// Field 24: resident set, in pages.
    pub rss_pages: u64,
}

/// Parse one `/proc/PID/stat` line. The second field (comm) is in parentheses and may itself
/// hold spaces and parentheses, so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    // After comm, field N is at index N - 3.
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let pgrp = f.nth(1)?.parse().ok()?;
    let utime: u64 = f.nth(8)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    let start_ticks = f.nth(6)?.parse().ok()?;
    let rss_pages = f.nth(1)?.parse().ok()?;
    Some(ProcStat {
        state,
        pgrp,
        cpu_ticks: utime + stime,
        start_ticks,
        rss_pages,
    })
}

/// Percent of one CPU that `ticks` of CPU time over `over` of wall time is.
pub fn cpu_percent(ticks: u64, over: Duration, ticks_per_s: u64) -> Option<f64> {
    let secs = over.as_secs_f64();
    (secs > 0.0 && ticks_per_s > 0).then(|| ticks as f64 / ticks_per_s as f64 / secs * 100.0)
}

/// How often a `for` rule samples: often enough to see it five times, never busier than 5/s.
pub fn sample_every(sustained: Duration) -> Duration {
    (sustained / 5).clamp(Duration::from_millis(200), Duration::from_secs(5))
}

/// One process's side of a sustained-usage rule, fed a sample at a time.
#[derive(Debug, Default, Clone)]
pub struct Sustained {
    /// The previous sample's CPU ticks and when, for the share between samples.
    last_cpu: Option<(u64, Instant)>,
    /// Since when the rule has been broken without a break.
    over_since: Option<Instant>,
}

impl Sustained {
    /// Take a sample (`cpu_ticks`, `rss_bytes`; `None` when the process could not be read) and
    /// return why the process must be restarted, once the rule has been broken for `sustained`.
    /// Only a running process is held to the rule.
    pub fn sample(
        &mut self,
        rule: &Watch,
        sample: Option<(u64, u64)>,
        running: bool,
        now: Instant,
        ticks_per_s: u64,
    ) -> Option<String> {
        let (cpu, rss) = (sample.map(|s| s.0), sample.map(|s| s.1));
        let cpu_pct = match (cpu, self.last_cpu) {
            (Some(c), Some((c0, t0))) => cpu_percent(c.saturating_sub(c0), now - t0, ticks_per_s),
            _ => None,
        };
        self.last_cpu = cpu.map(|c| (c, now));
        let mem_over = matches!((rule.max_memory, rss), (Some(max), Some(r)) if r > max);
        let cpu_over =
            matches!((rule.max_cpu, cpu_pct), (Some(max), Some(p)) if p > f64::from(max));
        if !(mem_over || cpu_over) || !running {
            self.over_since = None;
            return None;
        }
        let since = *self.over_since.get_or_insert(now);
        if now.saturating_duration_since(since) < rule.sustained {
            return None;
        }
        self.over_since = None;
        let human = crate::core::event::human(rule.sustained);
        Some(if mem_over {
            format!(
                "memory {} above max_memory {} for {human}",
                mib(rss.unwrap_or(0)),
                mib(rule.max_memory.unwrap_or(0))
            )
        } else {
            format!(
                "CPU {:.0}% above max_cpu {}% for {human}",
                cpu_pct.unwrap_or(0.0),
                rule.max_cpu.unwrap_or(0)
            )
        })
    }
}

fn mib(n: u64) -> String {
    const MIB: f64 = (1 << 20) as f64;
    format!("{:.0}M", n as f64 / MIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "4242 (we (ird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
        17 5 0 0 20 0 1 0 987654 10000000 321 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn fields_are_counted_from_the_last_parenthesis() {
        let s = parse_stat(LINE).expect("parsed");
        assert_eq!(
            s,
            ProcStat {
                state: 'S',
                pgrp: 4242,
                cpu_ticks: 22,
                start_ticks: 987654,
                rss_pages: 321
            }
        );
        let line = "4312 (a) b (c) 1 2) S 1 4300 4300 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 10 18446744073709551615\n";
        let s = parse_stat(line).expect("parsed");
        assert_eq!(
            (s.state, s.pgrp, s.start_ticks, s.rss_pages),
            ('S', 4300, 987_654, 10)
        );
        assert_eq!(parse_stat("12 (x"), None);
        assert_eq!(parse_stat("4242 (x) S 1"), None);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn cpu_share_needs_a_span() {
        assert_eq!(cpu_percent(50, Duration::from_secs(1), 100), Some(50.0));
        assert_eq!(cpu_percent(50, Duration::ZERO, 100), None);
        assert_eq!(cpu_percent(50, Duration::from_secs(1), 0), None);
    }

    fn rule(mem: Option<u64>, cpu: Option<u32>) -> Watch {
        Watch {
            max_memory: mem,
            max_cpu: cpu,
            sustained: Duration::from_secs(10),
        }
    }

    #[test]
    fn memory_must_stay_over_for_the_whole_span() {
        let r = rule(Some(100 << 20), None);
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut w = Sustained::default();
        let big = Some((0, 200 << 20));
        assert_eq!(w.sample(&r, big, true, at(0), 100), None);
        assert_eq!(w.sample(&r, big, true, at(9), 100), None);
        // One sample under the limit starts the span again.
        assert_eq!(w.sample(&r, Some((0, 1)), true, at(10), 100), None);
        assert_eq!(w.sample(&r, big, true, at(11), 100), None);
        assert_eq!(w.sample(&r, big, true, at(20), 100), None);
        let why = w.sample(&r, big, true, at(21), 100).expect("broken");
        assert_eq!(why, "memory 200M above max_memory 100M for 10s");
        // Reported once; the span starts over.
        assert_eq!(w.sample(&r, big, true, at(22), 100), None);
    }

    #[test]
    fn cpu_is_the_share_between_samples_and_only_running_counts() {
        let r = rule(None, Some(50));
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut w = Sustained::default();
        // First sample: no share yet.
        assert_eq!(w.sample(&r, Some((0, 0)), true, at(0), 100), None);
        // 90 % from here on.
        assert_eq!(w.sample(&r, Some((90, 0)), true, at(1), 100), None);
        // Not running (starting, stopping): the span is dropped.
        assert_eq!(w.sample(&r, Some((180, 0)), false, at(2), 100), None);
        assert_eq!(w.sample(&r, Some((270, 0)), true, at(3), 100), None);
        assert_eq!(
            w.sample(&r, Some((1170, 0)), true, at(13), 100).as_deref(),
            Some("CPU 90% above max_cpu 50% for 10s")
        );
        // An unreadable process breaks the span too.
        let mut w = Sustained::default();
        assert_eq!(w.sample(&r, Some((0, 0)), true, at(0), 100), None);
        assert_eq!(w.sample(&r, Some((90, 0)), true, at(1), 100), None);
        assert_eq!(w.sample(&r, None, true, at(2), 100), None);
        assert_eq!(w.sample(&r, Some((1000, 0)), true, at(12), 100), None);
    }

    #[test]
    fn sampling_period_is_bounded() {
        assert_eq!(
            sample_every(Duration::from_secs(10)),
            Duration::from_secs(2)
        );
        assert_eq!(sample_every(Duration::ZERO), Duration::from_millis(200));
        assert_eq!(
            sample_every(Duration::from_secs(3600)),
            Duration::from_secs(5)
        );
    }
}
