//! `huren serve --demo`: loads the project's own fixtures (embedded in the binary, so the
//! demo works from any directory) and prints example URLs.

use anyhow::Result;
use huren_server::auth::{new_token, token_hash, Role, TokenConfig, Tokens};
use huren_server::Gateway;
use serde_json::json;

/// The example recognition rules (`config/recognition.toml`), used when none are configured.
pub const RULES: &str = include_str!("../config/recognition.toml");

/// Fresh random tokens for this demo run: a clinician of FX-ZX (the district central
/// hospital), a privacy officer and a health-commission user; the ECG centre's reader on duty
/// (at FX-ZX) and a doctor of the community centre FX-SQ01 that sends ECGs for reading.
/// On a cluster the first node's tokens are every node's (`huren_cluster::demo_state`).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct DemoTokens {
    clinician: String,
    privacy_officer: String,
    commission: String,
    registrar: String,
    reader: String,
    community: String,
    cardiologist: String,
    backup: String,
    head: String,
}

/// The demo's reading centre (used when the configuration has none).
pub const DEMO_CENTRE: &str = "fx-ecg";
/// The demo's imaging centre (every institution's studies).
pub const DEMO_IMAGING: &str = "fx-img";
/// The demo's reader on duty there (and at the imaging centre).
pub const DEMO_READER: &str = "demo.reader";

/// Registers tokens made earlier (a cluster's, [`tokens`] of the node that started first).
pub fn register(t: &mut Tokens, d: &DemoTokens) {
    let mut add = |tok: &str, id: &str, institution: &str, role: Role, dept: &str| {
        let h = token_hash(tok);
        t.add(
            &h,
            &TokenConfig {
                id: id.into(),
                name: String::new(),
                institution: institution.into(),
                role,
                department: dept.into(),
                token_sha256: h.clone(),
            },
        );
    };
    add(
        &d.clinician,
        "demo.clinician",
        "FX-ZX",
        Role::Clinician,
        "心内科",
    );
    add(
        &d.privacy_officer,
        "demo.privacy",
        "FX-ZX",
        Role::PrivacyOfficer,
        "医务处",
    );
    add(
        &d.commission,
        "demo.commission",
        "FX-ZX",
        Role::Commission,
        "区卫健委",
    );
    add(
        &d.registrar,
        "demo.registrar",
        "FX-ZX",
        Role::Registrar,
        "门诊挂号",
    );
    add(
        &d.reader,
        DEMO_READER,
        "FX-ZX",
        Role::Clinician,
        "心电诊断中心",
    );
    add(
        &d.community,
        "demo.community",
        "FX-SQ01",
        Role::Clinician,
        "全科",
    );
    add(
        &d.cardiologist,
        "demo.cardiologist",
        "FX-ZX",
        Role::Clinician,
        "心内科（胸痛中心）",
    );
    add(
        &d.backup,
        "demo.backup",
        "FX-ZX",
        Role::Clinician,
        "心内科（胸痛中心）",
    );
    add(&d.head, "demo.head", "FX-ZX", Role::Clinician, "心内科主任");
}

/// Fresh random demo tokens, not yet registered.
pub fn new_tokens() -> Result<DemoTokens> {
    let make = || new_token().map_err(|e| anyhow::anyhow!("no randomness for the demo token: {e}"));
    Ok(DemoTokens {
        clinician: make()?,
        privacy_officer: make()?,
        commission: make()?,
        registrar: make()?,
        reader: make()?,
        community: make()?,
        cardiologist: make()?,
        backup: make()?,
        head: make()?,
    })
}

/// Makes the demo tokens and registers them.
pub fn tokens(t: &mut Tokens) -> Result<DemoTokens> {
    let d = new_tokens()?;
    register(t, &d);
    Ok(d)
}

