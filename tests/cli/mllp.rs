//! MLLP end to end: ACK semantics, duplicates, corrections, rejections, a real python peer.

use std::process::Command;

use crate::support::{msa, oru, Mllp, Server};

pub const CONFIG: &str = r#"
[[institution]]
code = "FX-ZX"
name = "上海市奉贤区中心医院"
hl7_senders = ["FX-ZX"]
organisation_code = "12310120425123456X"

[[institution]]
code = "FX-ZY"
name = "上海市奉贤区中医医院"
hl7_senders = ["FX-ZY"]

[[institution]]
code = "FX-GX"
name = "上海市奉贤区奉城医院"
hl7_senders = ["FX-GX"]

[[institution]]
code = "FX-SQ01"
name = "奉贤区南桥镇社区卫生服务中心"
hl7_senders = ["LIS/FX-SQ01"]
charset = "GB18030"
phone = "021-5712-0001"

[identity]
national_id_secret = "test-national-id-secret"

# Tokens: test-clinician-token, test-privacy-token, test-commission-token, test-sq01-token,
# test-registrar-token.
[[clinician]]
id = "dr.zx"
institution = "FX-ZX"
role = "clinician"
department = "心内科"
token_sha256 = "cfa30e232241240c7636958ad93c8e2c43bf3544abc35d4ce8a7f49de51ea5ee"

[[clinician]]
id = "privacy.zx"
institution = "FX-ZX"
role = "privacy_officer"
token_sha256 = "4aff87745d79377cf1f735bb91ecaacec396be1fe34e87191ec30d507e10ea49"

[[clinician]]
id = "commission"
institution = "FX-ZX"
role = "commission"
token_sha256 = "4feb5806ec83286028f9a0c850462be0dddc0b1b4182f316f12780bd2a62d1b7"

[[clinician]]
id = "dr.sq01"
institution = "FX-SQ01"
role = "clinician"
token_sha256 = "4adebd537c817c338415de812d2a1ae61ae08cd5112eac48c9733dd40277e8ec"

# The ECG diagnosis centre at FX-ZX reads the community centre's ECGs; dr.zx reads there
# all day (tests/cli/worklist.rs).
[[centre]]
id = "fx-ecg"
name = "奉贤区心电诊断中心"
institution = "FX-ZX"
heads = ["dr.zx"]

[[reading_route]]
institution = "FX-SQ01"
kind = "ecg"
centre = "fx-ecg"

[[roster]]
reader = "dr.zx"
centre = "fx-ecg"

[[clinician]]
id = "clerk.zx"
institution = "FX-ZX"
role = "registrar"
token_sha256 = "2fce49aaf6a24fadbc6ab8d6b160eafb71a1a138c38fa91b13dae5f2abe5ed3f"
"#;

