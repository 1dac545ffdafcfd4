//! The report store on its two back ends, measured the same way: C concurrent committers
//! send N lab messages (a ~2 KB original, one report with 16 results, a national ID, 5,000
//! patients), then R prior-results queries by national ID. The cluster runs on PostgreSQL and
//! SeaweedFS started here (tests/peers/*.sh, fsync on), with one node and with two nodes
//! taking alternate messages. Prints throughput and latencies.
//!
//! `cargo bench -p huren-cluster --bench cluster -- [N] [C] [R]` (defaults 5000, 32, 2000)
//!
//! `… -- query DATA CONFIG PATIENTS R` instead queries an existing pair: the embedded store in
//! DATA (made by `huren demo-data`) and the cluster of CONFIG (the same store copied there by
//! `huren migrate`): R prior-results queries on each, 8 at a time, by the local ID `FX-ZX:L{p}`
//! (linked by national ID to the patient's results at every institution). tests/bench/migrate.sh
//! runs it.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/cluster/support.rs"]
#[allow(dead_code)]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use huren_cluster::{migrate, pool, ClusterOptions, ClusterStore, S3Blobs};
use huren_model::{
    national_id_key, Hashed, LabBody, LabObservation, PatientId, PatientRef, Report, ReportKind,
    ReportStatus, Source, SystemKind,
};
use huren_store::{Ingest, ReportBackend, Store, StoreOptions};

const SECRET: &str = "bench-secret";
const PATIENTS: usize = 5000;

fn nid(p: usize) -> String {
    format!("31010119900101{p:04}")
}

fn ingest(i: usize) -> Ingest {
    let original = Hashed::new(
        format!(
            "MSH|^~\\&|LIS|FX-ZX|||20250624||ORU^R01|{i}|P|2.5.1\r{}",
            "OBX|1|NM|K^钾^L||4.1|mmol/L|3.5-5.3|N|||F\r".repeat(40)
        )
        .into_bytes(),
    );
    let p = i % PATIENTS;
    let observations = (0..16)
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
            local_id: format!("P{p}"),
            national_id_key: Some(national_id_key(SECRET, &nid(p))),
            ..Default::default()
        },
        status: ReportStatus::Final,
        order: Default::default(),
        specimen_collected_at: Some(format!("2025-06-{:02}T10:00:00+08:00", 1 + i % 28)),
        performed_at: None,
        reported_at: None,
        lab: Some(LabBody {
            observations,
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

fn pct(lat: &mut [Duration], p: f64) -> f64 {
    lat.sort();
    lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3
}

/// Commits N messages from C committers, spread over `nodes` round-robin.
async fn ingest_load<S: ReportBackend + 'static>(
    label: &str,
    nodes: &[Arc<S>],
    n: usize,
    c: usize,
) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..c {
        let node = nodes[t % nodes.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut l = Vec::new();
            let mut i = t;
            while i < n {
                let job = ingest(i);
                let t0 = Instant::now();
                node.commit(job).await.expect("commit");
                l.push(t0.elapsed());
                i += c;
            }
            l
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("task"));
    }
    let el = start.elapsed();
    println!(
        "{label}: commit {n} messages, {c} committers: {:.0} messages/s, latency p50 {:.2} ms p99 {:.2} ms",
        n as f64 / el.as_secs_f64(),
        pct(&mut lat, 0.50),
        pct(&mut lat, 0.99),
    );
}

