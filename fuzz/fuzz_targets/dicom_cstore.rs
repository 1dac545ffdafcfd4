//! Any bytes as a C-STORE data set, in each transfer syntax the SCP accepts most often:
//! the guard, the parse and summary (`parse_cstore`), the Part 10 wrapping, the C-FIND
//! identifier reader, the preview renderer and WADO-RS bulk data / frames must never panic, and an accepted data set
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

fuzz_target!(
    init: {
        // huren runs dicom-rs behind `catch_unwind` barriers (a panic there is answered as a
        // refusal); libfuzzer-sys's hook would abort on those too. Without it, a panic that
        // escapes huren's own code still reaches libfuzzer-sys's outer `catch_unwind`,
        // which aborts: only escaping panics are crashes. (Known caught one: dicom-rs
        // 0.10.1's RLE decoder on a short segment, see `tests/preview.rs`.)
        std::panic::set_hook(Box::new(|_| {}));
    },
    |data: &[u8]| {
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
        let _ = huren_dicom::bulk::frames(&p10, &[1]);
        let path = String::from_utf8_lossy(&body[..body.len().min(24)]);
        let _ = huren_dicom::bulk::bulk_data(&p10, &path);
        let _ = huren_dicom::bulk::bulk_data(&p10, "7FE00010");
    }
});
