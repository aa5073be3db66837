//! Go-style durations, as RoadRunner reads them.

use std::time::Duration;

const NANOS_PER_UNIT: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),  // µs (micro sign)
    ("\u{3bc}s", 1_000), // μs (Greek mu)
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a duration written the way Go's `time.ParseDuration` accepts it:
/// one or more decimal numbers, each with a unit (`ns`, `us`/`µs`, `ms`, `s`,
/// `m`, `h`), such as `"60s"`, `"1m30s"`, `"500ms"`, `"1.5h"`, `"300us"`.
///
/// As in RoadRunner, a bare integer (`"60"`) means **nanoseconds**; `"0"` is
/// zero. Negative durations are refused, since no Courser setting takes one.
/// The error is a short phrase meant to follow the key and value in a message.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("the duration is empty".to_string());
    }
    let body = match text.as_bytes()[0] {
        b'-' => return Err("a duration cannot be negative".to_string()),
        b'+' => &text[1..],
        _ => text,
    };
    if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) {
        return body
            .parse::<u64>()
            .map(Duration::from_nanos)
            .map_err(|_| "the number is too large".to_string());
    }

    let mut rest = body;
    let mut total: u128 = 0;
    if rest.is_empty() {
        return Err("the duration has no number".to_string());
    }
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &after_dot[..frac_len];
            rest = &after_dot[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(format!("{rest:?} does not start with a number"));
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(rest.len(), |(i, _)| i);
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err("a unit is missing (ns, us, ms, s, m or h)".to_string());
        }
        let Some(&(_, scale)) = NANOS_PER_UNIT.iter().find(|(name, _)| *name == unit) else {
            return Err(format!(
                "{unit:?} is not a unit (use ns, us, ms, s, m or h)"
            ));
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part
                .parse()
                .map_err(|_| "the number is too large".to_string())?
        };
        // Keep at most 18 fraction digits: enough below a nanosecond for any unit.
        let frac_digits = &frac_part[..frac_part.len().min(18)];
        let frac_nanos: u128 = if frac_digits.is_empty() {
            0
        } else {
            let digits: u128 = frac_digits
                .parse()
                .map_err(|_| "the number is too large".to_string())?;
            digits * scale / 10u128.pow(frac_digits.len() as u32)
        };
        total = whole
            .checked_mul(scale)
            .and_then(|n| n.checked_add(frac_nanos))
            .and_then(|n| n.checked_add(total))
            .ok_or_else(|| "the duration is too large".to_string())?;
    }
    u64::try_from(total)
        .map(Duration::from_nanos)
        .map_err(|_| "the duration is too large".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_forms() {
        let ok: &[(&str, Duration)] = &[
            ("60s", Duration::from_secs(60)),
            ("1m30s", Duration::from_secs(90)),
            ("500ms", Duration::from_millis(500)),
            ("1.5h", Duration::from_secs(5400)),
            ("300us", Duration::from_micros(300)),
            ("300µs", Duration::from_micros(300)),
            ("300μs", Duration::from_micros(300)),
            ("10ns", Duration::from_nanos(10)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("60", Duration::from_nanos(60)),
            ("+5s", Duration::from_secs(5)),
            (".5s", Duration::from_millis(500)),
            ("1.s", Duration::from_secs(1)),
            (
                "2h45m10.5s",
                Duration::from_millis((2 * 3600 + 45 * 60) * 1000 + 10_500),
            ),
            (" 1m ", Duration::from_secs(60)),
        ];
        for (input, want) in ok {
            assert_eq!(parse_duration(input), Ok(*want), "input {input:?}");
        }
        let bad: &[(&str, &str)] = &[
            ("", "empty"),
            ("abc", "does not start with a number"),
            ("1.5", "unit is missing"),
            ("10x", "not a unit"),
            ("-1s", "negative"),
            ("5s3", "unit is missing"),
            (".s", "does not start with a number"),
            ("99999999999999999999h", "too large"),
        ];
        for (input, needle) in bad {
            let err = parse_duration(input).expect_err("an error");
            assert!(err.contains(needle), "input {input:?} gave {err:?}");
        }
    }
}
