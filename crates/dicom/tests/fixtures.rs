//! Project-made fixtures in `fixtures/dicom/`, written by `huren_dicom::fixtures` (run with
//! `HUREN_UPDATE_FIXTURES=1` to rewrite them), checked byte for byte and parsed:
//!
//! - `ct_series_{1,2,3}.dcm`: a three-slice 16×16 CT series, patient 张^三 (UTF-8).
//! - `ct_gb18030.dcm`: a CT slice whose Specific Character Set is GB18030 (王^小东).
//! - `sr_chinese.dcm`: a Comprehensive SR of the CT study with Chinese findings/impression.
//! - `ecg_waveform.dcm`: a 12-lead ECG Waveform Storage object (2 channels).

use std::path::PathBuf;

use huren_dicom::{fixtures, parse_file, study};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/dicom")
}

#[test]
fn fixtures_match_their_generator_and_parse() {
    let update = std::env::var_os("HUREN_UPDATE_FIXTURES").is_some();
    let mut parsed = Vec::new();
    for (name, bytes) in fixtures::all() {
        let p = dir().join(name);
        if update {
            std::fs::create_dir_all(dir()).unwrap();
            std::fs::write(&p, &bytes).unwrap();
        }
        let on_disk = std::fs::read(&p)
            .unwrap_or_else(|_| panic!("{name} missing: run with HUREN_UPDATE_FIXTURES=1"));
        assert!(
            on_disk == bytes,
            "{name} differs from its generator: run with HUREN_UPDATE_FIXTURES=1 and review"
        );
        let i = parse_file(&on_disk).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(i.had_meta, "{name}");
        assert!(i.warnings.is_empty(), "{name}: {:?}", i.warnings);
        parsed.push((name, i));
    }
    let get = |n: &str| &parsed.iter().find(|(k, _)| *k == n).unwrap().1;
    // GB18030: the name bytes on disk are GB18030, decoded back to the same text.
    let gb = get("ct_gb18030.dcm");
    assert_eq!(gb.record.patient_name.as_deref(), Some("王^小东"));
    let raw = std::fs::read(dir().join("ct_gb18030.dcm")).unwrap();
    let (enc, _, _) = encoding_rs::GB18030.encode("王^小东");
    assert!(
        raw.windows(enc.len()).any(|w| w == &enc[..]),
        "the patient name is not GB18030-encoded in the file"
    );
    assert!(!raw.windows(3).any(|w| w == "王".as_bytes()));
    // The ECG waveform is a storage instance like any other.
    let ecg = get("ecg_waveform.dcm");
    assert_eq!(ecg.record.sop_class_uid, fixtures::ECG_12_LEAD);
    assert_eq!(ecg.record.modality.as_deref(), Some("ECG"));
    // The CT series and its SR make one study with the SR's text.
    let mut body = None;
    for n in [
        "ct_series_1.dcm",
        "ct_series_2.dcm",
        "ct_series_3.dcm",
        "sr_chinese.dcm",
    ] {
        body = Some(study::merge(body.as_ref(), get(n), study::Change::New));
    }
    let body = body.unwrap();
    assert_eq!((body.series_count, body.instance_count), (2, 4));
    assert_eq!(body.series[0].instance_count, 3);
    assert_eq!(body.patient_name.as_deref(), Some("张^三"));
    assert_eq!(body.description.as_deref(), Some("胸部CT平扫"));
    let sr = body.sr.unwrap();
    assert!(sr.impression.unwrap().contains("建议3个月后复查"));
}
