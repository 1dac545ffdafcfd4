//! The message parser: segments and fields are byte ranges over the decoded text; values are
//! unescaped only when read.

use std::borrow::Cow;
use std::ops::Range;

use serde::Serialize;

use crate::diag::{Diagnostic, RejectKind, Rejection, Severity};
use crate::escape::unescape;
use crate::Charset;

/// The delimiters of a message (MSH-1 and MSH-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delimiters {
    /// Field separator (MSH-1), usually `|`.
    pub field: char,
    /// Component separator, usually `^`.
    pub component: char,
    /// Repetition separator, usually `~`.
    pub repetition: char,
    /// Escape character, usually `\`.
    pub escape: Option<char>,
    /// Subcomponent separator, usually `&`.
    pub subcomponent: char,
    /// Truncation character (v2.7+), usually `#`.
    pub truncation: Option<char>,
}

/// The fields of MSH that huren uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MessageHeader {
    /// MSH-1.
    pub field_separator: char,
    /// MSH-2 as sent.
    pub encoding_characters: String,
    /// MSH-3.1.
    pub sending_application: String,
    /// MSH-4.1.
    pub sending_facility: String,
    /// MSH-5.1.
    pub receiving_application: String,
    /// MSH-6.1.
    pub receiving_facility: String,
    /// MSH-7 as sent.
    pub timestamp: String,
    /// MSH-9.1 (e.g. `ORU`).
    pub message_type: String,
    /// MSH-9.2 (e.g. `R01`).
    pub trigger_event: String,
    /// MSH-9.3 (e.g. `ORU_R01`).
    pub structure: String,
    /// MSH-10.
    pub control_id: String,
    /// MSH-11.1.
    pub processing_id: String,
    /// MSH-12.1.
    pub version: String,
    /// MSH-15.
    pub accept_ack_type: String,
    /// MSH-16.
    pub application_ack_type: String,
    /// MSH-18 as sent.
    pub charset: String,
}

impl MessageHeader {
    /// Enhanced acknowledgement mode: MSH-15 or MSH-16 is valued.
    pub fn enhanced_mode(&self) -> bool {
        !self.accept_ack_type.is_empty() || !self.application_ack_type.is_empty()
    }
}

/// One parsed message; owns its decoded text.
#[derive(Clone, Debug)]
pub struct Message {
    text: String,
    delims: Delimiters,
    segments: Vec<Range<usize>>,
    header: MessageHeader,
    charset: Charset,
    warnings: Vec<Diagnostic>,
}

/// One segment of a [`Message`].
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    text: &'a str,
    delims: Delimiters,
    charset: Charset,
    /// 1-based line of the segment in the message.
    pub line: usize,
}

const MAX_SEGMENTS: usize = 100_000;

fn reject(
    header: Option<MessageHeader>,
    location: &str,
    code: u16,
    msg: impl Into<String>,
) -> Rejection {
    Rejection::new(
        header,
        RejectKind::Reject,
        Diagnostic::general(Severity::Error, location, code, msg),
    )
}

/// Field `n` (HL7 numbering) of a raw MSH line split by `fs`.
fn msh_field<'a>(parts: &[&'a str], n: usize) -> &'a str {
    // parts[0] = "MSH", parts[1] = MSH-2; MSH-n = parts[n-1] for n >= 2.
    if n < 2 {
        return "";
    }
    parts.get(n - 1).copied().unwrap_or("")
}

fn first_component(s: &str, c: char) -> &str {
    s.split(c).next().unwrap_or("")
}

