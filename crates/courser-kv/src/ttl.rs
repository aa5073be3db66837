//! Expiry times: RFC 3339 strings on the wire, Unix milliseconds inside.

use std::time::{SystemTime, UNIX_EPOCH};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Parses an item's `timeout`: `""` is no expiry, otherwise an RFC 3339 time
/// (`2024-05-01T10:00:00Z`, `2024-05-01T12:00:00+02:00`, fractions allowed).
pub fn parse(timeout: &str) -> Result<Option<i64>, String> {
    let t = timeout.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let at = OffsetDateTime::parse(t, &Rfc3339).map_err(|e| {
        format!("timeout {t:?} is not an RFC 3339 time such as 2024-05-01T10:00:00Z ({e})")
    })?;
    let ms = at.unix_timestamp_nanos() / 1_000_000;
    Ok(Some(i64::try_from(ms).unwrap_or(i64::MAX)))
}

/// Formats Unix milliseconds as RFC 3339 in UTC, to the second
/// (`2024-05-01T10:00:00Z`, as Go's `time.RFC3339`).
pub fn format(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        for (text, ms) in [
            ("2024-05-01T10:00:00Z", Some(1_714_557_600_000)),
            ("2024-05-01T12:00:00+02:00", Some(1_714_557_600_000)),
            ("2024-05-01T10:00:00.250Z", Some(1_714_557_600_250)),
            ("", None),
        ] {
            assert_eq!(parse(text), Ok(ms), "{text}");
        }
        assert!(parse("tomorrow").is_err());
        assert!(parse("2024-05-01 10:00").is_err());
        assert_eq!(format(1_714_557_600_250), "2024-05-01T10:00:00Z");
    }
}
