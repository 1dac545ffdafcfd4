//! Issue 16 ("Hostile and clumsy peers"), listener budgets: silent sockets before a TLS
//! handshake do not take the MLLP connection permits (finding 4); HTTP closes sockets over its
//! connection cap at once and header-less ones after the header-read timeout (finding 3);
//! a DICOM peer trickling bytes loses its association at `timeout_secs` (each whole PDU), one
//! that keeps it busy with small PDUs at `max_association_secs` (finding 7).

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

#[test]
fn http_closes_sockets_over_its_cap_at_once_and_idle_ones_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::mllp::config_file(dir.path());
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}\n[http]\nmax_connections = 20\nheader_read_timeout_secs = 2\n"),
    )
    .unwrap();
    let srv = Server::start(&dir.path().join("data"), &["--config", &cfg]);

    let t0 = Instant::now();
    let mut idle: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(&srv.http).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Over the cap of 20: closed at once (well before the 2 s header-read timeout).
    let at_once = idle
        .iter_mut()
        .filter_map(|s| closed_within(s, Duration::from_millis(20)).then_some(()))
        .count();
    assert!(
        t0.elapsed() < Duration::from_millis(1800),
        "too slow to tell the timeout from the cap"
    );
    assert!(at_once >= 30, "only {at_once} of 50 closed at once");
    assert!(
        at_once < 50,
        "the cap's own sockets were closed at once too"
    );
    // The rest: closed by the header-read timeout.
    for s in &mut idle {
        assert!(
            closed_within(s, Duration::from_secs(8)),
            "idle socket still open"
        );
    }
    // With the idle sockets gone, a real request is answered (with the peer's consent).
    let (status, body) = srv.get("/api/v1/patients/FX-ZX:1/reports");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn https_closes_sockets_over_its_cap_and_idle_sessions_after_the_header_timeout() {
    use std::sync::Arc;
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
    let cfg = crate::mllp::config_file(dir.path());
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "{text}\n[http]\nmax_connections = 5\nheader_read_timeout_secs = 2\n[http.tls]\ncert = {:?}\nkey = {:?}\n",
            certs.join("server.pem"),
            certs.join("server.key"),
        ),
    )
    .unwrap();
    let srv = Server::start(&dir.path().join("data"), &["--config", &cfg]);
    assert!(srv.lines.iter().any(|l| l["listening"] == "https"));

    // A TLS session that never sends a request: closed after the header-read timeout.
    let conn = rustls::ClientConnection::new(
        Arc::new(crate::tls::client(&certs, None)),
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(&srv.http).unwrap());
    tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    let t0 = Instant::now();
    tls.sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    let r = tls.read(&mut buf);
    let waited = t0.elapsed();
    assert!(
        !matches!(&r, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "idle TLS session still open after {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(8),
        "idle TLS session closed after {waited:?}, header_read_timeout_secs = 2"
    );

    // Twice the cap of silent sockets: those over it are closed at once.
    let mut idle: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(&srv.http).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let at_once = idle
        .iter_mut()
        .filter_map(|s| closed_within(s, Duration::from_millis(20)).then_some(()))
        .count();
    assert!(at_once >= 5, "only {at_once} of 10 closed at once");
    for s in &mut idle {
        assert!(
            closed_within(s, Duration::from_secs(8)),
            "silent socket still open"
        );
    }
    // Then a real request is answered.
    let answer = crate::https::https_get(
        &srv.http,
        crate::tls::client(&certs, None),
        "/api/v1/patients/FX-ZX:1/reports",
        &[("Authorization", &format!("Bearer {}", srv.token))],
    );
    assert!(answer.is_some(), "no answer over HTTPS");
}

