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
    /// Byte offsets in `text` where the first `indexed` pieces (text after the segment ID,
    /// split by the field separator) start: a fixed-size index on the stack, so reading a
    /// field is O(1) for the fields huren uses and no segment allocates, however many
    /// fields it has.
    starts: [u32; FIELD_INDEX],
    indexed: u8,
}

/// How many field starts a [`Segment`] indexes (OBR-25 and PID-30 included).
const FIELD_INDEX: usize = 36;

impl<'a> Segment<'a> {
    fn new(text: &'a str, delims: Delimiters, charset: Charset, line: usize) -> Self {
        let mut seg = Segment {
            text,
            delims,
            charset,
            line,
            starts: [0; FIELD_INDEX],
            indexed: 0,
        };
        let fs = delims.field;
        if !fs.is_ascii() || text.len() < 3 || text.len() > u32::MAX as usize {
            return seg;
        }
        let fs = fs as u8;
        let mut count = 1usize;
        seg.starts[0] = 3;
        for off in memchr::memchr_iter(fs, text.as_bytes().get(3..).unwrap_or_default()) {
            if count == FIELD_INDEX {
                break;
            }
            // 3 + off + 1 <= text.len() <= u32::MAX, checked above.
            seg.starts[count] = (3 + off + 1) as u32;
            count += 1;
        }
        seg.indexed = count as u8;
        seg
    }