/// The demo's chest-pain alert group when the configuration names none: the on-duty
/// cardiologist of FX-ZX (the PCI hospital), a backup and the head of department get the
/// community centres' STEMI ECGs and critical values; escalation every
/// `HUREN_DEMO_ESCALATE_S` seconds (default 120).
pub fn alerting(config: &mut huren_server::config::Config) -> Result<()> {
    if !config.alert_groups.is_empty() {
        return Ok(());
    }
    use huren_alerting::{AlertConfig, AlertDuty, AlertGroup, AlertKind, AlertRoute, Threshold};
    let escalate = match std::env::var("HUREN_DEMO_ESCALATE_S") {
        Ok(v) => Some(v.trim().parse::<u32>().map_err(|_| {
            anyhow::anyhow!("HUREN_DEMO_ESCALATE_S must be a whole number of seconds, not {v:?}")
        })?),
        Err(_) => None,
    };
    let route = |institution: &str, kind| AlertRoute {
        institution: institution.into(),
        kind,
        group: "fx-pci".into(),
    };
    let c = AlertConfig {
        groups: vec![AlertGroup {
            id: "fx-pci".into(),
            name: "奉贤区中心医院胸痛中心".into(),
            institution: "FX-ZX".into(),
            phone: Some("021-5742-0000".into()),
            escalate_after_secs: escalate,
            backup: vec!["demo.backup".into()],
            heads: vec!["demo.head".into()],
            time_zone: None,
        }],
        duty: vec![AlertDuty {
            reader: "demo.cardiologist".into(),
            group: "fx-pci".into(),
            days: vec![],
            from: None,
            to: None,
        }],
        routes: vec![
            route("FX-SQ01", AlertKind::Stemi),
            route("FX-SQ02", AlertKind::Stemi),
            route("FX-SQ01", AlertKind::LabCritical),
            route("FX-SQ02", AlertKind::LabCritical),
        ],
        thresholds: vec![Threshold {
            code: "K".into(),
            name: Some("钾".into()),
            low: Some(2.8),
            high: Some(6.5),
            unit: Some("mmol/L".into()),
        }],
    };
    config.alert_groups = c.groups.clone();
    config.alert_duty = c.duty.clone();
    config.alert_routes = c.routes.clone();
    config.critical_thresholds = c.thresholds.clone();
    config.alerting = c
        .validate(|_| true)
        .map_err(|e| anyhow::anyhow!("the demo alert group: {e}"))?;
    Ok(())
}

/// The demo's reading centre when the configuration names none: the district ECG centre at
/// FX-ZX reads the community centres' ECGs, and the demo reader is on duty all day.
pub fn workflow(config: &mut huren_server::config::Config) -> Result<()> {
    if !config.centres.is_empty() {
        return Ok(());
    }
    use huren_workflow::{CentreConfig, Kind, RosterEntry, RouteRule, WorkflowConfig};
    let route = |institution: &str| RouteRule {
        institution: institution.into(),
        kind: Some(Kind::Ecg),
        centre: DEMO_CENTRE.into(),
    };
    // Every institution's imaging → the regional imaging centre at FX-GX (a study sent with
    // storescu to the demo's DICOM port arrives on its worklist; the calling AE title is the
    // sending institution under --demo).
    let imaging = RouteRule {
        institution: "*".into(),
        kind: Some(Kind::Imaging),
        centre: DEMO_IMAGING.into(),
    };
    let wf = WorkflowConfig {
        centres: vec![
            CentreConfig {
                id: DEMO_CENTRE.into(),
                name: "奉贤区心电诊断中心".into(),
                institution: "FX-ZX".into(),
                claim_timeout_minutes: None,
                time_zone: None,
                // The demo reader also heads the centre: roster and workload at /ui/centre/fx-ecg.
                heads: vec![DEMO_READER.into()],
            },
            CentreConfig {
                id: DEMO_IMAGING.into(),
                name: "奉贤区影像诊断中心".into(),
                institution: "FX-GX".into(),
                claim_timeout_minutes: None,
                time_zone: None,
                heads: vec![DEMO_READER.into()],
            },
        ],
        routes: vec![route("FX-SQ01"), route("FX-SQ02"), imaging],
        due: vec![],
        roster: [DEMO_CENTRE, DEMO_IMAGING]
            .into_iter()
            .map(|centre| RosterEntry {
                reader: DEMO_READER.into(),
                centre: centre.into(),
                days: vec![],
                from: None,
                to: None,
            })
            .collect(),
    };
    config.centres = wf.centres.clone();
    config.reading_routes = wf.routes.clone();
    config.roster = wf.roster.clone();
    // The demo accepts any sender: its institutions need not be configured.
    config.workflow = wf
        .validate(|_| true)
        .map_err(|e| anyhow::anyhow!("the demo reading centre: {e}"))?;
    Ok(())
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

/// The story patient's national ID (a made-up ID with a valid check digit).
pub const STORY_NATIONAL_ID: &str = "310120195805201229";

/// One ORU^R01 of the story: sender, local patient ID, order, days before now, service and
/// observations `(code, name, value, unit, range, flag)`.
struct Oru<'a> {
    sender: &'a str,
    local: &'a str,
    order: &'a str,
    days_ago: i64,
    service: (&'a str, &'a str),
    obs: &'a [(&'a str, &'a str, &'a str, &'a str, &'a str, &'a str)],
}

