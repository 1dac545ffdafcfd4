//! Imaging over HTTP against `huren serve` fed by a real storescu: PNG previews
//! (`/api/v1/imaging/instances/{uid}/preview.png`, WADO-RS `/rendered`), authenticated,
//! audited and cached.

use std::io::Read;
use std::time::Duration;

use crate::dicom::{config, dcmtk, fixture, start, start_with_fixtures, storescu};
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
    let ct = r.header("Content-Type").unwrap_or_default().to_string();
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

    // Sizes come from a fixed set (issue 16): 8 is rendered at the smallest, 64, which a
    // 16×16 image does not reach: the same PNG.
    let (st, _, small) = get_raw(&srv, &format!("{path}?size=8"), &a);
    assert_eq!(st, 200);
    assert_eq!(small, png1);

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
    assert_eq!(png4, png1);
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
    // Three answered previews and the SR's (authorised and read; it has no pixels: 415).
    assert_eq!(s.matches("read_preview").count(), 4, "{audit}");
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
    let (srv, _, files) = start_with_fixtures(
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

/// A `multipart/related; type="application/dicom"` body of `parts` (content type, bytes).
pub(crate) fn multipart(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let b = "huren-test-boundary-7d3f";
    let mut body = Vec::new();
    for (ct, bytes) in parts {
        body.extend_from_slice(format!("--{b}\r\nContent-Type: {ct}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    (
        format!("multipart/related; type=\"application/dicom\"; boundary={b}"),
        body,
    )
}

/// POST returning (status, JSON body).
pub(crate) fn post(
    srv: &Server,
    path: &str,
    token: Option<&str>,
    ctype: &str,
    body: &[u8],
) -> (u16, serde_json::Value) {
    let url = format!("http://{}{}", srv.http, path);
    let mut req = ureq::post(&url)
        .timeout(Duration::from_secs(30))
        .set("Content-Type", ctype)
        .set("Accept", "application/dicom+json");
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let r = match req.send_bytes(body) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("POST {url}: {e}"),
    };
    let st = r.status();
    let mut b = Vec::new();
    r.into_reader().read_to_end(&mut b).unwrap();
    (
        st,
        serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null),
    )
}

/// The parts of a `multipart/related` answer.
fn parts_of(ctype: &str, body: &[u8]) -> Vec<Vec<u8>> {
    parts_typed(ctype, body, "application/dicom")
}

/// The parts of a multipart body, each asserted to carry `Content-Type: {part_type}…`.
fn parts_typed(ctype: &str, body: &[u8], part_type: &str) -> Vec<Vec<u8>> {
    let b = ctype
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .expect("a boundary")
        .trim_matches('"');
    let delim = format!("--{b}");
    let d = delim.as_bytes();
    let mut at: Vec<usize> = Vec::new();
    let mut i = 0;
    while i + d.len() <= body.len() {
        if &body[i..i + d.len()] == d && (i == 0 || body[i - 2..i] == *b"\r\n") {
            at.push(i);
            i += d.len();
        } else {
            i += 1;
        }
    }
    assert!(body[*at.last().unwrap()..].starts_with(format!("{delim}--").as_bytes()));
    at.windows(2)
        .map(|w| {
            let part = &body[w[0] + d.len() + 2..w[1] - 2];
            let h = part.windows(4).position(|x| x == b"\r\n\r\n").unwrap();
            let head = String::from_utf8_lossy(&part[..h]).to_ascii_lowercase();
            assert!(
                head.contains(&format!("content-type: {part_type}")),
                "{head}"
            );
            part[h + 4..].to_vec()
        })
        .collect()
}

fn seq_len(v: &serde_json::Value, tag: &str) -> usize {
    v[tag]["Value"].as_array().map_or(0, Vec::len)
}

#[test]
fn stow_rs_then_wado_rs_and_metadata_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let (srv, _port) = start(&dir.path().join("data"), &cfg);
    let files: Vec<Vec<u8>> = [
        "ct_series_1.dcm",
        "ct_series_2.dcm",
        "ct_series_3.dcm",
        "sr_chinese.dcm",
    ]
    .iter()
    .map(|f| std::fs::read(fixture(f)).unwrap())
    .collect();
    let ct = huren_dicom::parse_file(&files[0]).unwrap().record;
    let study = ct.study_instance_uid.clone();
    let parts: Vec<(&str, &[u8])> = files
        .iter()
        .map(|f| ("application/dicom", f.as_slice()))
        .collect();
    let (ctype, body) = multipart(&parts);

    // Auth first; then the media type.
    assert_eq!(post(&srv, "/dicomweb/studies", None, &ctype, &body).0, 401);
    assert_eq!(
        post(
            &srv,
            "/dicomweb/studies",
            Some("test-privacy-token"),
            &ctype,
            &body
        )
        .0,
        403
    );
    let (st, p) = post(
        &srv,
        "/dicomweb/studies",
        Some("test-clinician-token"),
        "application/dicom",
        &files[0],
    );
    assert_eq!(st, 415, "{p}");
    let json_type = ctype.replace("application/dicom", "application/dicom+json");
    assert_eq!(
        post(
            &srv,
            "/dicomweb/studies",
            Some("test-clinician-token"),
            &json_type,
            &body
        )
        .0,
        415
    );

    // Four instances: all stored (durable before the answer), 200.
    let (st, r) = post(
        &srv,
        "/dicomweb/studies",
        Some("test-clinician-token"),
        &ctype,
        &body,
    );
    assert_eq!(st, 200, "{r}");
    assert_eq!(seq_len(&r, "00081199"), 4, "{r}");
    assert!(r.get("00081198").is_none(), "{r}");
    assert_eq!(
        r["00081190"]["Value"][0],
        format!("/dicomweb/studies/{study}")
    );
    let item = &r["00081199"]["Value"][0];
    assert_eq!(item["00081155"]["Value"][0], ct.sop_instance_uid);
    assert_eq!(item["00081150"]["Value"][0], ct.sop_class_uid);
    let (st, b) = srv.get("/api/v1/patients/FX-ZX:FX0001/reports?kind=imaging");
    assert_eq!(st, 200);
    assert_eq!(
        b["reports"][0]["report"]["imaging"]["instance_count"], 4,
        "{b}"
    );

    // To another study's URL: every part fails (A900), 409.
    let (c1, b1) = multipart(&[("application/dicom", &files[0])]);
    let (st, r) = post(
        &srv,
        "/dicomweb/studies/1.2.3.999",
        Some("test-clinician-token"),
        &c1,
        &b1,
    );
    assert_eq!(st, 409, "{r}");
    assert_eq!(
        r["00081198"]["Value"][0]["00081197"]["Value"][0], 0xA900,
        "{r}"
    );
    assert_eq!(
        r["00081198"]["Value"][0]["00081155"]["Value"][0],
        ct.sop_instance_uid
    );

    // One good (GB18030 CT, another study) and one not DICOM: 202, C000 for the bad one.
    let gb = std::fs::read(fixture("ct_gb18030.dcm")).unwrap();
    let (c2, b2) = multipart(&[
        ("application/dicom", &gb),
        ("application/dicom", b"not dicom at all"),
    ]);
    let (st, r) = post(
        &srv,
        "/dicomweb/studies",
        Some("test-clinician-token"),
        &c2,
        &b2,
    );
    assert_eq!(st, 202, "{r}");
    assert_eq!(
        (seq_len(&r, "00081199"), seq_len(&r, "00081198")),
        (1, 1),
        "{r}"
    );
    assert_eq!(
        r["00081198"]["Value"][0]["00081197"]["Value"][0], 0xC000,
        "{r}"
    );
    // A broken multipart body is a 400 problem.
    let (st, p) = post(
        &srv,
        "/dicomweb/studies",
        Some("test-clinician-token"),
        &ctype,
        b"--nope\r\n",
    );
    assert_eq!(st, 400, "{p}");

    // WADO-RS: the study, a series, an instance — the originals byte for byte.
    let a = [("Authorization", "Bearer test-clinician-token")];
    let (st, ctype, body) = get_raw(&srv, &format!("/dicomweb/studies/{study}"), &a);
    assert_eq!(st, 200);
    assert!(ctype.starts_with("multipart/related"), "{ctype}");
    let mut got = parts_of(&ctype, &body);
    got.sort();
    let mut want = files.clone();
    want.sort();
    assert_eq!(got, want);
    let series = format!(
        "/dicomweb/studies/{study}/series/{}",
        ct.series_instance_uid
    );
    let (st, ctype, body) = get_raw(&srv, &series, &a);
    assert_eq!(st, 200);
    assert_eq!(parts_of(&ctype, &body).len(), 3);
    let inst = format!("{series}/instances/{}", ct.sop_instance_uid);
    let (st, ctype, body) = get_raw(
        &srv,
        &inst,
        &[
            a[0],
            (
                "Accept",
                "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
            ),
        ],
    );
    assert_eq!(st, 200);
    assert_eq!(parts_of(&ctype, &body), vec![files[0].clone()]);
    assert_eq!(
        get_raw(&srv, &inst, &[a[0], ("Accept", "application/json")]).0,
        406
    );
    assert_eq!(get_raw(&srv, &inst, &[a[0], ("Accept", "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.50")]).0, 406);
    assert_eq!(
        get_raw(&srv, &format!("{series}/instances/1.2.3"), &a).0,
        404
    );
    assert_eq!(get_raw(&srv, &inst, &[]).0, 401);

    // Metadata: DICOM JSON, pixel data as a BulkDataURI.
    let (st, ctype, body) = get_raw(&srv, &format!("{inst}/metadata"), &a);
    assert_eq!((st, ctype.as_str()), (200, "application/dicom+json"));
    let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(m.as_array().unwrap().len(), 1);
    assert_eq!(m[0]["00100010"]["Value"][0]["Alphabetic"], "张^三");
    assert_eq!(m[0]["00080018"]["Value"][0], ct.sop_instance_uid);
    assert_eq!(m[0]["7FE00010"]["vr"], "OW");
    assert!(m[0]["7FE00010"]["BulkDataURI"]
        .as_str()
        .unwrap()
        .starts_with(&inst));
    assert!(!String::from_utf8_lossy(&body).contains("InlineBinary"));
    // The BulkDataURI answers the pixel data (little endian, as stored); /frames/1 the same.
    let uri = m[0]["7FE00010"]["BulkDataURI"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, ctype, body) = get_raw(&srv, &uri, &a);
    assert_eq!(st, 200);
    assert!(
        ctype.starts_with("multipart/related; type=\"application/octet-stream\""),
        "{ctype}"
    );
    let px = parts_typed(&ctype, &body, "application/octet-stream");
    assert_eq!(px.len(), 1);
    assert_eq!(px[0].len(), 16 * 16 * 2);
    assert!(files[0].ends_with(&px[0]));
    let (st, ctype, body) = get_raw(&srv, &format!("{inst}/frames/1"), &a);
    assert_eq!(st, 200);
    let fr = parts_typed(
        &ctype,
        &body,
        "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1",
    );
    assert_eq!(fr, px);
    let (st, ctype, body) = get_raw(&srv, &format!("{inst}/bulkdata/00080060"), &a);
    assert_eq!(st, 200);
    assert_eq!(
        parts_typed(&ctype, &body, "application/octet-stream")[0].trim_ascii(),
        b"CT"
    );
    for (path, want) in [
        ("frames/2", 404),
        ("frames/1,x", 400),
        ("bulkdata/7FE0", 400),
        ("bulkdata/00291010", 404),
    ] {
        let (st, ctype, body) = get_raw(&srv, &format!("{inst}/{path}"), &a);
        assert_eq!(st, want, "{path}");
        assert_eq!(ctype, "application/problem+json", "{path}");
        assert!(!body.is_empty());
    }
    assert_eq!(
        get_raw(&srv, &uri, &[a[0], ("Accept", "application/json")]).0,
        406
    );
    assert_eq!(get_raw(&srv, &uri, &[]).0, 401);

    let (st, _, body) = get_raw(&srv, &format!("/dicomweb/studies/{study}/metadata"), &a);
    assert_eq!(st, 200);
    let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(m.as_array().unwrap().len(), 4);

    // Audited under the patient.
    let (st, audit) = srv.get_with(
        "/api/v1/audit?patient=FX-ZX:FX0001",
        &[("Authorization", "Bearer test-privacy-token")],
    );
    assert_eq!(st, 200, "{audit}");
    let s = audit.to_string();
    let entries = audit["entries"].as_array().unwrap();
    let of = |action: &str, outcome: &str| {
        entries
            .iter()
            .filter(|e| {
                e["action"] == action && e["outcome"].as_str().unwrap().starts_with(outcome)
            })
            .count()
    };
    // Three retrievals answered; the two 406s (transfer syntax, media type) are decided by
    // the gate and audited as refused, with nothing returned.
    assert_eq!(of("wado_retrieve", "ok"), 3, "{audit}");
    assert_eq!(of("wado_retrieve", "refused"), 2, "{audit}");
    assert!(entries
        .iter()
        .filter(|e| e["outcome"].as_str().unwrap().starts_with("refused"))
        .all(|e| e.get("returned").is_none()));
    assert_eq!(s.matches("wado_metadata").count(), 2, "{audit}");
    // Bulk data: the pixel data, the modality, a bad path and an absent tag (refused after
    // the audit, which records the attempt); frames: /1 and /2. The bad frame list, the 406
    // and the 401 are refused before anything is read.
    assert_eq!(s.matches("wado_bulkdata").count(), 4, "{audit}");
    assert_eq!(s.matches("wado_frames").count(), 2, "{audit}");
}

