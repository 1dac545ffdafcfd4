//! ACK messages.

use chrono::{DateTime, FixedOffset};

use crate::diag::{Diagnostic, Severity};
use crate::{Charset, MessageHeader};

/// The acknowledgement code; the mode (original AA/AE/AR or enhanced CA/CE/CR) follows the
/// incoming MSH-15/MSH-16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckCode {
    /// Accepted and durable.
    Accept,
    /// Content error, or a store failure (code 207).
    Error,
    /// Cannot be processed (header, type, version, charset, sender).
    Reject,
}

fn esc(s: &str, fs: char, enc: &[char]) -> String {
    let escape = enc.get(2).copied().unwrap_or('\\');
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\r' | '\n' => out.push(' '),
            c if c == escape => out.push_str(&format!("{escape}E{escape}")),
            c if c == fs => out.push_str(&format!("{escape}F{escape}")),
            c if Some(&c) == enc.first() => out.push_str(&format!("{escape}S{escape}")),
            c if Some(&c) == enc.get(1) => out.push_str(&format!("{escape}R{escape}")),
            c if Some(&c) == enc.get(3) => out.push_str(&format!("{escape}T{escape}")),
            c => out.push(c),
        }
    }
    out
}

/// Builds the ACK for `header` (None when the MSH could not be read). MSA-2 is the incoming
/// MSH-10; ERR segments (v2.5+ layout, or ERR-1 for v2.3/2.4) carry every error diagnostic
/// with its location, HL7 table 0357 code and severity. The result is encoded in the
/// incoming message's charset and is not MLLP-framed.
pub fn build_ack(
    header: Option<&MessageHeader>,
    code: AckCode,
    diagnostics: &[Diagnostic],
    now: DateTime<FixedOffset>,
) -> Vec<u8> {
    build_ack_text(header, code, diagnostics, None, now)
}

/// [`build_ack`] with an MSA-3 text (at most 80 characters kept), e.g. why an accepted
/// message changed nothing. Without one, v2.1–2.4 ACKs carry the first error there.
pub fn build_ack_text(
    header: Option<&MessageHeader>,
    code: AckCode,
    diagnostics: &[Diagnostic],
    text: Option<&str>,
    now: DateTime<FixedOffset>,
) -> Vec<u8> {
    let default = MessageHeader::default();
    let h = header.unwrap_or(&default);
    let fs = if header.is_some() && h.field_separator != '\0' {
        h.field_separator
    } else {
        '|'
    };
    let enc_s = if header.is_some() && !h.encoding_characters.is_empty() {
        h.encoding_characters.clone()
    } else {
        "^~\\&".to_string()
    };
    let enc: Vec<char> = enc_s.chars().collect();
    let charset_label = h
        .charset
        .split(enc.get(1).copied().unwrap_or('~'))
        .next()
        .unwrap_or("")
        .trim();
    let known = Charset::from_label(charset_label);
    // Encoded in the incoming charset; an unknown MSH-18 is not echoed (the ACK is UTF-8).
    let cs = known.unwrap_or(Charset::Utf8);
    let e = |s: &str| esc(s, fs, &enc);
    let version = if h.version.is_empty() {
        "2.5.1".to_string()
    } else {
        h.version.clone()
    };
    let old_err = version.starts_with("2.3")
        || version.starts_with("2.4")
        || version.starts_with("2.2")
        || version.starts_with("2.1");
    let enhanced = h.enhanced_mode();
    let ack_code = match (code, enhanced) {
        (AckCode::Accept, false) => "AA",
        (AckCode::Error, false) => "AE",
        (AckCode::Reject, false) => "AR",
        (AckCode::Accept, true) => "CA",
        (AckCode::Error, true) => "CE",
        (AckCode::Reject, true) => "CR",
    };
    // A fresh control ID derived from the incoming one (MSH-10 allows 199 characters).
    let control: String = format!("A{}", h.control_id).chars().take(199).collect();
    let processing = if h.processing_id.is_empty() {
        "P"
    } else {
        &h.processing_id
    };
    let c0 = enc.first().copied().unwrap_or('^');
    let mut msh = vec![
        "MSH".to_string(),
        enc_s.clone(),
        e(&h.receiving_application),
        e(&h.receiving_facility),
        e(&h.sending_application),
        e(&h.sending_facility),
        now.format("%Y%m%d%H%M%S%z").to_string(),
        String::new(),
        format!("ACK{c0}{}{c0}ACK", e(&h.trigger_event)),
        e(&control),
        e(processing),
        e(&version),
    ];
    if known.is_some() {
        msh.extend(std::iter::repeat_n(String::new(), 5));
        msh.push(e(charset_label));
    }
    let mut segs = vec![msh.join(&fs.to_string())];
    let errors: Vec<&Diagnostic> = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error || code == AckCode::Accept)
        .take(20)
        .collect();
    let first_error = errors
        .iter()
        .find(|d| d.severity == Severity::Error)
        .map(|d| d.message.as_str());
    let mut msa = vec!["MSA".to_string(), ack_code.to_string(), e(&h.control_id)];
    if let Some(m) = text.or(first_error.filter(|_| old_err)) {
        msa.push(e(&m.chars().take(80).collect::<String>()));
    }
    segs.push(msa.join(&fs.to_string()));
    let sub = enc.get(3).copied().unwrap_or('&');
    for d in errors {
        let (seg, seq, field) = locate(d);
        let erl = if seg.is_empty() {
            String::new()
        } else {
            format!("{seg}{c0}{seq}{c0}{field}")
        };
        let sev = if d.severity == Severity::Error {
            "E"
        } else {
            "W"
        };
        let text = e(&d.message);
        if old_err {
            segs.push(format!(
                "ERR{fs}{seg}{c0}{seq}{c0}{field}{c0}{}{sub}{}{sub}HL70357",
                d.code,
                code_text(d.code)
            ));
        } else {
            segs.push(format!(
                "ERR{fs}{fs}{erl}{fs}{}{c0}{}{c0}HL70357{fs}{sev}{fs}{fs}{fs}{fs}{text}",
                d.code,
                code_text(d.code)
            ));
        }
    }
    let mut out = segs.join("\r");
    out.push('\r');
    cs.encode(&out)
}

