//! A bounded, deterministic stand-in for the `dicom_cstore` cargo-fuzz target that runs in
//! `cargo test`: the project's fixture data sets with random byte flips, truncations and
//! insertions go through the C-STORE path (guard, parse, summary, Part 10 wrapping), the
//! C-FIND identifier reader and the preview renderer — never a panic, and an accepted data
//! set round-trips through `to_part10` → `parse_file`.

use proptest::prelude::*;

/// The time any one stage may take on a mutated data set of a few hundred bytes (debug
/// build, a loaded 2-core machine): thousands of times what it needs.
const STAGE_BOUND: std::time::Duration = std::time::Duration::from_secs(2);

fn datasets() -> Vec<(Vec<u8>, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/dicom");
    let mut out = Vec::new();
    for f in [
        "ct_series_1.dcm",
        "sr_chinese.dcm",
        "ct_gb18030.dcm",
        "ecg_waveform.dcm",
    ] {
        let b = std::fs::read(dir.join(f)).unwrap();
        let p = huren_dicom::split_part10(&b).unwrap();
        out.push((
            b[p.dataset_offset..].to_vec(),
            p.transfer_syntax.unwrap_or_default(),
        ));
    }
    out
}

#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        any::<usize>().prop_map(Edit::Truncate),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..12)
        )
            .prop_map(|(i, v)| Edit::Insert(i, v)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]
    // Each stage must answer within STAGE_BOUND (debug build): this stand-in found slow
    // damaged inputs (guard.rs out of step with dicom-rs on VR bytes that are no VR and on
    // binary lengths that are not whole values; a 2^BitsStored preview lookup table), now
    // regression inputs in `tests/slow_inputs.rs`.
    #[test]
    fn mutated_cstore_data_sets_never_panic(which in 0usize..4, edits in proptest::collection::vec(edit(), 1..6)) {
        let sets = datasets();
        let (mut b, ts) = sets[which].clone();
        for e in edits {
            match e {
                Edit::Flip(i, v) if !b.is_empty() => { let n = b.len(); b[i % n] ^= v.max(1); }
                Edit::Truncate(i) if !b.is_empty() => { let n = b.len(); b.truncate(i % n); }
                Edit::Insert(i, v) => { let n = b.len() + 1; b.splice(i % n..i % n, v); }
                _ => {}
            }
        }
        let t = std::time::Instant::now();
        let _ = huren_dicom::identifier::read_identifier(&b, &ts);
        if t.elapsed() >= STAGE_BOUND { panic!("read_identifier slow {:?}", t.elapsed()); }
        let t = std::time::Instant::now();
        let parsed = huren_dicom::parse_cstore(&b, &ts, "", "");
        if t.elapsed() >= STAGE_BOUND { panic!("parse_cstore slow {:?}", t.elapsed()); }
        if let Ok(i) = parsed {
            let p10 = huren_dicom::to_part10(&b, &ts, &i.record.sop_class_uid, &i.record.sop_instance_uid);
            let again = huren_dicom::parse_file(&p10).expect("own Part 10 parses");
            prop_assert_eq!(again.record.sop_instance_uid, i.record.sop_instance_uid);
            let t = std::time::Instant::now();
            let _ = huren_dicom::preview::render_png(&p10, 64);
            if t.elapsed() >= STAGE_BOUND { panic!("render slow {:?}", t.elapsed()); }
            let t = std::time::Instant::now();
            let _ = huren_dicom::bulk::frames(&p10, &[1]);
            let _ = huren_dicom::bulk::bulk_data(&p10, "7FE00010");
            if t.elapsed() >= STAGE_BOUND { panic!("bulk data slow {:?}", t.elapsed()); }
        }
    }
}