/// Reads MSH-3.1 and MSH-4.1 (sending application and facility) from raw bytes without
/// decoding the message, so that the sender's configured charset can be looked up first.
/// Sender identifiers are ASCII in practice; other bytes are replaced.
pub fn peek_sender(bytes: &[u8]) -> Option<(String, String)> {
    let b = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF][..]).unwrap_or(bytes);
    let start = b.windows(3).position(|w| w == b"MSH")?;
    let b = &b[start..];
    let fs = *b.get(3)?;
    if !fs.is_ascii() || fs.is_ascii_alphanumeric() {
        return None;
    }
    let end = b
        .iter()
        .position(|c| matches!(c, b'\r' | b'\n'))
        .unwrap_or(b.len());
    let line = String::from_utf8_lossy(&b[..end]);
    let parts: Vec<&str> = line.split(fs as char).collect();
    let comp = parts.get(1).and_then(|e| e.chars().next()).unwrap_or('^');
    let get = |n: usize| {
        first_component(msh_field(&parts, n), comp)
            .trim()
            .to_string()
    };
    Some((get(3), get(4)))
}

impl Message {
    /// Parses a message. A UTF-8 byte-order mark, blank lines, CR / LF / CRLF segment ends and
    /// stray MLLP bytes around the message are tolerated (with a warning); delimiters come from
    /// MSH-1/MSH-2; the charset is MSH-18 when present and known, else `default`, else UTF-8.
    /// Bytes that are not valid in that charset reject the message: nothing is replaced.
    pub fn parse(bytes: &[u8], default: Option<Charset>) -> Result<Message, Rejection> {
        let mut warnings = Vec::new();
        let mut b = bytes;
        let had_bom = b.starts_with(&[0xEF, 0xBB, 0xBF]);
        if had_bom {
            b = &b[3..];
        }
        let start = b
            .iter()
            .position(|c| !matches!(c, b'\r' | b'\n' | b' ' | b'\t' | 0x0b | 0x1c))
            .unwrap_or(b.len());
        if start > 0 && b[..start].iter().any(|c| matches!(c, 0x0b | 0x1c)) {
            warnings.push(Diagnostic::general(
                Severity::Warning,
                "byte 0",
                100,
                "stray MLLP framing bytes before MSH ignored",
            ));
        }
        b = &b[start..];
        let mut end = b.len();
        while end > 0 && matches!(b[end - 1], b'\r' | b'\n' | b' ' | b'\t' | 0x0b | 0x1c | 0) {
            end -= 1;
        }
        if b[end..].iter().any(|c| matches!(c, 0x0b | 0x1c | 0)) {
            warnings.push(Diagnostic::general(
                Severity::Warning,
                "end",
                100,
                "stray MLLP framing bytes after the message ignored",
            ));
        }
        let b = &b[..end];
        if b.is_empty() {
            return Err(reject(None, "byte 0", 100, "empty message"));
        }
        if !b.starts_with(b"MSH") {
            return Err(reject(
                None,
                "line 1",
                100,
                "message does not start with an MSH segment",
            ));
        }
        let Some(&fs) = b.get(3) else {
            return Err(reject(None, "MSH-1", 101, "MSH segment too short"));
        };
        if !fs.is_ascii() || fs.is_ascii_alphanumeric() || matches!(fs, b'\r' | b'\n') {
            return Err(reject(
                None,
                "MSH-1",
                102,
                "MSH-1 field separator is not a printable ASCII delimiter",
            ));
        }
        // The MSH line, raw, to find MSH-2 and MSH-18 before decoding.
        let line_end = b
            .iter()
            .position(|c| matches!(c, b'\r' | b'\n'))
            .unwrap_or(b.len());
        let msh_raw = &b[..line_end];
        let msh_ascii = String::from_utf8_lossy(msh_raw);
        let fs_c = fs as char;
        let parts: Vec<&str> = msh_ascii.split(fs_c).collect();
        let enc = msh_field(&parts, 2);
        let enc_chars: Vec<char> = enc.chars().collect();
        if enc_chars.len() < 2
            || enc_chars.len() > 5
            || enc_chars
                .iter()
                .any(|c| !c.is_ascii() || c.is_ascii_alphanumeric() || *c == ' ' || *c == fs_c)
        {
            return Err(reject(
                None,
                "MSH-2",
                102,
                format!("MSH-2 encoding characters {enc:?} are not valid (expected e.g. ^~\\&)"),
            ));
        }
        let delims = Delimiters {
            field: fs_c,
            component: enc_chars[0],
            repetition: enc_chars[1],
            escape: enc_chars.get(2).copied(),
            subcomponent: enc_chars.get(3).copied().unwrap_or('&'),
            truncation: enc_chars.get(4).copied(),
        };
        let msh18 = msh_field(&parts, 18).trim();
        let msh18_first = first_component(msh18, delims.repetition).trim().to_string();
        let charset = if msh18_first.is_empty() {
            default.unwrap_or(Charset::Utf8)
        } else {
            match Charset::from_label(&msh18_first) {
                Some(c) => c,
                None => {
                    return Err(reject(None, "MSH-18", 103, format!("character set {msh18_first:?} is not supported (UNICODE UTF-8, GB 18030-2000, ASCII, 8859/1)")));
                }
            }
        };
        let text = match charset.decode(b) {
            Ok(t) => t,
            Err(pos) => {
                let line = 1 + b[..pos.min(b.len())]
                    .iter()
                    .filter(|c| **c == b'\r' || **c == b'\n')
                    .count();
                return Err(reject(
                    None,
                    &format!("line {line}"),
                    102,
                    format!(
                        "byte {} is not valid {} (charset from {})",
                        pos + start + usize::from(had_bom) * 3,
                        charset.hl7_label(),
                        if msh18_first.is_empty() {
                            "sender configuration / default"
                        } else {
                            "MSH-18"
                        }
                    ),
                ));
            }
        };
        // Segments: split on CR, LF or CRLF; blank lines skipped.
        let mut segments = Vec::new();
        let mut pos = 0usize;
        let tb = text.as_bytes();
        let mut blank_lines = false;
        while pos < tb.len() {
            let e = tb[pos..]
                .iter()
                .position(|c| matches!(c, b'\r' | b'\n'))
                .map(|p| p + pos)
                .unwrap_or(tb.len());
            if text[pos..e].trim().is_empty() {
                blank_lines = true;
            } else {
                segments.push(pos..e);
                if segments.len() > MAX_SEGMENTS {
                    return Err(reject(
                        None,
                        "message",
                        100,
                        format!("more than {MAX_SEGMENTS} segments"),
                    ));
                }
            }
            // CRLF is one segment end.
            pos = if tb.get(e) == Some(&b'\r') && tb.get(e + 1) == Some(&b'\n') {
                e + 2
            } else {
                e + 1
            };
        }
        if blank_lines {
            warnings.push(Diagnostic::general(
                Severity::Warning,
                "message",
                100,
                "blank lines between segments ignored",
            ));
        }
        let mut msg = Message {
            text,
            delims,
            segments,
            header: MessageHeader::default(),
            charset,
            warnings,
        };
        msg.header = msg.read_header();
        // Segment IDs must be three upper-case letters or digits.
        for (i, seg) in msg.segments().enumerate() {
            let id = seg.id();
            let ok = id.len() == 3
                && id
                    .bytes()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
            let sep_ok = seg.text.len() == 3
                || seg
                    .text
                    .get(3..)
                    .is_some_and(|r| r.starts_with(delims.field));
            if !ok || !sep_ok {
                let shown: String = seg.text.chars().take(20).collect();
                return Err(Rejection::new(
                    Some(msg.header.clone()),
                    RejectKind::Error,
                    Diagnostic::general(
                        Severity::Error,
                        format!("line {}", i + 1),
                        100,
                        format!("line {} is not a segment: {shown:?}", i + 1),
                    ),
                ));
            }
        }
        if msg.header.control_id.is_empty() {
            return Err(Rejection::new(
                Some(msg.header.clone()),
                RejectKind::Reject,
                Diagnostic::at(
                    Severity::Error,
                    "MSH",
                    1,
                    1,
                    10,
                    101,
                    "MSH-10 message control ID is empty",
                ),
            ));
        }
        Ok(msg)
    }

