//! `huren serve --demo`: loads the project's own fixtures (embedded in the binary, so the
//! demo works from any directory) and prints example URLs.

use anyhow::Result;
use huren_server::Gateway;
use serde_json::json;

/// The demo messages, in the order a consortium would send them.
const FIXTURES: &[(&str, &[u8])] = &[
    (
        "oru_multi_obr_cn_utf8.hl7",
        include_bytes!("../fixtures/hl7/oru_multi_obr_cn_utf8.hl7"),
    ),
    (
        "oru_gb18030.hl7",
        include_bytes!("../fixtures/hl7/oru_gb18030.hl7"),
    ),
    (
        "oru_corrected.hl7",
        include_bytes!("../fixtures/hl7/oru_corrected.hl7"),
    ),
    (
        "oru_cancelled.hl7",
        include_bytes!("../fixtures/hl7/oru_cancelled.hl7"),
    ),
    (
        "batch_fhs.hl7",
        include_bytes!("../fixtures/hl7/batch_fhs.hl7"),
    ),
    (
        "oru_v27_truncation.hl7",
        include_bytes!("../fixtures/hl7/oru_v27_truncation.hl7"),
    ),
    ("adt_a08.hl7", include_bytes!("../fixtures/hl7/adt_a08.hl7")),
    ("adt_a40.hl7", include_bytes!("../fixtures/hl7/adt_a40.hl7")),
];

/// Ingests the demo fixtures and prints one JSON line with example URLs.
pub async fn load(gw: &Gateway, http_addr: &str) -> Result<()> {
    let mut stored = 0usize;
    let mut patient: Option<String> = None;
    for (name, bytes) in FIXTURES {
        let msgs = match huren_hl7::split_batch(bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(fixture = name, error = %e, "demo fixture does not split");
                continue;
            }
        };
        for m in msgs {
            let out = gw.ingest_hl7(m, None, None).await;
            if out.outcome == "rejected" {
                tracing::warn!(fixture = name, error = ?out.error, "demo fixture rejected");
                continue;
            }
            stored += 1;
            if patient.is_none() {
                if let Some(h) = out.report {
                    if let Some(r) = gw.store.report(&h)? {
                        patient = Some(r.patient.local_key());
                    }
                }
            }
        }
    }
    let base = format!("http://{http_addr}");
    let mut examples = vec![format!("{base}/healthz")];
    if let Some(p) = &patient {
        examples.push(format!("{base}/api/v1/patients/{p}/reports"));
        examples.push(format!("{base}/api/v1/patients/{p}/reports?kind=lab"));
    }
    let line = json!({"demo": "loaded", "messages": stored, "data": gw.store.dir().display().to_string(), "examples": examples});
    println!("{line}");
    Ok(())
}
