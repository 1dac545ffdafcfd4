//! `huren demo-data`: fills a store with synthetic lab reports for benchmarks (one million
//! reports in a few minutes), spread over patients, institutions, items and two years.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use futures::StreamExt;
use huren_model::{
    AbnormalFlag, Hashed, LabBody, LabObservation, OrderIds, PatientRef, Report, ReportKind,
    ReportStatus, Source, SystemKind,
};
use huren_store::{Ingest, Store};
use serde_json::json;

const INSTITUTIONS: &[&str] = &["FX-ZX", "FX-ZY", "FX-GX", "FX-SQ01", "FX-SQ02"];
const ITEMS: &[(&str, &str, &str, &str)] = &[
    ("K", "钾", "mmol/L", "3.5-5.3"),
    ("NA", "钠", "mmol/L", "137-147"),
    ("GLU", "葡萄糖", "mmol/L", "3.9-6.1"),
    ("HBA1C", "糖化血红蛋白", "%", "4.0-6.0"),
    ("TC", "总胆固醇", "mmol/L", "2.8-5.2"),
    ("TG", "甘油三酯", "mmol/L", "0.56-1.7"),
    ("ALB", "白蛋白", "g/L", "40-55"),
    ("HGB", "血红蛋白", "g/L", "130-175"),
];

/// The synthetic national ID of patient `i` (18 characters, never a real person's).
pub fn national_id(i: u64) -> String {
    format!("99012019{:010}", i)
}

fn report(
    i: u64,
    patients: u64,
    secret: &str,
    now: chrono::DateTime<chrono::FixedOffset>,
) -> (Hashed, Report) {
    let p = i % patients;
    let inst = INSTITUTIONS[(i / patients) as usize % INSTITUTIONS.len()];
    let (code, name, unit, range) = ITEMS[(i as usize / 7) % ITEMS.len()];
    // Spread over two years, newest for the lowest i of each patient.
    let minutes = ((i / patients) * 997 + p * 13) % (2 * 365 * 24 * 60);
    let at = (now - chrono::Duration::minutes(minutes as i64)).to_rfc3339();
    let value = format!("{}.{:02}", 3 + (i % 5), i % 100);
    let original = format!(
        "MSH|^~\\&|LIS|{inst}|HUREN|FX-YLT|||ORU^R01|GEN-{i}|P|2.5.1\rPID|1||L{p}^^^{inst}^MR\rOBX|1|NM|{code}^{name}^L||{value}|{unit}|{range}|N|||F\r"
    )
    .into_bytes();
    let original = Hashed::new(original);
    let r = Report {
        kind: ReportKind::Lab,
        source: Source {
            institution: inst.into(),
            system: SystemKind::Lis,
            application: Some("LIS".into()),
            source_key: format!("GEN{i}"),
        },
        patient: PatientRef {
            institution: inst.into(),
            local_id: format!("L{p}"),
            national_id_key: Some(huren_model::national_id_key(secret, &national_id(p))),
            name: Some(format!("测试{p}")),
            sex: Some(if p.is_multiple_of(2) { "M" } else { "F" }.into()),
            birth_date: Some("1980-01-01".into()),
            ..Default::default()
        },
        status: ReportStatus::Final,
        order: OrderIds {
            placer: Some(format!("ORD{i}")),
            filler: Some(format!("GEN{i}")),
        },
        specimen_collected_at: Some(at.clone()),
        performed_at: None,
        reported_at: Some(at),
        lab: Some(LabBody {
            service_code: Some(code.into()),
            service_name: Some(name.into()),
            specimen: None,
            observations: vec![LabObservation {
                code: code.into(),
                code_system: Some("L".into()),
                name: Some(name.into()),
                value_type: Some("NM".into()),
                value,
                unit: Some(unit.into()),
                reference_range: Some(range.into()),
                abnormal_flags: vec![AbnormalFlag::Normal],
                abnormal_flags_raw: Some("N".into()),
                result_status: Some("F".into()),
                observed_at: None,
            }],
        }),
        conclusion: None,
        original: original.hash(),
        attachments: vec![],
        ecg: None,
        imaging: None,
    };
    (original, r)
}

/// Commits `reports` synthetic reports over `patients` patients (256 commits in flight, so
/// the writer groups them) and prints progress and a summary line.
pub async fn generate(store: Store, secret: &str, reports: u64, patients: u64) -> Result<()> {
    let patients = patients.max(1);
    let started = Instant::now();
    let now = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .fixed_offset();
    let received = now.to_rfc3339();
    let secret: Arc<str> = Arc::from(secret);
    let mut stream = futures::stream::iter(0..reports)
        .map(|i| {
            let store = store.clone();
            let secret = secret.clone();
            let received = received.clone();
            async move {
                let (original, r) = report(i, patients, &secret, now);
                store
                    .commit(Ingest {
                        original: original.into(),
                        reports: vec![r],
                        identity: vec![],
                        received_at: received,
                        attachments: vec![],
                        message_id: None,
                    })
                    .await
            }
        })
        .buffer_unordered(256);
    let mut done = 0u64;
    while let Some(r) = stream.next().await {
        r?;
        done += 1;
        if done.is_multiple_of(100_000) {
            eprintln!(
                "{done} reports, {:.0}/s",
                done as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    store.flush_index()?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"generated": done, "patients": patients, "seconds": (secs * 10.0).round() / 10.0,
            "per_second": (done as f64 / secs).round(),
            "example_patient": format!("nid:{}", national_id(0)),
            "results_per_patient": done / patients})
    );
    Ok(())
}
