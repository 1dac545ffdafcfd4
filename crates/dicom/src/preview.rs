//! PNG previews: the first frame decoded with dicom-pixeldata (pure-Rust codecs only:
//! uncompressed, deflate, RLE, JPEG baseline/extended/lossless, JPEG 2000 through the
//! `openjp2` Rust port), the modality LUT and the data set's first VOI LUT or window applied
//! (else a min-max normalisation), MONOCHROME1 inverted, PALETTE COLOR looked up, scaled down
//! so the longest side fits a size limit, encoded as an 8-bit PNG.
//!
//! JPEG-LS is **not** decoded: dicom-pixeldata's only JPEG-LS codec is CharLS, a C++ library
//! whose build needs cmake and a C++ tool chain; such instances answer
//! [`PreviewError::UnsupportedTransferSyntax`] (HTTP 415), as do objects without pixel data
//! (SR, KOS, waveforms).
//!
//! The output depends only on the input bytes and `max_px`: no threads, no clocks, fixed
//! PNG settings, so a rendered preview can be cached by (instance bytes, size).

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::mem::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_pixeldata::image::{self, DynamicImage, ImageEncoder};
use dicom_pixeldata::{ConvertOptions, PixelDecoder};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::{is_part10, sniff_transfer_syntax, split_part10, DicomError};

/// The default longest side of a preview, pixels.
pub const DEFAULT_MAX_PX: u32 = 512;
/// The largest `max_px` honoured (larger requests are clamped).
pub const MAX_MAX_PX: u32 = 4096;
/// Decoded frames larger than this many bytes are refused (a hostile Rows × Columns).
pub const MAX_FRAME_BYTES: u64 = 256 * 1024 * 1024;
/// The deepest grey samples a preview renders: dicom-pixeldata builds a lookup table of
/// 2^Bits Stored entries.
pub const MAX_BITS_STORED: u32 = 16;

/// Why no preview could be made. [`PreviewError::http_status`] maps each to 415 (nothing
/// huren can render: no pixel data, an unsupported encoding) or 422 (the pixel data is
/// broken).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PreviewError {
    /// The object has no Pixel Data (SR, KOS, waveform, presentation state …).
    #[error("no pixel data: SOP class {0} carries no image")]
    NoPixelData(String),
    /// The transfer syntax's pixel data cannot be decoded here.
    #[error("cannot decode transfer syntax {uid} ({name}): {why}")]
    UnsupportedTransferSyntax {
        /// Transfer Syntax UID.
        uid: String,
        /// Its name.
        name: String,
        /// Why (e.g. no pure-Rust codec).
        why: String,
    },
    /// A pixel layout the renderer does not handle (photometric interpretation, samples per
    /// pixel, bits allocated).
    #[error("unsupported image: {0}")]
    UnsupportedImage(String),
    /// The data set does not parse.
    #[error("cannot read the instance: {0}")]
    Parse(String),
    /// The pixel data is there but does not decode (truncated, inconsistent attributes).
    #[error("broken pixel data: {0}")]
    BrokenPixelData(String),
}

impl PreviewError {
    /// The HTTP status for this error: 415 for what cannot be rendered by design, 422 for
    /// broken data.
    pub fn http_status(&self) -> u16 {
        match self {
            PreviewError::NoPixelData(_)
            | PreviewError::UnsupportedTransferSyntax { .. }
            | PreviewError::UnsupportedImage(_) => 415,
            PreviewError::Parse(_) | PreviewError::BrokenPixelData(_) => 422,
        }
    }
}

impl From<DicomError> for PreviewError {
    fn from(e: DicomError) -> Self {
        match e {
            DicomError::UnsupportedTransferSyntax(uid) => PreviewError::UnsupportedTransferSyntax {
                name: String::new(),
                why: "not a transfer syntax huren can read".into(),
                uid,
            },
            other => PreviewError::Parse(other.to_string()),
        }
    }
}

