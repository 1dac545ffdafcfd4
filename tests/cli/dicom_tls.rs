//! DICOM TLS with real dcmtk peers (`echoscu` / `storescu` built with OpenSSL) against
//! `huren serve --dicom-tls`: a client certificate of the calling AE title's institution is
//! let in and its instances are stored; another institution's certificate, no certificate,
//! and plain TCP are turned away and store nothing.

use std::path::Path;

use crate::dicom::{config, dcmtk, dcmtk_run, fixture, start_listener};
use crate::support::huren;

fn tls_args(certs: &Path, institution: Option<&str>) -> Vec<String> {
    let mut a = Vec::new();
    match institution {
        Some(i) => {
            a.push("+tls".to_string());
            a.push(certs.join(format!("client-{i}.key")).display().to_string());
            a.push(certs.join(format!("client-{i}.pem")).display().to_string());
        }
        None => a.push("+tla".to_string()),
    }
    a.push("+cf".to_string());
    a.push(certs.join("ca.pem").display().to_string());
    a
}

fn tool(name: &str, port: &str, tls: &[String], files: &[&Path]) -> (i32, String) {
    let mut args: Vec<String> = ["-aet", "FXPACS", "-aec", "HUREN"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(tls.iter().cloned());
    args.push("127.0.0.1".into());
    args.push(port.into());
    args.extend(files.iter().map(|f| f.display().to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    dcmtk_run(name, &a, true)
}

#[test]
fn dicom_tls_with_client_certificates() {
    if !dcmtk() {
        return;
    }
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
    let tls = format!(
        "tls = {{ cert = {:?}, key = {:?}, client_ca = {:?} }}",
        certs.join("server.pem"),
        certs.join("server.key"),
        certs.join("ca.pem"),
    );
    let cfg = config(dir.path(), &format!("timeout_secs = 2\n{tls}"));
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            "name = \"上海市奉贤区中心医院\"",
            "name = \"上海市奉贤区中心医院\"\nclient_cert_uri = \"urn:huren:institution:FX-ZX\"",
        )
        .replace(
            "charset = \"GB18030\"",
            "charset = \"GB18030\"\nclient_cert_uri = \"urn:huren:institution:FX-SQ01\"",
        );
    std::fs::write(&cfg, text).unwrap();
    let (srv, port) = start_listener(&dir.path().join("data"), &cfg, "dicom-tls");
    let announced = srv
        .lines
        .iter()
        .find(|l| l["listening"] == "dicom-tls")
        .unwrap();
    assert_eq!(announced["client_certificates"], true, "{announced}");

    let zx = tls_args(&certs, Some("FX-ZX"));
    let (rc, out) = tool("echoscu", &port, &zx, &[]);
    assert_eq!(rc, 0, "C-ECHO over TLS with FX-ZX's certificate: {out}");

    let ct1 = fixture("ct_series_1.dcm");
    let ct2 = fixture("ct_series_2.dcm");
    let (rc, out) = tool("storescu", &port, &zx, &[&ct1]);
    assert_eq!(rc, 0, "{out}");
    let count = || {
        let (st, b) = srv.get("/api/v1/patients/FX-ZX:FX0001/reports?kind=imaging");
        assert_eq!(st, 200, "{b}");
        if b["count"] == 0 {
            0
        } else {
            b["reports"][0]["report"]["imaging"]["instance_count"]
                .as_u64()
                .unwrap()
        }
    };
    assert_eq!(count(), 1);

    // Another institution's (valid) certificate under FXPACS's AE title: aborted after
    // negotiation, nothing stored.
    let sq = tls_args(&certs, Some("FX-SQ01"));
    let (rc, out) = tool("storescu", &port, &sq, &[&ct2]);
    assert_ne!(
        rc, 0,
        "a certificate of FX-SQ01 must not send as FXPACS: {out}"
    );
    // No client certificate at all (anonymous TLS), and plain TCP on the TLS port.
    let (rc, out) = tool("storescu", &port, &tls_args(&certs, None), &[&ct2]);
    assert_ne!(rc, 0, "TLS without a client certificate: {out}");
    let (rc, out) = tool("storescu", &port, &[], &[&ct2]);
    assert_ne!(rc, 0, "plain TCP on the TLS port: {out}");
    assert_eq!(count(), 1, "refused associations stored nothing");

    // The right certificate again: the second instance arrives.
    let (rc, out) = tool("storescu", &port, &zx, &[&ct2]);
    assert_eq!(rc, 0, "{out}");
    assert!(out.is_empty() || !out.contains("Failed"), "{out}");
    assert_eq!(count(), 2);

    // A client that connects and never starts the handshake is dropped after timeout_secs.
    use std::io::Read;
    let mut idle = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    idle.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let t0 = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = idle.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "nothing is sent to a silent client");
    let waited = t0.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(1500)
            && waited < std::time::Duration::from_secs(8),
        "closed after {waited:?}, timeout_secs = 2"
    );
}
