//! Imaging over HTTP against `huren serve` fed by a real storescu: PNG previews
//! (`/api/v1/imaging/instances/{uid}/preview.png`, WADO-RS `/rendered`), authenticated,
//! audited and cached.

use std::io::Read;
use std::time::Duration;

use crate::dicom::{config, dcmtk, fixture, start, storescu};
use crate::support::Server;

/// GET returning (status, content type, body bytes).
pub(crate) fn get_raw(
    srv: &Server,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, Vec<u8>) {
    let url = format!("http://{}{}", srv.http, path);
    let mut req = ureq::get(&url).timeout(Duration::from_secs(20));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let r = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {url}: {e}"),
    };
    let st = r.status();
    let ct = r.content_type().to_string();
    let mut body = Vec::new();
    r.into_reader().read_to_end(&mut body).unwrap();
    (st, ct, body)
}

fn png_size(b: &[u8]) -> (u32, u32) {
    let r = png::Decoder::new(std::io::Cursor::new(b))
        .read_info()
        .expect("a PNG");
    (r.info().width, r.info().height)
}

#[test]
fn previews_over_http_are_authenticated_audited_and_cached() {
    if !dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let data = dir.path().join("data");
    let (srv, port) = start(&data, &cfg);
    let ct_path = fixture("ct_series_1.dcm");
    let sr_path = fixture("sr_chinese.dcm");
    let (rc, out) = storescu(&port, &[&ct_path, &sr_path], &[], true);
    assert_eq!(rc, 0, "{out}");

    let ct_bytes = std::fs::read(&ct_path).unwrap();
    let ct = huren_dicom::parse_file(&ct_bytes).unwrap().record;
    let sr = huren_dicom::parse_file(&std::fs::read(&sr_path).unwrap())
        .unwrap()
        .record;
    let auth = format!("Bearer {}", srv.token);
    let a = [("Authorization", auth.as_str())];

    let path = format!(
        "/api/v1/imaging/instances/{}/preview.png",
        ct.sop_instance_uid
    );
    let (st, ctype, png1) = get_raw(&srv, &path, &a);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&png1));
    assert_eq!(ctype, "image/png");
    assert_eq!(png_size(&png1), (16, 16), "a 16×16 CT is not enlarged");
    assert_eq!(
        png1,
        huren_dicom::preview::render_png(&ct_bytes, 512).unwrap(),
        "rendered from the stored bytes, deterministically"
    );

    // Cached as a blob in the store (written in the background).
    let hex = huren_model::ContentHash::of(&png1).hex();
    let blob = data.join("objects").join(&hex[..2]).join(&hex[2..]);
    let t0 = std::time::Instant::now();
    while !blob.is_file() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(blob.is_file(), "preview cached at {}", blob.display());
    let (st, _, png2) = get_raw(&srv, &path, &a);
    assert_eq!((st, &png2), (200, &png1));

    // Size limit.
    let (st, _, small) = get_raw(&srv, &format!("{path}?size=8"), &a);
    assert_eq!(st, 200);
    assert_eq!(png_size(&small), (8, 8));

    // No token: 401; a study without pixels: 415 problem; unknown: 404.
    let (st, ctype, _) = get_raw(&srv, &path, &[]);
    assert_eq!((st, ctype.as_str()), (401, "application/problem+json"));
    let (st, ctype, body) = get_raw(
        &srv,
        &format!(
            "/api/v1/imaging/instances/{}/preview.png",
            sr.sop_instance_uid
        ),
        &a,
    );
    assert_eq!((st, ctype.as_str()), (415, "application/problem+json"));
    let p: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        p["detail"].as_str().unwrap().contains("no pixel data"),
        "{p}"
    );
    let (st, _, _) = get_raw(&srv, "/api/v1/imaging/instances/1.2.3.4/preview.png", &a);
    assert_eq!(st, 404);

    // WADO-RS rendered.
    let rendered = format!(
        "/dicomweb/studies/{}/series/{}/instances/{}/rendered",
        ct.study_instance_uid, ct.series_instance_uid, ct.sop_instance_uid
    );
    let (st, ctype, png3) = get_raw(&srv, &rendered, &a);
    assert_eq!((st, ctype.as_str()), (200, "image/png"));
    assert_eq!(png3, png1);
    let (st, _, png4) = get_raw(
        &srv,
        &format!("{rendered}?viewport=4,4"),
        &[a[0], ("Accept", "image/png")],
    );
    assert_eq!(st, 200);
    assert_eq!(png_size(&png4), (4, 4));
    let (st, _, _) = get_raw(&srv, &rendered, &[a[0], ("Accept", "application/dicom")]);
    assert_eq!(st, 406);
    let wrong = format!(
        "/dicomweb/studies/{}/series/1.2.3/instances/{}/rendered",
        ct.study_instance_uid, ct.sop_instance_uid
    );
    assert_eq!(get_raw(&srv, &wrong, &a).0, 404);

    // Every answered read is in the audit log under the patient.
    let (st, audit) = srv.get_with(
        "/api/v1/audit?patient=FX-ZX:FX0001",
        &[("Authorization", "Bearer test-privacy-token")],
    );
    assert_eq!(st, 200, "{audit}");
    let s = audit.to_string();
    assert_eq!(s.matches("read_preview").count(), 3, "{audit}");
    assert_eq!(s.matches("read_rendered").count(), 2, "{audit}");
}

