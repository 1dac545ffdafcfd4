//! Crash test: kill -9 the server in the middle of an MLLP load; every message that got AA
//! must be queryable after restart, the store must verify, and a lost index must come back.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::mllp::config_file;
use crate::support::{huren, msa, oru, Mllp, Server};

#[test]
fn kill_9_mid_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path());
    let data = dir.path().join("data");
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    {
        let mut srv = Server::start(&data, &["--config", &cfg]);
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let addr = srv.mllp.clone();
                let acked = acked.clone();
                std::thread::spawn(move || {
                    let mut c = Mllp::connect(&addr);
                    let deadline = Instant::now() + Duration::from_secs(20);
                    for i in 0..100_000 {
                        if Instant::now() > deadline {
                            break;
                        }
                        let id = format!("K{t}x{i}");
                        let m = oru("FX-ZX", &id, &id, &id, "3.3", "F");
                        match c.send(&m) {
                            Some(ack) if msa(&ack).0 == "AA" => acked.lock().unwrap().push(id),
                            _ => break,
                        }
                    }
                })
            })
            .collect();
        // Let the load run, then kill without warning.
        let start = Instant::now();
        while acked.lock().unwrap().len() < 300 && start.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(20));
        }
        srv.kill9();
        for t in threads {
            t.join().unwrap();
        }
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300, "load too small: {}", acked.len());

    let check_all = |srv: &Server| {
        for id in &acked {
            let (st, body) = srv.get(&format!("/api/v1/patients/FX-ZX:{id}/reports"));
            assert_eq!(
                (st, body["count"].as_u64()),
                (200, Some(1)),
                "acknowledged {id} lost"
            );
        }
    };
    {
        let srv = Server::start(&data, &["--config", &cfg]);
        check_all(&srv);
    }
    // No half record: the store verifies clean.
    let (code, lines, err) = huren(&["verify", "--data", data.to_str().unwrap()]);
    assert_eq!(code, 0, "verify: {lines:?} {err}");
    assert!(lines[0]["problems"].as_array().unwrap().is_empty());

    // Lose the index: start-up replays the journal.
    std::fs::remove_dir_all(data.join("index")).unwrap();
    {
        let srv = Server::start(&data, &["--config", &cfg]);
        check_all(&srv);
    }
    // And `huren reindex` rebuilds it explicitly.
    let (code, lines, _) = huren(&["reindex", "--data", data.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(lines[0]["reindexed_records"].as_u64().unwrap() > 0);
    let srv = Server::start(&data, &["--config", &cfg]);
    check_all(&srv);
}