    fn read_header(&self) -> MessageHeader {
        let Some(msh) = self.segments().next() else {
            return MessageHeader::default();
        };
        let d = &self.delims;
        let comp = |n: usize, c: usize| msh.component(n, c).into_owned();
        MessageHeader {
            field_separator: d.field,
            encoding_characters: msh.raw_field(2).to_string(),
            sending_application: comp(3, 1),
            sending_facility: comp(4, 1),
            receiving_application: comp(5, 1),
            receiving_facility: comp(6, 1),
            timestamp: comp(7, 1),
            message_type: comp(9, 1),
            trigger_event: comp(9, 2),
            structure: comp(9, 3),
            control_id: msh.field(10).trim().to_string(),
            processing_id: comp(11, 1),
            version: comp(12, 1),
            accept_ack_type: comp(15, 1),
            application_ack_type: comp(16, 1),
            charset: msh.raw_field(18).to_string(),
        }
    }

    /// The header (MSH).
    pub fn header(&self) -> &MessageHeader {
        &self.header
    }

    /// The delimiters.
    pub fn delimiters(&self) -> Delimiters {
        self.delims
    }

    /// The charset the message was decoded with.
    pub fn charset(&self) -> Charset {
        self.charset
    }

    /// Warnings found while parsing (tolerated oddities).
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// The decoded text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The segments in order.
    pub fn segments(&self) -> impl Iterator<Item = Segment<'_>> {
        self.segments.iter().enumerate().map(move |(i, r)| Segment {
            text: self.text.get(r.clone()).unwrap_or(""),
            delims: self.delims,
            charset: self.charset,
            line: i + 1,
        })
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

impl<'a> Segment<'a> {
    pub(crate) fn delimiters_ref(&self) -> &Delimiters {
        &self.delims
    }

