//! Any bytes as a C-STORE data set, in each transfer syntax the SCP accepts most often:
//! the guard, the parse and summary (`parse_cstore`), the Part 10 wrapping, the C-FIND
//! identifier reader and the preview renderer must never panic, and an accepted data set
//! must round-trip through `to_part10` → `parse_file` to the same SOP Instance UID.
#![no_main]

use libfuzzer_sys::fuzz_target;

const TS: &[&str] = &[
    "1.2.840.10008.1.2",      // Implicit VR LE
    "1.2.840.10008.1.2.1",    // Explicit VR LE
    "1.2.840.10008.1.2.2",    // Explicit VR BE
    "1.2.840.10008.1.2.5",    // RLE
    "1.2.840.10008.1.2.4.50", // JPEG baseline
    "1.2.840.10008.1.2.4.90", // JPEG 2000 lossless
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let ts = TS[sel as usize % TS.len()];
    let _ = huren_dicom::identifier::read_identifier(body, ts);
    if let Ok(i) = huren_dicom::parse_cstore(body, ts, "", "") {
        let p10 = huren_dicom::to_part10(
            body,
            ts,
            &i.record.sop_class_uid,
            &i.record.sop_instance_uid,
        );
        let again = huren_dicom::parse_file(&p10).expect("our own Part 10 wrapping parses");
        assert_eq!(again.record.sop_instance_uid, i.record.sop_instance_uid);
        let _ = huren_dicom::preview::render_png(&p10, 64);
    }
});
