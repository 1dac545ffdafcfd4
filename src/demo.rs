//! `huren serve --demo`: loads the project's own fixtures (embedded in the binary, so the
//! demo works from any directory) and prints example URLs.

use anyhow::Result;
use huren_server::auth::{new_token, token_hash, Role, TokenConfig, Tokens};
use huren_server::Gateway;
use serde_json::json;

/// The example recognition rules (`config/recognition.toml`), used when none are configured.
pub const RULES: &str = include_str!("../config/recognition.toml");

/// Fresh random tokens for this demo run: a clinician of FX-ZX (the district central
/// hospital), a privacy officer and a health-commission user.
pub struct DemoTokens {
    clinician: String,
    privacy_officer: String,
    commission: String,
}

/// Makes the demo tokens and registers them.
pub fn tokens(t: &mut Tokens) -> Result<DemoTokens> {
    let mut make = |id: &str, role: Role, dept: &str| -> Result<String> {
        let tok =
            new_token().map_err(|e| anyhow::anyhow!("no randomness for the demo token: {e}"))?;
        let h = token_hash(&tok);
        t.add(
            &h,
            &TokenConfig {
                id: id.into(),
                name: String::new(),
                institution: "FX-ZX".into(),
                role,
                department: dept.into(),
                token_sha256: h.clone(),
            },
        );
        Ok(tok)
    };
    Ok(DemoTokens {
        clinician: make("demo.clinician", Role::Clinician, "心内科")?,
        privacy_officer: make("demo.privacy", Role::PrivacyOfficer, "医务处")?,
        commission: make("demo.commission", Role::Commission, "区卫健委")?,
    })
}

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
pub async fn load(gw: &Gateway, http_addr: &str, tokens: &DemoTokens) -> Result<()> {
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
        examples.push(format!("{base}/api/v1/patients/{p}/results"));
        examples.push(format!("{base}/api/v1/patients/{p}/reports?kind=lab"));
    }
    let line = json!({"demo": "loaded", "messages": stored, "data": gw.store.dir().display().to_string(), "examples": examples,
        "usage": "curl -H 'Authorization: Bearer DEMO_TOKEN' -H 'X-Patient-Authorization: health_card 123456' URL"});
    println!("{line}");
    println!(
        "{}",
        json!({"demo_token": tokens.clinician, "institution": "FX-ZX", "role": "clinician",
            "privacy_officer_token": tokens.privacy_officer, "commission_token": tokens.commission})
    );
    Ok(())
}
