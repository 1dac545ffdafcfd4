//! The per-study report. A study grows as its instances arrive: each received instance that
//! changes the study (a new instance, a replaced one, an SR) makes a new version of the
//! study's report on the chain `imaging|INSTITUTION|STUDY_UID`; the store supersedes the
//! previous version. An identical re-send changes nothing and makes no version.

use huren_model::{
    ContentHash, ImagingBody, ImagingSeries, OrderIds, PatientRef, Report, ReportKind,
    ReportStatus, Source, SystemKind,
};

use crate::Instance;

/// How the instance relates to what the store already holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A SOP Instance UID not seen before in this study.
    New,
    /// A known SOP Instance UID with different data set bytes (kept as a new version).
    Replaced,
}

/// Who sent the instance and when, for the report's source and times.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    /// Institution code.
    pub institution: &'a str,
    /// Calling AE title (or `DICOMweb`, `cli`).
    pub application: Option<&'a str>,
    /// UTC offset of the institution's local times, e.g. `+08:00`.
    pub utc_offset: &'a str,
}

fn sorted_insert(v: &mut Vec<String>, s: Option<&String>) {
    if let Some(s) = s {
        if let Err(pos) = v.binary_search(s) {
            v.insert(pos, s.clone());
        }
    }
}

fn da(s: &str) -> Option<String> {
    (s.len() == 8).then(|| format!("{}-{}-{}", &s[0..4], &s[4..6], &s[6..8]))
}

fn tm(s: &str) -> Option<String> {
    let d: String = s
        .chars()
        .take_while(|c| *c != '.')
        .filter(|c| c.is_ascii_digit())
        .collect();
    if d.len() < 2 {
        return None;
    }
    let d = format!("{d:0<6}");
    Some(format!("{}:{}:{}", &d[0..2], &d[2..4], &d[4..6]))
}

/// The study body after `inst` is added to `prev`.
pub fn merge(prev: Option<&ImagingBody>, inst: &Instance, change: Change) -> ImagingBody {
    let r = &inst.record;
    let mut b = prev.cloned().unwrap_or_else(|| ImagingBody {
        study_instance_uid: r.study_instance_uid.clone(),
        ..Default::default()
    });
    // Study-level attributes: the first non-empty value wins, later instances fill gaps.
    fn fill(slot: &mut Option<String>, v: Option<String>) {
        if slot.is_none() {
            *slot = v;
        }
    }
    fill(
        &mut b.patient_id,
        Some(r.patient_id.clone()).filter(|p| !p.is_empty()),
    );
    fill(&mut b.patient_id_issuer, r.patient_id_issuer.clone());
    fill(&mut b.patient_name, r.patient_name.clone());
    fill(&mut b.patient_sex, r.patient_sex.clone());
    fill(
        &mut b.patient_birth_date,
        r.patient_birth_date.as_deref().and_then(da),
    );
    fill(&mut b.accession_number, r.accession_number.clone());
    fill(&mut b.study_id, r.study_id.clone());
    fill(&mut b.study_date, r.study_date.as_deref().and_then(da));
    fill(&mut b.study_time, r.study_time.as_deref().and_then(tm));
    fill(&mut b.description, r.study_description.clone());
    fill(&mut b.referring_physician, r.referring_physician.clone());
    fill(&mut b.institution_name, inst.institution_name.clone());
    sorted_insert(&mut b.modalities, r.modality.as_ref());
    sorted_insert(&mut b.body_parts, r.body_part.as_ref());
    match change {
        Change::New => {
            b.instance_count += 1;
            match b.series.iter_mut().find(|s| s.uid == r.series_instance_uid) {
                Some(s) => {
                    s.instance_count += 1;
                    fill(&mut s.modality, r.modality.clone());
                    fill(&mut s.description, r.series_description.clone());
                    fill(&mut s.body_part, r.body_part.clone());
                    if s.number.is_none() {
                        s.number = r.series_number;
                    }
                }
                None => {
                    b.series.push(ImagingSeries {
                        uid: r.series_instance_uid.clone(),
                        number: r.series_number,
                        modality: r.modality.clone(),
                        description: r.series_description.clone(),
                        body_part: r.body_part.clone(),
                        instance_count: 1,
                    });
                    b.series.sort_by(|x, y| {
                        x.number
                            .unwrap_or(i64::MAX)
                            .cmp(&y.number.unwrap_or(i64::MAX))
                            .then_with(|| x.uid.cmp(&y.uid))
                    });
                }
            }
            b.series_count = b.series.len() as u32;
        }
        Change::Replaced => sorted_insert(&mut b.replaced_instances, Some(&r.sop_instance_uid)),
    }
    if let Some(sr) = &inst.sr {
        // The latest SR of the study is its report text.
        b.sr = Some(sr.clone());
    }
    b
}

/// The local patient ID the report is filed under: Patient ID, else `STUDY-<Study UID>`.
pub fn local_patient_id(body: &ImagingBody) -> String {
    body.patient_id
        .clone()
        .unwrap_or_else(|| format!("STUDY-{}", body.study_instance_uid))
}

