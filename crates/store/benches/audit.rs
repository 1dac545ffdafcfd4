//! Audit log at scale. `cargo bench -p huren-store --bench audit -- append [N] [C]` measures
//! append throughput with C concurrent appenders on an empty log.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use huren_store::{AuditLog, AuditRecord};

fn record(i: u64) -> AuditRecord {
    AuditRecord {
        actor: format!("dr{:04}", i % 500),
        institution: format!("H{:02}", i % 40),
        role: "clinician".into(),
        action: "read_results".into(),
        patient: Some(format!("nidk:{:016x}", (i * 2654435761) % 5000)),
        purpose: Some("outpatient".into()),
        outcome: "ok".into(),
        returned: (0..3)
            .map(|k| format!("blake3:{:064x}", i * 3 + k))
            .collect(),
        ..Default::default()
    }
}

fn append_bench(log: &AuditLog, n: usize, c: usize) -> (f64, Duration, Duration, Duration) {
    let lat = std::thread::scope(|s| {
        let hs: Vec<_> = (0..c)
            .map(|t| {
                s.spawn(move || {
                    let mut l = Vec::new();
                    let mut i = t;
                    while i < n {
                        let r = record(i as u64);
                        let t0 = Instant::now();
                        log.append_blocking(r).expect("append");
                        l.push(t0.elapsed());
                        i += c;
                    }
                    l
                })
            })
            .collect();
        let start = Instant::now();
        let mut all = Vec::new();
        for h in hs {
            all.extend(h.join().expect("appender"));
        }
        (all, start)
    });
    let (mut lat, start) = lat;
    let el = start.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    (
        n as f64 / el.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1],
    )
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let nums: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let n = nums.first().copied().unwrap_or(100_000);
    let c = nums.get(1).copied().unwrap_or(16).max(1);
    let dir = tempfile::Builder::new()
        .prefix("huren-audit-bench")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir");
    let log = AuditLog::open(dir.path()).expect("open");
    let (rate, p50, p99, max) = append_bench(&log, n, c);
    println!(
        "audit append (empty log): {n} records, {c} appenders: {rate:.0} records/s, p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
}
