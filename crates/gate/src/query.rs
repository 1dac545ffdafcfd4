//! Query matching for C-FIND and QIDO-RS, from the sled index only (study, series and
//! instance rows; never the stored files).
//!
//! Matching (PS3.4 C.2.2.2): an empty key is a return key; a UI key is list-of-UID matching
//! (`\`-separated); DA/TM keys are single values or ranges (`A-B`, `-B`, `A-`); other keys
//! match exactly, or with `*`/`?` wildcards (Person Names case-insensitively); a key with
//! several values (`\`) matches any of them; Modalities in Study matches when any requested
//! modality is in the study. A key huren does not index is returned empty and not matched
//! on. An entity without a value for a matched key does not match.

use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use huren_model::InstanceRecord;
use huren_store::{SeriesRow, Store, StoreError, StudyRow};

/// Query/Retrieve level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// One answer per patient (Patient Root only).
    Patient,
    /// One answer per study.
    Study,
    /// One answer per series.
    Series,
    /// One answer per instance.
    Image,
}

impl Level {
    /// Parses (0008,0052) Query/Retrieve Level.
    pub fn parse(s: &str) -> Option<Level> {
        match s.trim() {
            "PATIENT" => Some(Level::Patient),
            "STUDY" => Some(Level::Study),
            "SERIES" => Some(Level::Series),
            "IMAGE" => Some(Level::Image),
            _ => None,
        }
    }

    /// Its code string.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Patient => "PATIENT",
            Level::Study => "STUDY",
            Level::Series => "SERIES",
            Level::Image => "IMAGE",
        }
    }
}

/// One attribute of an answer; multiple values are joined by `\`.
#[derive(Clone, Debug, PartialEq)]
pub struct Attr {
    /// The tag.
    pub tag: Tag,
    /// Its VR.
    pub vr: VR,
    /// Its value (`None`: unknown for this entity).
    pub value: Option<String>,
}

/// One key of a query: an attribute and the value to match (empty: return only).
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    /// The tag.
    pub tag: Tag,
    /// The value to match, as sent.
    pub value: String,
}

fn a(tag: Tag, vr: VR, value: Option<impl ToString>) -> Attr {
    Attr {
        tag,
        vr,
        value: value.map(|v| v.to_string()).filter(|v| !v.is_empty()),
    }
}

fn patient_attrs(s: &StudyRow, out: &mut Vec<Attr>) {
    out.push(a(tags::PATIENT_ID, VR::LO, Some(&s.patient_id)));
    out.push(a(
        tags::ISSUER_OF_PATIENT_ID,
        VR::LO,
        s.patient_id_issuer.as_ref(),
    ));
    out.push(a(tags::PATIENT_NAME, VR::PN, s.patient_name.as_ref()));
    out.push(a(tags::PATIENT_SEX, VR::CS, s.patient_sex.as_ref()));
    out.push(a(
        tags::PATIENT_BIRTH_DATE,
        VR::DA,
        s.patient_birth_date.as_ref(),
    ));
}

/// The attributes of a study answer.
pub fn study_attrs(s: &StudyRow) -> Vec<Attr> {
    let mut out = Vec::with_capacity(20);
    patient_attrs(s, &mut out);
    out.push(a(
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        Some(&s.study_instance_uid),
    ));
    out.push(a(tags::STUDY_DATE, VR::DA, s.study_date.as_ref()));
    out.push(a(tags::STUDY_TIME, VR::TM, s.study_time.as_ref()));
    out.push(a(
        tags::ACCESSION_NUMBER,
        VR::SH,
        s.accession_number.as_ref(),
    ));
    out.push(a(tags::STUDY_ID, VR::SH, s.study_id.as_ref()));
    out.push(a(
        tags::STUDY_DESCRIPTION,
        VR::LO,
        s.study_description.as_ref(),
    ));
    out.push(a(
        tags::REFERRING_PHYSICIAN_NAME,
        VR::PN,
        s.referring_physician.as_ref(),
    ));
    out.push(a(
        tags::MODALITIES_IN_STUDY,
        VR::CS,
        Some(s.modalities.join("\\")),
    ));
    out.push(a(
        tags::SOP_CLASSES_IN_STUDY,
        VR::UI,
        Some(s.sop_classes.join("\\")),
    ));
    out.push(a(
        tags::NUMBER_OF_STUDY_RELATED_SERIES,
        VR::IS,
        Some(s.series_count),
    ));
    out.push(a(
        tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
        VR::IS,
        Some(s.instance_count),
    ));
    out.push(a(tags::INSTITUTION_NAME, VR::LO, Some(&s.institution)));
    out
}