/// The study report for `body`; `original` is the instance that made this version,
/// `prev_status` the status of the version it supersedes and `new_sr` whether that instance
/// is an SR. Final when the study's SR is complete and verified; a later final SR makes it
/// corrected; otherwise preliminary. A study signed in the reading centre keeps its signed
/// status (and its reader's impression as the conclusion) when later instances arrive.
pub fn report(
    body: ImagingBody,
    ctx: &Context<'_>,
    original: ContentHash,
    prev_status: Option<ReportStatus>,
    new_sr: bool,
) -> Report {
    let status = match (&body.sr, prev_status) {
        // Signed in the reading centre: an instance arriving later keeps the signed status.
        (_, Some(st @ (ReportStatus::Final | ReportStatus::Corrected)))
            if body.reading.is_some() =>
        {
            st
        }
        _ if body.reading.is_some() => ReportStatus::Final,
        (Some(sr), Some(ReportStatus::Final | ReportStatus::Corrected))
            if sr.is_final() && new_sr =>
        {
            ReportStatus::Corrected
        }
        (Some(sr), Some(ReportStatus::Corrected)) if sr.is_final() => ReportStatus::Corrected,
        (Some(sr), _) if sr.is_final() => ReportStatus::Final,
        _ => ReportStatus::Preliminary,
    };
    let performed_at = body.study_date.as_ref().map(|d| {
        format!(
            "{d}T{}{}",
            body.study_time.as_deref().unwrap_or("00:00:00"),
            ctx.utc_offset
        )
    });
    let reported_at = body
        .sr
        .as_ref()
        .and_then(|s| s.content_time.as_ref())
        .map(|t| format!("{t}{}", ctx.utc_offset));
    let conclusion = match &body.reading {
        Some(g) if !g.impression.is_empty() => Some(g.impression.join("；")),
        Some(g) => g.findings.clone(),
        None => body.sr.as_ref().and_then(|s| s.impression.clone()),
    };
    Report {
        kind: ReportKind::Imaging,
        source: Source {
            institution: ctx.institution.to_string(),
            system: SystemKind::Pacs,
            application: ctx.application.map(str::to_string),
            source_key: body.study_instance_uid.clone(),
        },
        patient: PatientRef {
            institution: ctx.institution.to_string(),
            local_id: local_patient_id(&body),
            assigning_authority: body.patient_id_issuer.clone(),
            national_id_key: None,
            name: body.patient_name.clone(),
            sex: body.patient_sex.clone(),
            birth_date: body.patient_birth_date.clone(),
        },
        status,
        order: OrderIds {
            placer: None,
            filler: body.accession_number.clone(),
        },
        specimen_collected_at: None,
        performed_at,
        reported_at,
        lab: None,
        ecg: None,
        imaging: Some(Box::new(body)),
        conclusion,
        original,
        attachments: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn a_study_grows_and_takes_its_sr() {
        let study = "1.2.3";
        let a = crate::parse_file(&fixtures::part10(&fixtures::ct_slice(
            study,
            "P1",
            "张^三",
            1,
            "ISO_IR 192",
        )))
        .unwrap();
        let b = crate::parse_file(&fixtures::part10(&fixtures::ct_slice(
            study,
            "P1",
            "张^三",
            2,
            "ISO_IR 192",
        )))
        .unwrap();
        let sr = crate::parse_file(&fixtures::part10(&fixtures::sr_object(
            study, "P1", "张^三", true,
        )))
        .unwrap();
        let ctx = Context {
            institution: "FX-ZX",
            application: Some("PACS"),
            utc_offset: "+08:00",
        };
        let b1 = merge(None, &a, Change::New);
        assert_eq!(b1.institution_name.as_deref(), Some("奉贤区中心医院"));
        let r1 = report(b1.clone(), &ctx, ContentHash::of(b"a"), None, false);
        assert_eq!(r1.status, ReportStatus::Preliminary);
        assert_eq!(
            r1.performed_at.as_deref(),
            Some("2025-11-03T09:30:00+08:00")
        );
        let b2 = merge(Some(&b1), &b, Change::New);
        let b3 = merge(Some(&b2), &sr, Change::New);
        let b4 = merge(Some(&b3), &b, Change::Replaced);
        assert_eq!((b4.series_count, b4.instance_count), (2, 3));
        assert_eq!(b4.modalities, vec!["CT".to_string(), "SR".to_string()]);
        assert_eq!(b4.series[0].instance_count, 2);
        assert_eq!(b4.replaced_instances, vec!["1.2.3.1.2".to_string()]);
        assert_eq!(b4.patient_birth_date.as_deref(), Some("1980-01-01"));
        let r4 = report(b4, &ctx, ContentHash::of(b"b"), Some(r1.status), false);
        assert_eq!(r4.status, ReportStatus::Final);
        assert!(r4.conclusion.unwrap().contains("磨玻璃结节"));
        assert_eq!(r4.patient.local_key(), "FX-ZX:P1");
        assert_eq!(r4.source.chain_key(r4.kind), "imaging|FX-ZX|1.2.3");
    }
}
