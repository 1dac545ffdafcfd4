//! The third-party corpus (`$HUREN_THIRD_PARTY/ecg`) against the golden values in its
//! `expected.json`: every value listed for a file present is asserted.

use std::path::{Path, PathBuf};

use huren_ecg::{parse, philips_full_rhythm, EcgError, ParseOptions, ParsedEcg};
use huren_model::ecg::{ConfirmationState, QualityFlag, SeriesKind, WaveSeries};
use serde_json::Value;

fn root() -> Option<PathBuf> {
    match std::env::var_os("HUREN_THIRD_PARTY") {
        Some(p) if Path::new(&p).join("ecg/expected.json").is_file() => {
            Some(PathBuf::from(p).join("ecg"))
        }
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "HUREN_THIRD_PARTY (with ecg/expected.json) must be set under CI"
            );
            eprintln!("skipping: HUREN_THIRD_PARTY not set");
            None
        }
    }
}

fn expected(root: &Path) -> Vec<(String, Value)> {
    let v: Value =
        serde_json::from_slice(&std::fs::read(root.join("expected.json")).unwrap()).unwrap();
    let mut out: Vec<(String, Value)> = v["files"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| root.join(k).is_file())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn num(v: &Value) -> f64 {
    match v {
        Value::String(x) => x.parse().unwrap(),
        _ => v.as_f64().unwrap(),
    }
}

fn ints(v: &Value) -> Vec<i32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as i32)
        .collect()
}

fn raw<'a>(p: &'a ParsedEcg, code: &str) -> Option<&'a huren_model::ecg::RawMeasurement> {
    p.body.measurements.raw.iter().find(|r| r.code == code)
}

fn series(p: &ParsedEcg, kind: SeriesKind) -> &WaveSeries {
    p.waveform
        .series(kind)
        .unwrap_or_else(|| panic!("no {kind:?} series"))
}

fn run(root: &Path, name: &str) -> Result<ParsedEcg, EcgError> {
    parse(
        &std::fs::read(root.join(name)).unwrap(),
        &ParseOptions::default(),
    )
}

#[test]
fn every_golden_value_matches() {
    let Some(root) = root() else { return };
    let files = expected(&root);
    assert!(files.len() >= 20, "corpus has only {} files", files.len());
    let mut checked = 0;
    for (name, exp) in &files {
        let bytes = std::fs::read(root.join(name)).unwrap();
        let sha = format!("{:x}", sha256(&bytes));
        assert_eq!(sha, s(&exp["sha256"]), "{name}: file changed");
        if let Some(err) = exp.get("error") {
            let want = s(err).split_once(": ").map(|x| x.1).unwrap_or(s(err));
            let got = run(&root, name).expect_err(name).to_string();
            assert_eq!(got, want, "{name}");
            checked += 1;
            continue;
        }
        match s(&exp["format"]) {
            "hl7-aecg" => check_aecg(&root, name, exp),
            "ge-muse-restingecg" => check_muse(&root, name, exp),
            "philips-sierraecg" => check_philips(&root, name, exp),
            "dicom-waveform" => check_dicom(&root, name, exp),
            "scp-ecg" => check_scp(&bytes, name, exp),
            "ge-cardiosoft-cardiologyxml" => {
                assert_eq!(huren_ecg::detect(&bytes), None, "{name}");
                let e = run(&root, name).unwrap_err();
                assert!(matches!(e, EcgError::Unsupported(_)), "{name}: {e}");
            }
            f => panic!("{name}: unknown format {f}"),
        }
        checked += 1;
    }
    assert_eq!(checked, files.len());
}