/// R prior-results queries, 8 at a time, the i-th for patient `id(i)`; every answer must
/// hold results. Prints throughput, results per answer and latencies.
async fn queries<S: ReportBackend + 'static>(
    label: &str,
    s: Arc<S>,
    r: usize,
    id: impl Fn(usize) -> PatientId + Copy + Send + 'static,
) {
    let mut tasks = Vec::new();
    let start = Instant::now();
    for t in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let (mut l, mut n) = (Vec::new(), 0usize);
            let mut i = t;
            while i < r {
                let t0 = Instant::now();
                let (_, metas) = s.patient_reports(&id(i), None).await.expect("query");
                l.push(t0.elapsed());
                assert!(!metas.is_empty());
                n += metas.len();
                i += 8;
            }
            (l, n)
        }));
    }
    let (mut lat, mut results) = (Vec::new(), 0usize);
    for t in tasks {
        let (l, n) = t.await.expect("task");
        lat.extend(l);
        results += n;
    }
    println!(
        "{label}: {r} prior-results queries ({:.0} results each), 8 at a time: {:.0} queries/s, p50 {:.2} ms p99 {:.2} ms",
        results as f64 / r as f64,
        r as f64 / start.elapsed().as_secs_f64(),
        pct(&mut lat, 0.50),
        pct(&mut lat, 0.99),
    );
}

async fn node(pg: &support::Peer, s3: &support::Peer, name: &str) -> ClusterStore<S3Blobs> {
    let pool = pool(pg.postgres_config(), 16).expect("pool");
    migrate(&pool).await.expect("migrate");
    ClusterStore::new(
        pool,
        S3Blobs::connect(&s3.s3_settings()).expect("s3"),
        ClusterOptions {
            node: name.into(),
            national_id_secret: SECRET.into(),
            ..ClusterOptions::default()
        },
    )
}

/// The `query` mode (see the top of the file).
fn query_mode(args: &[String]) {
    let [data, config, patients, r] = args else {
        panic!("usage: query DATA CONFIG PATIENTS R");
    };
    let patients: usize = patients.parse().expect("PATIENTS");
    // By the local ID `FX-ZX:L{p}`, linked by national ID to the patient's results everywhere.
    let local = move |i: usize| PatientId::Local {
        institution: "FX-ZX".into(),
        local_id: format!("L{}", (i * 7919) % patients.max(1)),
    };
    let r: usize = r.parse().expect("R");
    #[derive(serde::Deserialize)]
    struct File {
        store: huren_cluster::StoreConfig,
    }
    let text = std::fs::read_to_string(config).expect("read CONFIG");
    let file: File = toml::from_str(&text).expect("CONFIG: [store]");
    let cluster = file
        .store
        .cluster()
        .expect("[store]")
        .expect("a cluster [store]");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let embedded = Arc::new(Store::open(data, StoreOptions::default()).expect("open DATA"));
        for _ in 0..2 {
            queries("embedded", embedded.clone(), r, local).await;
        }
        let pool = cluster.pool(16).expect("pool");
        let store = Arc::new(ClusterStore::new(
            pool,
            S3Blobs::connect(&cluster.s3).expect("s3"),
            ClusterOptions::default(),
        ));
        for _ in 0..2 {
            queries("cluster", store.clone(), r, local).await;
        }
    });
}

fn main() {
    let all: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if all.first().map(String::as_str) == Some("query") {
        return query_mode(&all[1..]);
    }
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(5000);
    let c = args.get(1).copied().unwrap_or(32).max(1);
    let r = args.get(2).copied().unwrap_or(2000).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let embedded = Arc::new(
            Store::open(
                dir.path(),
                StoreOptions {
                    national_id_secret: SECRET.into(),
                    ..StoreOptions::default()
                },
            )
            .expect("open"),
        );
        ingest_load("embedded", std::slice::from_ref(&embedded), n, c).await;
        let patients = PATIENTS.min(n).max(1);
        let national = move |i: usize| PatientId::National(nid((i * 7919) % patients));
        queries("embedded", embedded, r, national).await;

        for nodes in [1, 2] {
            let (Some(pg), Some(s3)) = (support::postgres(), support::seaweedfs()) else {
                eprintln!("no PostgreSQL or SeaweedFS: the cluster part is skipped");
                return;
            };
            let mut stores = Vec::new();
            for k in 0..nodes {
                stores.push(Arc::new(node(&pg, &s3, &format!("node-{k}")).await));
            }
            let label = format!("cluster, {nodes} node(s)");
            ingest_load(&label, &stores, n, c).await;
            queries(&label, stores[0].clone(), r, national).await;
        }
    });
}
