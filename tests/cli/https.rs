//! HTTPS with client certificates: institution systems by certificate, clinicians by token,
//! refusals (no certificate and no token, unknown institution, revoked certificate, wrong CA,
//! a token of another institution) answered and audited.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rustls::pki_types::ServerName;

use crate::mllp::config_file;
use crate::support::{huren, msa, Mllp, Server};
use crate::tls::client;

/// One HTTP/1.1 GET over TLS; `None` when the TLS session was refused.
pub(crate) fn https_get(
    addr: &str,
    cfg: rustls::ClientConfig,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<(u16, serde_json::Value)> {
    https_req(addr, cfg, "GET", path, headers, None)
}

/// One HTTP/1.1 request over TLS with an optional JSON body.
fn https_req(
    addr: &str,
    cfg: rustls::ClientConfig,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> Option<(u16, serde_json::Value)> {
    let conn =
        rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    tls.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    match tls.read_to_end(&mut buf) {
        Ok(_) => {}
        Err(_) if !buf.is_empty() => {}
        Err(_) => return None,
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    Some((
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    ))
}

#[test]
fn https_client_certificates_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let other = dir.path().join("other-ca");
    let mk = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["certs", "dev", "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (code, _, err) = huren(&args);
        assert_eq!(code, 0, "{err}");
    };
    mk(
        &certs,
        &[
            "--institution",
            "FX-ZX",
            "--institution",
            "FX-SQ01",
            "--institution",
            "STRANGER",
            "--revoke",
            "FX-ZY",
        ],
    );
    mk(&other, &["--institution", "FX-SQ01"]);
    let cfg_path = config_file(dir.path());
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    let text = text
        .replace(
            "name = \"上海市奉贤区中心医院\"",
            "name = \"上海市奉贤区中心医院\"\nclient_cert_uri = \"urn:huren:institution:FX-ZX\"",
        )
        .replace(
            "name = \"上海市奉贤区中医医院\"",
            "name = \"上海市奉贤区中医医院\"\nclient_cert_uri = \"urn:huren:institution:FX-ZY\"",
        )
        .replace(
            "charset = \"GB18030\"",
            "charset = \"GB18030\"\nclient_cert_uri = \"urn:huren:institution:FX-SQ01\"",
        );
    let text = format!(
        "{text}\n[http.tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\ncrls = [{:?}]\n",
        certs.join("server.pem"),
        certs.join("server.key"),
        certs.join("ca.pem"),
        certs.join("crl.pem"),
    );
    std::fs::write(&cfg_path, text).unwrap();
    let data = dir.path().join("data");
    {
        let srv = Server::start(&data, &["--config", &cfg_path]);
        assert!(srv.lines.iter().any(|l| l["listening"] == "https"));
        let mut c = Mllp::connect(&srv.mllp);
        let msg = crate::support::oru("FX-ZX", "H-1", "H1", "HLAB1", "130", "F");
        assert_eq!(msa(&c.send(&msg).unwrap()).0, "AA");
        let path = "/api/v1/patients/FX-ZX:H1/results";
        // The patient's own hospital (its HIS, by certificate) records her consent.
        let (st, consent) = https_req(
            &srv.http,
            client(&certs, Some("FX-ZX")),
            "POST",
            "/api/v1/consents",
            &[],
            Some(&serde_json::json!({"patient": "FX-ZX:H1",
                "credential": {"kind": "health_card", "value": "42"}})),
        )
        .unwrap();
        assert_eq!(st, 201, "{consent}");
        let code = consent["authorization"].as_str().unwrap().to_string();
        let auth = ("X-Patient-Authorization", code.as_str());
        // A code that was never issued is refused (before: any non-empty code passed).
        let (st, b) = https_get(
            &srv.http,
            client(&certs, Some("FX-SQ01")),
            path,
            &[("X-Patient-Authorization", "health_card 42")],
        )
        .unwrap();
        assert_eq!(st, 403, "{b}");
        assert_eq!(b["code"], "PATIENT_AUTHORIZATION_INVALID");

        // An institution system by its certificate alone.
        let (st, b) = https_get(&srv.http, client(&certs, Some("FX-SQ01")), path, &[auth]).unwrap();
        assert_eq!(st, 200, "{b}");
        assert!(b["count"].as_u64().unwrap() >= 1);
        // A clinician by token, without a certificate.
        let tok = ("Authorization", "Bearer test-sq01-token");
        let (st, _) = https_get(&srv.http, client(&certs, None), path, &[auth, tok]).unwrap();
        assert_eq!(st, 200);
        // Neither: 401.
        let (st, _) = https_get(&srv.http, client(&certs, None), path, &[auth]).unwrap();
        assert_eq!(st, 401);
        // A token of another institution over FX-ZX's certificate: 403.
        let (st, b) =
            https_get(&srv.http, client(&certs, Some("FX-ZX")), path, &[auth, tok]).unwrap();
        assert_eq!(st, 403, "{b}");
        // Unknown institution, revoked certificate, wrong CA: no session.
        for (name, cfg) in [
            ("unknown institution", client(&certs, Some("STRANGER"))),
            ("revoked", client(&certs, Some("FX-ZY"))),
            ("wrong CA", {
                // The other CA's client certificate, trusting our server's CA.
                let mut roots = rustls::RootCertStore::empty();
                for cert in
                    rustls::pki_types::CertificateDer::pem_file_iter(certs.join("ca.pem")).unwrap()
                {
                    roots.add(cert.unwrap()).unwrap();
                }
                use rustls::pki_types::pem::PemObject;
                let chain: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(
                    other.join("client-FX-SQ01.pem"),
                )
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
                let key = rustls::pki_types::PrivateKeyDer::from_pem_file(
                    other.join("client-FX-SQ01.key"),
                )
                .unwrap();
                rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_client_auth_cert(chain, key)
                    .unwrap()
            }),
        ] {
            let r = https_get(&srv.http, cfg, path, &[auth, tok]);
            assert!(r.is_none(), "{name}: {r:?}");
        }
        // The refusals are audited by the connection tasks; wait (bounded) for all three.
        for _ in 0..100 {
            let log = std::fs::read_to_string(data.join("audit.log")).unwrap_or_default();
            if log.matches("\"action\":\"tls_handshake\"").count() >= 1 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let log = std::fs::read_to_string(data.join("audit.log")).unwrap();
    assert!(log.contains("\"actor\":\"cert:FX-SQ01\""), "{log}");
    assert!(log.contains("\"role\":\"institution_system\""));
    assert!(log.contains("denied: token of FX-SQ01 over the client certificate of FX-ZX"));
    // Refused handshakes are audited per peer address and window (issue 16, finding 11): the
    // first of the three writes the record, with the peer; the others are counted into the
    // record written when the window ends.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = std::fs::read_to_string(data.join("audit.log")).unwrap();
    assert_eq!(
        log.matches("\"action\":\"tls_handshake\"").count(),
        1,
        "{log}"
    );
    assert!(log.contains("\"peer\":\"127.0.0.1\""), "{log}");
    assert!(log.contains("belong to no configured institution"));
    let (code, _, err) = huren(&["verify", "--data", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
}
