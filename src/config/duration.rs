//! Durations as users write them: `500ms`, `5s`, `5m`, `1h30m`, `1.5s`, `2d`, or a bare number of
//! seconds (`5`, `0.25`). Used by `starttime`, `stoptime` and `schedule: every …`.
//!
//! Our own rather than humantime's: humantime reads neither a bare number of seconds (`5`,
//! `0.25`, the supervisord form) nor fractions (`1.5s`), and its errors cannot say what a key
//! accepts; the grammar here is a page and is fuzzed.
//!
//! Arithmetic is done in integer nanoseconds, so `1.5s` is exactly 1500 ms rather than whatever
//! a float rounds it to, and a reload never sees a spurious change.

use std::time::Duration;

const UNITS: &[(&str, u128)] = &[
    // Longest first, so that `ms` is not read as `m` followed by garbage.
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3600 * 1_000_000_000),
    ("d", 86_400 * 1_000_000_000),
];

const ACCEPTED: &str = "a number of seconds or a duration such as 500ms, 5s, 5m, 1h30m";

/// Parse a duration. The error says what was wrong and what is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("expected {ACCEPTED}, found an empty string"));
    }
    let bad = || format!("expected {ACCEPTED}, found {text:?}");
    if t.starts_with('-') {
        return Err(format!("must not be negative, found {text:?}"));
    }
    // A bare number is seconds.
    if let Some(nanos) = number_nanos(t, 1_000_000_000) {
        return to_duration(nanos).ok_or_else(bad);
    }
    let mut rest = t;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, after) = rest.split_at(num_len);
        let &(unit, scale) = UNITS
            .iter()
            .find(|(u, _)| after.starts_with(u))
            .ok_or_else(bad)?;
        total = total
            .checked_add(number_nanos(num, scale).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        rest = after[unit.len()..].trim_start();
    }
    to_duration(total).ok_or_else(bad)
}

/// `digits[.digits]` times `scale` nanoseconds, exactly; `None` if it is not such a number.
/// Fractions finer than a nanosecond are dropped.
fn number_nanos(num: &str, scale: u128) -> Option<u128> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits_ok(int) || !digits_ok(frac) {
        return None;
    }
    if num.ends_with('.') {
        return None;
    }
    let int_val: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac = &frac[..frac.len().min(18)];
    let frac_val: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let frac_nanos = frac_val.checked_mul(scale)? / 10u128.pow(frac.len() as u32);
    int_val.checked_mul(scale)?.checked_add(frac_nanos)
}

fn to_duration(nanos: u128) -> Option<Duration> {
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The shortest way to write `d` that `parse_duration` reads back: `1h30m`, `500ms`, `0s`.
    /// Sub-millisecond parts are written as a fraction of a second.
    pub fn format_duration(d: Duration) -> String {
        if d.is_zero() {
            return "0s".into();
        }
        let mut out = String::new();
        let mut secs = d.as_secs();
        let nanos = d.subsec_nanos();
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
            if secs >= size {
                out.push_str(&format!("{}{unit}", secs / size));
                secs %= size;
            }
        }
        if nanos == 0 {
            if secs > 0 {
                out.push_str(&format!("{secs}s"));
            }
        } else if nanos % 1_000_000 == 0 && secs == 0 {
            out.push_str(&format!("{}ms", nanos / 1_000_000));
        } else {
            let frac = format!("{nanos:09}");
            out.push_str(&format!("{secs}.{}s", frac.trim_end_matches('0')));
        }
        out
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("5s"), Ok(ms(5000)));
        assert_eq!(parse_duration("5m"), Ok(ms(300_000)));
        assert_eq!(parse_duration("2h"), Ok(ms(7_200_000)));
        assert_eq!(parse_duration("1h30m"), Ok(ms(5_400_000)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1h 30m"), Ok(ms(5_400_000)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("0.1s"), Ok(ms(100)));
        assert_eq!(parse_duration("1d"), Ok(ms(86_400_000)));
        assert_eq!(parse_duration("5"), Ok(ms(5000)));
        assert_eq!(parse_duration("0.25"), Ok(ms(250)));
        assert_eq!(parse_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_duration(" 0 "), Ok(ms(0)));
    }

    #[test]
    fn rejected_forms() {
        let accepted = "a number of seconds or a duration such as 500ms, 5s, 5m, 1h30m";
        assert_eq!(
            parse_duration("5 minutes"),
            Err(format!("expected {accepted}, found \"5 minutes\""))
        );
        assert_eq!(
            parse_duration(""),
            Err(format!("expected {accepted}, found an empty string"))
        );
        assert_eq!(
            parse_duration("-1s"),
            Err("must not be negative, found \"-1s\"".into())
        );
        for bad in [
            "s",
            "5x",
            "1..5s",
            "5.s",
            "1h30",
            "ms",
            "1e3",
            "99999999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(format_duration(ms(0)), "0s");
        assert_eq!(format_duration(ms(500)), "500ms");
        assert_eq!(format_duration(ms(5_400_000)), "1h30m");
        assert_eq!(format_duration(ms(1500)), "1.5s");
        assert_eq!(format_duration(ms(90_061_000)), "1d1h1m1s");
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(secs in 0u64..10_000_000, nanos in 0u32..1_000_000_000) {
            let d = Duration::new(secs, nanos);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn components_add_up(h in 0u64..1000, m in 0u64..1000, s in 0u64..1000, milli in 0u64..1000) {
            let text = format!("{h}h{m}m{s}s{milli}ms");
            let want = ms(((h * 60 + m) * 60 + s) * 1000 + milli);
            prop_assert_eq!(parse_duration(&text), Ok(want));
        }

        #[test]
        fn never_panics(text in "\\PC{0,20}") {
            let _ = parse_duration(&text);
        }
    }
}