/// Issue 16, finding 9: previews were rendered and cached per `?size=` (200 sizes of one
/// image: 513 MB of cache and 59 s of CPU). Sizes are now rounded down to a fixed set
/// (64 … 4096, `huren_gate::PREVIEW_SIZES`), so fifty different sizes of one 600×600 image
/// render — and cache — at most that many PNGs, each of the rounded size.
#[test]
fn fifty_preview_sizes_render_at_most_the_fixed_set() {
    use dicom_core::value::PrimitiveValue;
    use dicom_core::{DataElement, VR};
    use dicom_dictionary_std::tags;
    const SIZES: [u32; 7] = [64, 128, 256, 512, 1024, 2048, 4096];
    if !dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let data = dir.path().join("data");
    let (srv, port) = start(&data, &cfg);
    // A 600×600 CT (the fixture generator's, enlarged).
    let mut o = huren_dicom::fixtures::ct_slice(
        "1.2.826.0.1.3680043.10.1338.9",
        "FX0009",
        "A^B",
        1,
        "ISO_IR 192",
    );
    let side = 600u16;
    o.put(DataElement::new(
        tags::ROWS,
        VR::US,
        PrimitiveValue::from(side),
    ));
    o.put(DataElement::new(
        tags::COLUMNS,
        VR::US,
        PrimitiveValue::from(side),
    ));
    let px: Vec<u16> = (0..u32::from(side) * u32::from(side))
        .map(|i| ((i % 600) * 3 + (i / 600) * 2) as u16 % 1200 + 400)
        .collect();
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(px.into()),
    ));
    let file = dir.path().join("big.dcm");
    std::fs::write(&file, huren_dicom::fixtures::part10(&o)).unwrap();
    let (rc, out) = storescu(&port, &[&file], &[], true);
    assert_eq!(rc, 0, "{out}");
    let rec = huren_dicom::parse_file(&std::fs::read(&file).unwrap())
        .unwrap()
        .record;

    let auth = format!("Bearer {}", srv.token);
    let a = [("Authorization", auth.as_str())];
    let path = format!(
        "/api/v1/imaging/instances/{}/preview.png",
        rec.sop_instance_uid
    );
    let mut distinct = std::collections::BTreeSet::new();
    for size in (1..=50u32).map(|i| i * 24) {
        let (st, ctype, png) = get_raw(&srv, &format!("{path}?size={size}"), &a);
        assert_eq!((st, ctype.as_str()), (200, "image/png"), "size {size}");
        // Rounded down to the set (below 64: 64), never enlarged past the image.
        let want = SIZES
            .iter()
            .rev()
            .find(|&&s| s <= size)
            .copied()
            .unwrap_or(64)
            .min(u32::from(side));
        assert_eq!(png_size(&png), (want, want), "size {size}");
        distinct.insert(png);
    }
    // 64, 128, 256, 512 and the whole 600 (1024 and up).
    assert_eq!(distinct.len(), 5);
    // WADO-RS rendered with a viewport: the same set, the same cache.
    let rendered = format!(
        "/dicomweb/studies/{}/series/{}/instances/{}/rendered",
        rec.study_instance_uid, rec.series_instance_uid, rec.sop_instance_uid
    );
    for (vp, want) in [("300,200", 256), ("100,130", 128), ("700,700", 512)] {
        let (st, _, png) = get_raw(&srv, &format!("{rendered}?viewport={vp}"), &a);
        assert_eq!(st, 200);
        assert_eq!(png_size(&png), (want, want), "viewport {vp}");
        assert!(distinct.contains(&png), "viewport {vp} rendered anew");
    }
    // The cache holds one PNG per rendered size (written in the background).
    let cached = || {
        walk(&data.join("objects"))
            .into_iter()
            .filter(|p| std::fs::read(p).is_ok_and(|b| b.starts_with(b"\x89PNG")))
            .count()
    };
    let t0 = std::time::Instant::now();
    while cached() < distinct.len() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(cached(), distinct.len());
    assert!(distinct.len() <= SIZES.len());
    assert_eq!(huren_server::gate::PREVIEW_SIZES, SIZES);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