fn hl7_time(t: chrono::DateTime<chrono_tz::Tz>) -> String {
    t.format("%Y%m%d%H%M%S").to_string()
}

impl Oru<'_> {
    fn message(&self, now: chrono::DateTime<chrono_tz::Tz>) -> String {
        let collected = now - chrono::Duration::days(self.days_ago) - chrono::Duration::hours(3);
        let reported = collected + chrono::Duration::hours(2);
        let (c, r) = (hl7_time(collected), hl7_time(reported));
        let mut m = format!(
            "MSH|^~\\&|LIS|{s}|HUREN|FX-YLT|{r}||ORU^R01^ORU_R01|{s}-{o}|P|2.5.1|||||CHN|UNICODE UTF-8\r\
             PID|1||{l}^^^{s}^MR~{nid}^^^NNCHN^NI||李^秀英||19580520|F\r\
             PV1|1|O|门诊^^^{s}\r\
             ORC|RE|{o}|{o}L||CM\r\
             OBR|1|{o}|{o}L|{sc}^{sn}^L|||{c}|||||||{c}|SER^血清|||||||{r}||CH|F\r",
            s = self.sender,
            o = self.order,
            l = self.local,
            nid = STORY_NATIONAL_ID,
            sc = self.service.0,
            sn = self.service.1,
        );
        for (i, (code, name, value, unit, range, flag)) in self.obs.iter().enumerate() {
            m.push_str(&format!(
                "OBX|{}|NM|{code}^{name}^L||{value}|{unit}|{range}|{flag}|||F|||{r}\r",
                i + 1
            ));
        }
        m
    }
}

