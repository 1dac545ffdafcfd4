//! MLLP over TLS with required client certificates mapped to institutions.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::support::{huren, msa, oru, Server};

pub fn client(certs: &std::path::Path, inst: Option<&str>) -> rustls::ClientConfig {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(certs.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder().with_root_certificates(roots);
    match inst {
        None => b.with_no_client_auth(),
        Some(code) => {
            let chain: Vec<_> =
                CertificateDer::pem_file_iter(certs.join(format!("client-{code}.pem")))
                    .unwrap()
                    .map(|c| c.unwrap())
                    .collect();
            let key =
                PrivateKeyDer::from_pem_file(certs.join(format!("client-{code}.key"))).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
    }
}

/// Sends one framed message over TLS; returns the ACK or None when the server refused.
pub fn send_tls(addr: &str, cfg: rustls::ClientConfig, msg: &[u8]) -> Option<String> {
    let conn =
        rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut frame = vec![0x0b];
    frame.extend_from_slice(msg);
    frame.extend_from_slice(&[0x1c, 0x0d]);
    tls.write_all(&frame).ok()?;
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(&[0x1c, 0x0d]) {
        match tls.read(&mut b) {
            Ok(0) | Err(_) => return None,
            Ok(_) => buf.push(b[0]),
        }
    }
    Some(String::from_utf8_lossy(&buf[1..buf.len() - 2]).to_string())
}

#[test]
fn tls_client_certificates_map_to_institutions() {
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
        "--institution",
        "STRANGER",
    ]);
    assert_eq!(code, 0, "{err}");
    let cfg = format!(
        "{}\n[mllp.tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n",
        crate::mllp::CONFIG
            .replace("name = \"上海市奉贤区中心医院\"", "name = \"上海市奉贤区中心医院\"\nclient_cert_uri = \"urn:huren:institution:FX-ZX\"")
            .replace("charset = \"GB18030\"", "charset = \"GB18030\"\nclient_cert_uri = \"urn:huren:institution:FX-SQ01\""),
        certs.join("server.pem"),
        certs.join("server.key"),
        certs.join("ca.pem"),
    );
    let cfg_path = dir.path().join("tls.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let srv = Server::start(
        &dir.path().join("data"),
        &["--config", cfg_path.to_str().unwrap()],
    );

    // The right institution: AA.
    let m = oru("FX-ZX", "TLS-1", "T1", "TLAB1", "1.0", "F");
    let ack = send_tls(&srv.mllp, client(&certs, Some("FX-ZX")), &m).expect("ACK over TLS");
    assert_eq!(msa(&ack), ("AA".into(), "TLS-1".into()));
    assert_eq!(srv.get("/api/v1/patients/FX-ZX:T1/reports").1["count"], 1);

    // A valid certificate of another institution sending as FX-ZX: AR, nothing stored.
    let m = oru("FX-ZX", "TLS-2", "T2", "TLAB2", "1.0", "F");
    let ack = send_tls(&srv.mllp, client(&certs, Some("FX-SQ01")), &m).expect("ACK");
    assert_eq!(msa(&ack).0, "AR", "{ack}");
    assert_eq!(srv.get("/api/v1/patients/FX-ZX:T2/reports").1["count"], 0);

    // No client certificate, or one that maps to no institution: refused, no ACK.
    assert!(send_tls(&srv.mllp, client(&certs, None), &m).is_none());
    assert!(send_tls(&srv.mllp, client(&certs, Some("STRANGER")), &m).is_none());
    assert_eq!(srv.get("/api/v1/patients/FX-ZX:T2/reports").1["count"], 0);
}
