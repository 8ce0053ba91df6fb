//! Time ranges as the API takes them: RFC 3339, Unix seconds, `now`, or
//! relative to now (`-15m`, `-1h30m`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, nanoseconds since the Unix epoch, from `s`; `now_ns` is
/// what `now` and relative times count from.
pub fn parse_time(s: &str, now_ns: u64) -> Result<u64, String> {
    let s = s.trim();
    if s.is_empty() || s == "now" {
        return Ok(now_ns);
    }
    if let Some(rel) = s.strip_prefix('-') {
        let d = humantime::parse_duration(rel)
            .map_err(|e| format!("'{s}' is not a relative time ({e}); write it like -15m"))?;
        return Ok(now_ns.saturating_sub(d.as_nanos().min(u128::from(u64::MAX)) as u64));
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = s.parse().map_err(|_| format!("'{s}' is not a number of Unix seconds"))?;
        if !(0.0..=1e11).contains(&secs) {
            return Err(format!("{s} Unix seconds is out of range"));
        }
        return Ok((secs * 1e9) as u64);
    }
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("'{s}' is not a time ({e}); use RFC 3339, Unix seconds, now, or -15m"))?;
    Ok(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64))
}

/// A range `from..to` (Unix ns) from optional texts; `from` defaults to 15
/// minutes before `to`, `to` to now.
pub fn parse_range(from: Option<&str>, to: Option<&str>, now_ns: u64) -> Result<(u64, u64), String> {
    let to = match to {
        Some(t) => parse_time(t, now_ns)?,
        None => now_ns,
    };
    let from = match from {
        Some(f) => parse_time(f, now_ns)?,
        None => to.saturating_sub(Duration::from_secs(15 * 60).as_nanos() as u64),
    };
    if from >= to {
        return Err("'from' must be before 'to'".into());
    }
    Ok((from, to))
}

/// Now, nanoseconds since the Unix epoch.
pub fn now_unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_time() {
        let now = 1_700_000_000_000_000_000;
        assert_eq!(parse_time("now", now), Ok(now));
        assert_eq!(parse_time("-15m", now), Ok(now - 900_000_000_000));
        assert_eq!(parse_time("1700000000", now), Ok(1_700_000_000_000_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z", now), Ok(1_700_000_000_000_000_000));
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("-forever", now).is_err());
        assert!(parse_range(Some("-1m"), Some("-2m"), now).unwrap_err().contains("before"));
        assert_eq!(parse_range(None, None, now), Ok((now - 900_000_000_000, now)));
    }
}
