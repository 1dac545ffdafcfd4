//! Regression tests for the slow damaged inputs the `cstore_fuzz` stand-in found: mutated
//! fixture data sets that took 0.3–7 s (release; 15–110 s in a debug build) in
//! `read_identifier` / `parse_cstore`, or 62 ms release in the preview. Each must now be
//! answered — refused or rendered — in well under a second, debug build included.
//!
//! - `unknown_vr_long_length*.bin`: a VR field mutated into two bytes that are no VR; dicom-rs
//!   reads those as UN with a 32-bit length (3.2 GB here) and allocates it before failing,
//!   while the guard used to read a 16-bit length and let the data set through.
//! - `ul_length_not_multiple.bin`: (0020,000E) with its VR mutated to UL and 34 bytes;
//!   dicom-rs reads 8 values (32 bytes) and believes it consumed 34, so the next header is
//!   read two bytes late and claims 540 MB.
//! - `bits_stored_23.bin`: Bits Stored 23 with Bits Allocated 16 parses, and dicom-pixeldata
//!   then builds a 2^23-entry lookup table (2^32 would be gigabytes).

use std::time::{Duration, Instant};

const TS: &str = "1.2.840.10008.1.2.1";

fn input(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/slow_inputs")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every stage the C-STORE path and the preview run, with its time.
fn all_stages(b: &[u8]) -> (Result<(), String>, Option<Result<(), String>>, Duration) {
    let t = Instant::now();
    let _ = huren_dicom::identifier::read_identifier(b, TS);
    let parsed = huren_dicom::parse_cstore(b, TS, "", "");
    let render = parsed.as_ref().ok().map(|i| {
        let p10 =
            huren_dicom::to_part10(b, TS, &i.record.sop_class_uid, &i.record.sop_instance_uid);
        huren_dicom::preview::render_png(&p10, 64)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    (
        parsed.map(|_| ()).map_err(|e| e.to_string()),
        render,
        t.elapsed(),
    )
}

const BOUND: Duration = Duration::from_millis(500);

#[test]
fn unknown_vr_with_a_huge_32_bit_length_is_refused_at_once() {
    for f in ["unknown_vr_long_length.bin", "unknown_vr_long_length_2.bin"] {
        let (parsed, _, took) = all_stages(&input(f));
        let e = parsed.unwrap_err();
        assert!(e.contains("declares") && e.contains("remain"), "{f}: {e}");
        assert!(took < BOUND, "{f}: {took:?}");
    }
}

#[test]
fn binary_value_length_not_a_multiple_of_its_size_is_refused_at_once() {
    let (parsed, _, took) = all_stages(&input("ul_length_not_multiple.bin"));
    let e = parsed.unwrap_err();
    assert!(
        e.contains("(0020,000E) UL declares 34 bytes, not a multiple"),
        "{e}"
    );
    assert!(took < BOUND, "{took:?}");
}

#[test]
fn bits_stored_above_bits_allocated_is_a_broken_preview_at_once() {
    let (parsed, render, took) = all_stages(&input("bits_stored_23.bin"));
    parsed.unwrap();
    let e = render.expect("parsed, so rendered").unwrap_err();
    assert!(e.contains("Bits Stored 23 with Bits Allocated 16"), "{e}");
    assert!(took < BOUND, "{took:?}");
}
