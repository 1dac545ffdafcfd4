//! Crash test of the imaging path: kill -9 `huren serve --dicom` in the middle of a storescu
//! load (three associations, one study each, a few hundred CT instances with distinct SOP
//! Instance UIDs). After restart every instance storescu saw a Success (0000) response for
//! is in the index and its stored original is the sent file byte for byte; `huren verify`
//! finds nothing; each study report's instance count equals the instances indexed for it.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::dicom::{config, dcmtk, start};
use crate::support::huren;

const STUDIES: usize = 3;
const PER_STUDY: u32 = 300;

/// The SOP Instance UIDs storescu got a Success response for, from its `-v` log: each
/// "Sending file: X" is answered by the next "Received Store Response (…)".
pub(crate) fn acknowledged(log: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut current: Option<PathBuf> = None;
    for line in log.lines() {
        if let Some(f) = line.split("Sending file: ").nth(1) {
            current = Some(PathBuf::from(f.trim()));
        } else if line.contains("Received Store Response (Success)") {
            if let Some(f) = current.take() {
                out.push(f);
            }
        }
    }
    out
}

#[test]
fn kill_9_mid_storescu_load_loses_no_acknowledged_instance() {
    if !dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let data = dir.path().join("data");
    let studies: Vec<String> = (0..STUDIES)
        .map(|s| format!("{}.90{s}", huren_dicom::fixtures::UID_ROOT))
        .collect();
    let mut files: Vec<Vec<PathBuf>> = vec![vec![]; STUDIES];
    for (s, study) in studies.iter().enumerate() {
        for n in 1..=PER_STUDY {
            let o = huren_dicom::fixtures::ct_slice(
                study,
                &format!("FX09{s}"),
                "崩溃^测试",
                n,
                "ISO_IR 192",
            );
            let p = dir.path().join(format!("s{s}_{n}.dcm"));
            std::fs::write(&p, huren_dicom::fixtures::part10(&o)).unwrap();
            files[s].push(p);
        }
    }

    let logs: Vec<PathBuf> = (0..STUDIES)
        .map(|s| dir.path().join(format!("storescu{s}.log")))
        .collect();
    {
        let (mut srv, port) = start(&data, &cfg);
        let mut children: Vec<std::process::Child> = files
            .iter()
            .zip(&logs)
            .map(|(fs, log)| {
                let out = std::fs::File::create(log).unwrap();
                let err = out.try_clone().unwrap();
                Command::new("storescu")
                    .args(["-v", "-aet", "FXPACS", "-aec", "HUREN", "127.0.0.1", &port])
                    .args(fs)
                    .env("TCP_NODELAY", "1")
                    .stdin(Stdio::null())
                    .stdout(out)
                    .stderr(err)
                    .spawn()
                    .expect("spawn storescu")
            })
            .collect();
        // Kill once a third of the load is acknowledged (and the rest is in flight).
        let start = Instant::now();
        loop {
            let n: usize = logs
                .iter()
                .map(|l| {
                    let f = std::fs::File::open(l).unwrap();
                    BufReader::new(f)
                        .lines()
                        .map_while(Result::ok)
                        .filter(|l| l.contains("Received Store Response (Success)"))
                        .count()
                })
                .sum();
            if n >= (STUDIES * PER_STUDY as usize) / 3 || start.elapsed() > Duration::from_secs(60)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        srv.kill9();
        for c in &mut children {
            let _ = c.wait();
        }
    }
    let mut acked = Vec::new();
    for l in &logs {
        acked.extend(acknowledged(&std::fs::read_to_string(l).unwrap()));
    }
    let total = STUDIES * PER_STUDY as usize;
    assert!(
        acked.len() >= total / 3,
        "load too small: {} acknowledged",
        acked.len()
    );
    assert!(
        acked.len() < total,
        "the kill came after the whole load ({total} acknowledged): not a mid-load crash"
    );

    // Restart: every acknowledged instance is indexed, and each study report counts exactly
    // the instances indexed for its study.
    let mut indexed: HashSet<String> = HashSet::new();
    {
        let (srv, _) = start(&data, &cfg);
        for (s, study) in studies.iter().enumerate() {
            let (st, b) = srv.get(&format!("/dicomweb/studies/{study}/instances?limit=10000"));
            assert_eq!(st, 200, "{b}");
            let uids: Vec<String> = b
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["00080018"]["Value"][0].as_str().unwrap().to_string())
                .collect();
            let (st, r) = srv.get(&format!(
                "/api/v1/patients/FX-ZX:FX09{s}/reports?kind=imaging"
            ));
            assert_eq!(st, 200, "{r}");
            if uids.is_empty() {
                assert_eq!(r["count"], 0, "{r}");
                continue;
            }
            assert_eq!(r["count"], 1, "{r}");
            let body = &r["reports"][0]["report"]["imaging"];
            assert_eq!(
                body["instance_count"].as_u64(),
                Some(uids.len() as u64),
                "study {study}: report and index disagree"
            );
            assert_eq!(
                r["reports"][0]["meta"]["version"].as_u64(),
                Some(uids.len() as u64)
            );
            indexed.extend(uids);
        }
    }
    // No half record: the store verifies clean.
    let (code, lines, err) = huren(&["verify", "--data", data.to_str().unwrap()]);
    assert_eq!(code, 0, "verify: {lines:?} {err}");
    assert!(
        lines[0]["problems"].as_array().unwrap().is_empty(),
        "{lines:?}"
    );

    // Byte for byte: each acknowledged file is a stored original (huren's meta group is the
    // deterministic one the fixtures write, and storescu sends the data set unchanged).
    let store = huren_store::Store::open(&data, huren_store::StoreOptions::default()).unwrap();
    for f in &acked {
        let sent = std::fs::read(f).unwrap();
        let uid = huren_dicom::parse_file(&sent)
            .unwrap()
            .record
            .sop_instance_uid;
        assert!(indexed.contains(&uid), "acknowledged {uid} lost");
        let kept = store
            .blob(&huren_model::ContentHash::of(&sent))
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {} has no original", f.display()));
        assert_eq!(kept, sent, "{}", f.display());
    }
    eprintln!(
        "dicom crash: {} of {total} acknowledged before kill -9, {} indexed after restart",
        acked.len(),
        indexed.len()
    );
}