/// The story of `huren serve --demo`: 李秀英 (a made-up patient) has results from four
/// institutions of the Fengxian consortium, dated relative to today — recognisable
/// electrolytes, lipids and HbA1c; an expired potassium; a glucose from a community centre
/// without QC evidence (reference only); a potassium trend across two institutions; and a
/// critical ECG (acute inferior MI) from the regional ECG centre yesterday.
fn story(now: chrono::DateTime<chrono_tz::Tz>) -> (Vec<(String, String)>, Vec<u8>) {
    const K: &str = "3.5-5.3";
    let orus = [
        Oru {
            sender: "FX-ZX",
            local: "ZX0098765",
            order: "D001",
            days_ago: 75,
            service: ("LYTE", "电解质"),
            obs: &[
                ("K", "钾", "3.8", "mmol/L", K, "N"),
                ("NA", "钠", "140", "mmol/L", "137-147", "N"),
            ],
        },
        Oru {
            sender: "FX-ZX",
            local: "ZX0098765",
            order: "D002",
            days_ago: 40,
            service: ("LYTE", "电解质"),
            obs: &[
                ("K", "钾", "3.2", "mmol/L", K, "L"),
                ("NA", "钠", "136", "mmol/L", "137-147", "L"),
            ],
        },
        Oru {
            sender: "FX-SQ02",
            local: "SQ2-5566",
            order: "D003",
            days_ago: 10,
            service: ("LYTE", "电解质"),
            obs: &[("K", "钾", "4.6", "mmol/L", K, "N")],
        },
        Oru {
            sender: "FX-SQ02",
            local: "SQ2-5566",
            order: "D004",
            days_ago: 5,
            service: ("GLU", "葡萄糖"),
            obs: &[("GLU", "葡萄糖", "7.8", "mmol/L", "3.9-6.1", "H")],
        },
        Oru {
            sender: "FX-ZY",
            local: "ZY20031",
            order: "D005",
            days_ago: 25,
            service: ("GLU", "葡萄糖"),
            obs: &[("GLU", "葡萄糖", "6.9", "mmol/L", "3.9-6.1", "H")],
        },
        Oru {
            sender: "FX-SQ01",
            local: "SQ1-7788",
            order: "D006",
            days_ago: 20,
            service: ("HBA1C", "糖化血红蛋白"),
            obs: &[("HBA1C", "糖化血红蛋白A1c", "7.2", "%", "4.0-6.0", "H")],
        },
        Oru {
            sender: "FX-ZX",
            local: "ZX0098765",
            order: "D007",
            days_ago: 12,
            service: ("LIPID", "血脂四项"),
            obs: &[
                ("TC", "总胆固醇", "5.9", "mmol/L", "2.8-5.2", "H"),
                ("TG", "甘油三酯", "1.8", "mmol/L", "0.56-1.7", "H"),
                ("HDL", "高密度脂蛋白胆固醇", "1.1", "mmol/L", "1.0-1.9", "N"),
                ("LDL", "低密度脂蛋白胆固醇", "3.9", "mmol/L", "0-3.4", "H"),
            ],
        },
        Oru {
            sender: "FX-ZX",
            local: "ZX0098765",
            order: "D008",
            days_ago: 3,
            service: ("LYTE", "电解质"),
            obs: &[
                ("K", "钾", "4.1", "mmol/L", K, "N"),
                ("NA", "钠", "139", "mmol/L", "137-147", "N"),
                ("CL", "氯", "101", "mmol/L", "99-110", "N"),
            ],
        },
    ];
    let msgs = orus
        .iter()
        .map(|o| (o.sender.to_string(), o.message(now)))
        .collect();
    // The critical ECG: the project's aECG fixture, moved to yesterday and to this patient.
    let ecg = ecg_of_story(now - chrono::Duration::hours(20), "0000000d3e01", "ZY20031");
    (msgs, ecg)
}

/// The project's aECG fixture as the story patient's, acquired at `at`, with the document id
/// ending in `uid` (12 hex digits) and the sender's patient ID `local`.
fn ecg_of_story(at: chrono::DateTime<chrono_tz::Tz>, uid: &str, local: &str) -> Vec<u8> {
    let when = hl7_time(at);
    let end = hl7_time(at + chrono::Duration::seconds(10));
    String::from_utf8_lossy(include_bytes!("../fixtures/ecg/aecg-zh-patient.xml"))
        .replace(
            "7d1c2a10-5a9b-4f3e-9a51-000000000001",
            &format!("7d1c2a10-5a9b-4f3e-9a51-{uid}"),
        )
        .replace("extension=\"0012345\"", &format!("extension=\"{local}\""))
        .replace("<name>张伟</name>", "<name>李秀英</name>")
        .replace(
            "code=\"M\" codeSystem=\"2.16.840.1.113883.5.1\"",
            "code=\"F\" codeSystem=\"2.16.840.1.113883.5.1\"",
        )
        .replace("19650307", "19580520")
        .replace(
            "<high value=\"20250624083025\"/>",
            &format!("<high value=\"{end}\"/>"),
        )
        .replace("20250624083015", &when)
        .into_bytes()
}

