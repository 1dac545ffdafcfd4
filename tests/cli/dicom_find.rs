//! C-FIND SCP against dcmtk `findscu` (Study Root and Patient Root): answers and counts at
//! every level, wildcards, date ranges, list-of-UID matching and refusals.

use crate::dicom::{dcmtk, dcmtk_run, start_with_fixtures};

/// Runs findscu; returns (exit code, the answer identifiers as text blocks, all output).
pub(crate) fn findscu(port: &str, root: &str, keys: &[&str]) -> (i32, Vec<String>, String) {
    let mut args: Vec<String> = vec![
        "-v".into(),
        root.into(),
        "-aet".into(),
        "FXPACS".into(),
        "-aec".into(),
        "HUREN".into(),
    ];
    for k in keys {
        args.push("-k".into());
        args.push(k.to_string());
    }
    args.push("127.0.0.1".into());
    args.push(port.into());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (rc, out) = dcmtk_run("findscu", &a, true);
    let mut answers = Vec::new();
    let mut cur: Option<String> = None;
    for line in out.lines() {
        if line.contains("Find Response:") && line.contains("(Pending)") {
            if let Some(c) = cur.take() {
                answers.push(c);
            }
            cur = Some(String::new());
        } else if line.contains("Find Response:") || line.contains("Received Final Find Response") {
            if let Some(c) = cur.take() {
                answers.push(c);
            }
        } else if let Some(c) = cur.as_mut() {
            c.push_str(line);
            c.push('\n');
        }
    }
    if let Some(c) = cur.take() {
        answers.push(c);
    }
    (rc, answers, out)
}

#[test]
fn findscu_study_series_image_and_patient_levels() {
    if !dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_srv, port, files) = start_with_fixtures(
        dir.path(),
        &[
            "ct_series_1.dcm",
            "ct_series_2.dcm",
            "ct_series_3.dcm",
            "sr_chinese.dcm",
            "ct_gb18030.dcm",
        ],
    );
    let ct = huren_dicom::parse_file(&std::fs::read(&files[0]).unwrap())
        .unwrap()
        .record;

    // STUDY level by Patient ID: one study, Chinese name back in UTF-8, counts.
    let (rc, ans, out) = findscu(
        &port,
        "-S",
        &[
            "QueryRetrieveLevel=STUDY",
            "PatientID=FX0001",
            "PatientName",
            "StudyInstanceUID",
            "ModalitiesInStudy",
            "NumberOfStudyRelatedInstances",
            "StudyDate",
        ],
    );
    assert_eq!(rc, 0, "{out}");
    assert_eq!(ans.len(), 1, "{out}");
    assert!(ans[0].contains(&ct.study_instance_uid), "{out}");
    assert!(ans[0].contains("张^三"), "{out}");
    assert!(ans[0].contains("ISO_IR 192"), "{out}");

    // Wildcards on the name, both patients; none for a name nobody has.
    let (_, ans, out) = findscu(
        &port,
        "-S",
        &["QueryRetrieveLevel=STUDY", "PatientName=*", "PatientID"],
    );
    assert_eq!(ans.len(), 2, "{out}");
    let (_, ans, out) = findscu(
        &port,
        "-S",
        &[
            "QueryRetrieveLevel=STUDY",
            "SpecificCharacterSet=ISO_IR 192",
            "PatientName=王*",
            "PatientID",
        ],
    );
    assert_eq!(ans.len(), 1, "{out}");
    assert!(ans[0].contains("FX0002"), "{out}");
    let (_, ans, out) = findscu(
        &port,
        "-S",
        &[
            "QueryRetrieveLevel=STUDY",
            "SpecificCharacterSet=ISO_IR 192",
            "PatientName=李*",
        ],
    );
    assert_eq!(ans.len(), 0, "{out}");

    // Study Date ranges.
    let (_, ans, out) = findscu(
        &port,
        "-S",
        &[
            "QueryRetrieveLevel=STUDY",
            "PatientID=FX0001",
            "StudyDate=20250101-",
        ],
    );
    assert_eq!(ans.len(), 1, "{out}");
    let (_, ans, out) = findscu(
        &port,
        "-S",
        &["QueryRetrieveLevel=STUDY", "StudyDate=-20200101"],
    );
    assert_eq!(ans.len(), 0, "{out}");

    // Modalities in study.
    let (_, ans, out) = findscu(
        &port,
        "-S",
        &[
            "QueryRetrieveLevel=STUDY",
            "ModalitiesInStudy=SR",
            "PatientID",
        ],
    );
    assert_eq!(ans.len(), 1, "{out}");
    let (_, ans, out) = findscu(
        &port,
        "-S",
        &["QueryRetrieveLevel=STUDY", "ModalitiesInStudy=MR"],
    );
    assert_eq!(ans.len(), 0, "{out}");

    // SERIES level within the study; IMAGE level within the series; by SOP Instance UID.
    let (_, ans, out) = findscu(
        &port,
        "-S",
        &[
            "QueryRetrieveLevel=SERIES",
            &format!("StudyInstanceUID={}", ct.study_instance_uid),
            "SeriesInstanceUID",
            "Modality",
            "NumberOfSeriesRelatedInstances",
        ],
    );
    assert_eq!(ans.len(), 2, "CT series + SR series: {out}");
    let (_, ans, out) = findscu(
        &port,
        "-S",
        &[
            "QueryRetrieveLevel=IMAGE",
            &format!("StudyInstanceUID={}", ct.study_instance_uid),
            &format!("SeriesInstanceUID={}", ct.series_instance_uid),
            "SOPInstanceUID",
            "InstanceNumber",
        ],
    );
    assert_eq!(ans.len(), 3, "{out}");
    let (_, ans, out) = findscu(
        &port,
        "-S",
        &[
            "QueryRetrieveLevel=IMAGE",
            &format!("SOPInstanceUID={}\\1.2.3.4", ct.sop_instance_uid),
            "SOPClassUID",
        ],
    );
    assert_eq!(ans.len(), 1, "{out}");
    assert!(ans[0].contains("CTImageStorage"), "{out}");

    // Patient Root, PATIENT level: two patients; Study Root refuses PATIENT (A900).
    let (_, ans, out) = findscu(
        &port,
        "-P",
        &[
            "QueryRetrieveLevel=PATIENT",
            "PatientID",
            "NumberOfPatientRelatedStudies",
        ],
    );
    assert_eq!(ans.len(), 2, "{out}");
    let (_, ans, out) = findscu(&port, "-S", &["QueryRetrieveLevel=PATIENT", "PatientID"]);
    assert_eq!(ans.len(), 0, "{out}");
    assert!(out.contains("DataSetDoesNotMatchSOPClass"), "{out}");
    let (_, ans, out) = findscu(&port, "-S", &["PatientID=FX0001"]);
    assert_eq!(ans.len(), 0, "no level: {out}");
    assert!(out.contains("DataSetDoesNotMatchSOPClass"), "{out}");
}

