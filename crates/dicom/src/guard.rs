//! A cheap structural pass over a data set before the real parser sees it: every declared
//! element, item and fragment length must fit in the bytes received, and nesting is bounded.
//! dicom-rs allocates a declared length before reading it, so a 4 GB length in a 700-byte
//! data set would otherwise cost gigabytes of memory and tens of seconds (seen with
//! `UN_sequence.dcm`); here it is a precise refusal in microseconds.

use crate::DicomError;

/// VRs with a 16-bit length in explicit VR syntaxes (PS3.5 Table 7.1-2).
const SHORT_VRS: &[&[u8; 2]] = &[
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN",
    b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
];
/// VRs with a reserved field and a 32-bit length.
const LONG_VRS: &[&[u8; 2]] = &[
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV",
];
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
            if g == 0xFFFE {
                // dicom-rs reads any (FFFE,xxxx) as tag + length with no VR; an item or an
                // unknown delimiter among elements is structure huren does not accept.
                return Err(err(format!(
                    "unexpected item tag ({g:04X},{e:04X}) among elements at byte {p}"
                )));
            }
            p = self.element(p, tag, end, enc, depth)?;
        }
        if until_delim {
            return Err(err("item without its delimitation item".into()));
        }
        Ok(p)
    }

    /// One element at `p` (tag `tag`, already read) up to `end`: checks it and what it
    /// holds; returns the position after it.
    fn element(
        &self,
        p: usize,
        tag: (u16, u16),
        end: usize,
        enc: Enc,
        depth: usize,
    ) -> Result<usize, DicomError> {
        let (g, e) = tag;
        let (vr, len, head) = if enc.explicit {
            let vr = self
                .b
                .get(p + 4..p + 6)
                .ok_or_else(|| err("data set ends inside an element header".into()))?;
            // Exactly as dicom-rs 0.10 decodes it: the 21 VRs of PS3.5 Table 7.1-2 have
            // a 16-bit length; every other VR — and any two bytes that are not a VR,
            // which dicom-rs reads as UN — a reserved field and a 32-bit length.
            let vr = [vr[0], vr[1]];
            let vr = if SHORT_VRS.contains(&&vr) || LONG_VRS.contains(&&vr) {
                vr
            } else {
                *b"UN"
            };
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
            // Implicit VR: dicom-rs takes the VR from the standard dictionary, so a
            // defined-length element the dictionary calls SQ is parsed as items.
            let vr = implicit_vr(tag);
            (vr, self.u32(p + 4, enc.big)?, 8)
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
            self.items(at, end, inner, depth + 1, encapsulated)
        } else {
            let stop = self.fits(tag, at, len, end)?;
            if let Some(v) = vr.filter(|v| !(len as usize).is_multiple_of(value_size(v))) {
                return Err(err(format!(
                    "element ({g:04X},{e:04X}) {} declares {len} bytes, not a multiple of \
                     its value size {}",
                    String::from_utf8_lossy(&v),
                    value_size(&v)
                )));
            }
            if matches!(vr, Some(v) if &v == b"SQ") {
                self.items(at, stop, enc, depth + 1, false)?;
            }
            Ok(stop)
        }
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

/// The VR dicom-rs gives an element in Implicit VR LE: Pixel Data and overlay data are OW,
/// else the standard dictionary's VR (relaxed), else UN.
fn implicit_vr(tag: (u16, u16)) -> Option<[u8; 2]> {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    if tag == (0x7FE0, 0x0010) || (tag.0 >> 8 == 0x60 && tag.1 == 0x3000) {
        return Some(*b"OW");
    }
    let vr = dicom_dictionary_std::StandardDataDictionary
        .by_tag(dicom_core::Tag(tag.0, tag.1))
        .map(|e| e.vr().relaxed())
        .unwrap_or(dicom_core::VR::UN);
    let s = vr.to_string().as_bytes();
    (s.len() == 2).then(|| [s[0], s[1]])
}

/// The size of one value of a binary VR; dicom-rs reads `len / size` values and then
/// believes it consumed `len` bytes, so a remainder would put the parser out of step with
/// the bytes (and with this walk).
fn value_size(vr: &[u8; 2]) -> usize {
    match vr {
        b"US" | b"SS" | b"OW" => 2,
        b"AT" | b"UL" | b"SL" | b"FL" | b"OF" | b"OL" => 4,
        b"FD" | b"OD" | b"SV" | b"UV" | b"OV" => 8,
        _ => 1,
    }
}

/// Where the summary part of a large data set ends, given its first bytes `prefix` (the
/// whole data set when `whole`): the offset of the first top-level element that is pixel data
/// (group 7FE0 or later) or that does not end within `prefix`. Everything before it is
/// checked as [`check`] checks a data set, so `prefix[..offset]` may be parsed for the
/// summary while the bulk behind it stays on disk. Deflated data sets have no such offset.
pub fn summary_end(prefix: &[u8], ts: &str, whole: bool) -> Result<usize, DicomError> {
    let enc = match ts {
        "1.2.840.10008.1.2.1.99" | "1.2.840.10008.1.2.4.95" => {
            return Err(err(format!(
                "a data set in transfer syntax {ts} cannot be summarised from its first bytes"
            )))
        }
        _ => encoding(ts),
    };
    let w = Walk { b: prefix };
    let end = prefix.len();
    let mut p = 0usize;
    while p < end {
        if end - p < 8 {
            return if whole {
                Err(err(format!(
                    "data set ends inside an element header at byte {p}"
                )))
            } else {
                Ok(p)
            };
        }
        let tag = (w.u16(p, enc.big)?, w.u16(p + 2, enc.big)?);
        if tag.0 >= 0x7FE0 {
            return Ok(p);
        }
        if tag.0 == 0xFFFE {
            return Err(err(format!(
                "unexpected item tag ({:04X},{:04X}) among elements at byte {p}",
                tag.0, tag.1
            )));
        }
        match w.element(p, tag, end, enc, 0) {
            Ok(next) => p = next,
            // Runs past the bytes at hand: the summary ends before it.
            Err(_) if !whole => return Ok(p),
            Err(e) => return Err(e),
        }
    }
    Ok(p)
}

fn encoding(ts: &str) -> Enc {
    match ts {
        crate::IMPLICIT_VR_LE => Enc {
            explicit: false,
            big: false,
        },
        crate::EXPLICIT_VR_BE => Enc {
            explicit: true,
            big: true,
        },
        _ => Enc {
            explicit: true,
            big: false,
        },
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
        "1.2.840.10008.1.2.1.99" => return check_deflated(b),
        "1.2.840.10008.1.2.4.95" => return Ok(()),
        _ => Enc {
            explicit: true,
            big: false,
        },
    };
    Walk { b }.elements(0, b.len(), enc, 0, false).map(|_| ())
}

/// Deflated Explicit VR LE: inflated (at most [`MAX_INFLATED`] bytes) and walked like any
/// Explicit VR LE data set, so a length inside the deflated stream is held to the same rule.
fn check_deflated(b: &[u8]) -> Result<(), DicomError> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(b)
        .take(MAX_INFLATED + 1)
        .read_to_end(&mut out)
        .map_err(|e| err(format!("the deflated data set does not inflate: {e}")))?;
    if out.len() as u64 > MAX_INFLATED {
        return Err(err(format!(
            "the deflated data set inflates to more than {MAX_INFLATED} bytes"
        )));
    }
    let enc = Enc {
        explicit: true,
        big: false,
    };
    Walk { b: &out }
        .elements(0, out.len(), enc, 0, false)
        .map(|_| ())
}

