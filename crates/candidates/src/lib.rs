//! A stored report as the recognition engine sees it: [`candidates_of`] splits a report into
//! candidates — a lab report into one per catalogue item its observations map to (the
//! observations of one item together, critical when any of them is) and one per unmapped
//! code; an imaging study, an ECG or an empty lab report into one for the report, with the
//! local code catalogues map (`MODALITY-BODYPART`, `ECG12`, the lab service code). Pure.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use huren_model::{ContentHash, Report, ReportKind, ReportStatus};
use huren_recognition::{
    Candidate, CandidateStatus, Category, Closure, Critical, Demographics, IdentityMethod, Images,
    Rules, Sex, Times,
};

/// What the store knows of a report beyond its content.
#[derive(Clone, Copy, Debug)]
pub struct Stored<'a> {
    /// The report's hash.
    pub hash: &'a ContentHash,
    /// 1-based version in its chain (a final version after the first is an amendment).
    pub version: u32,
    /// When huren received it (RFC 3339): the reporting time when the report has none.
    pub received_at: &'a str,
}

fn parse_time(s: Option<&str>) -> Option<DateTime<FixedOffset>> {
    s.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
}

/// A sex as HL7 and FHIR write it (`M`/`male`, `F`/`female`, anything else: other).
pub fn sex(s: Option<&str>) -> Option<Sex> {
    match s? {
        "M" | "male" => Some(Sex::Male),
        "F" | "female" => Some(Sex::Female),
        _ => Some(Sex::Other),
    }
}