/// The story's chest CT (three slices of the project's fixture CT) and its verified SR with
/// Chinese findings, from the regional imaging centre (FX-GX) eight days ago.
fn story_study(now: chrono::DateTime<chrono_tz::Tz>) -> Vec<Vec<u8>> {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    use huren_dicom::fixtures::{ct_slice, part10, sr_object};
    let study = "1.2.826.0.1.3680043.10.1447.900.1";
    let day = (now - chrono::Duration::days(8))
        .format("%Y%m%d")
        .to_string();
    let fix = |o: &mut dicom_object::mem::InMemDicomObject| {
        for (tag, vr, v) in [
            (tags::STUDY_DATE, VR::DA, day.as_str()),
            (tags::SERIES_DATE, VR::DA, day.as_str()),
            (tags::CONTENT_DATE, VR::DA, day.as_str()),
            (tags::ISSUER_OF_PATIENT_ID, VR::LO, "FX-GX"),
            (tags::PATIENT_BIRTH_DATE, VR::DA, "19580520"),
            (tags::PATIENT_SEX, VR::CS, "F"),
            (tags::INSTITUTION_NAME, VR::LO, "上海市奉贤区奉城医院"),
        ] {
            o.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
        }
    };
    let mut out = Vec::new();
    for n in 1..=3 {
        let mut o = ct_slice(study, "GX-4411", "李^秀英", n, "ISO_IR 192");
        fix(&mut o);
        out.push(part10(&o));
    }
    let mut sr = sr_object(study, "GX-4411", "李^秀英", true);
    fix(&mut sr);
    out.push(part10(&sr));
    out
}

/// An ADT^A08 from the imaging centre: links its local ID of the story patient to her
/// national ID (DICOM carries only the local ID).
fn story_link(now: chrono::DateTime<chrono_tz::Tz>) -> String {
    let t = hl7_time(now - chrono::Duration::days(8));
    format!(
        "MSH|^~\\&|HIS|FX-GX|HUREN|FX-YLT|{t}||ADT^A08^ADT_A01|FX-GX-A08-1|P|2.5.1|||||CHN|UNICODE UTF-8\r\
         EVN|A08|{t}\r\
         PID|1||GX-4411^^^FX-GX^MR~{STORY_NATIONAL_ID}^^^NNCHN^NI||李^秀英||19580520|F\r\
         PV1|1|O|影像科^^^FX-GX\r"
    )
}

/// Ingests the demo story and fixtures and prints one JSON line with example URLs.
pub async fn load(
    gw: &Gateway,
    gate: &huren_server::gate::Gate,
    http_addr: &str,
    tokens: &DemoTokens,
) -> Result<()> {
    let (stored, authorization) = load_data(gw, gate).await?;
    announce(gw, http_addr, tokens, Some(stored), &authorization);
    Ok(())
}

/// Ingests the demo story and fixtures and records the demo patient's consent: how many
/// messages were stored and her `X-Patient-Authorization` value.
pub async fn load_data(gw: &Gateway, gate: &huren_server::gate::Gate) -> Result<(usize, String)> {
    let mut stored = 0usize;
    let now = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai);
    let (story_msgs, story_ecg) = story(now);
    for (sender, m) in &story_msgs {
        let out = gw.ingest_hl7(m.as_bytes(), None, None).await;
        if out.outcome == "rejected" {
            tracing::warn!(sender, error = ?out.error, "demo story message rejected");
        } else {
            stored += 1;
        }
    }
    let link = gw.ingest_hl7(story_link(now).as_bytes(), None, None).await;
    if link.outcome == "rejected" {
        tracing::warn!(error = ?link.error, "demo identity link rejected");
    }
    for file in story_study(now) {
        match huren_server::dicom::parse_file(&file) {
            Ok(inst) => {
                let out = gw.ingest_dicom(file, &inst, "FX-GX", None).await;
                tracing::debug!(status = out.status, "demo study instance");
                stored += 1;
            }
            Err(e) => tracing::warn!(error = %e, "demo study instance does not parse"),
        }
    }
    let ecg = gw.ingest_ecg(&story_ecg, "FX-ZY").await;
    if ecg.outcome == "rejected" {
        tracing::warn!(error = ?ecg.error, "demo story ECG rejected");
    } else {
        stored += 1;
    }
    // Today, half an hour ago, the community centre FX-SQ01 records her ECG again: a reading
    // task on the ECG centre's worklist, with yesterday's ECG to compare.
    let today = ecg_of_story(
        now - chrono::Duration::minutes(30),
        "0000000d3e02",
        "SQ1-7788",
    );
    let ecg = gw.ingest_ecg(&today, "FX-SQ01").await;
    if ecg.outcome == "rejected" {
        tracing::warn!(error = ?ecg.error, "demo community ECG rejected");
    } else {
        stored += 1;
    }
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
        }
    }
    // The demo patient's authorisation, recorded as a registration clerk of FX-ZX would when
    // she shows her health card (valid for 24 hours).
    let clerk = huren_server::auth::Principal {
        id: "demo.registrar".into(),
        institution: "FX-ZX".into(),
        role: Role::Registrar,
        department: "门诊挂号".into(),
    };
    let consent = gate
        .issue_consent(
            &clerk,
            &format!("nid:{STORY_NATIONAL_ID}"),
            huren_access::CredentialKind::HealthCard,
            "demo health card",
            huren_access::ConsentScope::All,
            None,
        )
        .await
        .map_err(|p| anyhow::anyhow!("recording the demo patient's consent: {}", p.detail()))?;
    Ok((stored, format!("health_card {}", consent.code)))
}