fn us(o: &InMemDicomObject, t: Tag) -> Option<u32> {
    o.get(t)?.to_int::<u32>().ok()
}

/// Checks every RLE fragment's 64-byte header before dicom-rs 0.10.1 reads it: its decoder
/// allocates as many offsets as the first four bytes say (up to 4 G × 4 bytes — an abort,
/// not a panic, found by the `dicom_cstore` fuzz target) and slices the header without a
/// length check. PS3.5 G.3.1 allows at most 15 segments.
fn rle_headers_fit(obj: &InMemDicomObject) -> Result<(), PreviewError> {
    let Some(frags) = obj
        .get(tags::PIXEL_DATA)
        .and_then(|e| e.value().fragments())
    else {
        return Ok(());
    };
    for (k, f) in frags.iter().enumerate() {
        let n = f
            .get(0..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| {
                PreviewError::BrokenPixelData(format!("RLE fragment {k} has no 64-byte header"))
            })?;
        if f.len() < 64 || n > 15 {
            return Err(PreviewError::BrokenPixelData(format!(
                "RLE fragment {k} declares {n} segments in {} bytes (at most 15 segments, after a 64-byte header)",
                f.len()
            )));
        }
    }
    Ok(())
}

/// Renders the first frame of a DICOM instance (a Part 10 file, or a bare data set whose
/// transfer syntax is sniffed) as a PNG whose longest side is at most `max_px` (clamped to
/// 1..=[`MAX_MAX_PX`]; smaller images are not enlarged).
pub fn render_png(bytes: &[u8], max_px: u32) -> Result<Vec<u8>, PreviewError> {
    let (offset, ts_uid, meta_class, meta_inst) = if is_part10(bytes) {
        let p = split_part10(bytes)?;
        let ts = match p.transfer_syntax.as_deref() {
            Some(ts) if !ts.is_empty() => ts.to_string(),
            _ => sniff_transfer_syntax(bytes.get(p.dataset_offset..).unwrap_or(&[]))?.to_string(),
        };
        (p.dataset_offset, ts, p.sop_class_uid, p.sop_instance_uid)
    } else {
        (0, sniff_transfer_syntax(bytes)?.to_string(), None, None)
    };
    let data = bytes.get(offset..).unwrap_or(&[]);
    let ts = TransferSyntaxRegistry
        .get(&ts_uid)
        .filter(|t| !t.is_unsupported())
        .ok_or_else(|| PreviewError::UnsupportedTransferSyntax {
            uid: ts_uid.clone(),
            name: String::new(),
            why: "unknown transfer syntax".into(),
        })?;
    if data.is_empty() {
        return Err(PreviewError::Parse("empty data set".into()));
    }
    crate::guard::check(data, &ts_uid)?;
    let obj = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        InMemDicomObject::read_dataset_with_ts(data, ts)
    }))
    .map_err(|_| PreviewError::Parse("the data set parser panicked".into()))?
    .map_err(|e| PreviewError::Parse(crate::error_chain(&e)))?;

    let sop_class = crate::text(&obj, tags::SOP_CLASS_UID)
        .or(meta_class)
        .unwrap_or_default();
    if obj.get(tags::PIXEL_DATA).is_none() {
        let what = if sop_class.is_empty() {
            "(unknown)".to_string()
        } else {
            sop_class.clone()
        };
        return Err(PreviewError::NoPixelData(what));
    }
    if ts.is_encapsulated_pixel_data() && !ts.can_decode_all() {
        let why = if ts_uid.starts_with("1.2.840.10008.1.2.4.8") {
            "JPEG-LS needs the CharLS C++ codec, which huren does not build (no pure-Rust decoder)"
        } else {
            "no pure-Rust decoder for this encapsulation"
        };
        return Err(PreviewError::UnsupportedTransferSyntax {
            uid: ts_uid.clone(),
            name: ts.name().to_string(),
            why: why.into(),
        });
    }
    let rows = us(&obj, tags::ROWS).unwrap_or(0);
    let cols = us(&obj, tags::COLUMNS).unwrap_or(0);
    let spp = us(&obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    let bits = us(&obj, tags::BITS_ALLOCATED).unwrap_or(0);
    if rows == 0 || cols == 0 {
        return Err(PreviewError::BrokenPixelData(format!(
            "Rows {rows} × Columns {cols}"
        )));
    }
    if !matches!(bits, 1 | 8 | 16 | 32) {
        return Err(PreviewError::UnsupportedImage(format!(
            "Bits Allocated {bits}"
        )));
    }
    // dicom-pixeldata builds a lookup table of 2^BitsStored entries for grey images (and
    // asserts 1..=32): 2^32 would be gigabytes, 2^23 already seconds in a debug build.
    let stored = us(&obj, tags::BITS_STORED).unwrap_or(bits);
    if stored == 0 || stored > bits {
        return Err(PreviewError::BrokenPixelData(format!(
            "Bits Stored {stored} with Bits Allocated {bits}"
        )));
    }
    if stored > MAX_BITS_STORED {
        return Err(PreviewError::UnsupportedImage(format!(
            "Bits Stored {stored}: previews are rendered for at most {MAX_BITS_STORED} bits"
        )));
    }
    if !matches!(spp, 1 | 3) {
        return Err(PreviewError::UnsupportedImage(format!(
            "Samples per Pixel {spp}"
        )));
    }
    let frame_bytes = rows as u64 * cols as u64 * spp as u64 * (bits as u64).div_ceil(8);
    if frame_bytes > MAX_FRAME_BYTES {
        return Err(PreviewError::UnsupportedImage(format!(
            "a {cols} × {rows} frame of {frame_bytes} bytes is larger than {MAX_FRAME_BYTES}"
        )));
    }
    if !ts.is_encapsulated_pixel_data() {
        // Native pixel data must hold the first frame: refuse before any decoder allocates
        // for a Rows × Columns the bytes do not back.
        let have = obj
            .get(tags::PIXEL_DATA)
            .and_then(|e| e.to_bytes().ok())
            .map_or(0, |b| b.len() as u64);
        let need = if bits == 1 {
            (rows as u64 * cols as u64 * spp as u64).div_ceil(8)
        } else {
            rows as u64 * cols as u64 * spp as u64 * (bits as u64 / 8)
        };
        let photometric_422 = crate::text(&obj, tags::PHOTOMETRIC_INTERPRETATION)
            .is_some_and(|p| p == "YBR_FULL_422");
        let need = if photometric_422 { need / 3 * 2 } else { need };
        if have < need {
            return Err(PreviewError::BrokenPixelData(format!(
                "Pixel Data has {have} bytes; one {cols} × {rows} frame needs {need}"
            )));
        }
    }
    if ts_uid.trim_end_matches('\0') == "1.2.840.10008.1.2.5" {
        rle_headers_fit(&obj)?;
    }
    let photometric = crate::text(&obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default();
    let palette = if photometric == "PALETTE COLOR" {
        Some(Palette::read(&obj)?)
    } else {
        None
    };

    if photometric == "YBR_FULL_422" && !ts.is_encapsulated_pixel_data() {
        // Native YBR_FULL_422 stores Y Y Cb Cr per pixel pair (2 bytes a pixel), which
        // dicom-pixeldata 0.10 sizes as 3 bytes a pixel; converted here.
        return encode(ybr422_native(&obj, cols, rows, bits)?, max_px);
    }
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(ts_uid.as_str())
        .media_storage_sop_class_uid(if sop_class.is_empty() {
            "1.2.840.10008.5.1.4.1.1.7"
        } else {
            sop_class.as_str()
        })
        .media_storage_sop_instance_uid(
            crate::text(&obj, tags::SOP_INSTANCE_UID)
                .or(meta_inst)
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "2.25.0".into()),
        )
        .build()
        .map_err(|e| PreviewError::Parse(crate::error_chain(&e)))?;
    let file = obj.with_exact_meta(meta);

    let image = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let decoded = file.decode_pixel_data_frame(0)?;
        match &palette {
            Some(p) => Ok(p.apply(&decoded)),
            None => decoded.to_dynamic_image_with_options(0, &ConvertOptions::new().force_8bit()),
        }
    }))
    .map_err(|_| PreviewError::BrokenPixelData("the pixel data decoder panicked".into()))?
    .map_err(|e: dicom_pixeldata::Error| classify(&e))?;

    encode(image, max_px)
}