/// Splits a report into candidates — `(item key, observation indices, candidate)`: a lab report gives one per catalogue item its
/// observations map to (observations of one item together) and one per unmapped code.
pub fn candidates_of(
    rules: &Rules,
    meta: &Stored<'_>,
    report: &Report,
    identity: IdentityMethod,
) -> Vec<(String, Vec<usize>, Candidate)> {
    let status = match report.status {
        ReportStatus::Final if meta.version > 1 => CandidateStatus::Amended,
        ReportStatus::Final => CandidateStatus::Final,
        ReportStatus::Corrected => CandidateStatus::Amended,
        ReportStatus::Preliminary => CandidateStatus::Preliminary,
        ReportStatus::Cancelled => CandidateStatus::Cancelled,
    };
    let category = match report.kind {
        ReportKind::Lab => Category::Lab,
        ReportKind::Imaging => Category::Radiology,
        ReportKind::Ecg => Category::Electrophysiology,
    };
    let times = Times {
        specimen_collected_at: parse_time(report.specimen_collected_at.as_deref()),
        performed_at: parse_time(report.performed_at.as_deref()),
        reported_at: parse_time(report.reported_at.as_deref())
            .or_else(|| parse_time(Some(meta.received_at))),
    };
    let base = |key: &str, local: Option<String>, critical: bool| Candidate {
        source_org: report.source.institution.clone(),
        report_id: format!("{}#{key}", meta.hash),
        status,
        category,
        local_code: local,
        regional_code: None,
        body_site: None,
        contrast: None,
        times,
        identity,
        patient: Demographics {
            sex: sex(report.patient.sex.as_deref()),
            birth_date: report.patient.birth_date.clone(),
        },
        critical: Critical {
            flagged: critical,
            closure: Closure::Unknown,
        },
        // A study whose instances huren holds can be viewed (previews, WADO-RS).
        images: Images {
            available: report
                .imaging
                .as_ref()
                .is_some_and(|im| im.instance_count > 0),
            quality_insufficient: false,
        },
        content_hash: format!("{}#{key}", report.original),
    };
    let mut groups: BTreeMap<String, (Option<String>, Vec<usize>, bool)> = BTreeMap::new();
    if let Some(lab) = &report.lab {
        for (i, o) in lab.observations.iter().enumerate() {
            let regional = rules
                .resolve_local(&report.source.institution, &o.code)
                .map(str::to_string);
            let key = regional
                .clone()
                .unwrap_or_else(|| format!("local:{}", o.code));
            let g = groups
                .entry(key)
                .or_insert_with(|| (Some(o.code.clone()), Vec::new(), false));
            g.1.push(i);
            g.2 |= o.abnormal_flags.iter().any(|f| f.is_critical());
        }
    }
    if groups.is_empty() {
        // Not itemised (imaging, ECG, an empty lab report): one candidate for the report. Its
        // local code is what catalogues map: the lab service code; `MODALITY-BODYPART` for a
        // study (e.g. `CT-CHEST`, as `local_codes` of imaging items are written); `ECG12` for a
        // resting 12-lead ECG.
        let code = match report.kind {
            ReportKind::Lab => report.lab.as_ref().and_then(|l| l.service_code.clone()),
            ReportKind::Imaging => report.imaging.as_ref().and_then(|im| {
                let m = im.modalities.iter().find(|m| m.as_str() != "SR")?;
                Some(match im.body_parts.first() {
                    Some(b) => format!("{m}-{b}"),
                    None => m.clone(),
                })
            }),
            ReportKind::Ecg => Some("ECG12".to_string()),
        };
        return vec![("report".into(), vec![], base("report", code, false))];
    }
    groups
        .into_iter()
        .map(|(key, (local, obs, crit))| {
            let c = base(&key, local, crit);
            (key, obs, c)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> Rules {
        Rules::from_toml(include_str!("../../../config/recognition.toml")).unwrap()
    }

    fn obs(code: &str, flags: &[&str]) -> serde_json::Value {
        json!({"abnormal_flags": flags, "code": code, "name": code, "value": "1",
            "value_type": "NM", "result_status": "F"})
    }

    fn lab(observations: Vec<serde_json::Value>, status: &str, reported: Option<&str>) -> Report {
        let mut v = json!({
            "kind": "lab", "status": status,
            "lab": {"observations": observations, "service_code": "LYTE", "service_name": "电解质"},
            "order": {"filler": "F1", "placer": "P1"},
            "original": "blake3:f9f849f5800ea2bc31d6568aecf1c4ff0ca81c861be4dfed33265ad6ab01f5ad",
            "patient": {"institution": "FX-ZX", "local_id": "1", "sex": "F", "birth_date": "1958-05-20"},
            "source": {"application": "LIS", "institution": "FX-ZX", "source_key": "F1", "system": "lis"},
            "specimen_collected_at": "2026-12-01T08:30:00+08:00",
        });
        if let Some(r) = reported {
            v["reported_at"] = json!(r);
        }
        serde_json::from_value(v).unwrap()
    }

    fn stored(h: &ContentHash, version: u32) -> Stored<'_> {
        Stored {
            hash: h,
            version,
            received_at: "2026-12-01T10:00:00+08:00",
        }
    }

    #[test]
    fn a_lab_report_splits_by_catalogue_item_and_keeps_unmapped_codes() {
        let h = ContentHash::of(b"r");
        let r = lab(
            vec![
                obs("K", &["critical_low"]),
                obs("NA", &["normal"]),
                obs("XYZ", &[]),
            ],
            "final",
            Some("2026-12-01T09:00:00+08:00"),
        );
        let c = candidates_of(
            &rules(),
            &stored(&h, 1),
            &r,
            IdentityMethod::ExactNationalId,
        );
        let keys: Vec<&str> = c.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(keys, ["FX-LAB-K", "FX-LAB-NA", "local:XYZ"]);
        assert_eq!(c[0].1, vec![0]);
        assert_eq!(c[2].2.local_code.as_deref(), Some("XYZ"));
        assert_eq!(c[0].2.report_id, format!("{h}#FX-LAB-K"));
        assert_eq!(c[0].2.identity, IdentityMethod::ExactNationalId);
        assert_eq!(c[0].2.status, CandidateStatus::Final);
        assert_eq!(c[0].2.category, Category::Lab);
        assert_eq!(c[0].2.patient.sex, Some(Sex::Female));
        assert!(c[0].2.critical.flagged, "critical_low is critical");
        assert!(!c[1].2.critical.flagged);
        assert!(c[0].2.times.specimen_collected_at.is_some());
    }

    #[test]
    fn versions_status_and_times_map_as_the_engine_expects() {
        let h = ContentHash::of(b"r");
        let r = lab(vec![obs("K", &[])], "final", None);
        let c = candidates_of(&rules(), &stored(&h, 2), &r, IdentityMethod::LocalOnly);
        assert_eq!(
            c[0].2.status,
            CandidateStatus::Amended,
            "a later final version"
        );
        // No reporting time in the report: the time huren received it.
        assert_eq!(
            c[0].2.times.reported_at.map(|t| t.to_rfc3339()),
            Some("2026-12-01T10:00:00+08:00".to_string())
        );
        for (status, want) in [
            ("preliminary", CandidateStatus::Preliminary),
            ("cancelled", CandidateStatus::Cancelled),
            ("corrected", CandidateStatus::Amended),
        ] {
            let r = lab(vec![obs("K", &[])], status, None);
            let c = candidates_of(&rules(), &stored(&h, 1), &r, IdentityMethod::LocalOnly);
            assert_eq!(c[0].2.status, want, "{status}");
        }
    }

    #[test]
    fn a_report_without_observations_is_one_candidate_with_its_service_code() {
        let h = ContentHash::of(b"r");
        let r = lab(vec![], "cancelled", None);
        let c = candidates_of(&rules(), &stored(&h, 1), &r, IdentityMethod::ExactLocalId);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, "report");
        assert!(c[0].1.is_empty());
        assert_eq!(c[0].2.local_code.as_deref(), Some("LYTE"));
        assert_eq!(c[0].2.content_hash, format!("{}#report", r.original));
    }

    #[test]
    fn sexes_as_hl7_and_fhir_write_them() {
        assert_eq!(sex(Some("M")), Some(Sex::Male));
        assert_eq!(sex(Some("female")), Some(Sex::Female));
        assert_eq!(sex(Some("U")), Some(Sex::Other));
        assert_eq!(sex(None), None);
    }
}
