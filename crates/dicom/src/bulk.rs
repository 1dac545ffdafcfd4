//! WADO-RS bulk data and frames out of a stored instance (PS3.18 §10.4.1.1.3–4).
//!
//! A bulk data path is the one `/metadata` writes into a `BulkDataURI`: a tag (`GGGGEEEE`),
//! or, inside sequences, `TAG/item/TAG/…` with zero-based item indexes. Native values are
//! answered as little-endian bytes (whatever the stored transfer syntax), encapsulated pixel
//! data as its frames, compressed bytes exactly as stored (never transcoded). Frame numbers
//! are one-based, as in the standard.

use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::mem::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::DicomError;

/// What a bulk data or frames request answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bulk {
    /// One part per value (bulk data) or per frame.
    pub parts: Vec<Vec<u8>>,
    /// The parts' media type: `application/octet-stream` for native values, else the
    /// compressed type of the stored transfer syntax (e.g. `image/jpeg`).
    pub media_type: &'static str,
    /// The transfer syntax of the parts when they are pixel data (compressed or native).
    pub transfer_syntax: Option<String>,
}

/// Why a bulk data or frames request cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    /// The path or frame list is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The attribute, item or frame does not exist in this instance.
    #[error("not found: {0}")]
    NotFound(String),
    /// The stored instance cannot be cut into frames as asked.
    #[error("cannot answer frames: {0}")]
    Unsupported(String),
    /// The stored original does not parse (it did at ingest: a damaged store or a parser
    /// change).
    #[error(transparent)]
    Dicom(#[from] DicomError),
}

impl BulkError {
    /// The HTTP status this error answers.
    pub fn http_status(&self) -> u16 {
        match self {
            BulkError::BadRequest(_) => 400,
            BulkError::NotFound(_) => 404,
            BulkError::Unsupported(_) => 406,
            BulkError::Dicom(_) => 500,
        }
    }
}

/// The bulk data value at `path` of the stored instance `bytes`.
pub fn bulk_data(bytes: &[u8], path: &str) -> Result<Bulk, BulkError> {
    let (obj, ts) = crate::read_object(bytes)?;
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    if segs.len().is_multiple_of(2) {
        return Err(BulkError::BadRequest(format!(
            "bulk data path {path:?} must end in a tag (TAG or TAG/item/TAG…)"
        )));
    }
    let mut here = &obj;
    for pair in segs[..segs.len() - 1].chunks(2) {
        let tag = parse_tag(pair[0])?;
        let n: usize = pair[1].parse().map_err(|_| {
            BulkError::BadRequest(format!("{:?} is not a sequence item index", pair[1]))
        })?;
        let items = here
            .get(tag)
            .ok_or_else(|| BulkError::NotFound(format!("attribute {}", pair[0])))?
            .value()
            .items()
            .ok_or_else(|| BulkError::NotFound(format!("{} is not a sequence", pair[0])))?;
        here = items
            .get(n)
            .ok_or_else(|| BulkError::NotFound(format!("item {n} of {}", pair[0])))?;
    }
    let last = segs[segs.len() - 1];
    let tag = parse_tag(last)?;
    let el = here
        .get(tag)
        .ok_or_else(|| BulkError::NotFound(format!("attribute {last}")))?;
    match el.value() {
        Value::Primitive(p) => Ok(Bulk {
            parts: vec![le_bytes(p)],
            media_type: "application/octet-stream",
            transfer_syntax: None,
        }),
        Value::PixelSequence(_) => all_frames(&obj, &ts),
        Value::Sequence(_) => Err(BulkError::NotFound(format!(
            "{last} is a sequence, not bulk data"
        ))),
    }
}

