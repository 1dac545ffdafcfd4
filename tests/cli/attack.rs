//! Issue 16's bounded "under attack" scenario (docs/under-attack.md): 2,000 idle HTTP sockets,
//! 100 certified MLLP/TLS connections each holding an unterminated frame, and 8 DICOM
//! associations trickling their A-ASSOCIATE-RQ one byte a second, while a legitimate LIS sends
//! 1,000 ORU^R01 over MLLP/TLS and a PACS stores 100 instances with storescu. Every legitimate
//! message is acknowledged, and the server's peak RSS stays under the documented bound.
//! Under `CI=true` a missing storescu is a failure, not a skip.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

use crate::support::{huren, msa, oru};

/// The test configuration's budgets (see docs/under-attack.md for the bound they give).
const MLLP_MAX_CONNECTIONS: u64 = 128;
const MLLP_FRAME_OWN_KIB: u64 = 64;
const MLLP_FRAME_BUDGET_MIB: u64 = 16;
const HTTP_MAX_CONNECTIONS: u64 = 512;
const DICOM_MAX_ASSOCIATIONS: u64 = 16;
const DICOM_MAX_PDU: u64 = 262_144;
/// Data sets held in memory beyond 64 KiB per association draw on this shared budget; larger
/// ones are spooled to the store (`[dicom] receive_budget_mib`, `spool_above_kib`).
const DICOM_RECEIVE_BUDGET_MIB: u64 = 16;
const DICOM_OWN_KIB: u64 = 64;
/// hyper's HTTP/1 read buffer cap (`DEFAULT_MAX_BUFFER_SIZE`, 8 KiB + 100 × 4 KiB): the most
/// one connection's request head can hold.
const HTTP_HEADER_BUF_KIB: u64 = 408;
/// Per-connection state besides the buffers above (tokio task, rustls session, socket
/// bookkeeping) and the legitimate load's caches: a fixed allowance.
const ALLOWANCE_KIB: u64 = 64 << 10;

