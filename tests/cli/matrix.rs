//! The route matrix (issue 15): every route the router serves, against every kind of caller
//! — no token, an unknown token, a clinician of the data's institution and of another, an
//! institution's system by its client certificate, the health commission, the privacy
//! officer, a registration clerk — and, for readers, every kind of patient authorisation
//! (none, a wrong code, an expired consent, a valid one, break-glass outside and in an
//! emergency). Each case asserts the status and the exact number of audit records the request
//! wrote. The routes are read from the sources' `.route(…)` calls: a new route fails this test
//! until it is listed here. DIMSE C-FIND is covered with findscu in `gate.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

use crate::support::{huren, msa, oru, repo, Mllp, Server};
use crate::tls::client;

/// One HTTP/1.1 request over TLS: (status, body).
fn call(
    addr: &str,
    cfg: rustls::ClientConfig,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<(&str, Vec<u8>)>,
) -> (u16, Vec<u8>) {
    let conn =
        rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let mut bytes = Vec::new();
    let mut buf = Vec::new();
    match &body {
        // The body only after `100 Continue`: a server refusing the request (401 from the
        // headers alone) closes without reading it, and a body already sent would then make
        // the close a reset that can destroy the answer before it is read.
        Some((ctype, b)) => {
            req.push_str(&format!(
                "Content-Type: {ctype}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
                b.len()
            ));
            tls.write_all(req.as_bytes()).unwrap();
            let mut byte = [0u8; 1];
            while !buf.ends_with(b"\r\n\r\n") {
                match tls.read(&mut byte) {
                    Ok(1) => buf.push(byte[0]),
                    _ => break,
                }
            }
            if buf.starts_with(b"HTTP/1.1 100") {
                buf.clear();
                bytes.extend_from_slice(b);
            }
        }
        None if method == "POST" => {
            req.push_str("Content-Length: 0\r\n\r\n");
            bytes.extend_from_slice(req.as_bytes());
        }
        None => {
            req.push_str("\r\n");
            bytes.extend_from_slice(req.as_bytes());
        }
    }
    if !bytes.is_empty() {
        tls.write_all(&bytes).unwrap();
    }
    if path.starts_with("/api/v1/events") {
        // An event stream does not end: read up to its first event (or the refusal's body).
        let mut chunk = [0u8; 4096];
        while !(buf.windows(12).any(|w| w == b"event: ready")
            || (buf.windows(4).any(|w| w == b"\r\n\r\n")
                && !String::from_utf8_lossy(&buf).contains("text/event-stream")
                && buf.ends_with(b"}")))
        {
            match tls.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    } else {
        let _ = tls.read_to_end(&mut buf);
    }
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(buf.len());
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, buf[(split + 4).min(buf.len())..].to_vec())
}