/// Sorts a dicom-pixeldata failure into "cannot by design" (415) and "broken" (422).
fn classify(e: &dicom_pixeldata::Error) -> PreviewError {
    let msg = crate::error_chain(e);
    if msg.starts_with("Unsupported")
        || msg.starts_with("Unknown transfer syntax")
        || msg.contains("unsupported JPEG feature")
    {
        PreviewError::UnsupportedImage(msg)
    } else {
        PreviewError::BrokenPixelData(msg)
    }
}

fn ybr422_native(
    o: &InMemDicomObject,
    cols: u32,
    rows: u32,
    bits: u32,
) -> Result<DynamicImage, PreviewError> {
    if bits != 8 || !cols.is_multiple_of(2) {
        return Err(PreviewError::UnsupportedImage(format!(
            "native YBR_FULL_422 with Bits Allocated {bits} and {cols} columns"
        )));
    }
    let raw = o
        .get(tags::PIXEL_DATA)
        .and_then(|e| e.to_bytes().ok())
        .ok_or_else(|| PreviewError::BrokenPixelData("Pixel Data is not a byte value".into()))?;
    let need = cols as usize * rows as usize * 2;
    let frame = raw.get(..need).ok_or_else(|| {
        PreviewError::BrokenPixelData(format!(
            "YBR_FULL_422 frame needs {need} bytes, Pixel Data has {}",
            raw.len()
        ))
    })?;
    let mut out = Vec::with_capacity(cols as usize * rows as usize * 3);
    let px = |y: u8, cb: u8, cr: u8| {
        let (y, cb, cr) = (y as f32, cb as f32 - 128.0, cr as f32 - 128.0);
        let c = |v: f32| v.round().clamp(0.0, 255.0) as u8;
        [
            c(y + 1.402 * cr),
            c(y - 0.344_136 * cb - 0.714_136 * cr),
            c(y + 1.772 * cb),
        ]
    };
    for q in frame.chunks_exact(4) {
        out.extend_from_slice(&px(q[0], q[2], q[3]));
        out.extend_from_slice(&px(q[1], q[2], q[3]));
    }
    image::RgbImage::from_raw(cols, rows, out)
        .map(DynamicImage::ImageRgb8)
        .ok_or_else(|| PreviewError::BrokenPixelData("YBR_FULL_422 buffer size".into()))
}

