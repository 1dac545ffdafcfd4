//! HL7 escape sequences, decoded on characters (never on bytes, so text before an escape can
//! be any script).

use std::borrow::Cow;

use crate::{Charset, Delimiters};

/// Unescapes one raw value: `\F\ \S\ \T\ \R\ \E\ \P\`, `\Xhh…\` (bytes in the message's
/// charset), `\H\ \N\` (highlighting, dropped), `\.br\` and `\.sp\` (line break), other
/// formatted-text commands (dropped). Unknown or unterminated escapes (`\Zxx\`, `\Cxxyy\`,
/// a lone `\`) are kept literally; the flag says whether that happened.
pub fn unescape<'a>(raw: &'a str, d: &Delimiters, cs: Charset) -> (Cow<'a, str>, bool) {
    let Some(esc) = d.escape else {
        return (Cow::Borrowed(raw), false);
    };
    if !raw.contains(esc) {
        return (Cow::Borrowed(raw), false);
    }
    let mut out = String::with_capacity(raw.len());
    let mut odd = false;
    let mut rest = raw;
    while let Some(i) = rest.find(esc) {
        out.push_str(&rest[..i]);
        let after = &rest[i + esc.len_utf8()..];
        let Some(j) = after.find(esc) else {
            // Unterminated: keep the rest literally.
            out.push_str(&rest[i..]);
            odd = true;
            rest = "";
            break;
        };
        let seq = &after[..j];
        match seq {
            "F" => out.push(d.field),
            "S" => out.push(d.component),
            "T" => out.push(d.subcomponent),
            "R" => out.push(d.repetition),
            "E" => out.push(esc),
            "P" => out.push(d.truncation.unwrap_or('#')),
            "H" | "N" => {}
            ".br" => out.push('\n'),
            s if s.starts_with(".sp") => out.push('\n'),
            ".sk" => out.push(' '),
            // Other formatted-text commands (FT): layout only, dropped.
            ".fi" | ".nf" | ".ce" => {}
            s if s.starts_with(".in") || s.starts_with(".ti") => {}
            s if s.starts_with('X') && s.len() > 1 && (s.len() - 1) % 2 == 0 => {
                match hex_bytes(&s[1..]).and_then(|b| cs.decode(&b).ok()) {
                    Some(t) => out.push_str(&t),
                    None => {
                        out.push(esc);
                        out.push_str(seq);
                        out.push(esc);
                        odd = true;
                    }
                }
            }
            _ => {
                out.push(esc);
                out.push_str(seq);
                out.push(esc);
                odd = true;
            }
        }
        rest = &after[j + esc.len_utf8()..];
    }
    out.push_str(rest);
    (Cow::Owned(out), odd)
}

fn hex_bytes(h: &str) -> Option<Vec<u8>> {
    let b = h.as_bytes();
    let mut out = Vec::with_capacity(b.len() / 2);
    for pair in b.chunks(2) {
        let s = std::str::from_utf8(pair).ok()?;
        out.push(u8::from_str_radix(s, 16).ok()?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Delimiters {
        Delimiters {
            field: '|',
            component: '^',
            repetition: '~',
            escape: Some('\\'),
            subcomponent: '&',
            truncation: Some('#'),
        }
    }

    #[test]
    fn standard_escapes() {
        let u = |s| unescape(s, &d(), Charset::Utf8).0.into_owned();
        assert_eq!(u(r"a\F\b\S\c\T\d\R\e\E\f"), r"a|b^c&d~e\f");
        assert_eq!(u(r"\H\bold\N\ and\.br\next"), "bold and\nnext");
        assert_eq!(u(r"\XE8A180\"), "血");
        assert_eq!(u(r"plain"), "plain");
        let (v, odd) = unescape(r"\Zfoo\ and \unterminated", &d(), Charset::Utf8);
        assert!(odd);
        assert_eq!(v, r"\Zfoo\ and \unterminated");
    }

    /// hl7-parser 0.3.0 panics here (byte-indexing after non-ASCII text).
    #[test]
    fn regression_non_ascii_before_escape_does_not_panic() {
        let v = unescape(r"血常规\T\尿常规", &d(), Charset::Utf8).0;
        assert_eq!(v, "血常规&尿常规");
        let v = unescape("血常规\\", &d(), Charset::Utf8).0;
        assert_eq!(v, "血常规\\");
    }

    #[test]
    fn hex_escape_uses_the_message_charset() {
        let gb: String = encoding_rs::GB18030
            .encode("钾")
            .0
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        let raw = format!("\\X{gb}\\");
        assert_eq!(unescape(&raw, &d(), Charset::Gb18030).0, "钾");
    }
}
