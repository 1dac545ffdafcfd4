//! Vendor date/time forms to RFC 3339 (local times in the configured zone).

use chrono::{LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};

fn local(naive: NaiveDateTime, tz: chrono_tz::Tz) -> Option<String> {
    let dt = match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t,
        LocalResult::Ambiguous(a, _) => a,
        LocalResult::None => return None,
    };
    Some(
        dt.fixed_offset()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
    )
}

fn time(t: &str) -> Option<NaiveTime> {
    let t = t.trim();
    NaiveTime::parse_from_str(t, "%H:%M:%S%.f")
        .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"))
        .ok()
}

/// GE MUSE: `MM-DD-YYYY` and `HH:MM:SS`.
pub(crate) fn muse(date: &str, t: Option<&str>, tz: chrono_tz::Tz) -> Option<String> {
    let d = NaiveDate::parse_from_str(date.trim(), "%m-%d-%Y").ok()?;
    match t.and_then(time) {
        Some(t) => local(d.and_time(t), tz),
        None => Some(d.format("%Y-%m-%d").to_string()),
    }
}

/// MUSE dates of birth `MM-DD-YYYY` to `YYYY-MM-DD`.
pub(crate) fn muse_date(date: &str) -> Option<String> {
    NaiveDate::parse_from_str(date.trim(), "%m-%d-%Y")
        .ok()
        .map(|d| d.format("%Y-%m-%d").to_string())
}

/// Philips: `YYYY-MM-DD` and `HH:MM:SS`.
pub(crate) fn iso(date: &str, t: Option<&str>, tz: chrono_tz::Tz) -> Option<String> {
    let d = NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d").ok()?;
    match t.and_then(time) {
        Some(t) => local(d.and_time(t), tz),
        None => Some(d.format("%Y-%m-%d").to_string()),
    }
}

/// HL7 v3 TS (`YYYYMMDDHHMMSS[.f][+ZZZZ]`), local when no offset.
pub(crate) fn hl7(ts: &str, tz: chrono_tz::Tz) -> Option<String> {
    huren_hl7::parse_timestamp(ts, tz).ok()
}

/// DICOM DA + TM (`YYYYMMDD`, `HHMMSS[.f]`) with an optional `+HHMM` offset (0008,0201).
pub(crate) fn dicom(
    date: &str,
    tm: Option<&str>,
    offset: Option<&str>,
    tz: chrono_tz::Tz,
) -> Option<String> {
    let mut ts = date.trim().to_string();
    if let Some(t) = tm {
        let t = t.trim().replace(':', "");
        let (whole, frac) = match t.split_once('.') {
            Some((w, f)) => (w.to_string(), Some(f.to_string())),
            None => (t, None),
        };
        ts.push_str(&whole);
        if let Some(f) = frac.filter(|f| !f.is_empty() && whole.len() == 6) {
            ts.push('.');
            ts.push_str(&f);
        }
    }
    if let Some(o) = offset.map(str::trim).filter(|o| o.len() == 5) {
        ts.push_str(o);
    }
    hl7(&ts, tz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Asia::Shanghai;

    #[test]
    fn forms() {
        assert_eq!(
            muse("01-01-2024", Some("10:35:17"), Shanghai).as_deref(),
            Some("2024-01-01T10:35:17+08:00")
        );
        assert_eq!(muse("13-01-2024", None, Shanghai), None);
        assert_eq!(muse_date("05-08-1953").as_deref(), Some("1953-05-08"));
        assert_eq!(
            iso("2011-12-01", Some("07:22:37"), chrono_tz::America::Chicago).as_deref(),
            Some("2011-12-01T07:22:37-06:00")
        );
        assert_eq!(
            hl7("20021122091000", Shanghai).as_deref(),
            Some("2002-11-22T09:10:00+08:00")
        );
        assert_eq!(
            dicom("20240101", Some("103517.5"), Some("+0100"), Shanghai).as_deref(),
            Some("2024-01-01T10:35:17.500+01:00")
        );
    }
}