fn encode(image: DynamicImage, max_px: u32) -> Result<Vec<u8>, PreviewError> {
    let max_px = max_px.clamp(1, MAX_MAX_PX);
    let image = match image {
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) => image,
        DynamicImage::ImageRgb16(_)
        | DynamicImage::ImageRgba8(_)
        | DynamicImage::ImageRgba16(_)
        | DynamicImage::ImageRgb32F(_)
        | DynamicImage::ImageRgba32F(_) => DynamicImage::ImageRgb8(image.to_rgb8()),
        _ => DynamicImage::ImageLuma8(image.to_luma8()),
    };
    let (w, h) = (image.width(), image.height());
    let image = if w.max(h) > max_px {
        let (nw, nh) = if w >= h {
            (
                max_px,
                ((h as u64 * max_px as u64) / w as u64).max(1) as u32,
            )
        } else {
            (
                ((w as u64 * max_px as u64) / h as u64).max(1) as u32,
                max_px,
            )
        };
        image.resize_exact(nw, nh, image::imageops::FilterType::Triangle)
    } else {
        image
    };
    let mut out = Vec::new();
    let enc = image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::Adaptive,
    );
    let color = match &image {
        DynamicImage::ImageRgb8(_) => image::ExtendedColorType::Rgb8,
        _ => image::ExtendedColorType::L8,
    };
    enc.write_image(image.as_bytes(), image.width(), image.height(), color)
        .map_err(|e| PreviewError::BrokenPixelData(format!("PNG encoding: {e}")))?;
    Ok(out)
}

