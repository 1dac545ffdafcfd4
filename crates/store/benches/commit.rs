//! Group-commit benchmark: C concurrent committers, N ingests of a ~2 KB original plus one
//! report each, on a real temp directory with real syncs. Prints throughput and latency.
//!
//! `cargo bench -p huren-store --bench commit -- [N] [C]` (defaults 20000, 16)

/// The binary's allocator, so the figures match `huren serve`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use huren_model::{
    Hashed, LabBody, LabObservation, OrderIds, PatientRef, Report, ReportKind, ReportStatus,
    Source, SystemKind,
};
use huren_store::{Ingest, Store, StoreOptions};

fn ingest(i: usize) -> Ingest {
    let original = format!(
        "MSH|^~\\&|LIS|FX-ZX|||20250624||ORU^R01|{i}|P|2.5.1\r{}",
        "OBX|1|NM|K^钾^L||4.1|mmol/L|3.5-5.3|N|||F\r".repeat(40)
    )
    .into_bytes();
    let original = Hashed::new(original);
    let obs = (0..16)
        .map(|k| LabObservation {
            code: format!("C{k}"),
            code_system: Some("L".into()),
            name: Some("血红蛋白".into()),
            value_type: Some("NM".into()),
            value: format!("{}.{:02}", i % 200, k),
            unit: Some("g/L".into()),
            reference_range: Some("115-150".into()),
            abnormal_flags: vec![],
            abnormal_flags_raw: None,
            result_status: Some("F".into()),
            observed_at: None,
        })
        .collect();
    let report = Report {
        kind: ReportKind::Lab,
        source: Source {
            institution: "FX-ZX".into(),
            system: SystemKind::Lis,
            application: Some("LIS".into()),
            source_key: format!("LAB{i}"),
        },
        patient: PatientRef {
            institution: "FX-ZX".into(),
            local_id: format!("P{}", i % 5000),
            ..Default::default()
        },
        status: ReportStatus::Final,
        order: OrderIds::default(),
        specimen_collected_at: Some("2025-06-24T10:00:00+08:00".into()),
        performed_at: None,
        reported_at: None,
        lab: Some(LabBody {
            observations: obs,
            ..Default::default()
        }),
        ecg: None,
        imaging: None,
        conclusion: None,
        original: original.hash(),
        attachments: vec![],
    };
    Ingest {
        original: original.into(),
        reports: vec![report],
        identity: vec![],
        received_at: "2025-06-24T10:05:00+08:00".into(),
        attachments: vec![],
        message_id: None,
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(20_000);
    let c = args.get(1).copied().unwrap_or(16).max(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open store");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let start = Instant::now();
    let lat: Vec<Duration> = rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..c {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut l = Vec::new();
                let mut i = t;
                while i < n {
                    let job = ingest(i);
                    let t0 = Instant::now();
                    s.commit(job).await.expect("commit");
                    l.push(t0.elapsed());
                    i += c;
                }
                l
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("task"));
        }
        all
    });
    let el = start.elapsed();
    let mut lat = lat;
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let rep = store.verify().expect("verify");
    println!(
        "store group commit: {n} ingests, {c} committers: {:.0} ingests/s, latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms; {} journal records (avg batch {:.1})",
        n as f64 / el.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3,
        rep.journal_records,
        n as f64 / rep.journal_records.max(1) as f64
    );
}