/// The `(method, path)` of every `.route(…)` call in the HTTP crates' sources.
fn served_routes() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = Vec::new();
    for c in ["api", "web", "dicom-net", "server", "gate"] {
        let dir = repo().join("crates").join(c).join("src");
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    for f in files {
        let s = std::fs::read_to_string(&f).unwrap();
        let mut at = 0;
        while let Some(i) = s[at..].find(".route(") {
            let start = at + i + ".route(".len();
            // The call's extent: up to its closing parenthesis.
            let (mut depth, mut end) = (1, start);
            for (j, ch) in s[start..].char_indices() {
                match ch {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = start + j;
                    break;
                }
            }
            let call = &s[start..end];
            let q1 = call.find('"').unwrap();
            let q2 = q1 + 1 + call[q1 + 1..].find('"').unwrap();
            let path = call[q1 + 1..q2].to_string();
            let rest = &call[q2..];
            for m in ["get", "post", "put", "delete", "patch"] {
                let pats = [format!("{m}("), format!(".{m}("), format!("::{m}(")];
                let found = rest.match_indices(&format!("{m}(")).any(|(k, _)| {
                    k == 0
                        || !rest.as_bytes()[k - 1].is_ascii_alphanumeric()
                            && rest.as_bytes()[k - 1] != b'_'
                });
                let _ = pats;
                if found {
                    out.push((m.to_ascii_uppercase(), path.clone()));
                }
            }
            at = end;
        }
    }
    out.sort();
    out.dedup();
    out
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Caller {
    Nobody,
    UnknownToken,
    /// dr.zx, a clinician of FX-ZX.
    ZxClinician,
    /// dr.sq01, a clinician of the community centre FX-SQ01.
    Sq01Clinician,
    /// FX-SQ01's system, by its client certificate.
    Sq01System,
    Commission,
    PrivacyOfficer,
    /// clerk.zx, a registration clerk of FX-ZX.
    Registrar,
}

const CALLERS: [Caller; 8] = [
    Caller::Nobody,
    Caller::UnknownToken,
    Caller::ZxClinician,
    Caller::Sq01Clinician,
    Caller::Sq01System,
    Caller::Commission,
    Caller::PrivacyOfficer,
    Caller::Registrar,
];

impl Caller {
    fn institution(self) -> &'static str {
        match self {
            Caller::Sq01Clinician | Caller::Sq01System => "FX-SQ01",
            _ => "FX-ZX",
        }
    }

    fn reader(self) -> bool {
        matches!(
            self,
            Caller::ZxClinician | Caller::Sq01Clinician | Caller::Sq01System
        )
    }

    fn headers(self) -> Vec<(String, String)> {
        let t = match self {
            Caller::Nobody | Caller::Sq01System => return vec![],
            Caller::UnknownToken => "not-a-token",
            Caller::ZxClinician => "test-clinician-token",
            Caller::Sq01Clinician => "test-sq01-token",
            Caller::Commission => "test-commission-token",
            Caller::PrivacyOfficer => "test-privacy-token",
            Caller::Registrar => "test-registrar-token",
        };
        vec![("Authorization".into(), format!("Bearer {t}"))]
    }

    fn tls(self, certs: &Path) -> rustls::ClientConfig {
        client(certs, (self == Caller::Sq01System).then_some("FX-SQ01"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Auth {
    None,
    Wrong,
    Expired,
    Valid,
    BreakGlass,
    BreakGlassEmergency,
}

const AUTHS: [Auth; 6] = [
    Auth::None,
    Auth::Wrong,
    Auth::Expired,
    Auth::Valid,
    Auth::BreakGlass,
    Auth::BreakGlassEmergency,
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Class {
    /// No authentication, no patient data: never audited.
    Public,
    /// The web page without a session: a redirect or a refusal, never audited.
    Web,
    /// A person's data (results, reports, FHIR, the pre-order check).
    Person,
    /// A decision (clinicians only).
    Decision,
    /// One item of data of an institution (a report, an original, a study, an instance).
    Data(&'static str),
    /// A QIDO-RS search without a patient key: the caller's own institution's studies.
    Search,
    /// The privacy officer's audit view and identity review queue.
    Audit,
    /// Recognition statistics.
    Stats,
    /// Recording a consent.
    ConsentNew,
    /// Revoking one (issued by FX-ZX).
    ConsentRevoke,
    /// ECG upload (ingest): refusals audited.
    EcgUpload,
    /// STOW-RS: one record per request.
    Stow,
    /// The reading worklist: readers on the roster (dr.zx at the test ECG centre) only.
    Worklist,
    /// A reading task's claim / release / cancel / sign / amend: clinicians get past the role check (the
    /// matrix's task does not exist: 404), everyone else 403.
    TaskAct,
    /// The task event stream: clinicians (readers and senders), everyone else 403.
    Events,
    /// A reading centre's roster and workload: its heads (dr.zx heads fx-ecg), else 403.
    Centre,
    /// A chest-pain case that does not exist (or that the caller does not see): 403 for
    /// everyone, audited.
    CaseAct,
    /// The chest-pain KPIs: heads of department (none here) and the health commission.
    Kpi,
}

struct Route {
    method: &'static str,
    template: &'static str,
    url: String,
    class: Class,
    /// The status of an allowed request (for Public and Web: of every request).
    ok: u16,
    /// The patient whose consent opens it.
    patient: Option<&'static str>,
    body: Option<(&'static str, Vec<u8>)>,
}

/// What a request should get: (status, audit records). A refused authentication (401) is
/// audited per peer address and window (issue 16, finding 11): the first failure of the
/// peer in its window writes one record, later ones of the window write none and are
/// counted into one record when the window ends (or the server stops). The matrix's window
/// is a day, so its first 401 writes the record and every later one none — see
/// [`every_route_against_every_caller_status_and_audit_count`], which adjusts the `1` below.
fn expect(r: &Route, c: Caller, a: Auth) -> (u16, usize) {
    let auth_ok = matches!(a, Auth::Valid | Auth::BreakGlassEmergency);
    match r.class {
        Class::Public | Class::Web => (r.ok, 0),
        _ if matches!(c, Caller::Nobody | Caller::UnknownToken) => (401, 1),
        Class::Person if !c.reader() => (403, 1),
        Class::Person => (if auth_ok { r.ok } else { 403 }, 1),
        Class::Decision if !matches!(c, Caller::ZxClinician | Caller::Sq01Clinician) => (403, 1),
        Class::Decision => (if auth_ok { r.ok } else { 403 }, 1),
        Class::Data(_) if !c.reader() => (403, 1),
        Class::Data(owner) if owner == c.institution() => (r.ok, 1),
        Class::Data(_) => (if auth_ok { r.ok } else { 403 }, 1),
        Class::Search if !c.reader() => (403, 1),
        Class::Search => (r.ok, 1),
        Class::Audit => (
            if c == Caller::PrivacyOfficer {
                r.ok
            } else {
                403
            },
            1,
        ),
        Class::Stats => (
            if matches!(c, Caller::Commission | Caller::PrivacyOfficer) {
                200
            } else {
                403
            },
            1,
        ),
        Class::ConsentNew => (
            if matches!(c, Caller::Registrar | Caller::Sq01System) {
                201
            } else {
                403
            },
            1,
        ),
        Class::ConsentRevoke => (
            if matches!(c, Caller::Registrar | Caller::PrivacyOfficer) {
                200
            } else {
                403
            },
            1,
        ),
        Class::EcgUpload
            if !matches!(
                c,
                Caller::ZxClinician | Caller::Sq01Clinician | Caller::Sq01System
            ) =>
        {
            (403, 1)
        }
        Class::EcgUpload => (r.ok, 0),
        Class::Stow if !c.reader() => (403, 1),
        Class::Stow => (r.ok, 1),
        Class::Worklist | Class::Centre => (if c == Caller::ZxClinician { r.ok } else { 403 }, 1),
        Class::CaseAct => (403, 1),
        Class::Kpi => (if c == Caller::Commission { r.ok } else { 403 }, 1),
        Class::TaskAct | Class::Events => (
            if matches!(c, Caller::ZxClinician | Caller::Sq01Clinician) {
                r.ok
            } else {
                403
            },
            1,
        ),
    }
}

fn audit_lines(data: &Path) -> usize {
    std::fs::read_to_string(data.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .count()
}

fn ingest(cfg: &str, data: &Path, inst: &str, file: &Path) -> serde_json::Value {
    let (rc, lines, err) = huren(&[
        "ingest",
        "--config",
        cfg,
        "--data",
        data.to_str().unwrap(),
        "--institution",
        inst,
        file.to_str().unwrap(),
    ]);
    assert_eq!(rc, 0, "{lines:?} {err}");
    lines[0].clone()
}

#[test]
fn every_route_against_every_caller_status_and_audit_count() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let (code, _, err) = huren(&[
        "certs",
        "dev",
        "--out",
        certs.to_str().unwrap(),
        "--institution",
        "FX-ZX",
        "--institution",
        "FX-SQ01",
    ]);
    assert_eq!(code, 0, "{err}");
    let cfg = crate::mllp::config_file(dir.path());
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "charset = \"GB18030\"",
        "charset = \"GB18030\"\nclient_cert_uri = \"urn:huren:institution:FX-SQ01\"",
    );
    let text = format!(
        "{text}\n[access]\nlockout_failures = 100000\nauth_failure_limit = 100000\nauth_failure_window_seconds = 86400\n\n[http.tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n",
        certs.join("server.pem"),
        certs.join("server.key"),
        certs.join("ca.pem"),
    );
    std::fs::write(&cfg, text).unwrap();
    let data = dir.path().join("data");
    let fx = repo().join("fixtures");
    let ct = ingest(&cfg, &data, "FX-ZX", &fx.join("dicom/ct_series_1.dcm"));
    let ecg = ingest(&cfg, &data, "FX-ZY", &fx.join("ecg/aecg-zh-patient.xml"));
    let (ct_report, ecg_report) = (
        ct["report"].as_str().unwrap().to_string(),
        ecg["report"].as_str().unwrap().to_string(),
    );
    let study = ct["study_instance_uid"].as_str().unwrap().to_string();
    let sop = ct["sop_instance_uid"].as_str().unwrap().to_string();

    let srv = Server::start(&data, &["--config", &cfg]);
    let addr = srv.http.clone();
    let mut m = Mllp::connect(&srv.mllp);
    assert_eq!(
        msa(&m
            .send(&oru("FX-ZX", "MX-1", "M1", "MLAB1", "130", "F"))
            .unwrap())
        .0,
        "AA"
    );

    let reg = Caller::Registrar;
    let consent = |patient: &str, extra: serde_json::Value| -> serde_json::Value {
        let mut body = serde_json::json!({"patient": patient,
            "credential": {"kind": "health_card", "value": "card"}});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let (st, b) = call(
            &addr,
            reg.tls(&certs),
            "POST",
            "/api/v1/consents",
            &reg.headers(),
            Some(("application/json", body.to_string().into_bytes())),
        );
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
        serde_json::from_slice(&b).unwrap()
    };
    const PATIENTS: [&str; 3] = ["FX-ZX:M1", "FX-ZY:0012345", "FX-ZX:FX0001"];
    let mut valid = std::collections::HashMap::new();
    let mut expired = std::collections::HashMap::new();
    for p in PATIENTS {
        valid.insert(
            p,
            consent(p, serde_json::json!({}))["authorization"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        expired.insert(
            p,
            consent(p, serde_json::json!({"ttl_seconds": 1}))["authorization"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let revocable = consent("FX-ZX:M1", serde_json::json!({}))["consent"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(1500));

    // The lab report's hash and the CT series, as FX-ZX sees its own data.
    let zx = Caller::ZxClinician;
    let mut h = zx.headers();
    h.push(("X-Patient-Authorization".into(), valid["FX-ZX:M1"].clone()));
    let (st, b) = call(
        &addr,
        zx.tls(&certs),
        "GET",
        "/api/v1/patients/FX-ZX:M1/reports",
        &h,
        None,
    );
    assert_eq!(st, 200);
    let b: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let lab = b["reports"][0]["meta"]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, b) = call(
        &addr,
        zx.tls(&certs),
        "GET",
        &format!("/dicomweb/studies/{study}/series"),
        &zx.headers(),
        None,
    );
    let series: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let series = series[0]["0020000E"]["Value"][0]
        .as_str()
        .unwrap()
        .to_string();
    let inst = format!("/dicomweb/studies/{study}/series/{series}/instances/{sop}");
    let ecg_bytes = std::fs::read(fx.join("ecg/aecg-18-lead.xml")).unwrap();
    let ct_bytes = std::fs::read(fx.join("dicom/ct_series_2.dcm")).unwrap();
    let boundary = "matrix-boundary";
    let mut stow = format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes();
    stow.extend_from_slice(&ct_bytes);
    stow.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let stow_type: &'static str =
        "multipart/related; type=\"application/dicom\"; boundary=matrix-boundary";
    let json = |v: serde_json::Value| Some(("application/json", v.to_string().into_bytes()));
    let form = |s: &str| Some(("application/x-www-form-urlencoded", s.as_bytes().to_vec()));

    let r = |method, template, url: String, class, ok, patient| Route {
        method,
        template,
        url,
        class,
        ok,
        patient,
        body: None,
    };
    let zxd = Class::Data("FX-ZX");
    let zyd = Class::Data("FX-ZY");
    let m1 = Some("FX-ZX:M1");
    let ctp = Some("FX-ZX:FX0001");
    let mut routes = vec![
        r(
            "GET",
            "/healthz",
            "/healthz".into(),
            Class::Public,
            200,
            None,
        ),
        r(
            "GET",
            "/favicon.ico",
            "/favicon.ico".into(),
            Class::Public,
            204,
            None,
        ),
        r(
            "GET",
            "/ui/assets/{file}",
            "/ui/assets/style.css".into(),
            Class::Public,
            200,
            None,
        ),
        r("GET", "/livez", "/livez".into(), Class::Public, 200, None),
        r("GET", "/readyz", "/readyz".into(), Class::Public, 200, None),
        r(
            "GET",
            "/metrics",
            "/metrics".into(),
            Class::Public,
            200,
            None,
        ),
        r("GET", "/", "/".into(), Class::Public, 200, None),
        r(
            "GET",
            "/ui/lang/{code}",
            "/ui/lang/en?back=/ui/search".into(),
            Class::Public,
            303,
            None,
        ),
        r(
            "GET",
            "/ui/search",
            "/ui/search".into(),
            Class::Web,
            303,
            None,
        ),
        r("GET", "/ui/p/{h}", "/ui/p/00".into(), Class::Web, 303, None),
        r(
            "GET",
            "/ui/p/{h}/check",
            "/ui/p/00/check".into(),
            Class::Web,
            422,
            None,
        ),
        r(
            "GET",
            "/ui/p/{h}/r/{hash}",
            format!("/ui/p/00/r/{lab}"),
            Class::Web,
            303,
            None,
        ),
        r(
            "GET",
            "/ui/p/{h}/ecg/{hash}/trace.svg",
            format!("/ui/p/00/ecg/{ecg_report}/trace.svg"),
            Class::Web,
            401,
            None,
        ),
        r(
            "GET",
            "/ui/p/{h}/img/{hash}/{uid}",
            format!("/ui/p/00/img/{ct_report}/{sop}"),
            Class::Web,
            401,
            None,
        ),
        r(
            "GET",
            "/ui/stats",
            "/ui/stats".into(),
            Class::Web,
            303,
            None,
        ),
        r(
            "GET",
            "/ui/identity",
            "/ui/identity".into(),
            Class::Web,
            303,
            None,
        ),
        r(
            "GET",
            "/api/v1/patients/{id}/reports",
            "/api/v1/patients/FX-ZX:M1/reports".into(),
            Class::Person,
            200,
            m1,
        ),
        r(
            "GET",
            "/api/v1/patients/{id}/results",
            "/api/v1/patients/FX-ZX:M1/results".into(),
            Class::Person,
            200,
            m1,
        ),
        r(
            "GET",
            "/fhir/DiagnosticReport",
            "/fhir/DiagnosticReport?patient=FX-ZX:M1".into(),
            Class::Person,
            200,
            m1,
        ),
        r(
            "GET",
            "/fhir/Observation",
            "/fhir/Observation?patient=FX-ZX:M1".into(),
            Class::Person,
            200,
            m1,
        ),
        r(
            "GET",
            "/fhir/ImagingStudy",
            "/fhir/ImagingStudy?patient=FX-ZX:M1".into(),
            Class::Person,
            200,
            m1,
        ),
        r(
            "GET",
            "/fhir/DocumentReference",
            "/fhir/DocumentReference?patient=FX-ZX:M1".into(),
            Class::Person,
            200,
            m1,
        ),
        r(
            "GET",
            "/api/v1/reports/{hash}",
            format!("/api/v1/reports/{lab}"),
            zxd,
            200,
            m1,
        ),
        r(
            "GET",
            "/api/v1/reports/{hash}/original",
            format!("/api/v1/reports/{lab}/original"),
            zxd,
            200,
            m1,
        ),
        r(
            "GET",
            "/api/v1/reports/{hash}/cda",
            format!("/api/v1/reports/{lab}/cda"),
            zxd,
            200,
            m1,
        ),
        r(
            "GET",
            "/api/v1/reports/{hash}/ecg.svg",
            format!("/api/v1/reports/{ecg_report}/ecg.svg"),
            zyd,
            200,
            Some("FX-ZY:0012345"),
        ),
        r(
            "GET",
            "/api/v1/imaging/instances/{uid}/preview.png",
            format!("/api/v1/imaging/instances/{sop}/preview.png"),
            zxd,
            200,
            ctp,
        ),
        r(
            "GET",
            "/dicomweb/studies/{study}",
            format!("/dicomweb/studies/{study}"),
            zxd,
            200,
            ctp,
        ),
        r(
            "GET",
            "/dicomweb/studies/{study}/metadata",
            format!("/dicomweb/studies/{study}/metadata"),
            zxd,
            200,
            ctp,
        ),
        r(
            "GET",
            "/dicomweb/studies/{study}/series/{series}",
            format!("/dicomweb/studies/{study}/series/{series}"),
            zxd,
            200,
            ctp,
        ),
        r(
            "GET",
            "/dicomweb/studies/{study}/series/{series}/metadata",
            format!("/dicomweb/studies/{study}/series/{series}/metadata"),
            zxd,
            200,
            ctp,
        ),
        r(
            "GET",
            "/dicomweb/studies/{study}/series/{series}/instances/{uid}",
            inst.clone(),
            zxd,
            200,
            ctp,
        ),
        r(
            "GET",
            "/dicomweb/studies/{study}/series/{series}/instances/{uid}/metadata",
            format!("{inst}/metadata"),
            zxd,
            200,
            ctp,
        ),
        r(
            "GET",
            "/dicomweb/studies/{study}/series/{series}/instances/{uid}/bulkdata/{*path}",
            format!("{inst}/bulkdata/7FE00010"),
            zxd,
            200,
            ctp,
        ),
        r(
            "GET",
            "/dicomweb/studies/{study}/series/{series}/instances/{uid}/frames/{list}",
            format!("{inst}/frames/1"),
            zxd,
            200,
            ctp,
        ),
        r(
            "GET",
            "/dicomweb/studies/{study}/series/{series}/instances/{uid}/rendered",
            format!("{inst}/rendered"),
            zxd,
            200,
            ctp,
        ),
        r(
            "GET",
            "/dicomweb/studies",
            "/dicomweb/studies".into(),
            Class::Search,
            200,
            None,
        ),
        r(
            "GET",
            "/dicomweb/series",
            "/dicomweb/series".into(),
            Class::Search,
            200,
            None,
        ),
        r(
            "GET",
            "/dicomweb/instances",
            "/dicomweb/instances".into(),
            Class::Search,
            200,
            None,
        ),
        r(
            "GET",
            "/dicomweb/studies/{study}/series",
            format!("/dicomweb/studies/{study}/series"),
            Class::Search,
            200,
            None,
        ),
        r(
            "GET",
            "/dicomweb/studies/{study}/instances",
            format!("/dicomweb/studies/{study}/instances"),
            Class::Search,
            200,
            None,
        ),
        r(
            "GET",
            "/dicomweb/studies/{study}/series/{series}/instances",
            format!("/dicomweb/studies/{study}/series/{series}/instances"),
            Class::Search,
            200,
            None,
        ),
        r(
            "GET",
            "/api/v1/audit",
            "/api/v1/audit?patient=FX-ZX:M1".into(),
            Class::Audit,
            200,
            None,
        ),
        r(
            "GET",
            "/api/v1/audit/break-glass",
            "/api/v1/audit/break-glass".into(),
            Class::Audit,
            200,
            None,
        ),
        r(
            "GET",
            "/api/v1/identity/reviews",
            "/api/v1/identity/reviews".into(),
            Class::Audit,
            200,
            None,
        ),
        r(
            "GET",
            "/api/v1/outbox",
            "/api/v1/outbox?state=parked".into(),
            Class::Audit,
            200,
            None,
        ),
        r(
            "GET",
            "/api/v1/stats/recognition",
            "/api/v1/stats/recognition".into(),
            Class::Stats,
            200,
            None,
        ),
        r(
            "GET",
            "/api/v1/worklist",
            "/api/v1/worklist".into(),
            Class::Worklist,
            200,
            None,
        ),
        r(
            "GET",
            "/api/v1/alerts",
            "/api/v1/alerts".into(),
            Class::Events,
            200,
            None,
        ),
        r(
            "GET",
            "/api/v1/referrals",
            "/api/v1/referrals".into(),
            Class::Events,
            200,
            None,
        ),
        r(
            "GET",
            "/api/v1/referrals/{id}",
            "/api/v1/referrals/c-none".into(),
            Class::CaseAct,
            200,
            None,
        ),
        r(
            "GET",
            "/api/v1/kpi/chest-pain",
            "/api/v1/kpi/chest-pain".into(),
            Class::Kpi,
            200,
            None,
        ),
        r(
            "GET",
            "/api/v1/kpi/chest-pain/{file}",
            "/api/v1/kpi/chest-pain/export.csv".into(),
            Class::Kpi,
            200,
            None,
        ),
        r(
            "GET",
            "/api/v1/events",
            "/api/v1/events".into(),
            Class::Events,
            200,
            None,
        ),
        r(
            "GET",
            "/api/v1/centres/{id}/roster",
            "/api/v1/centres/fx-ecg/roster".into(),
            Class::Centre,
            200,
            None,
        ),
        r(
            "GET",
            "/api/v1/centres/{id}/workload",
            "/api/v1/centres/fx-ecg/workload".into(),
            Class::Centre,
            200,
            None,
        ),
        r(
            "GET",
            "/ui/centre/{id}",
            "/ui/centre/fx-ecg".into(),
            Class::Web,
            303,
            None,
        ),
        r(
            "GET",
            "/ui/alerts",
            "/ui/alerts".into(),
            Class::Web,
            303,
            None,
        ),
        r(
            "GET",
            "/ui/alerts/{id}/trace.svg",
            "/ui/alerts/a-none/trace.svg".into(),
            Class::Web,
            401,
            None,
        ),
        r(
            "GET",
            "/ui/worklist",
            "/ui/worklist".into(),
            Class::Web,
            303,
            None,
        ),
        r("GET", "/ui/sent", "/ui/sent".into(), Class::Web, 303, None),
        r(
            "GET",
            "/ui/referrals",
            "/ui/referrals".into(),
            Class::Web,
            303,
            None,
        ),
        r("GET", "/ui/kpi", "/ui/kpi".into(), Class::Web, 303, None),
        r(
            "GET",
            "/ui/kpi/{file}",
            "/ui/kpi/export.csv".into(),
            Class::Web,
            303,
            None,
        ),
        r(
            "GET",
            "/ui/events",
            "/ui/events".into(),
            Class::Web,
            401,
            None,
        ),
        r(
            "GET",
            "/ui/task/{id}",
            "/ui/task/t-none".into(),
            Class::Web,
            303,
            None,
        ),
        r(
            "GET",
            "/ui/task/{id}/img/{hash}/{uid}",
            format!("/ui/task/t-none/img/{ct_report}/{sop}"),
            Class::Web,
            401,
            None,
        ),
        r(
            "GET",
            "/ui/task/{id}/trace/{hash}",
            format!("/ui/task/t-none/trace/{ecg_report}"),
            Class::Web,
            401,
            None,
        ),
        r(
            "GET",
            "/fhir/Task",
            "/fhir/Task?status=requested".into(),
            Class::Worklist,
            200,
            None,
        ),
        // No such task: readers learn so (404, audited); everyone else 403.
        r(
            "GET",
            "/fhir/Task/{id}",
            "/fhir/Task/t-none".into(),
            Class::TaskAct,
            404,
            None,
        ),
        r(
            "DELETE",
            "/api/v1/consents/{id}",
            format!("/api/v1/consents/{revocable}"),
            Class::ConsentRevoke,
            200,
            None,
        ),
    ];
    let mut post = |template: &'static str, url: String, class, ok, patient, body| {
        routes.push(Route {
            method: "POST",
            template,
            url,
            class,
            ok,
            patient,
            body,
        })
    };
    post(
        "/api/v1/recognition/check",
        "/api/v1/recognition/check".into(),
        Class::Person,
        200,
        m1,
        json(serde_json::json!({"patient": "FX-ZX:M1", "item_code": "FX-LAB-K"})),
    );
    post(
        "/api/v1/recognition/decisions",
        "/api/v1/recognition/decisions".into(),
        Class::Decision,
        404,
        m1,
        json(
            serde_json::json!({"patient": "FX-ZX:M1", "report": format!("blake3:{}", "0".repeat(64)),
            "item": "FX-LAB-K", "action": "accept"}),
        ),
    );
    post(
        "/api/v1/referrals",
        "/api/v1/referrals".into(),
        Class::CaseAct,
        201,
        None,
        json(serde_json::json!({"alert": "a-none", "reason": "matrix"})),
    );
    post(
        "/api/v1/referrals/{id}/stamps",
        "/api/v1/referrals/c-none/stamps".into(),
        Class::CaseAct,
        200,
        None,
        json(serde_json::json!({"milestone": "door_in"})),
    );
    post(
        "/api/v1/referrals/{id}/cancel",
        "/api/v1/referrals/c-none/cancel".into(),
        Class::CaseAct,
        200,
        None,
        json(serde_json::json!({"reason": "matrix"})),
    );
    for act in ["ack", "cancel"] {
        post(
            if act == "ack" {
                "/api/v1/alerts/{id}/ack"
            } else {
                "/api/v1/alerts/{id}/cancel"
            },
            format!("/api/v1/alerts/a-none/{act}"),
            Class::TaskAct,
            404,
            None,
            json(if act == "ack" {
                serde_json::json!({"decision": "stemi_transfer", "note": ""})
            } else {
                serde_json::json!({"reason": "matrix"})
            }),
        );
    }
    for act in ["claim", "release", "cancel", "sign", "amend"] {
        let template = match act {
            "claim" => "/api/v1/worklist/{id}/claim",
            "release" => "/api/v1/worklist/{id}/release",
            "sign" => "/api/v1/worklist/{id}/sign",
            "amend" => "/api/v1/worklist/{id}/amend",
            _ => "/api/v1/worklist/{id}/cancel",
        };
        post(
            template,
            format!("/api/v1/worklist/t-none/{act}"),
            Class::TaskAct,
            404,
            None,
            json(if act == "sign" {
                serde_json::json!({"statements": ["窦性心律"], "text": "matrix"})
            } else if act == "amend" {
                serde_json::json!({"statements": ["窦性心律"], "text": "matrix", "reason": "matrix"})
            } else {
                serde_json::json!({"reason": "matrix"})
            }),
        );
    }
    // No review item has this id: the privacy officer learns so (404, audited).
    post(
        "/api/v1/identity/reviews/{id}/resolve",
        "/api/v1/identity/reviews/999-0/resolve".into(),
        Class::Audit,
        404,
        None,
        json(serde_json::json!({"decision": "keep", "reason": "matrix"})),
    );
    post(
        "/api/v1/consents",
        "/api/v1/consents".into(),
        Class::ConsentNew,
        201,
        None,
        json(
            serde_json::json!({"patient": "FX-ZX:M1", "credential": {"kind": "id_card", "value": "x"}}),
        ),
    );
    post(
        "/api/v1/ecg",
        "/api/v1/ecg".into(),
        Class::EcgUpload,
        0,
        None,
        Some(("application/xml", ecg_bytes)),
    );
    post(
        "/dicomweb/studies",
        "/dicomweb/studies".into(),
        Class::Stow,
        200,
        None,
        Some((stow_type, stow.clone())),
    );
    post(
        "/dicomweb/studies/{study}",
        format!("/dicomweb/studies/{study}"),
        Class::Stow,
        200,
        None,
        Some((stow_type, stow)),
    );
    post(
        "/ui/login",
        "/ui/login".into(),
        Class::Web,
        422,
        None,
        form("x=1"),
    );
    post(
        "/ui/logout",
        "/ui/logout".into(),
        Class::Web,
        422,
        None,
        form("x=1"),
    );
    post(
        "/ui/search",
        "/ui/search".into(),
        Class::Web,
        303,
        None,
        form("x=1"),
    );
    post(
        "/ui/centre/{id}/roster",
        "/ui/centre/fx-ecg/roster".into(),
        Class::Web,
        303,
        None,
        form("x=1"),
    );
    post(
        "/ui/referrals/{id}/{act}",
        "/ui/referrals/c-none/stamp".into(),
        Class::Web,
        303,
        None,
        form("x=1"),
    );
    post(
        "/ui/alerts/{id}/{act}",
        "/ui/alerts/a-none/ack".into(),
        Class::Web,
        303,
        None,
        form("x=1"),
    );
    post(
        "/ui/task/{id}/{act}",
        "/ui/task/t-none/claim".into(),
        Class::Web,
        303,
        None,
        form("x=1"),
    );
    post(
        "/ui/p/{h}/decide",
        "/ui/p/00/decide".into(),
        Class::Web,
        422,
        None,
        form("x=1"),
    );
    post(
        "/ui/identity/{id}/resolve",
        "/ui/identity/999-0/resolve".into(),
        Class::Web,
        422,
        None,
        form("x=1"),
    );

    // The roster as it is (dr.zx on duty all day): allowed edits change nothing.
    routes.push(Route {
        method: "PUT",
        template: "/api/v1/centres/{id}/roster",
        url: "/api/v1/centres/fx-ecg/roster".into(),
        class: Class::Centre,
        ok: 200,
        patient: None,
        body: json(serde_json::json!({"roster": [{"reader": "dr.zx"}]})),
    });
    // Every served route is in the matrix, and every row is a served route.
    let mut listed: Vec<(String, String)> = routes
        .iter()
        .map(|r| (r.method.to_string(), r.template.to_string()))
        .collect();
    listed.sort();
    listed.dedup();
    assert_eq!(
        listed,
        served_routes(),
        "the matrix and the router disagree: list every new route here"
    );

    let mut cases = 0;
    let mut failures = Vec::new();
    // Refused authentications so far (all from 127.0.0.1, within one window).
    let mut refused_401 = 0u64;
    for route in &routes {
        for caller in CALLERS {
            let auths: &[Auth] = if caller.reader()
                && matches!(
                    route.class,
                    Class::Person | Class::Decision | Class::Data(_)
                ) {
                &AUTHS
            } else {
                &[Auth::None]
            };
            for &auth in auths {
                let mut headers = caller.headers();
                let mut url = route.url.clone();
                let patient = route.patient.unwrap_or("FX-ZX:M1");
                match auth {
                    Auth::None => {}
                    Auth::Wrong => headers.push((
                        "X-Patient-Authorization".into(),
                        "health_card WRNGC-0DE00".into(),
                    )),
                    Auth::Expired => {
                        headers.push(("X-Patient-Authorization".into(), expired[patient].clone()))
                    }
                    Auth::Valid => {
                        headers.push(("X-Patient-Authorization".into(), valid[patient].clone()))
                    }
                    Auth::BreakGlass | Auth::BreakGlassEmergency => {
                        headers.push(("X-Break-Glass".into(), "%E8%83%B8%E7%97%9B".into()))
                    }
                }
                let mut body = route.body.as_ref().map(|(t, b)| (*t, b.clone()));
                if auth == Auth::BreakGlassEmergency {
                    if let Some((_, b)) = body.as_mut().filter(|(t, _)| *t == "application/json") {
                        let mut v: serde_json::Value = serde_json::from_slice(b).unwrap();
                        v["encounter"] = "emergency".into();
                        *b = v.to_string().into_bytes();
                    } else {
                        url.push(if url.contains('?') { '&' } else { '?' });
                        url.push_str("encounter=emergency");
                    }
                }
                let before = audit_lines(&data);
                let (status, answer) = call(
                    &addr,
                    caller.tls(&certs),
                    route.method,
                    &url,
                    &headers,
                    body,
                );
                let written = audit_lines(&data) - before;
                let (want_status, mut want_audit) = expect(route, caller, auth);
                if want_status == 401 && want_audit == 1 {
                    want_audit = usize::from(refused_401 == 0);
                    refused_401 += 1;
                }
                let status_ok = if route.class == Class::EcgUpload && want_status == 0 {
                    status == 200 || status == 201
                } else {
                    status == want_status
                };
                cases += 1;
                if !status_ok || written != want_audit {
                    failures.push(format!(
                        "{} {} as {caller:?} with {auth:?}: {status} and {written} audit record(s), expected {want_status} and {want_audit}: {}",
                        route.method,
                        route.template,
                        String::from_utf8_lossy(&answer).chars().take(200).collect::<String>()
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(cases > 500, "{cases} cases");
    // Systems are audited as systems (they were written down as "clinician"), and no token,
    // code or credential reaches the log.
    let raw = std::fs::read_to_string(data.join("audit.log")).unwrap();
    let records: Vec<serde_json::Value> = raw
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let systems: Vec<_> = records
        .iter()
        .filter(|r| r["actor"].as_str().is_some_and(|a| a.starts_with("cert:")))
        .collect();
    assert!(!systems.is_empty());
    assert!(systems.iter().all(|r| r["role"] == "institution_system"));
    // The privacy officer's list of break-glass access: every attempt of the matrix, allowed
    // (in an emergency) or refused, with its reason.
    let po = Caller::PrivacyOfficer;
    let (st, b) = call(
        &addr,
        po.tls(&certs),
        "GET",
        "/api/v1/audit/break-glass",
        &po.headers(),
        None,
    );
    assert_eq!(st, 200);
    let bg: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let n = records.iter().filter(|r| r["break_glass"] == true).count();
    assert!(n > 20, "{n}");
    assert_eq!(bg["count"], n, "{bg}");
    assert!(bg["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["outcome"] == "ok" && e["detail"]["break_glass_reason"] == "胸痛"));
    for secret in ["test-sq01-token", "not-a-token", "WRNGC"]
        .into_iter()
        .chain(valid.values().map(|v| v.split(' ').nth(1).unwrap()))
    {
        assert!(!raw.contains(secret), "{secret} in the audit log");
    }
    // Every 401 is accounted for: the first one's record names the peer and counts 1; the
    // rest are counted into one record when the window ends — here, when the server stops.
    let first: Vec<_> = records
        .iter()
        .filter(|r| r["actor"] == "anonymous" && r["detail"]["failures"].is_u64())
        .collect();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["detail"]["failures"], 1);
    assert_eq!(first[0]["detail"]["peer"], "127.0.0.1");
    assert!(refused_401 > 50, "{refused_401}");
    drop(m);
    let mut srv = srv;
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &srv.child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let _ = srv.child.wait();
    drop(srv);
    let raw = std::fs::read_to_string(data.join("audit.log")).unwrap();
    let flushed: Vec<serde_json::Value> = raw
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["action"] == "authenticate" && r["detail"]["window_ended"] == true)
        .collect();
    assert_eq!(flushed.len(), 1, "{flushed:?}");
    assert_eq!(flushed[0]["detail"]["failures"], refused_401 - 1);
    assert_eq!(flushed[0]["detail"]["peer"], "127.0.0.1");
    let (code, _, err) = huren(&["verify", "--data", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
}