/// (segment, sequence, field) of a diagnostic for ERR-2 / ERR-1.
fn locate(d: &Diagnostic) -> (String, String, String) {
    let seg = d.segment.clone().unwrap_or_default();
    if seg.is_empty() {
        return (String::new(), String::new(), String::new());
    }
    let seq = d
        .location
        .split_once('[')
        .and_then(|(_, r)| r.split_once(']'))
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| {
            if seg.is_empty() {
                String::new()
            } else {
                "1".into()
            }
        });
    let field = d.field.map(|f| f.to_string()).unwrap_or_default();
    (seg, seq, field)
}

fn code_text(code: u16) -> &'static str {
    match code {
        0 => "Message accepted",
        100 => "Segment sequence error",
        101 => "Required field missing",
        102 => "Data type error",
        103 => "Table value not found",
        200 => "Unsupported message type",
        201 => "Unsupported event code",
        202 => "Unsupported processing id",
        203 => "Unsupported version id",
        204 => "Unknown key identifier",
        205 => "Duplicate key identifier",
        206 => "Application record locked",
        _ => "Application internal error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    fn now() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2025-06-24T10:15:00+08:00").unwrap()
    }

    #[test]
    fn original_mode_accept() {
        let m = Message::parse(
            b"MSH|^~\\&|LIS|FX-ZX|HUREN|REGION|20250624||ORU^R01^ORU_R01|C123|P|2.5.1\rPID|1||P1\r",
            None,
        )
        .unwrap();
        let ack =
            String::from_utf8(build_ack(Some(m.header()), AckCode::Accept, &[], now())).unwrap();
        let segs: Vec<&str> = ack.split('\r').collect();
        assert_eq!(
            segs[0],
            "MSH|^~\\&|HUREN|REGION|LIS|FX-ZX|20250624101500+0800||ACK^R01^ACK|AC123|P|2.5.1"
        );
        assert_eq!(segs[1], "MSA|AA|C123");
    }

    #[test]
    fn enhanced_mode_and_err_segment() {
        let m = Message::parse(
            b"MSH|^~\\&|LIS|FX-ZX|||20250624||ORU^R01|C9|P|2.5.1|||AL|NE|CHN|UNICODE UTF-8\r",
            None,
        )
        .unwrap();
        assert!(m.header().enhanced_mode());
        let d = Diagnostic::at(Severity::Error, "OBX", 3, 7, 5, 102, "bad | value");
        let ack =
            String::from_utf8(build_ack(Some(m.header()), AckCode::Error, &[d], now())).unwrap();
        assert!(ack.contains("\rMSA|CE|C9\r"), "{ack}");
        assert!(
            ack.contains("ERR||OBX^3^5|102^Data type error^HL70357|E||||bad \\F\\ value"),
            "{ack}"
        );
        assert!(ack.split('\r').next().unwrap().ends_with("|UNICODE UTF-8"));
    }

    /// hl7-parser 0.3.0 shifts every MSH field of a v2.7 `^~\&#` message, so MSA-2 would be wrong.
    #[test]
    fn regression_v27_truncation_character_keeps_msa2() {
        let m = Message::parse(
            b"MSH|^~\\&#|LIS|FX-ZX|||20250624||ORU^R01^ORU_R01|V27-1|P|2.7\r",
            None,
        )
        .unwrap();
        assert_eq!(m.header().control_id, "V27-1");
        assert_eq!(m.header().version, "2.7");
        let ack =
            String::from_utf8(build_ack(Some(m.header()), AckCode::Accept, &[], now())).unwrap();
        assert!(ack.contains("\rMSA|AA|V27-1\r"), "{ack}");
        assert!(ack.starts_with("MSH|^~\\&#|"));
    }

    #[test]
    fn old_versions_use_err_1() {
        let m =
            Message::parse(b"MSH|^~\\&|LIS|FX-ZX|||20250624||ORU^R01|C1|P|2.3\r", None).unwrap();
        let d = Diagnostic::at(Severity::Error, "PID", 1, 2, 3, 101, "missing");
        let ack =
            String::from_utf8(build_ack(Some(m.header()), AckCode::Error, &[d], now())).unwrap();
        assert!(
            ack.contains("MSA|AE|C1|missing\rERR|PID^1^3^101&Required field missing&HL70357\r"),
            "{ack}"
        );
    }

    #[test]
    fn accept_with_a_text() {
        let m = Message::parse(
            b"MSH|^~\\&|HIS|FX-ZX|||20250624||ADT^A03|C2|P|2.5.1\r",
            None,
        )
        .unwrap();
        let ack = String::from_utf8(build_ack_text(
            Some(m.header()),
            AckCode::Accept,
            &[],
            Some("door_out not stamped: out of order|x"),
            now(),
        ))
        .unwrap();
        assert!(
            ack.ends_with("\rMSA|AA|C2|door_out not stamped: out of order\\F\\x\r"),
            "{ack}"
        );
    }

    #[test]
    fn no_header_still_answers() {
        let d = Diagnostic::general(Severity::Error, "line 1", 100, "no MSH");
        let ack = String::from_utf8(build_ack(None, AckCode::Reject, &[d], now())).unwrap();
        assert!(ack.contains("\rMSA|AR|\r"), "{ack}");
    }
}