    pub(crate) fn charset_of(&self) -> Charset {
        self.charset
    }

    /// The segment ID (`MSH`, `OBX`, …).
    pub fn id(&self) -> &'a str {
        self.text.get(..3).unwrap_or(self.text)
    }

    /// The raw segment text.
    pub fn raw(&self) -> &'a str {
        self.text
    }

    /// Field `n` as sent (HL7 numbering; for MSH, 1 is the separator and 2 the encoding
    /// characters). Empty when absent.
    pub fn raw_field(&self, n: usize) -> &'a str {
        if n == 0 {
            return self.id();
        }
        let rest = self.text.get(3..).unwrap_or("");
        let is_msh = self.id() == "MSH";
        if is_msh && n == 1 {
            return rest.get(..self.delims.field.len_utf8()).unwrap_or("");
        }
        // rest starts with the field separator. For MSH, rest.split(fs) gives ["", MSH-2, MSH-3…];
        // for others ["", F1, F2…].
        let idx = if is_msh { n - 1 } else { n };
        rest.split(self.delims.field).nth(idx).unwrap_or("")
    }

    /// The repetitions of field `n`, raw.
    pub fn repetitions(&self, n: usize) -> Vec<&'a str> {
        let f = self.raw_field(n);
        if f.is_empty() || (self.id() == "MSH" && n <= 2) {
            return vec![f];
        }
        f.split(self.delims.repetition).collect()
    }

    /// Field `n`, unescaped (all repetitions, delimiters kept as sent).
    pub fn field(&self, n: usize) -> Cow<'a, str> {
        let f = self.raw_field(n);
        if self.id() == "MSH" && n <= 2 {
            return Cow::Borrowed(f);
        }
        unescape(f, &self.delims, self.charset).0
    }

    /// Component `c` (1-based) of the first repetition of field `n`, unescaped.
    pub fn component(&self, n: usize, c: usize) -> Cow<'a, str> {
        let rep = self.repetitions(n).into_iter().next().unwrap_or("");
        component_of(rep, c, &self.delims, self.charset)
    }
}

/// Component `c` (1-based) of a raw repetition, unescaped.
pub(crate) fn component_of<'a>(
    rep: &'a str,
    c: usize,
    d: &Delimiters,
    cs: Charset,
) -> Cow<'a, str> {
    let raw = rep
        .split(d.component)
        .nth(c.saturating_sub(1))
        .unwrap_or("");
    unescape(raw, d, cs).0
}
