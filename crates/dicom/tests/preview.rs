//! PNG previews: the project's fixtures render to decodable PNGs of the expected size; every
//! file of the third-party corpus's images/ and compressed/ renders or is refused with a
//! 415/422 reason (never a panic). `cargo test -p huren-dicom --test preview -- --nocapture`
//! prints the table that docs/dicom.md keeps.

mod common;
use common::corpus;

use std::path::Path;

use huren_dicom::preview::{render_png, PreviewError};

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/dicom")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// (width, height, color type) of a PNG.
fn decode(png_bytes: &[u8]) -> (u32, u32, png::ColorType, Vec<u8>) {
    let dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut r = dec.read_info().expect("PNG header");
    let mut buf = vec![0; r.output_buffer_size().expect("size")];
    let info = r.next_frame(&mut buf).expect("PNG frame");
    buf.truncate(info.buffer_size());
    (info.width, info.height, info.color_type, buf)
}

#[test]
fn fixture_ct_renders_to_a_png_of_the_expected_size() {
    let ct = fixture("ct_series_1.dcm");
    let full = render_png(&ct, 512).expect("CT renders");
    let (w, h, c, px) = decode(&full);
    assert_eq!(c, png::ColorType::Grayscale);
    assert!(w > 0 && h > 0 && w.max(h) <= 512, "{w}x{h}");
    // Windowed, not flat.
    let (lo, hi) = px
        .iter()
        .fold((255u8, 0u8), |(l, h), &v| (l.min(v), h.max(v)));
    assert!(hi > lo, "flat image {lo}..{hi}");
    // Deterministic.
    assert_eq!(render_png(&ct, 512).unwrap(), full);
    // Size limit: longest side = 16, aspect kept.
    let small = render_png(&ct, 16).unwrap();
    let (sw, sh, _, _) = decode(&small);
    assert_eq!(sw.max(sh), 16.min(w.max(h)));
    assert_eq!(
        (sw as f64 / sh as f64 * 10.0).round(),
        (w as f64 / h as f64 * 10.0).round()
    );
    // The bare data set (no meta group) renders the same.
    let p10 = huren_dicom::split_part10(&ct).unwrap();
    assert_eq!(render_png(&ct[p10.dataset_offset..], 512).unwrap(), full);
}

#[test]
fn objects_without_pixels_are_415_and_garbage_is_422() {
    for f in ["sr_chinese.dcm", "ecg_waveform.dcm"] {
        let e = render_png(&fixture(f), 512).unwrap_err();
        assert!(matches!(e, PreviewError::NoPixelData(_)), "{f}: {e}");
        assert_eq!(e.http_status(), 415);
    }
    let mut ct = fixture("ct_series_1.dcm");
    ct.truncate(ct.len() - 100);
    let e = render_png(&ct, 512).unwrap_err();
    assert_eq!(e.http_status(), 422, "{e}");
    let e = render_png(b"not dicom at all", 512).unwrap_err();
    assert_eq!(e.http_status(), 422, "{e}");
}

#[test]
fn corpus_images_and_compressed_render_or_answer_415() {
    let Some(root) = corpus() else { return };
    let mut rendered = 0;
    let mut bad = Vec::new();
    println!("| file | preview | reason / notes |\n| --- | --- | --- |");
    for sub in ["images", "compressed"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(sub))
            .expect("corpus dir")
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        for p in files {
            let b = std::fs::read(&p).unwrap();
            let name = format!("{sub}/{}", p.file_name().unwrap().to_string_lossy());
            match render_png(&b, 512) {
                Ok(png_bytes) => {
                    let (w, h, c, _) = decode(&png_bytes);
                    assert!(w.max(h) <= 512);
                    println!("| `{name}` | rendered {w}×{h} {c:?} | |");
                    if let Some(dir) = std::env::var_os("HUREN_PREVIEW_OUT") {
                        let out = Path::new(&dir).join(name.replace('/', "_") + ".png");
                        std::fs::write(out, &png_bytes).unwrap();
                    }
                    rendered += 1;
                }
                Err(e) => {
                    println!("| `{name}` | {} | {e} |", e.http_status());
                    // Refused by design in these folders: JPEG-LS (no pure-Rust codec) and
                    // 12-bit JPEG (jpeg-decoder does 8-bit only); both 415.
                    let by_design = name.contains("jls")
                        || name.contains("jpeg_ls")
                        || e.to_string().contains("SamplePrecision(12)");
                    if !by_design || e.http_status() != 415 {
                        bad.push(format!("{name}: {e}"));
                    }
                }
            }
        }
    }
    assert!(bad.is_empty(), "should render: {bad:#?}");
    assert!(rendered >= 25, "{rendered} rendered");
}