fn check_aecg(root: &Path, name: &str, exp: &Value) {
    let want = exp["series"].as_array().unwrap();
    if want.is_empty() {
        let e = run(root, name).unwrap_err();
        assert!(matches!(e, EcgError::Empty(_)), "{name}: {e}");
        return;
    }
    let p = run(root, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(p.waveform.series.len(), want.len(), "{name}");
    for ws in want {
        let kind = match s(&ws["code"]) {
            "RHYTHM" => SeriesKind::Rhythm,
            _ => SeriesKind::RepresentativeBeat,
        };
        let got = series(&p, kind);
        let inc = num(&ws["increment"][0]);
        assert_eq!(s(&ws["increment"][1]), "s");
        assert!((got.sample_rate_hz - 1.0 / inc).abs() < 1e-6, "{name}");
        assert_eq!(got.leads.len(), ws["leads"].as_array().unwrap().len());
        for wl in ws["leads"].as_array().unwrap() {
            let lead = huren_ecg::canonical_lead(s(&wl["code"])).unwrap();
            let l = got.lead(lead).unwrap_or_else(|| panic!("{name}: {lead}"));
            assert_eq!(
                l.samples.len() as u64,
                wl["n"].as_u64().unwrap(),
                "{name} {lead}"
            );
            assert_eq!(s(&wl["scale"][1]), "uV");
            assert_eq!(s(&wl["origin"][1]), "uV");
            assert!((l.scale_uv - num(&wl["scale"][0])).abs() < 1e-9);
            assert!((l.origin_uv - num(&wl["origin"][0])).abs() < 1e-9);
            assert_eq!(l.samples[..5], ints(&wl["first5"])[..], "{name} {lead}");
        }
    }
    let mut statement_seen = false;
    for (k, v) in exp["annotations_first_seen"].as_object().unwrap() {
        if let Some(code) = k.strip_suffix(" (ST)") {
            match code {
                "MDC_ECG_INTERPRETATION_STATEMENT" => {
                    assert_eq!(p.body.statements[0].text, s(v), "{name}");
                    statement_seen = true;
                }
                "MDC_ECG_INTERPRETATION_SUMMARY" => {
                    assert_eq!(p.body.severity.as_deref(), Some(s(v)))
                }
                "MDC_ECG_INTERPRETATION_COMMENT" => assert!(
                    p.body.statements.iter().any(|x| x.text == s(v)),
                    "{name}: comment"
                ),
                c => panic!("{c}"),
            }
        } else if let Some(code) = k.strip_suffix(" (CE)") {
            assert_eq!(
                raw(&p, code).map(|r| r.value.as_str()),
                Some(s(v)),
                "{name} {k}"
            );
        } else {
            let r = raw(&p, k).unwrap_or_else(|| panic!("{name}: {k}"));
            assert_eq!(r.value, s(&v[0]), "{name} {k}");
            assert_eq!(r.unit.as_deref(), v[1].as_str(), "{name} {k}");
        }
    }
    let _ = statement_seen;
    // Normalised values for the known files.
    let m = &p.body.measurements;
    match name {
        "aecg/hl7-example-aecg-2005.xml" | "aecg/fda-ectd-subject1_0.xml" => {
            assert_eq!(
                (m.pr_ms, m.qrs_ms, m.qt_ms, m.qtc_ms),
                (Some(148), Some(120), Some(420), Some(443))
            );
            assert_eq!(
                (m.p_axis_deg, m.qrs_axis_deg, m.t_axis_deg),
                (Some(44), Some(-61), Some(86))
            );
            assert_eq!(
                p.body.acquired_at.as_deref(),
                Some("2002-11-22T09:10:00+08:00")
            );
            assert_eq!(p.body.device.model.as_deref(), Some("ELI250"));
            assert_eq!(p.body.signal.low_pass_hz.as_deref(), Some("150"));
            assert_eq!(p.body.signal.notch_hz.as_deref(), Some("60"));
        }
        "aecg/liryc-hl7v3-aecg-example.xml" => {
            // QTc = 0 in MDC is absent; the Mindray Hodges value is used; vendor axes read.
            assert_eq!(m.qtc_ms, Some(413));
            assert_eq!(m.qtc_formula.as_deref(), Some("hodges"));
            assert_eq!(m.heart_rate_bpm, Some(57));
            assert_eq!(
                (m.p_axis_deg, m.qrs_axis_deg, m.t_axis_deg),
                (Some(60), Some(64), Some(11))
            );
            assert_eq!(p.body.patient.id.as_deref(), Some("25060897140"));
            assert_eq!(p.body.device.serial.as_deref(), Some("FN-3A045256"));
            assert_eq!(p.body.signal.sample_rate_hz, Some(100));
            assert!(
                p.warnings().iter().any(|w| w.contains("= 0")),
                "{:?}",
                p.warnings()
            );
            assert!(p.warnings().iter().any(|w| w.contains("PatientID")));
        }
        "aecg/philips-tracemastervue-converted.xml" => {
            assert_eq!(
                (m.heart_rate_bpm, m.rr_ms, m.pr_ms),
                (Some(41), Some(1463), Some(144))
            );
            assert_eq!(
                (m.qtc_ms, m.qtc_formula.as_deref()),
                (Some(466), Some("bazett"))
            );
            assert!(p.warnings().iter().any(|w| w.contains("no unit")));
        }
        "aecg/fda-minimum_aecg_nouuid.xml" => {
            assert!(p.body.identity.document_uid.is_none());
            assert!(
                p.body.identity.key.starts_with("sha:"),
                "{}",
                p.body.identity.key
            );
        }
        "aecg/fda-minimum_aecg_effectiveTime_high.xml" => {
            assert_eq!(
                p.body.acquired_at.as_deref(),
                Some("2002-11-22T09:10:10+08:00")
            );
        }
        _ => {}
    }
}

fn check_muse(root: &Path, name: &str, exp: &Value) {
    let p = run(root, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let b = &p.body;
    match exp["acquisition"][0].as_str() {
        None => assert!(b.acquired_at.is_none()),
        Some(d) => {
            // MM-DD-YYYY HH:MM:SS in Asia/Shanghai.
            let (mm, rest) = d.split_at(2);
            let (dd, yyyy) = (&rest[1..3], &rest[4..]);
            let t = s(&exp["acquisition"][1]);
            assert_eq!(
                b.acquired_at.as_deref(),
                Some(format!("{yyyy}-{mm}-{dd}T{t}+08:00").as_str())
            );
        }
    }
    match exp["status"].as_str() {
        Some("CONFIRMED") => assert_eq!(b.confirmation.state, ConfirmationState::Confirmed),
        None => assert_eq!(b.confirmation.state, ConfirmationState::Unknown),
        Some(x) => panic!("{x}"),
    }
    assert_eq!(b.device.model.as_deref(), exp["device"].as_str(), "{name}");
    for (k, v) in exp["measurements"].as_object().unwrap() {
        assert_eq!(
            raw(&p, k).map(|r| r.value.as_str()),
            Some(s(v)),
            "{name} {k}"
        );
    }
    let texts: Vec<&str> = b.statements.iter().map(|x| x.text.as_str()).collect();
    let want: Vec<&str> = exp["diagnosis"].as_array().unwrap().iter().map(s).collect();
    assert_eq!(texts, want, "{name}");
    for w in exp["waveforms"].as_array().unwrap() {
        let kind = match s(&w["type"]) {
            "Rhythm" => SeriesKind::Rhythm,
            _ => SeriesKind::RepresentativeBeat,
        };
        let got = series(&p, kind);
        assert_eq!(got.sample_rate_hz, num(&w["sample_base"]));
        for wl in w["leads"].as_array().unwrap() {
            let id = s(&wl["id"]);
            let l = got.lead(id).unwrap();
            assert!(!l.derived);
            assert_eq!(
                l.samples.len() as u64,
                wl["n"].as_u64().unwrap(),
                "{name} {id}"
            );
            assert_eq!(s(&wl["units"]), "MICROVOLTS");
            assert!((l.scale_uv - num(&wl["units_per_bit"])).abs() < 1e-9);
            assert_eq!(l.samples[..5], ints(&wl["first5"])[..], "{name} {id}");
            let sum: i64 = l.samples.iter().map(|&x| i64::from(x)).sum();
            assert_eq!(sum, wl["sum"].as_i64().unwrap(), "{name} {id}");
            let mismatch = b.quality.iter().any(|q| {
                matches!(q, QualityFlag::CrcMismatch { series, lead } if *series == kind && lead == id)
            });
            let zero = b
                .warnings
                .iter()
                .any(|w| w.contains(&format!("{kind:?} {id}: LeadDataCRC32 is 0")));
            if wl["crc32_ok"].as_bool().unwrap() {
                assert!(!mismatch && !zero, "{name} {id}");
            } else {
                assert!(mismatch || zero, "{name} {id}: CRC failure not reported");
            }
        }
        // 8 stored leads → 12 with III, aVR, aVL, aVF derived.
        let names: Vec<&str> = got.leads.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
        );
        let (i, ii, iii) = (
            got.lead("I").unwrap(),
            got.lead("II").unwrap(),
            got.lead("III").unwrap(),
        );
        assert!(iii.derived);
        assert!((iii.uv(7).unwrap() - (ii.uv(7).unwrap() - i.uv(7).unwrap())).abs() < 1e-9);
    }
    if name.contains("guangxi") {
        assert_eq!(b.patient.id.as_deref(), Some("00000000"));
        assert_eq!(b.signal.notch_hz.as_deref(), Some("50"));
        assert_eq!(b.signal.high_pass_hz.as_deref(), Some("0.56"));
        assert!(
            b.critical.is_none(),
            "early-repolarisation ST elevation is a mimic"
        );
        assert_eq!(b.measurements.qtc_ms, Some(417));
    }
    if name.contains("braveheart") {
        assert!(b.warnings.iter().any(|w| w.contains("PatientDemographics")));
        assert!(b.identity.key.starts_with("sha:"));
    }
}

fn check_philips(root: &Path, name: &str, exp: &Value) {
    let bytes = std::fs::read(root.join(name)).unwrap();
    let full = philips_full_rhythm(&bytes).unwrap();
    let labels: Vec<&str> = full.iter().map(|l| l.0.as_str()).collect();
    let want_labels: Vec<&str> = exp["leads"].as_array().unwrap().iter().map(s).collect();
    assert_eq!(labels, want_labels, "{name}");
    let col = |f: &dyn Fn(&[i32]) -> i32| full.iter().map(|l| f(&l.1)).collect::<Vec<_>>();
    let n = exp["samples_per_lead"].as_u64().unwrap() as usize;
    assert!(full.iter().all(|l| l.1.len() == n), "{name}");
    assert_eq!(col(&|l| l[2750]), ints(&exp["sample_2750"]), "{name}");
    assert_eq!(col(&|l| l[0]), ints(&exp["sample_0"]), "{name}");
    assert_eq!(
        col(&|l| *l.iter().min().unwrap()),
        ints(&exp["min"]),
        "{name}"
    );
    assert_eq!(
        col(&|l| *l.iter().max().unwrap()),
        ints(&exp["max"]),
        "{name}"
    );

    let p = parse(&bytes, &ParseOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let b = &p.body;
    assert_eq!(
        b.identity.version.as_deref(),
        Some(format!("{} {}", s(&exp["doc_type"]), s(&exp["doc_ver"])).as_str())
    );
    let r = series(&p, SeriesKind::Rhythm);
    assert_eq!(r.sample_rate_hz, num(&exp["sampling_hz"]));
    // The 1 s calibration tail is dropped: 10 s remain, same samples.
    for (l, (label, full)) in r.leads.iter().zip(&full) {
        assert_eq!(&l.name, label);
        assert_eq!(l.samples.len(), 5000);
        assert_eq!(l.samples[..], full[..5000]);
        assert_eq!(l.scale_uv, num(&exp["resolution_uV"]));
    }
    assert!(b.warnings.iter().any(|w| w.contains("calibration tail")));
    let beats = p.waveform.series(SeriesKind::RepresentativeBeat);
    assert_eq!(
        beats.map_or(0, |s| s.leads.len()) as u64,
        exp["repbeats"].as_u64().unwrap(),
        "{name}"
    );
    let acq = &exp["acquisition"];
    let t = b.acquired_at.as_deref().unwrap();
    assert!(
        t.starts_with(&format!("{}T{}", s(&acq["date"]), s(&acq["time"]))),
        "{t}"
    );
    assert_eq!(b.device.model.as_deref(), Some(s(&exp["machine"])));
    assert_eq!(b.severity.as_deref(), Some(s(&exp["severity"])));
    let st: Vec<(String, String)> = b
        .statements
        .iter()
        .map(|x| (x.text.clone(), x.reason.clone().unwrap_or_default()))
        .collect();
    let want: Vec<(String, String)> = exp["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (s(&x[0]).trim().to_string(), s(&x[1]).trim().to_string()))
        .collect();
    assert_eq!(st, want, "{name}");
    for (k, v) in exp["interpretation_measurements"].as_object().unwrap() {
        assert_eq!(
            raw(&p, k).map(|r| r.value.as_str()),
            Some(s(v)),
            "{name} {k}"
        );
    }
    let sig = s(&exp["mdsignatureline"]);
    if sig.starts_with("Confirmed by") {
        assert_eq!(b.confirmation.state, ConfirmationState::Confirmed);
        assert_eq!(
            b.confirmation.physician.as_deref(),
            Some("Masoudi, Frederick, MD,MSPH")
        );
        assert_eq!(
            b.confirmation.confirmed_at.as_deref(),
            Some("2008-12-24T07:15:13+08:00")
        );
    } else {
        assert_ne!(b.confirmation.state, ConfirmationState::Confirmed, "{name}");
    }
    let crit = b.critical.as_ref().map(|c| c.rule.as_str());
    match name {
        n if n.contains("acute-mi") || n.contains("repbeats") => {
            assert_eq!(crit, Some("stemi"), "{name}")
        }
        n if n.contains("3191723") => assert_eq!(crit, None, "LVH mimic flagged"),
        _ => assert_eq!(crit, None, "{name}"),
    }
    if name.contains("leads-off") {
        assert_eq!(b.measurements.heart_rate_bpm, None);
        assert!(
            b.quality
                .iter()
                .any(|q| matches!(q, QualityFlag::Saturated { lead } if lead == "I")),
            "{:?}",
            b.quality
        );
        assert!(b
            .quality
            .iter()
            .any(|q| matches!(q, QualityFlag::LeadOff { lead } if lead == "V1")));
    }
}

fn check_dicom(root: &Path, name: &str, exp: &Value) {
    let p = run(root, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let b = &p.body;
    assert_eq!(
        b.identity.version.as_deref(),
        Some(s(&exp["sop_class_uid"]))
    );
    assert_eq!(
        b.device.manufacturer.as_deref(),
        Some(s(&exp["manufacturer"]))
    );
    assert_eq!(b.device.model.as_deref(), Some(s(&exp["model"])));
    let groups = exp["groups"].as_array().unwrap();
    assert_eq!(p.waveform.series.len(), groups.len(), "{name}");
    for g in groups {
        let kind = match s(&g["originality"]) {
            "ORIGINAL" => SeriesKind::Rhythm,
            _ => SeriesKind::RepresentativeBeat,
        };
        let got = series(&p, kind);
        assert_eq!(got.sample_rate_hz, num(&g["fs"]));
        assert_eq!(s(&g["interp"]), "SS");
        assert_eq!(got.leads.len() as u64, g["channels"].as_u64().unwrap());
        let sens = num(&g["sensitivity"][0]) * num(&g["sensitivity"][2]);
        assert_eq!(s(&g["sensitivity"][1]), "uV");
        for (src, l) in g["sources"].as_array().unwrap().iter().zip(&got.leads) {
            let lead = huren_ecg::canonical_lead(s(&src[0])).unwrap();
            assert!(got.lead(lead).is_some(), "{name}: {lead}");
            assert_eq!(l.samples.len() as u64, g["samples"].as_u64().unwrap());
            assert!(
                (l.scale_uv - sens).abs() < 1e-9,
                "{name}: {} vs {sens}",
                l.scale_uv
            );
        }
    }
    for a in exp["annotations"].as_array().unwrap() {
        let a = a.as_array().unwrap();
        if a.len() == 2 {
            assert!(
                b.statements.iter().any(|x| x.text == s(&a[1])),
                "{name}: {:?}",
                a[1]
            );
            continue;
        }
        let code = format!("{}:{}", s(&a[1]), s(&a[0]));
        if s(&a[3]) == "None" {
            continue; // fiducial points without a numeric value
        }
        let r = raw(&p, &code).unwrap_or_else(|| panic!("{name}: {code}"));
        assert_eq!(
            num(&Value::String(r.value.clone())),
            num(&a[3]),
            "{name} {code}"
        );
        assert_eq!(r.unit.as_deref(), a[4].as_str(), "{name} {code}");
    }
    if name.contains("ecgtoolkit") {
        assert_eq!(b.measurements.p_axis_deg, Some(44));
        assert!(
            b.warnings.iter().any(|w| w.contains("\"ms\"")),
            "{:?}",
            b.warnings
        );
    }
    if name.contains("pydicom") {
        assert_eq!(b.measurements.qtc_ms, Some(370));
        assert!(
            b.warnings.iter().any(|w| w.contains("channels")),
            "{:?}",
            b.warnings
        );
    }
    if name.contains("guangxi") {
        assert_eq!(b.measurements.heart_rate_bpm, Some(97));
        assert_eq!(b.measurements.qrs_axis_deg, Some(63));
    }
}

fn check_scp(bytes: &[u8], name: &str, exp: &Value) {
    // SCP-ECG is not one of the adapters: it must be refused as an unknown format. Its
    // golden section table is checked here so the fixture stays what we think it is.
    assert_eq!(huren_ecg::detect(bytes), None);
    let crc = crc_ccitt(&bytes[2..]);
    assert_eq!(format!("{crc:#x}"), s(&exp["file_crc_ccitt"]));
    assert_eq!(u16::from_le_bytes([bytes[0], bytes[1]]), crc, "{name}");
    let len = u32::from_le_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
    assert_eq!(u64::from(len), exp["declared_length"].as_u64().unwrap());
    // Section 0 starts at byte 6; its version byte is at offset 8 of its header.
    assert_eq!(
        u64::from(bytes[6 + 8]),
        exp["section0_version"].as_u64().unwrap()
    );
    for (i, row) in exp["sections_id_len_index1based"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let at = 6 + 16 + i * 10;
        let id = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        let l = u32::from_le_bytes([bytes[at + 2], bytes[at + 3], bytes[at + 4], bytes[at + 5]]);
        let idx = u32::from_le_bytes([bytes[at + 6], bytes[at + 7], bytes[at + 8], bytes[at + 9]]);
        assert_eq!(
            [u64::from(id), u64::from(l), u64::from(idx)],
            [
                row[0].as_u64().unwrap(),
                row[1].as_u64().unwrap(),
                row[2].as_u64().unwrap()
            ]
        );
    }
    assert_eq!(
        parse(bytes, &ParseOptions::default()).unwrap_err(),
        EcgError::UnknownFormat
    );
}

fn crc_ccitt(b: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &x in b {
        crc ^= u16::from(x) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A small SHA-256 (the corpus pins files by it; no extra dependency for one check).
fn sha256(data: &[u8]) -> Sha {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for chunk in msg.chunks(64) {
        let mut w = [0u32; 64];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                chunk[4 * i],
                chunk[4 * i + 1],
                chunk[4 * i + 2],
                chunk[4 * i + 3],
            ]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let mut v = h;
        for i in 0..64 {
            let s1 = v[4].rotate_right(6) ^ v[4].rotate_right(11) ^ v[4].rotate_right(25);
            let ch = (v[4] & v[5]) ^ (!v[4] & v[6]);
            let t1 = v[7]
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = v[0].rotate_right(2) ^ v[0].rotate_right(13) ^ v[0].rotate_right(22);
            let maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
            let t2 = s0.wrapping_add(maj);
            v = [
                t1.wrapping_add(t2),
                v[0],
                v[1],
                v[2],
                v[3].wrapping_add(t1),
                v[4],
                v[5],
                v[6],
            ];
        }
        for i in 0..8 {
            h[i] = h[i].wrapping_add(v[i]);
        }
    }
    Sha(h)
}

struct Sha([u32; 8]);

impl std::fmt::LowerHex for Sha {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for x in self.0 {
            write!(f, "{x:08x}")?;
        }
        Ok(())
    }
}