/// A PALETTE COLOR lookup table (PS3.3 C.7.6.3.1.5), reduced to 8 bits per channel.
struct Palette {
    first: i64,
    channels: [Vec<u8>; 3],
}

impl Palette {
    fn read(o: &InMemDicomObject) -> Result<Palette, PreviewError> {
        let descr = [
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        ];
        let data = [
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        ];
        let mut first = 0i64;
        let mut channels: [Vec<u8>; 3] = Default::default();
        for i in 0..3 {
            let d: Vec<i64> = o
                .get(descr[i])
                .and_then(|e| e.to_multi_int::<i64>().ok())
                .filter(|d| d.len() == 3)
                .ok_or_else(|| {
                    PreviewError::UnsupportedImage(
                        "PALETTE COLOR without a usable lookup table descriptor (segmented palettes are not rendered)".into(),
                    )
                })?;
            let entries = if d[0] == 0 {
                65536
            } else {
                d[0] as usize & 0xFFFF
            };
            first = d[1];
            let lut_bits = d[2];
            let words: Vec<u16> = match o.get(data[i]).map(|e| e.value()) {
                Some(dicom_core::value::Value::Primitive(dicom_core::PrimitiveValue::U16(v))) => {
                    v.to_vec()
                }
                Some(dicom_core::value::Value::Primitive(dicom_core::PrimitiveValue::U8(b))) => b
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect(),
                _ => return Err(PreviewError::UnsupportedImage(
                    "PALETTE COLOR without lookup table data (segmented palettes are not rendered)"
                        .into(),
                )),
            };
            let vals: Vec<u8> = if lut_bits <= 8 && words.len() * 2 == entries {
                words.iter().flat_map(|w| w.to_le_bytes()).collect()
            } else if lut_bits <= 8 {
                words.iter().map(|w| (w & 0xFF) as u8).collect()
            } else {
                words.iter().map(|w| (w >> 8) as u8).collect()
            };
            if vals.is_empty() {
                return Err(PreviewError::BrokenPixelData(
                    "empty palette lookup table".into(),
                ));
            }
            channels[i] = vals;
        }
        Ok(Palette { first, channels })
    }

    fn apply(&self, px: &dicom_pixeldata::DecodedPixelData<'_>) -> DynamicImage {
        let (w, h) = (px.columns(), px.rows());
        let n = w as usize * h as usize;
        let idx: Vec<i64> = if px.bits_allocated() == 16 {
            px.frame_data_ow(0)
                .unwrap_or_default()
                .into_iter()
                .map(i64::from)
                .collect()
        } else {
            px.frame_data(0)
                .map(|d| d.iter().map(|&b| i64::from(b)).collect())
                .unwrap_or_default()
        };
        let mut out = Vec::with_capacity(n * 3);
        for k in 0..n {
            let v = idx.get(k).copied().unwrap_or(0) - self.first;
            for c in &self.channels {
                let i = v.clamp(0, c.len() as i64 - 1) as usize;
                out.push(c[i]);
            }
        }
        image::RgbImage::from_raw(w, h, out)
            .map(DynamicImage::ImageRgb8)
            .unwrap_or_else(|| DynamicImage::new_rgb8(1, 1))
    }
}