/// Writes the test configuration (with the shipped recognition rules) into `dir`.
pub fn config_file(dir: &std::path::Path) -> String {
    let p = dir.join("huren.toml");
    let rules = crate::support::repo().join("config/recognition.toml");
    std::fs::write(&p, format!("{CONFIG}\n[recognition]\nrules = {rules:?}\n")).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn ack_follows_commit_and_results_are_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path());
    let data = dir.path().join("data");
    let srv = Server::start(&data, &["--config", &cfg]);
    let mut c = Mllp::connect(&srv.mllp);

    let m1 = oru("FX-ZX", "CTL-1", "P100", "LAB100", "5.60", "F");
    let ack = c.send(&m1).expect("ack");
    assert_eq!(msa(&ack), ("AA".into(), "CTL-1".into()), "{ack}");

    let (st, body) = srv.get("/api/v1/patients/FX-ZX:P100/reports");
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["count"], 1);
    let r = &body["reports"][0]["report"];
    assert_eq!(
        r["lab"]["observations"][0]["value"], "5.60",
        "value kept as sent"
    );
    assert_eq!(r["lab"]["observations"][0]["name"], "血红蛋白");
    let hash = body["reports"][0]["meta"]["hash"]
        .as_str()
        .unwrap()
        .to_string();

    // The original is kept byte for byte.
    let url = format!("http://{}/api/v1/reports/{hash}/original", srv.http);
    let mut orig = Vec::new();
    std::io::Read::read_to_end(
        &mut ureq::get(&url)
            .set("Authorization", &format!("Bearer {}", srv.token))
            .call()
            .unwrap()
            .into_reader(),
        &mut orig,
    )
    .unwrap();
    assert_eq!(orig, m1);

    // Same bytes again: AA, stored once.
    let ack = c.send(&m1).expect("ack");
    assert_eq!(msa(&ack).0, "AA");
    assert_eq!(srv.get("/api/v1/patients/FX-ZX:P100/reports").1["count"], 1);

    // A correction supersedes; the old version stays retrievable.
    let m2 = oru("FX-ZX", "CTL-2", "P100", "LAB100", "5.80", "C");
    assert_eq!(msa(&c.send(&m2).unwrap()), ("AA".into(), "CTL-2".into()));
    let (_, body) = srv.get("/api/v1/patients/FX-ZX:P100/reports");
    assert_eq!(body["count"], 1);
    assert_eq!(body["reports"][0]["meta"]["version"], 2);
    assert_eq!(body["reports"][0]["report"]["status"], "corrected");
    let (st, old) = srv.get(&format!("/api/v1/reports/{hash}"));
    assert_eq!(st, 200);
    assert_eq!(old["lab"]["observations"][0]["value"], "5.60");

    // Unknown sender: AR with an ERR segment, nothing stored.
    let m3 = oru("NOBODY", "CTL-3", "P300", "LAB300", "1", "F");
    let ack = c.send(&m3).unwrap();
    assert_eq!(msa(&ack), ("AR".into(), "CTL-3".into()), "{ack}");
    assert!(ack.contains("ERR|"), "{ack}");
    assert_eq!(
        srv.get("/api/v1/patients/NOBODY:P300/reports").1["count"],
        0
    );

    // Garbage inside a frame: a negative ACK, the connection stays usable.
    let ack = c.send(b"this is not HL7").unwrap();
    assert!(matches!(msa(&ack).0.as_str(), "AR" | "AE"), "{ack}");
    let m4 = oru("FX-ZX", "CTL-4", "P100", "LAB101", "7", "F");
    assert_eq!(msa(&c.send(&m4).unwrap()).0, "AA");

    // Problem JSON for bad requests.
    let (st, p) = srv.get("/api/v1/reports/sha1:abc");
    assert_eq!(st, 400);
    assert_eq!(p["status"], 400);
    let (st, _) = srv.get("/api/v1/patients/nocolon/reports");
    assert_eq!(st, 400);
}

/// Issue 16, finding 14: a frame that lost its end block, then a valid message in the same
/// stream (`0x0B partial 0x0B valid 0x1C 0x0D`). The partial frame is dropped unanswered and
/// the valid message gets its AA (before: one AR for the concatenation, and a sender
/// honouring AR dropped the valid result).
#[test]
fn a_frame_without_end_block_does_not_cost_the_next_message() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path());
    let srv = Server::start(&dir.path().join("data"), &["--config", &cfg]);
    let mut c = Mllp::connect(&srv.mllp);

    let partial = oru("FX-ZX", "CTL-LOST", "P700", "LAB700", "4.2", "F");
    let valid = oru("FX-ZX", "CTL-NEXT", "P701", "LAB701", "5.1", "F");
    let mut bytes = vec![0x0b];
    bytes.extend_from_slice(&partial[..partial.len() / 2]);
    bytes.push(0x0b);
    bytes.extend_from_slice(&valid);
    bytes.extend_from_slice(&[0x1c, 0x0d]);
    let ack = c.send_raw(&bytes).expect("ack");
    assert_eq!(msa(&ack), ("AA".into(), "CTL-NEXT".into()), "{ack}");
    assert_eq!(srv.get("/api/v1/patients/FX-ZX:P701/reports").1["count"], 1);
    assert_eq!(srv.get("/api/v1/patients/FX-ZX:P700/reports").1["count"], 0);
    // Nothing was answered for the partial frame: the next ACK on the connection is the
    // next message's.
    let m = oru("FX-ZX", "CTL-AFTER", "P701", "LAB702", "6", "F");
    assert_eq!(msa(&c.send(&m).unwrap()), ("AA".into(), "CTL-AFTER".into()));
}