/// The attributes of a series answer (with its study's).
pub fn series_attrs(st: &StudyRow, s: &SeriesRow) -> Vec<Attr> {
    let mut out = study_attrs(st);
    out.push(a(
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        Some(&s.series_instance_uid),
    ));
    out.push(a(tags::MODALITY, VR::CS, s.modality.as_ref()));
    out.push(a(tags::SERIES_NUMBER, VR::IS, s.series_number));
    out.push(a(
        tags::SERIES_DESCRIPTION,
        VR::LO,
        s.series_description.as_ref(),
    ));
    out.push(a(tags::BODY_PART_EXAMINED, VR::CS, s.body_part.as_ref()));
    out.push(a(
        tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
        VR::IS,
        Some(s.instance_count),
    ));
    out
}

/// The attributes of an instance answer (with its study's and series').
pub fn image_attrs(st: &StudyRow, i: &InstanceRecord) -> Vec<Attr> {
    let mut out = study_attrs(st);
    out.push(a(
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        Some(&i.series_instance_uid),
    ));
    out.push(a(tags::MODALITY, VR::CS, i.modality.as_ref()));
    out.push(a(tags::SERIES_NUMBER, VR::IS, i.series_number));
    out.push(a(
        tags::SERIES_DESCRIPTION,
        VR::LO,
        i.series_description.as_ref(),
    ));
    out.push(a(tags::BODY_PART_EXAMINED, VR::CS, i.body_part.as_ref()));
    out.push(a(tags::SOP_INSTANCE_UID, VR::UI, Some(&i.sop_instance_uid)));
    out.push(a(tags::SOP_CLASS_UID, VR::UI, Some(&i.sop_class_uid)));
    out.push(a(tags::INSTANCE_NUMBER, VR::IS, i.instance_number));
    out.push(a(tags::ROWS, VR::US, i.rows));
    out.push(a(tags::COLUMNS, VR::US, i.columns));
    out.push(a(tags::NUMBER_OF_FRAMES, VR::IS, i.frames));
    out.push(a(
        tags::AVAILABLE_TRANSFER_SYNTAX_UID,
        VR::UI,
        Some(&i.transfer_syntax),
    ));
    out
}

fn patient_row(studies: &[&StudyRow]) -> Vec<Attr> {
    let mut out = Vec::new();
    if let Some(first) = studies.first() {
        patient_attrs(first, &mut out);
    }
    let series: u32 = studies.iter().map(|s| s.series_count).sum();
    let inst: u32 = studies.iter().map(|s| s.instance_count).sum();
    out.push(a(
        tags::NUMBER_OF_PATIENT_RELATED_STUDIES,
        VR::IS,
        Some(studies.len()),
    ));
    out.push(a(
        tags::NUMBER_OF_PATIENT_RELATED_SERIES,
        VR::IS,
        Some(series),
    ));
    out.push(a(
        tags::NUMBER_OF_PATIENT_RELATED_INSTANCES,
        VR::IS,
        Some(inst),
    ));
    out
}

