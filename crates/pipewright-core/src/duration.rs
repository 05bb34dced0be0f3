//! Durations in Go's syntax (`90s`, `1h30m`, `500ms`), as the seed system writes them, and
//! `check_interval` schedules (`@every 1m` or a cron expression).

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Parses a Go-style duration: one or more `<number><unit>` pairs, units `ns`, `us`/`µs`, `ms`,
/// `s`, `m`, `h`. Fractions are allowed (`1.5h`). `0` alone is zero.
///
/// ```
/// use std::time::Duration;
/// use pipewright_core::parse_duration;
/// assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
/// assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
/// assert!(parse_duration("10 minutes").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("expected a number at `{rest}`"));
        }
        let num: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("`{}` is not a number", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "missing unit after `{}`",
                    &s[..s.len() - rest.len()]
                ));
            }
            other => return Err(format!("unknown unit `{other}`")),
        };
        total += num * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 1e12 {
        return Err("duration is too large".into());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats a duration the way [`parse_duration`] reads it (`1h30m`, `45s`, `250ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// When a resource is checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// `@every <duration>`.
    Every(#[serde(serialize_with = "ser_duration", deserialize_with = "de_duration")] Duration),
    /// A cron expression (5 fields, optional seconds field, or `@hourly`-style nicknames).
    Cron(String),
}

impl Schedule {
    /// The shortest allowed `@every` interval.
    pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
    /// The interval used when a resource sets none.
    pub const DEFAULT: Schedule = Schedule::Every(Duration::from_secs(60));

    /// Parses `@every <duration>` (at least 10 s) or a cron expression.
    pub fn parse(s: &str) -> Result<Schedule, String> {
        let t = s.trim();
        if let Some(rest) = t.strip_prefix("@every") {
            let d = parse_duration(rest.trim())
                .map_err(|e| format!("invalid `@every` duration: {e}"))?;
            if d < Self::MIN_INTERVAL {
                return Err(format!(
                    "`{t}` is shorter than the minimum check interval of 10s"
                ));
            }
            return Ok(Schedule::Every(d));
        }
        croner::parser::CronParser::new()
            .parse(t)
            .map_err(|e| format!("invalid cron expression: {e}"))?;
        Ok(Schedule::Cron(t.to_owned()))
    }
}

pub(crate) fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

pub(crate) fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2m3s").unwrap(), Duration::from_secs(123));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn schedules() {
        assert_eq!(
            Schedule::parse("@every 1m").unwrap(),
            Schedule::Every(Duration::from_secs(60))
        );
        assert!(
            Schedule::parse("@every 5s")
                .unwrap_err()
                .contains("minimum")
        );
        assert!(Schedule::parse("*/5 * * * *").is_ok());
        assert!(Schedule::parse("@hourly").is_ok());
        assert!(Schedule::parse("61 * * * *").is_err());
    }
}