    /// Piece `i` of the text after the segment ID split by the field separator (piece 0 is
    /// what lies between the ID and the first separator, normally nothing).
    fn piece(&self, i: usize) -> Option<&'a str> {
        let count = usize::from(self.indexed);
        let start = |k: usize| self.starts.get(k).map(|v| *v as usize);
        if count == 0 {
            return nth_piece(self.text.get(3..)?, self.delims.field, i);
        }
        if i + 1 < count {
            return self.text.get(start(i)?..start(i + 1)?.checked_sub(1)?);
        }
        let last = count - 1;
        nth_piece(self.text.get(start(last)?..)?, self.delims.field, i - last)
    }
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
/// The MSH line is read as UTF-8, else GB18030, else lossily (sender identifiers are ASCII in
/// practice).
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
    let raw = b.get(..end).unwrap_or(b);
    // As in `Message::parse`: UTF-8, else GB18030 (trail bytes can look like `|`), else lossy.
    let line: String = match std::str::from_utf8(raw) {
        Ok(t) => t.to_string(),
        Err(_) => Charset::Gb18030
            .decode(raw)
            .unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned()),
    };
    let parts: Vec<&str> = line.splitn(6, fs as char).collect();
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
        // MSH-2 and MSH-18 are read before the message is decoded. The MSH line is read as
        // UTF-8 when it is valid, else in the sender's charset, else as GB18030 (whose trail
        // bytes include `|`, `^`, `~` and `\`, so reading it byte-wise could shift MSH-18),
        // else lossily.
        let msh_line: String = match std::str::from_utf8(msh_raw) {
            Ok(t) => t.to_string(),
            Err(_) => default
                .and_then(|c| c.decode(msh_raw).ok())
                .or_else(|| Charset::Gb18030.decode(msh_raw).ok())
                .unwrap_or_else(|| String::from_utf8_lossy(msh_raw).into_owned()),
        };
        let fs_c = fs as char;
        let parts: Vec<&str> = msh_line.splitn(20, fs_c).collect();
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
                format!(
                    "MSH-2 encoding characters {:?} are not valid (expected e.g. ^~\\&)",
                    enc.chars().take(8).collect::<String>()
                ),
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
        // The header as far as it can be read, so that even a refused message gets an ACK
        // whose MSA-2 names it.
        let provisional = read_header(&Segment::new(&msh_line, delims, Charset::Utf8, 1));
        let msh18 = msh_field(&parts, 18).trim();
        let msh18_first = first_component(msh18, delims.repetition).trim().to_string();
        let charset = if msh18_first.is_empty() {
            default.unwrap_or(Charset::Utf8)
        } else {
            match Charset::from_label(&msh18_first) {
                Some(c) => c,
                None => {
                    return Err(reject(
                        Some(provisional),
                        "MSH-18",
                        103,
                        format!(
                            "character set {:?} is not supported (UNICODE UTF-8, GB 18030-2000, ASCII, 8859/1)",
                            msh18_first.chars().take(40).collect::<String>()
                        ),
                    ));
                }
            }
        };
        let text = match charset.decode(b) {
            Ok(t) => t,
            Err(pos) => {
                let line = 1 + b
                    .get(..pos)
                    .unwrap_or(b)
                    .iter()
                    .filter(|c| **c == b'\r' || **c == b'\n')
                    .count();
                return Err(reject(
                    Some(provisional),
                    &format!("line {line}"),
                    102,
                    format!(
                        "byte {} is not valid {} (charset from {}); nothing was replaced",
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
        let header = msg
            .segments()
            .next()
            .map(|msh| read_header(&msh))
            .unwrap_or_default();
        msg.header = header;
        // Segment IDs must be three upper-case letters or digits. (The raw lines are read
        // here: indexing every segment's fields only to check its ID cost ~5 % of parsing.)
        for (i, r) in msg.segments.iter().enumerate() {
            let seg_text = msg.text.get(r.clone()).unwrap_or("");
            let id = seg_text.get(..3).unwrap_or(seg_text);
            let ok = id.len() == 3
                && id
                    .bytes()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
            let sep_ok = seg_text.len() == 3
                || seg_text
                    .get(3..)
                    .is_some_and(|r| r.starts_with(delims.field));
            if !ok || !sep_ok {
                let shown: String = seg_text.chars().take(20).collect();
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
        msg.check_escapes();
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

    /// Adds a warning for each field holding an escape sequence that is unknown or not
    /// terminated (such sequences are kept literally when the field is read). One pass over
    /// the segments that contain the escape character; at most 20 warnings.
    fn check_escapes(&mut self) {
        let Some(esc) = self.delims.escape else {
            return;
        };
        if !self.text.contains(esc) {
            return;
        }
        let mut found = Vec::new();
        let mut counts: std::collections::HashMap<&str, usize> = Default::default();
        for (line0, r) in self.segments.iter().enumerate() {
            // Plain ranges, not `Segment`s: no field index is needed for this pass.
            let seg_text = self.text.get(r.clone()).unwrap_or("");
            let id = seg_text.get(..3).unwrap_or(seg_text);
            let nth = {
                let n = counts.entry(id).or_insert(0);
                *n += 1;
                *n
            };
            if !seg_text.contains(esc) {
                continue;
            }
            let is_msh = id == "MSH";
            let rest = seg_text.get(3..).unwrap_or("");
            for (k, f) in rest.split(self.delims.field).enumerate().skip(1) {
                let field = if is_msh { k + 1 } else { k };
                if (is_msh && field <= 2) || !f.contains(esc) {
                    continue;
                }
                if unescape(f, &self.delims, self.charset).1 {
                    found.push(Diagnostic::at(
                        Severity::Warning,
                        id,
                        nth,
                        line0 + 1,
                        field,
                        102,
                        "unknown or unterminated escape sequence kept literally",
                    ));
                    if found.len() >= 20 {
                        break;
                    }
                }
            }
            if found.len() >= 20 {
                break;
            }
        }
        self.warnings.extend(found);
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
        self.segments.iter().enumerate().map(move |(i, r)| {
            Segment::new(
                self.text.get(r.clone()).unwrap_or(""),
                self.delims,
                self.charset,
                i + 1,
            )
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
        self.piece(idx).unwrap_or("")
    }

    /// The repetitions of field `n`, raw (an absent field gives one empty repetition).
    pub fn repetitions(&self, n: usize) -> impl Iterator<Item = &'a str> {
        let f = self.raw_field(n);
        // MSH-1 and MSH-2 hold the delimiters themselves: never split them.
        let sep = if self.id() == "MSH" && n <= 2 {
            None
        } else {
            Some(self.delims.repetition)
        };
        let mut parts = sep.map(|c| f.split(c));
        let mut whole = sep.is_none().then_some(f);
        std::iter::from_fn(move || match parts.as_mut() {
            Some(p) => p.next(),
            None => whole.take(),
        })
    }

    /// The first repetition of field `n`, raw.
    fn first_repetition(&self, n: usize) -> &'a str {
        let f = self.raw_field(n);
        if self.id() == "MSH" && n <= 2 {
            return f;
        }
        nth_piece(f, self.delims.repetition, 0).unwrap_or("")
    }

    /// Component `c` (1-based) of repetition `r` (1-based) of field `n`, unescaped.
    pub fn component_of_repetition(&self, n: usize, r: usize, c: usize) -> Cow<'a, str> {
        let rep = self.repetitions(n).nth(r.saturating_sub(1)).unwrap_or("");
        component_of(rep, c, &self.delims, self.charset)
    }

    /// Subcomponent `s` of component `c` of the first repetition of field `n` (all 1-based),
    /// unescaped.
    pub fn subcomponent(&self, n: usize, c: usize, s: usize) -> Cow<'a, str> {
        let rep = self.first_repetition(n);
        let comp = nth_piece(rep, self.delims.component, c.saturating_sub(1)).unwrap_or("");
        let sub = nth_piece(comp, self.delims.subcomponent, s.saturating_sub(1)).unwrap_or("");
        unescape(sub, &self.delims, self.charset).0
    }

    /// Number of fields after the segment ID (for MSH, counting MSH-1).
    pub fn field_count(&self) -> usize {
        let count = usize::from(self.indexed);
        if count > 0 && count < FIELD_INDEX {
            return count - 1;
        }
        let rest = self.text.get(3..).unwrap_or("");
        rest.matches(self.delims.field).count()
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
        let rep = self.first_repetition(n);
        component_of(rep, c, &self.delims, self.charset)
    }
}

/// Reads the header fields from an MSH segment.
fn read_header(msh: &Segment<'_>) -> MessageHeader {
    let comp = |n: usize, c: usize| msh.component(n, c).trim().to_string();
    MessageHeader {
        field_separator: msh.delims.field,
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
        charset: msh.raw_field(18).trim().to_string(),
    }
}

/// The `n`th (0-based) piece of `s` split by `sep`. Delimiters are ASCII in practice, and an
/// ASCII byte never occurs inside a UTF-8 multi-byte sequence, so the search runs on bytes.
#[inline]
pub(crate) fn nth_piece(s: &str, sep: char, n: usize) -> Option<&str> {
    if !sep.is_ascii() {
        return s.split(sep).nth(n);
    }
    let b = s.as_bytes();
    let sep = sep as u8;
    let mut start = 0usize;
    let mut idx = 0usize;
    loop {
        let end = b
            .get(start..)?
            .iter()
            .position(|&c| c == sep)
            .map_or(b.len(), |p| start + p);
        if idx == n {
            return s.get(start..end);
        }
        if end >= b.len() {
            return None;
        }
        start = end + 1;
        idx += 1;
    }
}

/// Component `c` (1-based) of a raw repetition, unescaped.
pub(crate) fn component_of<'a>(
    rep: &'a str,
    c: usize,
    d: &Delimiters,
    cs: Charset,
) -> Cow<'a, str> {
    let raw = nth_piece(rep, d.component, c.saturating_sub(1)).unwrap_or("");
    unescape(raw, d, cs).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_index_agrees_with_splitting() {
        let d = Delimiters {
            field: '|',
            component: '^',
            repetition: '~',
            escape: Some('\\'),
            subcomponent: '&',
            truncation: None,
        };
        for n in 0..90 {
            let fields: Vec<String> = (1..=n)
                .map(|i| {
                    if i % 3 == 0 {
                        String::new()
                    } else {
                        format!("f{i}血")
                    }
                })
                .collect();
            let text = format!("OBX|{}", fields.join("|"));
            let seg = Segment::new(&text, d, Charset::Utf8, 1);
            assert_eq!(seg.field_count(), n.max(1));
            for k in 1..n + 5 {
                let want = fields.get(k - 1).map(String::as_str).unwrap_or("");
                assert_eq!(seg.raw_field(k), want, "{n} fields, field {k}");
            }
        }
        let seg = Segment::new("ZZZ", d, Charset::Utf8, 1);
        assert_eq!(seg.raw_field(1), "");
        assert_eq!(seg.field_count(), 0);
    }

    #[test]
    fn segment_accessors() {
        let m = Message::parse(
            b"MSH|^~\\&|LIS^1.2.3^ISO|FX-ZX|||20250624||ORU^R01|C1|P|2.5.1\rPID|1||A^^^X&1.2&ISO^MR~B^^^NNCHN^NI||\\H\\Wang\\N\\^Fang\r",
            None,
        )
        .unwrap();
        let pid = m.segments().nth(1).unwrap();
        assert_eq!(pid.id(), "PID");
        assert_eq!(pid.line, 2);
        assert_eq!(pid.field_count(), 5);
        assert_eq!(pid.repetitions(3).count(), 2);
        assert_eq!(pid.component_of_repetition(3, 2, 5), "NI");
        assert_eq!(pid.subcomponent(3, 4, 2), "1.2");
        assert_eq!(pid.component(5, 1), "Wang");
        assert_eq!(pid.raw_field(5), "\\H\\Wang\\N\\^Fang");
        assert_eq!(pid.field(9), "");
        assert_eq!(nth_piece("a|b||c", '|', 3), Some("c"));
        assert_eq!(nth_piece("a|b||c", '|', 2), Some(""));
        assert_eq!(nth_piece("a|b||c", '|', 4), None);
        assert_eq!(nth_piece("", '|', 0), Some(""));
        assert_eq!(nth_piece("血|常", '|', 1), Some("常"));
        assert_eq!(nth_piece("a¦b", '¦', 1), Some("b"));
        let msh = m.segments().next().unwrap();
        assert_eq!(msh.raw_field(1), "|");
        assert_eq!(msh.field(2), "^~\\&");
        assert_eq!(msh.repetitions(2).collect::<Vec<_>>(), ["^~\\&"]);
        assert_eq!(m.header().sending_application, "LIS");
        assert_eq!(
            peek_sender(b"\x0bMSH|^~\\&|LIS|FX-SQ01|"),
            Some(("LIS".into(), "FX-SQ01".into()))
        );
    }
}
