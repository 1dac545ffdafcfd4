//! Issue 16 ("Hostile and clumsy peers"), listener budgets: silent sockets before a TLS
//! handshake do not take the MLLP connection permits (finding 4); HTTP closes sockets over its
//! connection cap at once and header-less ones after the header-read timeout (finding 3);
//! a DICOM peer trickling bytes slower than the PDU deadline loses its association
//! (finding 7).

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{huren, msa, oru, Server};

/// Waits (bounded by `within`) until the server closes `s`; true when it did.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let end = Instant::now() + within;
    let mut b = [0u8; 64];
    while Instant::now() < end {
        let left = end.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(left.max(Duration::from_millis(10))))
            .unwrap();
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn silent_sockets_before_the_tls_handshake_do_not_lock_out_a_certified_lis() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let (code, _, err) = huren(&[
        "certs",
        "dev",
        "--out",
        certs.to_str().unwrap(),
        "--institution",
        "FX-ZX",
    ]);
    assert_eq!(code, 0, "{err}");
    let cfg = format!(
        "{}\n[mllp]\nmax_connections = 4\nhandshake_timeout_secs = 3\n[mllp.tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n",
        crate::mllp::CONFIG.replace(
            "name = \"上海市奉贤区中心医院\"",
            "name = \"上海市奉贤区中心医院\"\nclient_cert_uri = \"urn:huren:institution:FX-ZX\""
        ),
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

    // Five times the connection cap of sockets that never say a word.
    let mut silent: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(&srv.mllp).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    // The LIS with a valid certificate still gets its AA.
    let m = oru("FX-ZX", "BUDGET-1", "B1", "BLAB1", "1.0", "F");
    let ack = crate::tls::send_tls(&srv.mllp, crate::tls::client(&certs, Some("FX-ZX")), &m)
        .expect("ACK over TLS despite silent sockets");
    assert_eq!(msa(&ack), ("AA".into(), "BUDGET-1".into()));

    // And the silent ones are closed after the handshake timeout.
    for s in &mut silent {
        assert!(
            closed_within(s, Duration::from_secs(10)),
            "silent socket still open"
        );
    }
}