/// Frames `numbers` (one-based) of the stored instance `bytes`, in the order asked.
pub fn frames(bytes: &[u8], numbers: &[usize]) -> Result<Bulk, BulkError> {
    if numbers.is_empty() {
        return Err(BulkError::BadRequest("no frame numbers".into()));
    }
    let (obj, ts) = crate::read_object(bytes)?;
    let mut all = all_frames(&obj, &ts)?;
    let count = all.parts.len();
    // Repeats are allowed, but never more parts than the instance has frames: the answer
    // stays within the instance's own size.
    if numbers.len() > count {
        return Err(BulkError::BadRequest(format!(
            "{} frame numbers asked of an instance with {count} frame(s)",
            numbers.len()
        )));
    }
    let mut parts = Vec::with_capacity(numbers.len());
    for &n in numbers {
        if n == 0 || n > count {
            return Err(BulkError::NotFound(format!(
                "frame {n} (the instance has {count})"
            )));
        }
        parts.push(all.parts[n - 1].clone());
    }
    all.parts = parts;
    Ok(all)
}

/// Parses a frame list as in `/frames/1,3,5`.
pub fn parse_frame_list(s: &str) -> Result<Vec<usize>, BulkError> {
    s.split(',')
        .map(|f| {
            f.trim()
                .parse::<usize>()
                .map_err(|_| BulkError::BadRequest(format!("{f:?} is not a frame number")))
        })
        .collect()
}

/// The media type of compressed frames in transfer syntax `ts` (PS3.18 Table 8.7.3-2).
pub fn frame_media_type(ts: &str) -> &'static str {
    match ts {
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.57"
        | "1.2.840.10008.1.2.4.70" => "image/jpeg",
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "image/jls",
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "image/jp2",
        "1.2.840.10008.1.2.4.92" | "1.2.840.10008.1.2.4.93" => "image/jpx",
        "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => {
            "image/jphc"
        }
        "1.2.840.10008.1.2.5" => "image/dicom-rle",
        "1.2.840.10008.1.2.4.100" | "1.2.840.10008.1.2.4.101" => "video/mpeg",
        "1.2.840.10008.1.2.4.102"
        | "1.2.840.10008.1.2.4.103"
        | "1.2.840.10008.1.2.4.104"
        | "1.2.840.10008.1.2.4.105"
        | "1.2.840.10008.1.2.4.106" => "video/mp4",
        "1.2.840.10008.1.2.4.107" | "1.2.840.10008.1.2.4.108" => "video/H265",
        _ => "application/octet-stream",
    }
}

fn parse_tag(s: &str) -> Result<Tag, BulkError> {
    let bad = || BulkError::BadRequest(format!("{s:?} is not a tag (8 hex digits)"));
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let g = u16::from_str_radix(&s[..4], 16).map_err(|_| bad())?;
    let e = u16::from_str_radix(&s[4..], 16).map_err(|_| bad())?;
    Ok(Tag(g, e))
}

/// A primitive value as the bytes of its little-endian encoding (strings as stored text).
fn le_bytes(p: &PrimitiveValue) -> Vec<u8> {
    fn flat<const N: usize, T: Copy>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(|x| f(*x)).collect()
    }
    match p {
        PrimitiveValue::U8(v) => v.to_vec(),
        PrimitiveValue::U16(v) => flat(v, u16::to_le_bytes),
        PrimitiveValue::I16(v) => flat(v, i16::to_le_bytes),
        PrimitiveValue::U32(v) => flat(v, u32::to_le_bytes),
        PrimitiveValue::I32(v) => flat(v, i32::to_le_bytes),
        PrimitiveValue::U64(v) => flat(v, u64::to_le_bytes),
        PrimitiveValue::I64(v) => flat(v, i64::to_le_bytes),
        PrimitiveValue::F32(v) => flat(v, f32::to_le_bytes),
        PrimitiveValue::F64(v) => flat(v, f64::to_le_bytes),
        PrimitiveValue::Tags(v) => v
            .iter()
            .flat_map(|t| {
                let [a, b] = t.group().to_le_bytes();
                let [c, d] = t.element().to_le_bytes();
                [a, b, c, d]
            })
            .collect(),
        other => other.to_bytes().into_owned(),
    }
}

fn uint(obj: &InMemDicomObject, t: Tag) -> Option<usize> {
    obj.get(t)?.to_int::<u32>().ok().map(|v| v as usize)
}