/// KiB of a `/proc/<pid>/status` field (VmRSS, VmHWM).
fn status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Raises this process's soft limit of open files to at least `want` (bounded by the hard
/// limit): 2,000 idle sockets and the rest do not fit the usual 1,024.
fn raise_fd_limit(want: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let l = getrlimit(Resource::Nofile);
    let want = l.maximum.map_or(want, |m| m.min(want));
    if l.current.is_some_and(|c| c < want) {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(want),
                maximum: l.maximum,
            },
        );
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_connect(addr: &str, cfg: &Arc<rustls::ClientConfig>) -> Tls {
    let conn =
        rustls::ClientConnection::new(cfg.clone(), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    sock.set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    sock.set_nodelay(true).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    tls
}

/// Sends one framed message on an open MLLP/TLS connection; the ACK, or None when closed.
fn send_on(tls: &mut Tls, msg: &[u8]) -> Option<String> {
    let mut frame = vec![0x0b];
    frame.extend_from_slice(msg);
    frame.extend_from_slice(&[0x1c, 0x0d]);
    tls.write_all(&frame).ok()?;
    let mut buf = Vec::new();
    let mut b = [0u8; 512];
    while !buf.ends_with(&[0x1c, 0x0d]) {
        match tls.read(&mut b) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
    let start = buf.iter().position(|x| *x == 0x0b)? + 1;
    Some(String::from_utf8_lossy(&buf[start..buf.len() - 2]).to_string())
}

#[test]
fn legitimate_lis_and_pacs_are_served_under_attack_within_the_memory_bound() {
    if !crate::dicom::dcmtk() {
        return;
    }
    raise_fd_limit(8192);
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
        "FX-GX",
    ]);
    assert_eq!(code, 0, "{err}");
    let cfg = crate::dicom::config(
        dir.path(),
        &format!(
            "max_associations = {DICOM_MAX_ASSOCIATIONS}\nmax_pdu = {DICOM_MAX_PDU}\n\
             receive_budget_mib = {DICOM_RECEIVE_BUDGET_MIB}\nspool_above_kib = 1024\ntimeout_secs = 60"
        ),
    );
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            "name = \"上海市奉贤区中心医院\"",
            "name = \"上海市奉贤区中心医院\"\nclient_cert_uri = \"urn:huren:institution:FX-ZX\"",
        )
        .replace(
            "name = \"上海市奉贤区奉城医院\"",
            "name = \"上海市奉贤区奉城医院\"\nclient_cert_uri = \"urn:huren:institution:FX-GX\"",
        );
    std::fs::write(
        &cfg,
        format!(
            "{text}\n[mllp]\nmax_connections = {MLLP_MAX_CONNECTIONS}\nframe_own_kib = {MLLP_FRAME_OWN_KIB}\n\
             frame_budget_mib = {MLLP_FRAME_BUDGET_MIB}\n\
             [http]\nmax_connections = {HTTP_MAX_CONNECTIONS}\nheader_read_timeout_secs = 120\n\
             [mllp.tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n",
            certs.join("server.pem"),
            certs.join("server.key"),
            certs.join("ca.pem"),
        ),
    )
    .unwrap();
    let (srv, dicom_port) = crate::dicom::start(&dir.path().join("data"), &cfg);
    assert!(
        !srv.mllp.is_empty() && !srv.http.is_empty(),
        "{:?}",
        srv.lines
    );
    let pid = srv.child.id();
    let baseline_kib = status_kib(pid, "VmRSS");

    // The 100 instances the PACS will store, made before the clock starts.
    let study = format!("{}.16", huren_dicom::fixtures::UID_ROOT);
    let files: Vec<PathBuf> = (1..=100u32)
        .map(|n| {
            let o = huren_dicom::fixtures::ct_slice(&study, "FX0016", "攻击^测试", n, "ISO_IR 192");
            let p = dir.path().join(format!("slice{n}.dcm"));
            std::fs::write(&p, huren_dicom::fixtures::part10(&o)).unwrap();
            p
        })
        .collect();

    let t0 = Instant::now();
    // The attack. 2,000 idle HTTP sockets (those over the cap are closed at accept).
    let idle: Vec<TcpStream> = (0..2000)
        .map(|_| TcpStream::connect(&srv.http).unwrap())
        .collect();
    // 100 certified (FX-GX) MLLP/TLS connections, each a start block and 96 KiB of a frame
    // that never ends: 64 KiB each on their own, 32 KiB each from the shared budget.
    let gx = Arc::new(crate::tls::client(&certs, Some("FX-GX")));
    let mut part = vec![0x0bu8];
    part.extend_from_slice(b"MSH|^~\\&|LIS|FX-GX|HUREN|REGION|20250624101500||ORU^R01|X|P|2.5.1\r");
    part.resize(96 << 10, b'A');
    let frames: Vec<Tls> = (0..100)
        .map(|_| {
            let mut t = tls_connect(&srv.mllp, &gx);
            t.write_all(&part).expect("unterminated frame");
            t.flush().unwrap();
            t
        })
        .collect();
    // 8 DICOM associations trickling an A-ASSOCIATE-RQ announcing 1,000 bytes, one a second.
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = stop.clone();
        let mut socks: Vec<TcpStream> = (0..8)
            .map(|_| {
                let mut s = TcpStream::connect(format!("127.0.0.1:{dicom_port}")).unwrap();
                s.write_all(&[0x01, 0, 0, 0, 0x03, 0xe8]).unwrap();
                s
            })
            .collect();
        std::thread::spawn(move || {
            let mut sent = 0u32;
            while !stop.load(Ordering::Relaxed) && sent < 120 {
                std::thread::sleep(Duration::from_secs(1));
                for s in &mut socks {
                    let _ = s.write_all(&[0]);
                }
                sent += 1;
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    eprintln!("attack in place after {:?}", t0.elapsed());

    // The PACS: 100 instances over one association, while the LIS sends.
    let pacs = {
        let port = dicom_port.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
            let out = crate::dicom::storescu(&port, &refs, &[], true);
            (out, t.elapsed())
        })
    };
    // The LIS: 1,000 ORU^R01 over 4 MLLP/TLS connections, one message in flight on each.
    let zx = Arc::new(crate::tls::client(&certs, Some("FX-ZX")));
    let lis: Vec<_> = (0..4)
        .map(|c| {
            let (zx, addr) = (zx.clone(), srv.mllp.clone());
            std::thread::spawn(move || {
                let mut t = tls_connect(&addr, &zx);
                let mut lat = Vec::with_capacity(250);
                let mut bad = Vec::new();
                for i in 0..250 {
                    let n = c * 250 + i;
                    let ctl = format!("ATK-{n:04}");
                    let m = oru(
                        "FX-ZX",
                        &ctl,
                        &format!("A{}", n % 50),
                        &format!("ALAB{n}"),
                        "5.1",
                        "F",
                    );
                    let s = Instant::now();
                    match send_on(&mut t, &m) {
                        Some(ack) if msa(&ack) == ("AA".into(), ctl.clone()) => {
                            lat.push(s.elapsed())
                        }
                        other => {
                            bad.push(format!("{ctl}: {other:?}"));
                            t = tls_connect(&addr, &zx);
                        }
                    }
                }
                (lat, bad)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut bad = Vec::new();
    for h in lis {
        let (l, b) = h.join().unwrap();
        lat.extend(l);
        bad.extend(b);
    }
    let lis_done = t0.elapsed();
    let ((rc, out), pacs_took) = pacs.join().unwrap();
    let hwm_kib = status_kib(pid, "VmHWM");
    assert!(
        bad.is_empty(),
        "{} ORU without AA: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert_eq!(lat.len(), 1000);
    assert_eq!(rc, 0, "storescu under attack: {out}");
    lat.sort();
    eprintln!(
        "under attack: 1000 ORU AA in {lis_done:?} (p99 {:?}); 100 instances in {pacs_took:?}",
        lat[989]
    );

    // The unterminated frames are still held at the end: under the budgets, the server has no
    // reason to close them (their memory is what the bound counts). A peek on the TCP socket:
    // pending TLS records (session tickets) are fine, only an end or a reset means closed.
    let held = frames
        .iter()
        .filter(|t| {
            let mut b = [0u8; 1];
            t.sock
                .set_read_timeout(Some(Duration::from_millis(5)))
                .unwrap();
            match t.sock.peek(&mut b) {
                Ok(n) => n > 0,
                Err(e) => matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            }
        })
        .count();
    assert_eq!(held, 100, "unterminated MLLP frames closed before the end");

    // The documented bound (docs/under-attack.md).
    let bound_kib = baseline_kib
        + MLLP_MAX_CONNECTIONS * MLLP_FRAME_OWN_KIB
        + (MLLP_FRAME_BUDGET_MIB << 10)
        + DICOM_MAX_ASSOCIATIONS * ((DICOM_MAX_PDU >> 10) + DICOM_OWN_KIB)
        + (DICOM_RECEIVE_BUDGET_MIB << 10)
        + HTTP_MAX_CONNECTIONS * HTTP_HEADER_BUF_KIB
        + ALLOWANCE_KIB;
    eprintln!(
        "peak RSS {} MiB (baseline {} MiB), bound {} MiB",
        hwm_kib >> 10,
        baseline_kib >> 10,
        bound_kib >> 10
    );
    assert!(
        hwm_kib < bound_kib,
        "peak RSS {hwm_kib} KiB over the bound {bound_kib} KiB"
    );

    // Call the attack off, then read back what the legitimate peers sent.
    stop.store(true, Ordering::Relaxed);
    drop(frames);
    drop(idle);
    trickle.join().unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let b = loop {
        // The closed idle sockets free their HTTP slots as the server sees them end.
        let url = format!("http://{}/healthz", srv.http);
        if ureq::get(&url)
            .timeout(Duration::from_secs(2))
            .call()
            .is_ok()
            || Instant::now() > end
        {
            let (st, b) = srv.get("/api/v1/patients/FX-ZX:FX0016/reports?kind=imaging");
            assert_eq!(st, 200, "{b}");
            break b;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        b["reports"][0]["report"]["imaging"]["instance_count"], 100,
        "{b}"
    );
    let (st, b) = srv.get("/api/v1/patients/FX-ZX:A7/reports");
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["count"], 20, "{b}");
    assert!(t0.elapsed() < Duration::from_secs(90), "{:?}", t0.elapsed());
}
