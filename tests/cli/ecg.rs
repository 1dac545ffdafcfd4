//! The ECG path end to end: upload over HTTP, SVG trace, drop folder (slow writes, a crash,
//! restart), CLI check/ingest.

use std::path::Path;
use std::time::Duration;

use crate::mllp::config_file;
use crate::support::{huren, repo, Server};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("fixtures/ecg").join(name)).unwrap()
}

fn post(srv: &Server, body: &[u8]) -> (u16, serde_json::Value) {
    let url = format!("http://{}/api/v1/ecg", srv.http);
    let r = ureq::post(&url)
        .set("Authorization", &format!("Bearer {}", srv.token))
        .set("Content-Type", "application/xml")
        .timeout(Duration::from_secs(20))
        .send_bytes(body);
    let (st, r) = match r {
        Ok(r) => (r.status(), r),
        Err(ureq::Error::Status(s, r)) => (s, r),
        Err(e) => panic!("{e}"),
    };
    (st, serde_json::from_str(&r.into_string().unwrap()).unwrap())
}

#[test]
fn upload_render_and_reject() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path());
    let srv = Server::start(&dir.path().join("data"), &["--config", &cfg]);
    let aecg = fixture("aecg-zh-patient.xml");
    let (st, b) = post(&srv, &aecg);
    assert_eq!(st, 201, "{b}");
    assert_eq!(b["outcome"], "stored");
    assert_eq!(b["institution"], "FX-ZX");
    assert!(b["critical"]["statement"].is_string(), "{b}");
    let report = b["report"].as_str().unwrap().to_string();
    let (st, b) = post(&srv, &aecg);
    assert_eq!((st, b["outcome"].as_str()), (200, Some("duplicate")));

    // The patient's results list the ECG.
    let (_, res) = srv.get("/api/v1/patients/FX-ZX:0012345/results?kind=ecg");
    assert_eq!(res["count"], 1, "{res}");
    assert_eq!(res["results"][0]["kind"], "ecg");

    // The trace.
    let url = format!(
        "http://{}/api/v1/reports/{report}/ecg.svg?layout=6x2&gain=20",
        srv.http
    );
    let r = ureq::get(&url)
        .set("Authorization", &format!("Bearer {}", srv.token))
        .call()
        .unwrap();
    assert_eq!(r.content_type(), "image/svg+xml");
    let svg = r.into_string().unwrap();
    assert!(
        svg.starts_with("<svg") || svg.starts_with("<?xml"),
        "{}",
        &svg[..80]
    );
    let (st, _) = srv.get(&format!("/api/v1/reports/{report}/ecg.svg?gain=7"));
    assert_eq!(st, 400);

    // Garbage and a broken file: 422 naming the fault, nothing stored.
    let (st, p) = post(&srv, b"<RestingECG><Waveform>");
    assert_eq!((st, p["code"].as_str()), (422, Some("ECG_REJECTED")), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("line"), "{p}");
    let (st, _) = post(&srv, b"hello");
    assert_eq!(st, 422);
    // Without a token: 401.
    let url = format!("http://{}/api/v1/ecg", srv.http);
    match ureq::post(&url).send_bytes(&aecg) {
        Err(ureq::Error::Status(s, _)) => assert_eq!(s, 401),
        other => panic!("{other:?}"),
    }
}