/// `huren bench cfind`, the native C-FIND latency client: every query answered with its
/// matches and a final success; an AE title the server does not know is a failure.
#[test]
fn bench_cfind_counts_the_answers_of_each_query() {
    if !dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_srv, port, _) = start_with_fixtures(
        dir.path(),
        &["ct_series_1.dcm", "ct_series_2.dcm", "sr_chinese.dcm"],
    );
    let addr = format!("127.0.0.1:{port}");
    let bench = |calling: &str, pid: &str| {
        crate::support::huren(&[
            "bench",
            "cfind",
            "--addr",
            &addr,
            "--calling",
            calling,
            "--patient-id",
            pid,
            "-n",
            "40",
            "-c",
            "2",
        ])
    };
    let (code, out, err) = bench("FXPACS", "FX0001");
    assert_eq!(code, 0, "{err}");
    let r = &out[0];
    assert_eq!(r["queries"].as_u64(), Some(40), "{r}");
    assert_eq!(r["failed"].as_u64(), Some(0), "{r}");
    assert_eq!(r["answers_per_query"].as_f64(), Some(1.0), "{r}");
    assert!(
        r["p99_ms"].as_f64().unwrap() >= r["p50_ms"].as_f64().unwrap(),
        "{r}"
    );
    let (code, out, err) = bench("FXPACS", "NOBODY");
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out[0]["answers_per_query"].as_f64(),
        Some(0.0),
        "{}",
        out[0]
    );
    let (code, _, err) = bench("STRANGER", "FX0001");
    assert_ne!(code, 0, "an unknown calling AE must not be served");
    assert!(err.contains("association"), "{err}");
}