/// `*` any run, `?` one character.
pub fn wildcard(pattern: &[char], value: &[char]) -> bool {
    let (mut p, mut v) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while v < value.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == value[v]) {
            p += 1;
            v += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            mark = v;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            v = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

fn range_match(key: &str, value: &str) -> bool {
    let digits = |s: &str| -> String { s.chars().filter(|c| c.is_ascii_digit()).collect() };
    let v = digits(value);
    match key.split_once('-') {
        None => {
            let k = digits(key);
            !k.is_empty() && v.starts_with(&k)
        }
        Some((lo, hi)) => {
            let (lo, hi) = (digits(lo), digits(hi));
            (lo.is_empty() || v.as_str() >= lo.as_str())
                && (hi.is_empty() || v.get(..hi.len().min(v.len())).unwrap_or("") <= hi.as_str())
        }
    }
}

fn one_match(tag: Tag, vr: VR, key: &str, value: &str) -> bool {
    let key = key.trim();
    match vr {
        VR::UI => value.split('\\').any(|v| v.trim() == key),
        VR::DA | VR::TM | VR::DT => range_match(key, value),
        _ if tag == tags::MODALITIES_IN_STUDY => value.split('\\').any(|v| v.trim() == key),
        VR::PN => {
            let k: Vec<char> = key.to_lowercase().chars().collect();
            let v: Vec<char> = value.trim().to_lowercase().chars().collect();
            wildcard(&k, &v)
        }
        _ => {
            let k: Vec<char> = key.chars().collect();
            let v: Vec<char> = value.trim().chars().collect();
            wildcard(&k, &v)
        }
    }
}

/// Whether an answer's attributes satisfy every matching key (keys without a value, and
/// keys not in `attrs`, do not constrain).
pub fn matches(attrs: &[Attr], keys: &[Key]) -> bool {
    keys.iter().all(|k| {
        let want = k.value.trim_matches(|c: char| c == ' ' || c == '\0');
        if want.is_empty() || want == "*" {
            return true;
        }
        let Some(at) = attrs.iter().find(|a| a.tag == k.tag) else {
            return true;
        };
        let Some(have) = at.value.as_deref() else {
            return false;
        };
        if at.vr == VR::UI {
            // List of UID matching.
            return want.split('\\').any(|w| one_match(k.tag, at.vr, w, have));
        }
        if matches!(at.vr, VR::DA | VR::TM | VR::DT) {
            return one_match(k.tag, at.vr, want, have);
        }
        want.split('\\').any(|w| one_match(k.tag, at.vr, w, have))
    })
}

fn key(keys: &[Key], tag: Tag) -> Option<&str> {
    keys.iter()
        .find(|k| k.tag == tag)
        .map(|k| k.value.trim_matches(|c: char| c == ' ' || c == '\0'))
        .filter(|v| !v.is_empty() && *v != "*")
}

/// The studies worth looking at: by Study UID(s), else by exact Patient ID, else all.
fn candidate_studies(store: &Store, keys: &[Key]) -> Result<Vec<StudyRow>, StoreError> {
    if let Some(uids) = key(keys, tags::STUDY_INSTANCE_UID) {
        let mut out = Vec::new();
        for u in uids.split('\\') {
            if let Some(s) = store.study(u.trim())? {
                out.push(s);
            }
        }
        return Ok(out);
    }
    match key(keys, tags::PATIENT_ID) {
        Some(pid) if !pid.contains(['*', '?', '\\']) => store.studies(Some(pid)),
        _ => store.studies(None),
    }
}

/// Runs a query at `level`: every matching answer's attributes, in index order, after
/// skipping `offset` and at most `limit`, of the studies `allow` admits (the gate's scope:
/// see [`crate::SearchScope::find`], the only caller).
pub(crate) fn find(
    store: &Store,
    level: Level,
    keys: &[Key],
    offset: usize,
    limit: usize,
    allow: &dyn Fn(&StudyRow) -> bool,
) -> Result<Vec<Vec<Attr>>, StoreError> {
    let mut out = Vec::new();
    let mut skipped = 0usize;
    let mut push = |attrs: Vec<Attr>, out: &mut Vec<Vec<Attr>>| -> bool {
        if skipped < offset {
            skipped += 1;
        } else {
            out.push(attrs);
        }
        out.len() < limit
    };
    let mut studies = candidate_studies(store, keys)?;
    studies.retain(|s| allow(s));
    match level {
        Level::Patient => {
            let mut by_patient: std::collections::BTreeMap<
                (String, Option<String>),
                Vec<&StudyRow>,
            > = Default::default();
            for s in &studies {
                by_patient
                    .entry((s.patient_id.clone(), s.patient_id_issuer.clone()))
                    .or_default()
                    .push(s);
            }
            for rows in by_patient.values() {
                let attrs = patient_row(rows);
                if matches(&attrs, keys) && !push(attrs, &mut out) {
                    break;
                }
            }
        }
        Level::Study => {
            for s in &studies {
                let attrs = study_attrs(s);
                if matches(&attrs, keys) && !push(attrs, &mut out) {
                    break;
                }
            }
        }
        Level::Series => {
            'studies: for s in &studies {
                if !matches(&study_attrs(s), keys) {
                    continue;
                }
                let wanted = key(keys, tags::SERIES_INSTANCE_UID);
                for se in store.series_of_study(&s.study_instance_uid)? {
                    if wanted
                        .is_some_and(|w| !w.split('\\').any(|u| u.trim() == se.series_instance_uid))
                    {
                        continue;
                    }
                    let attrs = series_attrs(s, &se);
                    if matches(&attrs, keys) && !push(attrs, &mut out) {
                        break 'studies;
                    }
                }
            }
        }
        Level::Image => {
            if let Some(uids) = key(keys, tags::SOP_INSTANCE_UID) {
                // Straight to the instance rows.
                for u in uids.split('\\') {
                    let Some(i) = store.instance(u.trim())? else {
                        continue;
                    };
                    let Some(s) = store.study(&i.study_instance_uid)?.filter(|s| allow(s)) else {
                        continue;
                    };
                    let attrs = image_attrs(&s, &i);
                    if matches(&attrs, keys) && !push(attrs, &mut out) {
                        break;
                    }
                }
                return Ok(out);
            }
            'studies: for s in &studies {
                if !matches(&study_attrs(s), keys) {
                    continue;
                }
                for i in store.instances_of_study(&s.study_instance_uid)? {
                    let attrs = image_attrs(s, &i);
                    if matches(&attrs, keys) && !push(attrs, &mut out) {
                        break 'studies;
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(p: &str, v: &str) -> bool {
        wildcard(
            &p.chars().collect::<Vec<_>>(),
            &v.chars().collect::<Vec<_>>(),
        )
    }

    #[test]
    fn wildcards_and_ranges() {
        assert!(w("张*", "张^三"));
        assert!(w("*^三", "张^三"));
        assert!(w("FX000?", "FX0001"));
        assert!(!w("FX000?", "FX00012"));
        assert!(w("*", ""));
        assert!(!w("A*B", "ACBD"));
        assert!(range_match("20240101-20241231", "20240315"));
        assert!(!range_match("20240101-20241231", "20250101"));
        assert!(range_match("-20240101", "20231231"));
        assert!(range_match("20240101-", "20240101"));
        assert!(range_match("20240315", "20240315"));
        assert!(!range_match("20240315", "20240316"));
    }

    #[test]
    fn matching_keys() {
        let st = StudyRow {
            study_instance_uid: "1.2.3".into(),
            patient_id: "FX0001".into(),
            patient_name: Some("Zhang^San".into()),
            study_date: Some("20240315".into()),
            modalities: vec!["CT".into(), "SR".into()],
            ..Default::default()
        };
        let attrs = study_attrs(&st);
        let k = |tag, v: &str| Key {
            tag,
            value: v.into(),
        };
        assert!(matches(&attrs, &[k(tags::PATIENT_NAME, "zhang*")]));
        assert!(matches(&attrs, &[k(tags::MODALITIES_IN_STUDY, "MR\\CT")]));
        assert!(!matches(&attrs, &[k(tags::MODALITIES_IN_STUDY, "MR")]));
        assert!(matches(
            &attrs,
            &[k(tags::STUDY_INSTANCE_UID, "9.9\\1.2.3")]
        ));
        assert!(!matches(&attrs, &[k(tags::ACCESSION_NUMBER, "A1")]));
        assert!(matches(&attrs, &[k(tags::ACCESSION_NUMBER, "")]));
        assert!(matches(&attrs, &[k(tags::STUDY_DATE, "2024-")]));
    }
}