/// A 16 × 16 8-bit CT in RLE Lossless whose one Pixel Data fragment is `frag`, as a Part 10
/// file made by the project's generator.
fn rle_ct(patient: &str, frag: Vec<u8>) -> Vec<u8> {
    use dicom_core::value::{PixelFragmentSequence, PrimitiveValue, Value};
    use dicom_core::{DataElement, VR};
    use dicom_dictionary_std::tags;
    let mut o = huren_dicom::fixtures::ct_object("1.2.3.4", patient, "RLE^TEST");
    o.put(DataElement::new(
        tags::BITS_ALLOCATED,
        VR::US,
        PrimitiveValue::from(8u16),
    ));
    o.put(DataElement::new(
        tags::BITS_STORED,
        VR::US,
        PrimitiveValue::from(8u16),
    ));
    o.put(DataElement::new(
        tags::HIGH_BIT,
        VR::US,
        PrimitiveValue::from(7u16),
    ));
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        Value::PixelSequence(PixelFragmentSequence::new(vec![], vec![frag])),
    ));
    let rle = "1.2.840.10008.1.2.5";
    let ds = huren_dicom::fixtures::encode(&o, rle);
    assert!(!ds.is_empty(), "encodes");
    let i = huren_dicom::parse_cstore(&ds, rle, "", "").expect("the data set itself is fine");
    huren_dicom::to_part10(
        &ds,
        rle,
        &i.record.sop_class_uid,
        &i.record.sop_instance_uid,
    )
}

/// dicom-rs 0.10.1's RLE decoder indexes past a segment that decodes to fewer bytes than
/// Rows × Columns (`rle_lossless.rs:223`, found by the `dicom_cstore` fuzz target): the
/// panic stays behind huren's barrier and the preview is a refusal, bulk data still works.
#[test]
fn a_short_rle_segment_is_a_refusal_not_a_panic() {
    // One RLE segment at offset 64 that decodes to 4 bytes instead of 256.
    let mut frag = vec![0u8; 64];
    frag[0] = 1;
    frag[4] = 64;
    frag.extend_from_slice(&[3, 10, 20, 30, 40, 0]);
    let p10 = rle_ct("P1", frag.clone());
    let e = render_png(&p10, 64).unwrap_err();
    assert_eq!(e.http_status(), 422, "{e}");
    let f = huren_dicom::bulk::frames(&p10, &[1]).expect("frames are cut, not decoded");
    assert_eq!(f.parts, vec![frag]);
    assert_eq!(f.media_type, "image/dicom-rle");
}

/// An RLE header that declares four billion segments: dicom-rs 0.10.1 would try to allocate
/// 16 GB for the offsets (an abort, found by the fuzz target); huren refuses it first.
#[test]
fn an_rle_header_with_absurd_segment_count_is_refused_before_decoding() {
    let mut frag = vec![0u8; 80];
    frag[0..4].copy_from_slice(&0xF000_0000u32.to_le_bytes());
    let e = render_png(&rle_ct("P2", frag), 64).unwrap_err();
    assert_eq!(e.http_status(), 422, "{e}");
    assert!(e.to_string().contains("segments"), "{e}");
}