fn wait_until(mut f: impl FnMut() -> bool, what: &str) {
    for _ in 0..200 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn count(dir: &Path, suffix: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn drop_folder_survives_slow_writes_and_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("drop");
    std::fs::create_dir_all(&drop).unwrap();
    let cfg = config_file(dir.path());
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[[ecg.drop_folder]]\npath = {drop:?}\ninstitution = \"FX-ZY\"\npoll_secs = 1\nsettle_secs = 3\n"
    ));
    std::fs::write(&cfg, text).unwrap();
    let data = dir.path().join("data");
    let files = [
        "aecg-zh-patient.xml",
        "aecg-18-lead.xml",
        "muse-zh-crc.xml",
        "philips-xli-1.04.xml",
    ];
    {
        let mut srv = Server::start(&data, &["--config", &cfg]);
        // A cart writing slowly: half the file, a pause longer than a poll (but shorter than
        // the settle time), then the rest.
        let full = fixture("muse-zh-crc.xml");
        let (a, b) = full.split_at(full.len() / 2);
        let slow = drop.join("slow-muse.xml");
        std::fs::write(&slow, a).unwrap();
        std::thread::sleep(Duration::from_millis(1600));
        assert!(
            slow.exists(),
            "a file still being written must not be taken"
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&slow)
            .unwrap();
        std::io::Write::write_all(&mut f, b).unwrap();
        drop_file(f);
        for name in files {
            std::fs::write(drop.join(name), fixture(name)).unwrap();
        }
        std::fs::write(
            drop.join("broken.xml"),
            b"<AnnotatedECG xmlns=\"urn:hl7-org:v3\">",
        )
        .unwrap();
        // Crash as soon as the first file has been taken.
        wait_until(|| count(&drop.join("done"), ".xml") >= 1, "the first file");
        srv.kill9();
    }
    {
        let _srv = Server::start(&data, &["--config", &cfg]);
        wait_until(
            || count(&drop.join("done"), ".xml") == 5 && count(&drop.join("rejected"), ".xml") == 1,
            "every file to be taken after the restart",
        );
    }
    assert!(slow_parsed(&drop), "the slow file was taken whole");
    let err = std::fs::read_to_string(drop.join("rejected/broken.xml.error.txt")).unwrap();
    assert!(!err.trim().is_empty());
    // Nothing stored twice: the slow MUSE file and its copy are one report; every report is
    // version 1 (a re-ingest after the crash is a duplicate, not a new version).
    let (code, _, e) = huren(&["verify", "--data", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{e}");
    for (patient, n) in [("FX-ZY:0012345", 2), ("FX-ZY:A0099", 1)] {
        let (_, out, _) = huren(&[
            "query",
            "--data",
            data.to_str().unwrap(),
            "--patient",
            patient,
            "--kind",
            "ecg",
            "--json",
        ]);
        assert_eq!(out[0]["count"], n, "{patient}: {}", out[0]);
        for r in out[0]["reports"].as_array().unwrap() {
            assert_eq!(r["meta"]["version"], 1, "{r}");
        }
    }
}

fn drop_file(f: std::fs::File) {
    drop(f);
}

fn slow_parsed(drop: &Path) -> bool {
    drop.join("done/slow-muse.xml").exists()
}

#[test]
fn cli_checks_and_ingests_ecg_files() {
    let dir = tempfile::tempdir().unwrap();
    let ecg = repo().join("fixtures/ecg/aecg-18-lead.xml");
    let (code, lines, err) = huren(&["check", ecg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines[0]["outcome"], "checked");
    assert_eq!(lines[0]["kind"], "ecg");
    let bad = dir.path().join("bad.xml");
    std::fs::write(&bad, "<RestingECG><PatientDemographics>").unwrap();
    let (code, lines, err) = huren(&["check", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(lines[0]["outcome"], "rejected");
    assert!(err.contains("bad.xml"), "{err}");
    let data = dir.path().join("data");
    let (code, _, err) = huren(&[
        "ingest",
        "--data",
        data.to_str().unwrap(),
        ecg.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("--institution"), "{err}");
    let (code, lines, err) = huren(&[
        "ingest",
        "--data",
        data.to_str().unwrap(),
        "--institution",
        "FX-ZY",
        ecg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines[0]["outcome"], "stored");
}

/// A 12-lead ECG waveform object sent by C-STORE is stored as an instance of its study and
/// also becomes an ECG report (measurements, trace) in the same commit.
#[test]
fn dicom_ecg_over_cstore_makes_an_ecg_report() {
    if !crate::dicom::dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::dicom::config(dir.path(), "");
    let data = dir.path().join("data");
    let (srv, port) = crate::dicom::start(&data, &cfg);
    let file = crate::dicom::fixture("ecg_waveform.dcm");
    let (rc, log) = crate::dicom::storescu(&port, &[file.as_path()], &[], false);
    assert_eq!(rc, 0, "{log}");
    let (st, b) = srv.get("/api/v1/patients/FX-ZX:FX0003/reports?kind=ecg");
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["count"], 1, "{b:#}");
    let r = &b["reports"][0]["report"];
    assert_eq!(r["kind"], "ecg");
    assert!(r["ecg"]["waveform"].is_string(), "{r:#}");
    let (st, b) = srv.get("/api/v1/patients/FX-ZX:FX0003/reports?kind=imaging");
    assert_eq!(st, 200);
    assert_eq!(b["count"], 1, "the instance is in its study too: {b:#}");
    // The ECG report's original is the stored DICOM instance; its trace renders.
    let hash = srv.get("/api/v1/patients/FX-ZX:FX0003/reports?kind=ecg").1["reports"][0]["meta"]
        ["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let url = format!("http://{}/api/v1/reports/{hash}/ecg.svg", srv.http);
    let svg = ureq::get(&url)
        .set("Authorization", &format!("Bearer {}", srv.token))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("V6"),
        "{}",
        &svg[..200.min(svg.len())]
    );
}
