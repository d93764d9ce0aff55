//! The `schedule` and `timezone` job keys and the `scheduled` state: ticks at a
//! fixed rate, the overlap policies, `next_run`, and `sup start` on a scheduled job.

use chrono::{DateTime, Utc};

use crate::sandbox::{alive, Sandbox};

/// A shell command (as a YAML flow list) that appends the time and its pid to `file`.
fn stamp(sb: &Sandbox, file: &str, then: &str) -> String {
    format!(
        r#"["sh", "-c", "echo $(date +%s.%N) $$ >> {}; {then}"]"#,
        sb.path(file).display()
    )
}

/// The (time, pid) lines written by `stamp`.
fn runs(sb: &Sandbox, file: &str) -> Vec<(f64, u32)> {
    std::fs::read_to_string(sb.path(file))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
        })
        .collect()
}

fn start(name: &str, job: impl Fn(&Sandbox) -> String) -> Sandbox {
    let mut sb = Sandbox::new(name);
    let programs = job(&sb);
    sb.write("sup.yaml", &format!("programs:\n{programs}"));
    sb.start();
    sb
}

#[test]
fn every_second_runs_once_a_second_and_waits_in_scheduled() {
    let sb = start("every1s", |sb| {
        format!(
            "  tick:\n    cmd: {}\n    schedule: every 1s\n",
            stamp(sb, "runs", "true")
        )
    });
    // Between runs it is `scheduled`, with a next_run.
    let st = sb.wait_state("tick", "scheduled");
    assert!(st["next_run"].is_string(), "{st}");
    sb.wait_for("six runs", || runs(&sb, "runs").len() >= 6);
    let times: Vec<f64> = runs(&sb, "runs").iter().map(|r| r.0).collect();
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!((0.5..1.6).contains(&gap), "gap {gap:.3}s in {times:?}");
    }
    // No drift: the average over the runs is one second.
    let n = times.len() - 1;
    let mean = (times[n] - times[0]) / n as f64;
    assert!((0.9..1.1).contains(&mean), "mean {mean:.3}s in {times:?}");
    let st = sb.wait_state("tick", "scheduled");
    assert_eq!(st["last_exit"], 0);
    let text = sb.sup_ok(&["status", "tick"]);
    assert!(text.contains("tick last runs:"), "{text}");
    assert!(text.contains("exit=0"), "{text}");
}

#[test]
fn a_slow_run_makes_the_next_tick_skipped() {
    let sb = start("skip", |sb| {
        format!(
            "  slow:\n    cmd: {}\n    schedule: every 1s\n",
            stamp(sb, "runs", "sleep 2.5")
        )
    });
    sb.wait_for("a skipped tick in the log", || {
        sb.log().contains("slow skipped")
    });
    assert_eq!(sb.state("slow"), "running");
}

#[test]
fn overlap_queue_runs_right_after_the_slow_run() {
    let sb = start("queue", |sb| {
        format!(
            "  q:\n    cmd: {}\n    schedule: every 2s\n    overlap: queue\n",
            stamp(sb, "runs", "sleep 2.5")
        )
    });
    sb.wait_for("two runs", || runs(&sb, "runs").len() >= 2);
    let r = runs(&sb, "runs");
    // Run 1 starts at tick 1 and lasts 2.5 s; tick 2 (2 s later) is queued and runs as soon
    // as run 1 ends, not at tick 3 (4 s after run 1).
    let gap = r[1].0 - r[0].0;
    assert!((2.4..3.5).contains(&gap), "gap {gap:.3}s");
    assert!(sb.log().contains("q queued"), "{}", sb.log());
}

#[test]
fn overlap_kill_stops_the_old_run_and_starts_a_new_one() {
    let sb = start("kill", |sb| {
        format!(
            "  k:\n    cmd: {}\n    schedule: every 1s\n    overlap: kill\n    stoptime: 1s\n",
            stamp(sb, "runs", "exec sleep 100")
        )
    });
    sb.wait_for("a second run", || runs(&sb, "runs").len() >= 2);
    let r = runs(&sb, "runs");
    sb.wait_for("the first run to be gone", || !alive(r[0].1));
    let log = sb.log();
    assert!(log.contains("k stopping: sent SIGTERM"), "{log}");
    assert!(log.contains("stopping it"), "{log}");
}

#[test]
fn next_run_of_a_cron_job_is_the_right_instant() {
    let sb = start("cron", |_| {
        "  nightly:\n    cmd: \"true\"\n    schedule: \"7 3 * * *\"\n    timezone: Asia/Tokyo\n"
            .to_string()
    });
    let before = Utc::now();
    let st = sb.wait_state("nightly", "scheduled");
    let after = Utc::now();
    let next = st["next_run"].as_str().expect("next_run");
    let next = DateTime::parse_from_rfc3339(next)
        .expect("RFC 3339")
        .with_timezone(&Utc);
    let cron = croner::Cron::new("7 3 * * *").parse().expect("cron");
    let tz: chrono_tz::Tz = "Asia/Tokyo".parse().expect("zone");
    let expect = |t: DateTime<Utc>| {
        cron.find_next_occurrence(&t.with_timezone(&tz), false)
            .expect("a next time")
            .with_timezone(&Utc)
    };
    assert!(
        next == expect(before) || next == expect(after),
        "next_run {next}, expected {}",
        expect(before)
    );
}

#[test]
fn start_runs_a_scheduled_job_at_once_and_keeps_its_schedule() {
    let sb = start("startnow", |sb| {
        format!(
            "  hourly:\n    cmd: {}\n    schedule: every 1h\n",
            stamp(sb, "runs", "true")
        )
    });
    let st = sb.wait_state("hourly", "scheduled");
    let next = st["next_run"].as_str().expect("next_run").to_string();
    assert!(runs(&sb, "runs").is_empty());
    sb.sup_ok(&["start", "hourly"]);
    sb.wait_for("the run", || runs(&sb, "runs").len() == 1);
    let st = sb.wait_state("hourly", "scheduled");
    assert_eq!(st["last_exit"], 0);
    // Within a second of the first reading: the schedule did not move.
    let again = st["next_run"].as_str().expect("next_run");
    let a = DateTime::parse_from_rfc3339(&next).expect("time");
    let b = DateTime::parse_from_rfc3339(again).expect("time");
    assert!(
        (a - b).num_milliseconds().abs() <= 1000,
        "{next} vs {again}"
    );
}
