//! Audit log at scale (`docs/benchmarks.md`, "Audit log at scale").
//!
//! `cargo bench -p huren-audit --bench audit -- append [N] [C]`: append throughput and latency
//! of C concurrent appenders (N records) on an empty log.
//!
//! `cargo bench -p huren-audit --bench audit -- scale [RECORDS] [C]`: fills a log with RECORDS
//! (default 10,000,000) realistic records over one year (5,000 patients, 500 actors, mixed
//! actions, some break-glass, `returned` lists and named sets) through the bulk path
//! (`AuditLog::append_at_unopened`: the writer's exact line format and chain), opens it (the
//! index is built from the log), then measures the per-patient audit view, one-day statistics
//! ranges, and append throughput on the full log. The data directory is created under the
//! target directory and deleted at the end.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use huren_audit::{AuditFilter, AuditLog, AuditRecord};

const PATIENTS: u64 = 5_000;
const ACTORS: u64 = 500;

/// splitmix64.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn patient(p: u64) -> String {
    format!("nidk:{:016x}", p.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn set_hash(list: &[String]) -> String {
    let mut l = list.to_vec();
    l.sort();
    format!(
        "blake3:{}",
        blake3::hash(serde_json::to_string(&l).unwrap_or_default().as_bytes()).to_hex()
    )
}

/// One realistic record; `sets[p]` is the last set listed in full for patient p.
fn realistic(r: &mut Rng, sets: &mut [Option<(String, Vec<String>)>]) -> AuditRecord {
    let actor_n = r.below(ACTORS);
    let p = r.below(PATIENTS);
    let mut rec = AuditRecord {
        actor: format!("doc{actor_n:04}"),
        institution: format!("H{:02}", actor_n % 40),
        role: "clinician".into(),
        purpose: Some(["outpatient", "inpatient", "emergency"][r.below(3) as usize].into()),
        outcome: "ok".into(),
        patient: Some(patient(p)),
        ..Default::default()
    };
    let k = r.below(100);
    rec.break_glass = r.below(100) == 0;
    let advice =
        || serde_json::json!({"advice": {"recognizable": 3, "reference_only": 1, "blocked": 0}});
    if k < 50 {
        rec.action = "read_results".into();
        rec.detail = advice();
        match &sets[p as usize] {
            Some((h, _)) if r.below(2) == 0 => rec.returned_set = Some(h.clone()),
            _ => {
                let list: Vec<String> = (0..1 + r.below(4))
                    .map(|_| format!("blake3:{:016x}{:048x}", r.next(), 0))
                    .collect();
                let h = set_hash(&list);
                rec.returned = list.clone();
                rec.returned_set = Some(h.clone());
                sets[p as usize] = Some((h, list));
            }
        }
    } else if k < 70 {
        rec.action = "check".into();
        rec.detail = advice();
    } else if k < 80 {
        rec.action = "decision".into();
        let action = ["accept", "accept_discretionary", "reject"][r.below(3) as usize];
        rec.detail = serde_json::json!({
            "action": action,
            "regional_code": format!("R{:03}", r.below(300)),
            "price_fen": 1000 + r.below(20000) as i64,
            "exception_codes": if r.below(3) == 0 { vec!["E01"] } else { vec![] },
        });
    } else if k < 95 {
        rec.action = "read_report".into();
        rec.returned = vec![format!("blake3:{:016x}{:048x}", r.next(), 1)];
    } else {
        rec.action = "read_audit".into();
        rec.role = "privacy_officer".into();
        rec.purpose = Some("privacy_review".into());
    }
    if rec.break_glass {
        rec.detail["reason"] = "emergency, patient unconscious".into();
    }
    rec
}

fn simple(i: u64) -> AuditRecord {
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
    let start = Instant::now();
    let mut lat = std::thread::scope(|s| {
        let hs: Vec<_> = (0..c)
            .map(|t| {
                s.spawn(move || {
                    let mut l = Vec::new();
                    let mut i = t;
                    while i < n {
                        let r = simple(i as u64);
                        let t0 = Instant::now();
                        log.append_blocking(r).expect("append");
                        l.push(t0.elapsed());
                        i += c;
                    }
                    l
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in hs {
            all.extend(h.join().expect("appender"));
        }
        all
    });
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_append(label: &str, n: usize, c: usize, r: (f64, Duration, Duration, Duration)) {
    println!(
        "audit append ({label}): {n} records, {c} appenders: {:.0} records/s, p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        r.0,
        ms(r.1),
        ms(r.2),
        ms(r.3)
    );
}

fn du(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    };
    rd.filter_map(Result::ok)
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                du(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}

fn pcts(mut v: Vec<Duration>) -> String {
    v.sort();
    let p = |q: f64| ms(v[((v.len() as f64 * q) as usize).min(v.len() - 1)]);
    format!(
        "p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        p(0.5),
        p(0.99),
        ms(v[v.len() - 1])
    )
}

fn scale(dir: &Path, records: u64, c: usize) {
    let t0: DateTime<Utc> = NaiveDate::from_ymd_opt(2026, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .expect("date");
    let step_ms = (365 * 86_400_000 / records.max(1)) as i64;
    let mut rng = Rng(42);
    let mut sets = vec![None; PATIENTS as usize];
    let start = Instant::now();
    let mut i = 0u64;
    let mut next_note = Instant::now() + Duration::from_secs(60);
    const CHUNK: u64 = 500_000;
    while i < records {
        let n = CHUNK.min(records - i);
        let recs: Vec<_> = (i..i + n)
            .map(|k| {
                let at = t0 + chrono::Duration::milliseconds(k as i64 * step_ms);
                (at, realistic(&mut rng, &mut sets))
            })
            .collect();
        AuditLog::append_at_unopened(dir, recs).expect("bulk append");
        i += n;
        if Instant::now() > next_note {
            eprintln!("  … {i} records, {:.0} s", start.elapsed().as_secs_f64());
            next_note = Instant::now() + Duration::from_secs(60);
        }
    }
    let fill = start.elapsed();
    let log_bytes = du(&dir.join("audit.log"));
    println!(
        "fill: {records} records in {:.1} s ({:.0} records/s), audit.log {:.2} GB ({:.0} B/record)",
        fill.as_secs_f64(),
        records as f64 / fill.as_secs_f64(),
        log_bytes as f64 / 1e9,
        log_bytes as f64 / records as f64
    );

    // Open: the index is built from the log by the indexer thread.
    let start = Instant::now();
    let log = AuditLog::open(dir).expect("open");
    let opened = start.elapsed();
    // A patient query while the index is being built: reads the log (as `scan` does).
    let t = Instant::now();
    let n = log
        .query(&AuditFilter::patient(patient(1)))
        .expect("query")
        .len();
    println!(
        "open: {:.1} ms; a patient query during the index build (reads the log): {:.0} ms, {n} entries",
        ms(opened),
        ms(t.elapsed())
    );
    while !log.wait_for_index(Duration::from_secs(60)) {
        let st = log.index_status();
        eprintln!(
            "  … indexed {} of {}, {:.0} s",
            st.indexed_seq,
            st.durable_seq,
            start.elapsed().as_secs_f64()
        );
    }
    let built = start.elapsed();
    drop(log);
    let index_bytes = du(&dir.join("audit-index"));
    println!(
        "index build from the log: {:.1} s ({:.0} records/s); audit-index/ {:.2} GB ({:.0} MB per million records)",
        built.as_secs_f64(),
        records as f64 / built.as_secs_f64(),
        index_bytes as f64 / 1e9,
        index_bytes as f64 / 1e6 / (records as f64 / 1e6)
    );
    let start = Instant::now();
    let log = AuditLog::open(dir).expect("reopen");
    let opened = start.elapsed();
    assert!(log.wait_for_index(Duration::from_secs(600)));
    println!(
        "reopen with the index up to date: open {:.1} ms, index loaded and checked after {:.1} ms",
        ms(opened),
        ms(start.elapsed())
    );

    // (a) The audit view of one patient.
    let mut rng = Rng(7);
    let mut lat = Vec::new();
    let mut entries = 0usize;
    for _ in 0..1000 {
        let p = patient(rng.below(PATIENTS));
        let t = Instant::now();
        let v = log.query(&AuditFilter::patient(p)).expect("query");
        lat.push(t.elapsed());
        entries += v.len();
    }
    println!(
        "audit view, 1,000 random patients (avg {:.0} entries): {}",
        entries as f64 / 1000.0,
        pcts(lat)
    );
    let p = patient(3);
    let t = Instant::now();
    let want = log
        .scan(|e| e.record.patient.as_deref() == Some(p.as_str()))
        .expect("scan");
    let scan_t = t.elapsed();
    let got = log.query(&AuditFilter::patient(p.clone())).expect("query");
    assert_eq!(got, want, "query and scan differ");
    println!(
        "the same view by linear scan (before): {:.1} s ({} entries, equal)",
        scan_t.as_secs_f64(),
        want.len()
    );

    // (b) Statistics: one day of decision|read_results|check, streamed.
    let actions: Vec<String> = ["decision", "read_results", "check"]
        .map(String::from)
        .to_vec();
    let mut lat = Vec::new();
    let mut count = 0usize;
    for _ in 0..50 {
        let d = (t0 + chrono::Duration::days(rng.below(364) as i64)).date_naive();
        let f = AuditFilter {
            actions: Some(actions.clone()),
            ..Default::default()
        }
        .days(Some(d), Some(d));
        let t = Instant::now();
        let mut ok = 0usize;
        log.for_each(&f, |e| {
            ok += usize::from(e.record.outcome == "ok");
            true
        })
        .expect("for_each");
        lat.push(t.elapsed());
        count += ok;
    }
    println!(
        "statistics, one day of decision|read_results|check, 50 random days (avg {:.0} entries, streamed): {}",
        count as f64 / 50.0,
        pcts(lat)
    );
    let f = AuditFilter {
        actions: Some(actions.clone()),
        ..Default::default()
    }
    .days(
        Some(NaiveDate::from_ymd_opt(2026, 3, 1).expect("date")),
        Some(NaiveDate::from_ymd_opt(2026, 3, 31).expect("date")),
    );
    let t = Instant::now();
    let n = log.for_each(&f, |_| true).expect("for_each");
    println!(
        "statistics, 30 days (March), streamed: {n} entries in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let mut lat = Vec::new();
    for _ in 0..200 {
        let f = AuditFilter {
            actor: Some(format!("doc{:04}", rng.below(ACTORS))),
            ..Default::default()
        }
        .days(
            Some(NaiveDate::from_ymd_opt(2026, 6, 1).expect("date")),
            Some(NaiveDate::from_ymd_opt(2026, 6, 30).expect("date")),
        );
        let t = Instant::now();
        log.query(&f).expect("query");
        lat.push(t.elapsed());
    }
    println!("one actor, 30 days, 200 random actors: {}", pcts(lat));

    // (c) Appends on the full log.
    for _ in 0..3 {
        let label = format!("{records}-record log");
        print_append(&label, 100_000, c, append_bench(&log, 100_000, c));
    }
    assert!(log.wait_for_index(Duration::from_secs(600)));
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let nums: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let dir = tempfile::Builder::new()
        .prefix("huren-audit-bench")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir");
    if args.first().map(String::as_str) == Some("scale") {
        let records = nums.first().copied().unwrap_or(10_000_000);
        let c = nums.get(1).copied().unwrap_or(16).max(1) as usize;
        scale(dir.path(), records, c);
    } else {
        let n = nums.first().copied().unwrap_or(100_000) as usize;
        let c = nums.get(1).copied().unwrap_or(16).max(1) as usize;
        let log = AuditLog::open(dir.path()).expect("open");
        print_append("empty log", n, c, append_bench(&log, n, c));
    }
    // `dir` is deleted here (and on a panic's unwinding).
}