fn qido(srv: &Server, path: &str) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {}", srv.token);
    let (st, ctype, body) = get_raw(
        srv,
        path,
        &[
            ("Authorization", auth.as_str()),
            ("Accept", "application/dicom+json"),
        ],
    );
    if st == 200 {
        assert_eq!(ctype, "application/dicom+json");
    }
    (st, serde_json::from_slice(&body).unwrap_or_default())
}

#[test]
fn qido_rs_studies_series_instances_with_limit_offset_and_audit() {
    if !dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let (srv, port) = start(&dir.path().join("data"), &cfg);
    let files: Vec<_> = [
        "ct_series_1.dcm",
        "ct_series_2.dcm",
        "ct_series_3.dcm",
        "sr_chinese.dcm",
        "ct_gb18030.dcm",
    ]
    .iter()
    .map(|f| fixture(f))
    .collect();
    let refs: Vec<&std::path::Path> = files.iter().map(|p| p.as_path()).collect();
    let (rc, out) = storescu(&port, &refs, &[], true);
    assert_eq!(rc, 0, "{out}");
    let ct = huren_dicom::parse_file(&std::fs::read(&files[0]).unwrap())
        .unwrap()
        .record;

    let (st, b) = qido(&srv, "/dicomweb/studies?PatientID=FX0001");
    assert_eq!(st, 200, "{b}");
    assert_eq!(b.as_array().unwrap().len(), 1, "{b}");
    assert_eq!(b[0]["0020000D"]["Value"][0], ct.study_instance_uid.as_str());
    assert_eq!(b[0]["00100010"]["vr"], "PN");
    assert_eq!(b[0]["00100010"]["Value"][0]["Alphabetic"], "张^三");
    assert_eq!(b[0]["00201208"]["Value"][0], 4);
    assert_eq!(b[0]["00080061"]["Value"], serde_json::json!(["CT", "SR"]));

    let (_, b) = qido(&srv, "/dicomweb/studies?PatientName=*");
    assert_eq!(b.as_array().unwrap().len(), 2, "{b}");
    let (_, b1) = qido(&srv, "/dicomweb/studies?PatientName=*&limit=1");
    let (_, b2) = qido(&srv, "/dicomweb/studies?PatientName=*&limit=1&offset=1");
    assert_eq!(b1.as_array().unwrap().len(), 1);
    assert_eq!(b2.as_array().unwrap().len(), 1);
    assert_ne!(b1[0]["0020000D"], b2[0]["0020000D"]);
    let (_, b) = qido(
        &srv,
        "/dicomweb/studies?00100020=FX0001&StudyDate=20250101-",
    );
    assert_eq!(b.as_array().unwrap().len(), 1, "{b}");
    let (_, b) = qido(&srv, "/dicomweb/studies?StudyDate=-20200101");
    assert_eq!(b.as_array().unwrap().len(), 0, "{b}");

    let (_, b) = qido(
        &srv,
        &format!("/dicomweb/studies/{}/series", ct.study_instance_uid),
    );
    assert_eq!(b.as_array().unwrap().len(), 2, "{b}");
    let (_, b) = qido(
        &srv,
        &format!(
            "/dicomweb/studies/{}/series/{}/instances",
            ct.study_instance_uid, ct.series_instance_uid
        ),
    );
    assert_eq!(b.as_array().unwrap().len(), 3, "{b}");
    let (_, b) = qido(&srv, "/dicomweb/series?Modality=SR");
    assert_eq!(b.as_array().unwrap().len(), 1, "{b}");
    let (_, b) = qido(
        &srv,
        &format!("/dicomweb/instances?SOPInstanceUID={}", ct.sop_instance_uid),
    );
    assert_eq!(b.as_array().unwrap().len(), 1, "{b}");
    assert_eq!(b[0]["00080016"]["Value"][0], "1.2.840.10008.5.1.4.1.1.2");

    let (st, b) = qido(&srv, "/dicomweb/studies?NotAKeyword=1");
    assert_eq!(st, 400, "{b}");
    let (st, _, _) = get_raw(&srv, "/dicomweb/studies", &[]);
    assert_eq!(st, 401);

    let (st, audit) = srv.get_with(
        "/api/v1/audit?patient=FX-ZX:FX0001",
        &[("Authorization", "Bearer test-privacy-token")],
    );
    assert_eq!(st, 200, "{audit}");
    assert!(audit.to_string().contains("qido_study"), "{audit}");
    assert!(audit.to_string().contains("qido_image"), "{audit}");
}