#[test]
fn gb18030_sender_by_configured_charset_and_many_connections() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path());
    let srv = Server::start(&dir.path().join("data"), &["--config", &cfg]);
    // FX-SQ01 is configured as GB18030 and sends no MSH-18.
    let text = String::from_utf8(oru("FX-SQ01", "G-1", "Q1", "SQ1", "120", "F"))
        .unwrap()
        .replace("|CHN|UNICODE UTF-8", "|CHN|");
    let (gb, _, bad) = encoding_rs::GB18030.encode(&text);
    assert!(!bad);
    let mut c = Mllp::connect(&srv.mllp);
    assert_eq!(msa(&c.send(&gb).unwrap()).0, "AA");
    let (_, body) = srv.get("/api/v1/patients/FX-SQ01:Q1/reports");
    assert_eq!(body["reports"][0]["report"]["patient"]["name"], "王芳");

    let threads: Vec<_> = (0..8)
        .map(|t| {
            let addr = srv.mllp.clone();
            std::thread::spawn(move || {
                let mut c = Mllp::connect(&addr);
                for i in 0..25 {
                    let ctl = format!("T{t}-{i}");
                    let m = oru(
                        "FX-ZX",
                        &ctl,
                        &format!("C{t}"),
                        &format!("F{t}-{i}"),
                        "1",
                        "F",
                    );
                    assert_eq!(msa(&c.send(&m).unwrap()), ("AA".into(), ctl));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for t in 0..8 {
        assert_eq!(
            srv.get(&format!("/api/v1/patients/FX-ZX:C{t}/reports")).1["count"],
            25
        );
    }
}

/// A real peer: python-hl7's `mllp_send` (pip package `hl7`).
#[test]
fn python_hl7_mllp_send_gets_aa() {
    let have = Command::new("mllp_send").arg("--version").output().is_ok();
    if !have {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "mllp_send (pip install hl7) is required under CI"
        );
        eprintln!("skipping: mllp_send not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path());
    let srv = Server::start(&dir.path().join("data"), &["--config", &cfg]);
    let port = srv.mllp.rsplit(':').next().unwrap().to_string();
    let file = dir.path().join("in.hl7");
    // --loose: the file holds plain HL7 text, each message starting with MSH.
    std::fs::write(&file, oru("FX-ZX", "PY-1", "PY1", "PYLAB1", "4.2", "F")).unwrap();
    let out = Command::new("mllp_send")
        .args([
            "--port",
            &port,
            "--file",
            file.to_str().unwrap(),
            "--loose",
            "127.0.0.1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mllp_send failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("MSA|AA|PY-1"), "ACK was: {stdout:?}");
    assert_eq!(srv.get("/api/v1/patients/FX-ZX:PY1/reports").1["count"], 1);
}

/// `huren serve --demo` loads the fixtures and its example URLs answer.
#[test]
fn demo_serves_example_urls() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("data"), &["--demo"]);
    let demo = srv
        .lines
        .iter()
        .find(|l| l["demo"] == "loaded")
        .expect("demo line");
    assert!(demo["messages"].as_u64().unwrap() >= 8, "{demo}");
    let examples = demo["examples"].as_array().unwrap();
    let reports = examples
        .iter()
        .filter_map(|e| e.as_str())
        .find(|e| e.ends_with("/results"))
        .unwrap();
    let path = reports.split_once(&srv.http).unwrap().1;
    // The demo prints a clinician token; without it the API refuses.
    assert_eq!(srv.get_with(path, &[]).0, 401);
    let (st, body) = srv.get(path);
    assert_eq!(st, 200, "{body}");
    // Three institutions, one person: linked by the national ID; every result has a verdict.
    assert_eq!(body["identity_link"], "exact_national_id");
    let results = body["results"].as_array().unwrap();
    let insts: std::collections::BTreeSet<_> = results
        .iter()
        .map(|r| r["institution"].as_str().unwrap().to_string())
        .collect();
    assert!(insts.len() >= 3, "{insts:?}");
    assert!(results.iter().all(|r| r["verdict"]["level"].is_string()));
    // Unknown senders are accepted in demo mode.
    let mut c = Mllp::connect(&srv.mllp);
    let ack = c
        .send(&oru("ANY-LIS-SIM", "D-1", "X1", "XL1", "1", "F"))
        .unwrap();
    assert_eq!(msa(&ack).0, "AA");
}

/// `huren bench mllp-sink`: acknowledges every frame AA with the frame's own MSH-10 (the load
/// generator checks each), counts them, and stops by itself after `--max-seconds`.
#[test]
fn bench_mllp_sink_acknowledges_every_frame_and_stops_by_itself() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(crate::support::bin())
        .args(["bench", "mllp-sink", "--max-seconds", "3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["listening"], "mllp-sink", "{first}");
    let addr = first["addr"].as_str().unwrap().to_string();
    let (code, out, err) =
        crate::support::huren(&["bench", "mllp", "--addr", &addr, "-n", "200", "-c", "4"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out[0]["ok"].as_u64(), Some(200), "{}", out[0]);
    let started = std::time::Instant::now();
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let last: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(last["acknowledged"].as_u64(), Some(200), "{last}");
    // Not loopback: refused.
    let (code, _, err) = crate::support::huren(&["bench", "mllp-sink", "--addr", "192.0.2.1:0"]);
    assert_ne!(code, 0);
    assert!(err.contains("loopback"), "{err}");
}

/// `huren bench mllp`, the native load generator: every message ACKed AA with its own
/// MSA-2 and stored; nothing listening is a failure, not a zero.
#[test]
fn bench_mllp_checks_every_ack() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("data"), &["--demo"]);
    let (code, out, err) = crate::support::huren(&[
        "bench",
        "mllp",
        "--addr",
        &srv.mllp,
        "-n",
        "300",
        "-c",
        "4",
        "--chinese",
    ]);
    assert_eq!(code, 0, "{err}");
    let r = &out[0];
    assert_eq!(
        (r["ok"].as_u64(), r["bad_or_missing"].as_u64()),
        (Some(300), Some(0)),
        "{r}"
    );
    assert!(r["per_sec"].as_f64().unwrap() > 0.0, "{r}");
    assert!(
        r["p99_ms"].as_f64().unwrap() >= r["p50_ms"].as_f64().unwrap(),
        "{r}"
    );
    // Stored: message 0 went to patient P00000001 of HOSP01.
    let (st, body) = srv.get("/api/v1/patients/HOSP01:P00000001/reports");
    assert_eq!(st, 200, "{body}");
    assert!(body["count"].as_u64().unwrap() >= 1, "{body}");

    // A port nobody listens on: every message missing, exit status non-zero.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = l.local_addr().unwrap().to_string();
    drop(l);
    let (code, out, _) =
        crate::support::huren(&["bench", "mllp", "--addr", &dead, "-n", "10", "-c", "2"]);
    assert_ne!(code, 0);
    assert_eq!(out[0]["bad_or_missing"].as_u64(), Some(10));
    // Not loopback: refused before anything is sent.
    let (code, _, err) =
        crate::support::huren(&["bench", "mllp", "--addr", "192.0.2.1:2575", "-n", "1"]);
    assert_ne!(code, 0);
    assert!(err.contains("loopback"), "{err}");
}

/// Issue 16 finding 5: every connection could buffer a 16 MiB unterminated frame before
/// anything was checked (100 sockets → 1.8 GB). Frames in progress now share the listener's
/// budget above a small per-connection allowance: the socket that would pass it is closed,
/// and a legitimate LIS still gets its AA.
#[test]
fn unterminated_frames_share_one_memory_budget() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path());
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[mllp]\nframe_budget_mib = 1\nframe_own_kib = 64\n");
    std::fs::write(&cfg, text).unwrap();
    let srv = Server::start(&dir.path().join("data"), &["--config", &cfg]);
    // Three hogs of 400 KB fit (3 × 336 KB of the shared MiB); the fourth passes it.
    let mut hogs = Vec::new();
    for _ in 0..4 {
        let mut s = std::net::TcpStream::connect(&srv.mllp).unwrap();
        let mut frame = vec![0x0b];
        frame.extend(std::iter::repeat_n(b'A', 400 * 1024));
        s.write_all(&frame).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        hogs.push(s);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let mut buf = [0u8; 16];
    let closed = matches!(hogs[3].read(&mut buf), Ok(0) | Err(_));
    assert!(closed, "the hog that passed the budget is closed");
    // A legitimate message still gets through.
    let mut c = Mllp::connect(&srv.mllp);
    let ack = c
        .send(&oru("FX-ZX", "BUDGET-1", "B1", "BLAB1", "130", "F"))
        .expect("ack");
    assert_eq!(msa(&ack), ("AA".into(), "BUDGET-1".into()), "{ack}");
    drop(hogs);
}