/// Every frame of the instance's Pixel Data.
fn all_frames(obj: &InMemDicomObject, ts_uid: &str) -> Result<Bulk, BulkError> {
    let pixel = obj
        .get(tags::PIXEL_DATA)
        .ok_or_else(|| BulkError::NotFound("the instance has no Pixel Data".into()))?;
    let n_frames = uint(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
    match pixel.value() {
        Value::PixelSequence(seq) => {
            let frames = encapsulated_frames(seq.fragments(), seq.offset_table(), n_frames)?;
            Ok(Bulk {
                parts: frames,
                media_type: frame_media_type(ts_uid),
                transfer_syntax: Some(ts_uid.to_string()),
            })
        }
        Value::Primitive(p) => {
            let (rows, cols, spp, bits) = (
                uint(obj, tags::ROWS),
                uint(obj, tags::COLUMNS),
                uint(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1),
                uint(obj, tags::BITS_ALLOCATED),
            );
            let (Some(rows), Some(cols), Some(bits)) = (rows, cols, bits) else {
                return Err(BulkError::Unsupported(
                    "Rows, Columns or Bits Allocated missing".into(),
                ));
            };
            // Bits per frame: YBR_FULL_422 stores two samples per pixel (chroma halved);
            // 1-bit data (masks, overlays in pixel data) is packed across frame ends.
            let ybr422 = obj
                .get(tags::PHOTOMETRIC_INTERPRETATION)
                .and_then(|e| e.to_str().ok())
                .is_some_and(|v| v.trim() == "YBR_FULL_422");
            let samples = if ybr422 { 2 } else { spp };
            let frame_bits = rows
                .checked_mul(cols)
                .and_then(|v| v.checked_mul(samples))
                .and_then(|v| v.checked_mul(bits))
                .filter(|&v| v > 0)
                .ok_or_else(|| BulkError::Unsupported("empty or oversized frame".into()))?;
            if !frame_bits.is_multiple_of(8) && n_frames > 1 {
                return Err(BulkError::Unsupported(format!(
                    "frames of {bits}-bit pixel data are not byte-aligned; ask for the bulk data instead"
                )));
            }
            let frame_len = frame_bits.div_ceil(8);
            let data = le_bytes(p);
            if data.len() / frame_len < n_frames {
                return Err(BulkError::Unsupported(format!(
                    "Pixel Data holds {} bytes, less than {n_frames} frame(s) of {frame_len}",
                    data.len()
                )));
            }
            let parts = data
                .chunks_exact(frame_len)
                .take(n_frames)
                .map(<[u8]>::to_vec)
                .collect();
            let native = if ts_uid == crate::EXPLICIT_VR_BE || ts_uid == crate::IMPLICIT_VR_LE {
                crate::EXPLICIT_VR_LE
            } else if TransferSyntaxRegistry
                .get(ts_uid)
                .is_some_and(|t| t.is_codec_free())
            {
                ts_uid
            } else {
                crate::EXPLICIT_VR_LE
            };
            Ok(Bulk {
                parts,
                media_type: "application/octet-stream",
                transfer_syntax: Some(native.to_string()),
            })
        }
        Value::Sequence(_) => Err(BulkError::Unsupported("Pixel Data is a sequence".into())),
    }
}

/// Cuts encapsulated fragments into frames: one frame (all fragments), one fragment per
/// frame, or by the Basic Offset Table (offsets from the first fragment's item tag; each
/// fragment has an 8-byte item header).
fn encapsulated_frames(
    fragments: &[Vec<u8>],
    offsets: &[u32],
    n_frames: usize,
) -> Result<Vec<Vec<u8>>, BulkError> {
    if n_frames == 1 {
        return Ok(vec![fragments.concat()]);
    }
    if fragments.len() == n_frames {
        return Ok(fragments.to_vec());
    }
    if offsets.len() != n_frames {
        return Err(BulkError::Unsupported(format!(
            "{n_frames} frames in {} fragments and no usable Basic Offset Table",
            fragments.len()
        )));
    }
    let mut starts = Vec::with_capacity(fragments.len());
    let mut pos = 0u64;
    for f in fragments {
        starts.push(pos);
        pos += f.len() as u64 + 8;
    }
    let mut frames = Vec::with_capacity(n_frames);
    for (k, &start) in offsets.iter().enumerate() {
        let end = offsets.get(k + 1).map_or(u64::MAX, |&e| u64::from(e));
        let start = u64::from(start);
        if end <= start || !starts.contains(&start) {
            return Err(BulkError::Unsupported(format!(
                "Basic Offset Table entry {k} ({start}) is not at a fragment"
            )));
        }
        let frame: Vec<u8> = fragments
            .iter()
            .zip(&starts)
            .filter(|(_, &s)| s >= start && s < end)
            .flat_map(|(f, _)| f.iter().copied())
            .collect();
        frames.push(frame);
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/dicom")
            .join(name);
        std::fs::read(p).expect("fixture")
    }

    #[test]
    fn native_pixel_data_is_one_frame_and_the_same_bytes_as_bulk_data() {
        let ct = fixture("ct_series_1.dcm");
        let (obj, _) = crate::read_object(&ct).unwrap();
        let rows = uint(&obj, tags::ROWS).unwrap();
        let cols = uint(&obj, tags::COLUMNS).unwrap();
        let b = bulk_data(&ct, "7FE00010").unwrap();
        assert_eq!(b.parts.len(), 1);
        assert_eq!(b.parts[0].len(), rows * cols * 2);
        let f = frames(&ct, &[1]).unwrap();
        assert_eq!(f.parts, b.parts);
        assert_eq!(f.transfer_syntax.as_deref(), Some(crate::EXPLICIT_VR_LE));
        // The pixel bytes are the tail of the file (little endian, as stored).
        assert!(ct.ends_with(&b.parts[0]));
        assert_eq!(frames(&ct, &[2]).unwrap_err().http_status(), 404);
        assert_eq!(frames(&ct, &[1, 1]).unwrap_err().http_status(), 400);
        assert_eq!(frames(&ct, &[0]).unwrap_err().http_status(), 404);
    }

    #[test]
    fn paths_are_checked() {
        let ct = fixture("ct_series_1.dcm");
        for (p, status) in [
            ("7FE0001", 400),
            ("7FE00010/0", 400),
            ("zzzz0010", 400),
            ("00291010", 404),
            ("00081110/0/00081155", 404),
        ] {
            let e = bulk_data(&ct, p).unwrap_err();
            assert_eq!(e.http_status(), status, "{p}: {e}");
        }
        // A string attribute read as bulk data answers its value.
        let b = bulk_data(&ct, "00080060").unwrap();
        assert_eq!(b.parts[0].trim_ascii(), b"CT");
        assert_eq!(parse_frame_list("1, 3,2").unwrap(), vec![1, 3, 2]);
        assert!(parse_frame_list("1,x").is_err());
        assert_eq!(
            bulk_data(b"not dicom", "7FE00010")
                .unwrap_err()
                .http_status(),
            500
        );
    }

    #[test]
    fn fragments_are_cut_into_frames_by_the_offset_table() {
        let frags = vec![vec![1u8; 10], vec![2u8; 6], vec![3u8; 4]];
        // Frame 1 = fragments 1+2 (offset 0), frame 2 = fragment 3 (offset 18 + 14 = 32).
        let f = encapsulated_frames(&frags, &[0, 32], 2).unwrap();
        assert_eq!(f[0].len(), 16);
        assert_eq!(f[1], vec![3u8; 4]);
        assert!(encapsulated_frames(&frags, &[0, 31], 2).is_err());
        assert!(encapsulated_frames(&frags, &[], 2).is_err());
        assert_eq!(encapsulated_frames(&frags, &[], 3).unwrap(), frags);
        assert_eq!(encapsulated_frames(&frags, &[], 1).unwrap()[0].len(), 20);
    }
}