/// Prints the demo's lines: what was loaded (`stored`: `None` when another node of the
/// cluster loaded it) with example URLs, then the tokens and the demo patient's authorisation.
pub fn announce(
    gw: &Gateway,
    http_addr: &str,
    tokens: &DemoTokens,
    stored: Option<usize>,
    authorization: &str,
) {
    let base = format!("http://{http_addr}");
    let patient = format!("nid:{STORY_NATIONAL_ID}");
    let examples = vec![
        format!("{base}/"),
        format!("{base}/healthz"),
        format!("{base}/api/v1/patients/{patient}/results"),
        format!("{base}/api/v1/patients/{patient}/reports?kind=lab"),
    ];
    let line = json!({"demo": "loaded", "messages": stored, "loaded_here": stored.is_some(), "data": gw.data_dir().display().to_string(), "examples": examples,
        "patient": patient, "usage": "open the first example in a browser and sign in with the clinician token of the next line, then enter the demo patient's authorisation code; or curl -H 'Authorization: Bearer DEMO_TOKEN' -H 'X-Patient-Authorization: DEMO_PATIENT_AUTHORIZATION' URL"});
    println!("{line}");
    println!(
        "{}",
        json!({"demo_token": tokens.clinician, "institution": "FX-ZX", "role": "clinician",
            "demo_patient_authorization": authorization,
            "privacy_officer_token": tokens.privacy_officer, "commission_token": tokens.commission,
            "registrar_token": tokens.registrar,
            "reader_token": tokens.reader, "reader_pages": [format!("{base}/ui/worklist")],
            "community_token": tokens.community, "community_pages": [format!("{base}/ui/sent")],
            "cardiologist_token": tokens.cardiologist, "backup_token": tokens.backup,
            "head_token": tokens.head})
    );
}

/// The file in a demo data directory that keeps its generated national-ID secret.
pub const SECRET_FILE: &str = "demo-national-id-secret";

/// The national-ID secret of a demo (or synthetic, `demo-data`) store when none is configured:
/// generated at random on first use and kept in `DATA/demo-national-id-secret` (mode 0600), so
/// a restarted demo finds its patients by national ID again. Never a value from the source.
pub fn national_id_secret(data: &std::path::Path) -> Result<String> {
    use anyhow::Context;
    let path = data.join(SECRET_FILE);
    if !path.exists() {
        std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
        let secret = new_token()
            .map_err(|e| anyhow::anyhow!("no randomness for the demo national-ID secret: {e}"))?;
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        match o.open(&path) {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(format!("{secret}\n").as_bytes())
                    .and_then(|()| f.sync_all())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
    }
    let source = huren_server::config::SecretSource::DemoFile(path.clone());
    let s = huren_server::config::read_secret_file(&path, source)?;
    anyhow::ensure!(
        s.len() >= huren_server::config::SECRET_MIN_LEN,
        "{}: the demo national-ID secret is too short; delete the file to make a new one",
        path.display()
    );
    Ok(s)
}
