//! A cheap structural pass over a data set before the real parser sees it: every declared
//! element, item and fragment length must fit in the bytes received, and nesting is bounded.
//! dicom-rs allocates a declared length before reading it, so a 4 GB length in a 700-byte
//! data set would otherwise cost gigabytes of memory and tens of seconds (seen with
//! `UN_sequence.dcm`); here it is a precise refusal in microseconds.

use crate::DicomError;

const MAX_DEPTH: usize = 64;
const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_END: (u16, u16) = (0xFFFE, 0xE00D);
const SEQ_END: (u16, u16) = (0xFFFE, 0xE0DD);

#[derive(Clone, Copy)]
struct Enc {
    explicit: bool,
    big: bool,
}

struct Walk<'a> {
    b: &'a [u8],
}

fn err(msg: String) -> DicomError {
    DicomError::Parse(msg)
}

impl Walk<'_> {
    fn u16(&self, p: usize, big: bool) -> Result<u16, DicomError> {
        let s = self.b.get(p..p + 2).ok_or_else(|| {
            err(format!(
                "data set ends inside an element header at byte {p}"
            ))
        })?;
        Ok(if big {
            u16::from_be_bytes([s[0], s[1]])
        } else {
            u16::from_le_bytes([s[0], s[1]])
        })
    }

    fn u32(&self, p: usize, big: bool) -> Result<u32, DicomError> {
        let s = self.b.get(p..p + 4).ok_or_else(|| {
            err(format!(
                "data set ends inside an element header at byte {p}"
            ))
        })?;
        let a = [s[0], s[1], s[2], s[3]];
        Ok(if big {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        })
    }

    fn fits(&self, tag: (u16, u16), at: usize, len: u32, end: usize) -> Result<usize, DicomError> {
        let stop = at
            .checked_add(len as usize)
            .filter(|s| *s <= end)
            .ok_or_else(|| {
                err(format!(
                    "element ({:04X},{:04X}) declares {len} bytes but only {} remain",
                    tag.0,
                    tag.1,
                    end.saturating_sub(at)
                ))
            })?;
        Ok(stop)
    }

    /// Walks elements from `p` to `end` (or to an item delimiter when `in_item`); returns
    /// the position after what it consumed.
    fn elements(
        &self,
        mut p: usize,
        end: usize,
        enc: Enc,
        depth: usize,
        until_delim: bool,
    ) -> Result<usize, DicomError> {
        if depth > MAX_DEPTH {
            return Err(err(format!("sequences nested deeper than {MAX_DEPTH}")));
        }
        while p < end {
            // Item/sequence delimiters are always little endian in LE syntaxes.
            let g = self.u16(p, enc.big)?;
            let e = self.u16(p + 2, enc.big)?;
            let tag = (g, e);
            if tag == ITEM_END || tag == SEQ_END {
                if until_delim && tag == ITEM_END {
                    return Ok(p + 8);
                }
                return Err(err(format!(
                    "unexpected delimiter ({g:04X},{e:04X}) at byte {p}"
                )));
            }
            let (vr, len, head) = if enc.explicit {
                let vr = self
                    .b
                    .get(p + 4..p + 6)
                    .ok_or_else(|| err("data set ends inside an element header".into()))?;
                let vr = [vr[0], vr[1]];
                if matches!(
                    &vr,
                    b"OB"
                        | b"OW"
                        | b"OF"
                        | b"SQ"
                        | b"UT"
                        | b"UN"
                        | b"OD"
                        | b"OL"
                        | b"OV"
                        | b"UC"
                        | b"UR"
                        | b"SV"
                        | b"UV"
                ) {
                    (Some(vr), self.u32(p + 8, enc.big)?, 12)
                } else {
                    (Some(vr), u32::from(self.u16(p + 6, enc.big)?), 8)
                }
            } else {
                (None, self.u32(p + 4, enc.big)?, 8)
            };
            let at = p + head;
            if len == UNDEFINED {
                // A sequence (SQ, implicit VR) or encapsulated pixel data. dicom-rs 0.10
                // misreads UN of undefined length (CP-246) and then allocates whatever
                // length it thinks it saw, so it is refused here.
                if matches!(vr, Some(v) if &v == b"UN") {
                    return Err(err(format!(
                        "element ({g:04X},{e:04X}) is UN with undefined length (a CP-246 \
                         sequence), which huren cannot parse"
                    )));
                }
                let inner = enc;
                let encapsulated =
                    tag == (0x7FE0, 0x0010) || matches!(vr, Some(v) if &v == b"OB" || &v == b"OW");
                p = self.items(at, end, inner, depth + 1, encapsulated)?;
            } else {
                let stop = self.fits(tag, at, len, end)?;
                if matches!(vr, Some(v) if &v == b"SQ") {
                    self.items(at, stop, enc, depth + 1, false)?;
                }
                p = stop;
            }
        }
        if until_delim {
            return Err(err("item without its delimitation item".into()));
        }
        Ok(p)
    }

    /// Items of a sequence (or fragments) from `p`; undefined-length sequences end at a
    /// sequence delimiter, defined ones at `end`.
    fn items(
        &self,
        mut p: usize,
        end: usize,
        enc: Enc,
        depth: usize,
        fragments: bool,
    ) -> Result<usize, DicomError> {
        // Delimiters and item tags are read in the syntax's byte order.
        while p < end {
            let tag = (self.u16(p, enc.big)?, self.u16(p + 2, enc.big)?);
            let len = self.u32(p + 4, enc.big)?;
            let at = p + 8;
            if tag == SEQ_END {
                return Ok(at);
            }
            if tag != ITEM {
                return Err(err(format!(
                    "expected an item in a sequence at byte {p}, found ({:04X},{:04X})",
                    tag.0, tag.1
                )));
            }
            if len == UNDEFINED {
                if fragments {
                    return Err(err("pixel data fragment of undefined length".into()));
                }
                p = self.elements(at, end, enc, depth, true)?;
            } else {
                let stop = self.fits(tag, at, len, end)?;
                if !fragments {
                    self.elements(at, stop, enc, depth, false)?;
                }
                p = stop;
            }
        }
        Ok(p)
    }
}

/// Checks the structure of a data set encoded in `ts` (a transfer syntax UID). Deflated and
/// unknown syntaxes are left to the parser.
pub fn check(b: &[u8], ts: &str) -> Result<(), DicomError> {
    let enc = match ts {
        crate::IMPLICIT_VR_LE => Enc {
            explicit: false,
            big: false,
        },
        crate::EXPLICIT_VR_BE => Enc {
            explicit: true,
            big: true,
        },
        "1.2.840.10008.1.2.1.99" | "1.2.840.10008.1.2.4.95" => return Ok(()),
        _ => Enc {
            explicit: true,
            big: false,
        },
    };
    Walk { b }.elements(0, b.len(), enc, 0, false).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_declared_length_is_refused() {
        // (0008,1115) UN, defined length 0xDFFF_FFFE, nothing behind it.
        let mut b = vec![0x08, 0x00, 0x15, 0x11, b'U', b'N', 0, 0];
        b.extend_from_slice(&0xDFFF_FFFEu32.to_le_bytes());
        let e = check(&b, crate::EXPLICIT_VR_LE).unwrap_err();
        assert!(e.to_string().contains("declares 3758096382 bytes"), "{e}");
    }

    #[test]
    fn fixtures_pass() {
        for (_, f) in crate::fixtures::all() {
            let p = crate::split_part10(&f).unwrap();
            check(&f[p.dataset_offset..], crate::EXPLICIT_VR_LE).unwrap();
        }
    }
}
