//! FHS/BHS batch files.

use crate::diag::{Diagnostic, RejectKind, Rejection, Severity};

/// Splits a file into messages: FHS/BHS/BTS/FTS envelope lines are dropped and each `MSH`
/// starts a message. A file without an envelope may hold one or several messages back to
/// back. An envelope without any MSH is an error.
pub fn split_batch(bytes: &[u8]) -> Result<Vec<&[u8]>, Rejection> {
    let b = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF][..]).unwrap_or(bytes);
    let mut starts: Vec<usize> = Vec::new();
    let mut envelope: Vec<(usize, usize)> = Vec::new();
    let mut pos = 0usize;
    let mut line_start = true;
    let mut saw_envelope = false;
    while pos < b.len() {
        if line_start {
            let rest = &b[pos..];
            if rest.starts_with(b"MSH") {
                starts.push(pos);
            } else if ["FHS", "BHS", "BTS", "FTS"]
                .iter()
                .any(|s| rest.starts_with(s.as_bytes()))
            {
                let end = rest
                    .iter()
                    .position(|c| matches!(c, b'\r' | b'\n'))
                    .map(|e| pos + e)
                    .unwrap_or(b.len());
                envelope.push((pos, end));
                saw_envelope = true;
            }
        }
        line_start = matches!(b[pos], b'\r' | b'\n');
        pos += 1;
    }
    if starts.is_empty() {
        if saw_envelope {
            return Err(Rejection::new(
                None,
                RejectKind::Reject,
                Diagnostic::general(
                    Severity::Error,
                    "line 1",
                    100,
                    "batch envelope (FHS/BHS) without any MSH message",
                ),
            ));
        }
        return Ok(vec![b]);
    }
    // Without an envelope, anything before the first MSH stays with the first message, so
    // that parsing it reports the junk instead of this function dropping it silently.
    if !saw_envelope {
        if let Some(first) = starts.first_mut() {
            let junk = b
                .get(..*first)
                .is_some_and(|p| p.iter().any(|c| !c.is_ascii_whitespace()));
            if junk {
                *first = 0;
            }
        }
    }
    let mut out = Vec::with_capacity(starts.len());
    // Both lists are in file order: one forward pass (linear even for adversarial files).
    let mut env = envelope.iter().map(|(es, _)| *es).peekable();
    for (i, &s) in starts.iter().enumerate() {
        let next = starts.get(i + 1).copied().unwrap_or(b.len());
        while env.next_if(|es| *es <= s).is_some() {}
        // Stop at the first envelope line inside this range.
        let end = env.peek().copied().filter(|es| *es < next).unwrap_or(next);
        if let Some(m) = b.get(s..end) {
            out.push(m);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_envelopes_and_plain_files() {
        let f = b"FHS|^~\\&\rBHS|^~\\&\rMSH|a\rPID|1\rMSH|b\rBTS|2\rFTS|1\r";
        let m = split_batch(f).unwrap();
        assert_eq!(m, vec![&b"MSH|a\rPID|1\r"[..], &b"MSH|b\r"[..]]);
        assert_eq!(split_batch(b"MSH|x\nPID|1\n").unwrap().len(), 1);
        assert_eq!(split_batch(b"junk").unwrap(), vec![&b"junk"[..]]);
        assert_eq!(
            split_batch(b"junk\rMSH|a\r").unwrap(),
            vec![&b"junk\rMSH|a\r"[..]],
            "leading junk is not dropped silently"
        );
        assert_eq!(split_batch(b"\r\nMSH|a\rMSH|b").unwrap().len(), 2);
        assert!(split_batch(b"BHS|^~\\&\rBTS|0\r").is_err());
    }
}