/// A C-ECHO-RQ command set (implicit VR little endian).
fn echo_rq(message_id: u16) -> Vec<u8> {
    fn el(out: &mut Vec<u8>, e: u16, v: &[u8]) {
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&e.to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    let mut body = Vec::new();
    el(&mut body, 0x0002, b"1.2.840.10008.1.1\0");
    el(&mut body, 0x0100, &0x0030u16.to_le_bytes());
    el(&mut body, 0x0110, &message_id.to_le_bytes());
    el(&mut body, 0x0800, &0x0101u16.to_le_bytes());
    let mut out = Vec::new();
    el(&mut out, 0x0000, &(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn associate(port: &str) -> dicom_ul::ClientAssociation<TcpStream> {
    dicom_ul::ClientAssociationOptions::new()
        .calling_ae_title("FXPACS")
        .called_ae_title("HUREN")
        .with_presentation_context("1.2.840.10008.1.1", vec!["1.2.840.10008.1.2"])
        .read_timeout(Duration::from_secs(20))
        .establish(format!("127.0.0.1:{port}"))
        .expect("association")
}

#[test]
fn dicom_associations_are_bounded_per_pdu_and_in_total() {
    use dicom_ul::pdu::{PDataValue, PDataValueType};
    use dicom_ul::Pdu;
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::dicom::config(dir.path(), "timeout_secs = 2\nmax_association_secs = 4");
    let (_srv, port) = crate::dicom::start(&dir.path().join("data"), &cfg);

    // A P-DATA-TF PDU announcing 256 bytes, one byte every 400 ms: every single read is well
    // within timeout_secs, the PDU never.
    let mut trickler = associate(&port);
    let s = trickler.inner_stream();
    let pdu = [0x04u8, 0, 0, 0, 1, 0, 0, 0, 0, 252, 1, 3, 0, 0, 0, 0];
    let t0 = Instant::now();
    let mut closed = false;
    for b in pdu.iter().cycle().take(30) {
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        s.set_read_timeout(Some(Duration::from_millis(400)))
            .unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            // Nothing is sent to this peer but the A-ABORT, and then the end.
            Ok(_) => {
                closed = true;
                break;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    let waited = t0.elapsed();
    assert!(closed, "trickling association still open after {waited:?}");
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(8),
        "trickler closed after {waited:?}, timeout_secs = 2"
    );

    // A peer that keeps the association busy with C-ECHO after C-ECHO: answered until
    // max_association_secs, then aborted.
    let mut echoer = associate(&port);
    let pc = echoer.presentation_contexts()[0].id;
    let t0 = Instant::now();
    let mut echoes = 0u16;
    let mut ended = false;
    while t0.elapsed() < Duration::from_secs(12) {
        let sent = echoer.send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc,
                value_type: PDataValueType::Command,
                is_last: true,
                data: echo_rq(echoes + 1),
            }],
        });
        if sent.is_err() {
            ended = true;
            break;
        }
        match echoer.receive() {
            Ok(Pdu::PData { .. }) => echoes += 1,
            _ => {
                ended = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let waited = t0.elapsed();
    assert!(ended, "busy association still open after {waited:?}");
    assert!(echoes >= 3, "only {echoes} echoes answered");
    assert!(
        waited >= Duration::from_millis(3000) && waited < Duration::from_secs(9),
        "busy association ended after {waited:?}, max_association_secs = 4"
    );
}

/// The server's peak resident memory (VmHWM), bytes.
pub(crate) fn peak_rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A CT instance of study `study` with `mib` MiB of pixel data (Part 10).
fn large_ct(study: &str, mib: usize) -> Vec<u8> {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let mut o = huren_dicom::fixtures::ct_slice(study, "FX0666", "大^图像", 1, "ISO_IR 192");
    let side = ((mib << 20) / 2).isqrt() as u16;
    let n = side as usize * side as usize;
    for t in [tags::ROWS, tags::COLUMNS] {
        o.put(DataElement::new(t, VR::US, PrimitiveValue::from(side)));
    }
    let px: Vec<u16> = (0..n).map(|i| (i % 4096) as u16).collect();
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(px.into()),
    ));
    huren_dicom::fixtures::part10(&o)
}

/// Finding 6: four associations storing 48 MiB instances at once do not hold them in memory
/// (each is spooled to a temporary file of the store as it arrives); every one is stored
/// byte for byte, and the server's peak memory stays far below what holding them would take.
#[test]
fn large_cstore_data_sets_are_spooled_not_held_in_memory() {
    if !crate::dicom::dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::dicom::config(dir.path(), LARGE_CSTORE_CONFIG);
    let (srv, port) = crate::dicom::start(&dir.path().join("data"), &cfg);
    large_cstores_are_not_held_in_memory(&srv, &port, dir.path(), &dir.path().join("data"), 64);
}

/// The `[dicom]` lines of [`large_cstores_are_not_held_in_memory`]'s server.
pub(crate) const LARGE_CSTORE_CONFIG: &str = "spool_above_kib = 1024\nreceive_budget_mib = 8";

/// Four 48 MiB C-STOREs at once to `srv` (DICOM on `port`, started with
/// [`LARGE_CSTORE_CONFIG`], its data directory `data`; files made in `dir`): stored byte for
/// byte, the server's peak memory at most `bound_mib` above its baseline (holding the data
/// sets would take 192 MiB and more), no spool file left. Also run on a cluster node
/// (`tests/cli/cluster.rs`), where the spooled files are streamed to S3.
pub(crate) fn large_cstores_are_not_held_in_memory(
    srv: &crate::support::Server,
    port: &str,
    dir: &std::path::Path,
    data: &std::path::Path,
    bound_mib: u64,
) {
    let pid = srv.child.id();
    let before = peak_rss(pid);
    let files: Vec<std::path::PathBuf> = (1..=4)
        .map(|n| {
            let p = dir.join(format!("large{n}.dcm"));
            let study = format!("{}.66{n}", huren_dicom::fixtures::UID_ROOT);
            std::fs::write(&p, large_ct(&study, 48)).unwrap();
            p
        })
        .collect();
    std::thread::scope(|s| {
        let runs: Vec<_> = files
            .iter()
            .map(|f| s.spawn(move || crate::dicom::storescu(port, &[f.as_path()], &[], true)))
            .collect();
        for r in runs {
            let (rc, out) = r.join().unwrap();
            assert_eq!(rc, 0, "{out}");
            assert!(out.contains("Received Store Response (Success)"), "{out}");
        }
    });
    let peak = peak_rss(pid);
    // Holding the four data sets would take 192 MiB on top of the baseline (and dicom-rs's
    // copies more); spooled, the server grows by a few PDUs and the parse of the summaries.
    assert!(
        peak < before + (bound_mib << 20),
        "peak RSS {} MiB (baseline {} MiB): the data sets were held in memory",
        peak >> 20,
        before >> 20
    );
    // Each stored byte for byte.
    let (st, b) = srv.get("/api/v1/patients/FX-ZX:FX0666/reports?kind=imaging");
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["count"], 4, "{b}");
    for r in b["reports"].as_array().unwrap() {
        let hash = r["meta"]["hash"].as_str().unwrap();
        let url = format!("http://{}/api/v1/reports/{hash}/original", srv.http);
        let mut got = Vec::new();
        ureq::get(&url)
            .set("Authorization", &format!("Bearer {}", srv.token))
            .set(
                "X-Patient-Authorization",
                &srv.authorization("FX-ZX:FX0666"),
            )
            .call()
            .unwrap()
            .into_reader()
            .read_to_end(&mut got)
            .unwrap();
        let study = r["report"]["imaging"]["study_instance_uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let n = study
            .chars()
            .last()
            .and_then(|c| c.to_digit(10))
            .unwrap_or(0) as usize;
        assert!((1..=4).contains(&n), "{study}");
        assert!(
            got == std::fs::read(&files[n - 1]).unwrap(),
            "instance {n} not byte-identical"
        );
    }
    // Nothing is left in the store's temporary directory.
    let tmp = data.join("objects/tmp");
    let left = std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "spool files left in {}", tmp.display());
}
