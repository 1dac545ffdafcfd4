//! HL7 TS / DTM timestamps.

use chrono::{FixedOffset, LocalResult, NaiveDate, NaiveDateTime, TimeZone};

/// Why a timestamp was refused (holds at most the first 40 characters of the value).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid HL7 timestamp {0:?}")]
pub struct TimestampError(pub String);

/// Converts an HL7 TS/DTM (`YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ]`) to RFC 3339. Values with
/// a time and no offset are local time in `tz` (Chinese LIS send local time); date-only
/// values become `YYYY-MM-DD` (or `YYYY-MM`, `YYYY`).
pub fn parse_timestamp(s: &str, tz: chrono_tz::Tz) -> Result<String, TimestampError> {
    // The offending value, cut to 40 characters (it ends up in diagnostics).
    let err = || TimestampError(s.chars().take(40).collect());
    let s = s.trim();
    let s = s.split('^').next().unwrap_or(""); // TS.1 of a composite
    let (body, offset) = match s.find(['+', '-']) {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    let (digits, frac) = match body.find('.') {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit())
        || !matches!(digits.len(), 4 | 6 | 8 | 10 | 12 | 14)
    {
        return Err(err());
    }
    let num = |a: usize, b: usize| digits.get(a..b).and_then(|x| x.parse::<u32>().ok());
    let year = num(0, 4).ok_or_else(err)? as i32;
    let month = num(4, 6).unwrap_or(1);
    let day = num(6, 8).unwrap_or(1);
    let date = NaiveDate::from_ymd_opt(year, month, day).ok_or_else(err)?;
    if digits.len() <= 8 {
        if offset.is_some() || frac.is_some() {
            return Err(err());
        }
        return Ok(match digits.len() {
            4 => format!("{year:04}"),
            6 => format!("{year:04}-{month:02}"),
            _ => date.format("%Y-%m-%d").to_string(),
        });
    }
    let hour = num(8, 10).ok_or_else(err)?;
    let min = num(10, 12).unwrap_or(0);
    let sec = num(12, 14).unwrap_or(0);
    let nanos = match frac {
        None => 0,
        Some(f)
            if !f.is_empty()
                && f.len() <= 9
                && f.bytes().all(|b| b.is_ascii_digit())
                && digits.len() == 14 =>
        {
            f.parse::<u32>().map_err(|_| err())? * 10u32.pow(9 - f.len() as u32)
        }
        Some(_) => return Err(err()),
    };
    let naive: NaiveDateTime = date
        .and_hms_nano_opt(hour, min, sec, nanos)
        .ok_or_else(err)?;
    let dt = match offset {
        Some(o) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let od = &o[1..];
            if od.len() != 4 || !od.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            let h: i32 = od[..2].parse().map_err(|_| err())?;
            let m: i32 = od[2..].parse().map_err(|_| err())?;
            let off = FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(err)?;
            off.from_local_datetime(&naive).single().ok_or_else(err)?
        }
        None => match tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => t.fixed_offset(),
            LocalResult::Ambiguous(a, _) => a.fixed_offset(),
            LocalResult::None => return Err(err()),
        },
    };
    Ok(dt.to_rfc3339_opts(
        if nanos == 0 {
            chrono::SecondsFormat::Secs
        } else {
            chrono::SecondsFormat::AutoSi
        },
        false,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Asia::Shanghai;

    /// hl7-parser 0.3.0 takes a timestamp without offset as UTC.
    #[test]
    fn regression_no_offset_is_sender_local_time() {
        assert_eq!(
            parse_timestamp("20250624101500", Shanghai).unwrap(),
            "2025-06-24T10:15:00+08:00"
        );
        assert_eq!(
            parse_timestamp("202506241015", Shanghai).unwrap(),
            "2025-06-24T10:15:00+08:00"
        );
        assert_eq!(
            parse_timestamp("20250624101500", chrono_tz::UTC).unwrap(),
            "2025-06-24T10:15:00+00:00"
        );
    }

    #[test]
    fn offsets_precision_and_errors() {
        assert_eq!(
            parse_timestamp("20250624101500-0500", Shanghai).unwrap(),
            "2025-06-24T10:15:00-05:00"
        );
        assert_eq!(
            parse_timestamp("20250624101500.25+0800", Shanghai).unwrap(),
            "2025-06-24T10:15:00.250+08:00"
        );
        assert_eq!(parse_timestamp("20250624", Shanghai).unwrap(), "2025-06-24");
        assert_eq!(parse_timestamp("202506", Shanghai).unwrap(), "2025-06");
        assert!(parse_timestamp("196203520", Shanghai).is_err());
        assert!(parse_timestamp("20251341", Shanghai).is_err());
        assert!(parse_timestamp("", Shanghai).is_err());
        assert!(parse_timestamp("2025062410150", Shanghai).is_err());
    }
}