/// The most a deflated data set may inflate to.
pub const MAX_INFLATED: u64 = 1 << 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_of_a_data_set_ends_at_its_pixel_data() {
        let ds = crate::fixtures::ct_dataset("1.2.3", "P1", "A^B");
        let ts = crate::EXPLICIT_VR_LE;
        let end = summary_end(&ds, ts, true).unwrap();
        // (7FE0,0010) OW: 12-byte header and 512 bytes of pixels behind it.
        assert_eq!(ds.len() - end, 12 + 512);
        assert_eq!(&ds[end..end + 4], &[0xE0, 0x7F, 0x10, 0x00]);
        let i = crate::parse_cstore(&ds[..end], ts, "", "").unwrap();
        assert_eq!(i.record.study_instance_uid, "1.2.3");
        // Only the first bytes at hand: the summary ends before the element cut off.
        let cut = &ds[..end - 3];
        let short = summary_end(cut, ts, false).unwrap();
        assert!(short < end - 3);
        // The same bytes as a whole data set are damaged.
        assert!(summary_end(cut, ts, true).is_err());
        // Deflated data sets cannot be summarised from their first bytes.
        assert!(summary_end(&ds, "1.2.840.10008.1.2.1.99", true).is_err());
    }

    #[test]
    fn huge_declared_length_is_refused() {
        // (0008,1115) UN, defined length 0xDFFF_FFFE, nothing behind it.
        let mut b = vec![0x08, 0x00, 0x15, 0x11, b'U', b'N', 0, 0];
        b.extend_from_slice(&0xDFFF_FFFEu32.to_le_bytes());
        let e = check(&b, crate::EXPLICIT_VR_LE).unwrap_err();
        assert!(e.to_string().contains("declares 3758096382 bytes"), "{e}");
    }

    #[test]
    fn bytes_that_are_no_vr_have_a_32_bit_length_like_dicom_rs_reads_them() {
        // (0008,1030) with VR "\x01Q" (no VR): dicom-rs reads UN, reserved, 32-bit length.
        let mut b = vec![0x08, 0x00, 0x30, 0x10, 0x01, b'Q', 0x04, 0x00];
        b.extend_from_slice(&0xBFB0_0000u32.to_le_bytes());
        let e = check(&b, crate::EXPLICIT_VR_LE).unwrap_err();
        assert!(e.to_string().contains("declares 3215982592 bytes"), "{e}");
        // And undefined length on such bytes is UN of undefined length.
        let mut b = vec![0x08, 0x00, 0x30, 0x10, b'z', b'z', 0, 0];
        b.extend_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
        let e = check(&b, crate::EXPLICIT_VR_LE).unwrap_err();
        assert!(e.to_string().contains("UN with undefined length"), "{e}");
    }

    #[test]
    fn binary_lengths_must_be_whole_values() {
        let b = [0x28, 0x00, 0x10, 0x00, b'U', b'S', 3, 0, 1, 2, 3];
        let e = check(&b, crate::EXPLICIT_VR_LE).unwrap_err();
        assert!(
            e.to_string().contains("not a multiple of its value size 2"),
            "{e}"
        );
        // Implicit VR: the dictionary says Rows is US.
        let b = [0x28, 0x00, 0x10, 0x00, 3, 0, 0, 0, 1, 2, 3];
        let e = check(&b, crate::IMPLICIT_VR_LE).unwrap_err();
        assert!(e.to_string().contains("US declares 3 bytes"), "{e}");
    }

    #[test]
    fn implicit_defined_length_sequences_are_walked() {
        // (0008,1115) Referenced Series Sequence (SQ by dictionary), 16 bytes: one item of
        // 8 bytes holding (0008,1030) with a 4 GB length.
        let mut b = vec![0x08, 0x00, 0x15, 0x11, 16, 0, 0, 0];
        b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 8, 0, 0, 0]);
        b.extend_from_slice(&[0x08, 0x00, 0x30, 0x10, 0xF0, 0xFF, 0xFF, 0xFF]);
        let e = check(&b, crate::IMPLICIT_VR_LE).unwrap_err();
        assert!(e.to_string().contains("(0008,1030) declares"), "{e}");
    }

    #[test]
    fn item_tags_among_elements_are_refused() {
        let b = [0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0];
        let e = check(&b, crate::EXPLICIT_VR_LE).unwrap_err();
        assert!(e.to_string().contains("unexpected item tag"), "{e}");
    }

    #[test]
    fn fixtures_pass() {
        for (_, f) in crate::fixtures::all() {
            let p = crate::split_part10(&f).unwrap();
            check(&f[p.dataset_offset..], crate::EXPLICIT_VR_LE).unwrap();
        }
    }
}
