//! huren's DICOM adapter: a received data set (a Part 10 file, or a raw data set with its
//! transfer syntax as C-STORE delivers it) → an [`Instance`] summary; the study report built
//! from the instances of a study ([`study`]); the text of structured reports ([`sr`]);
//! PNG previews ([`preview`]). The bytes are kept exactly as received: nothing here
//! transcodes. This crate does no I/O.

pub mod bulk;
pub mod guard;
pub mod identifier;
pub mod preview;
pub mod sr;
pub mod storage;
pub mod study;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::mem::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use huren_model::{ContentHash, SrReport};

pub use storage::{is_storage_class, STORAGE_SOP_CLASSES};

/// Implicit VR Little Endian, the default transfer syntax.
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
/// Explicit VR Little Endian.
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// Explicit VR Big Endian (retired).
pub const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
/// Our implementation class UID (written into the file meta groups we make).
pub const IMPLEMENTATION_CLASS_UID: &str = "1.2.826.0.1.3680043.10.1447.1";
/// Our implementation version name.
pub const IMPLEMENTATION_VERSION: &str = "HUREN_010";

/// Why a data set was refused. Each maps to a DIMSE status ([`DicomError::status`]).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DicomError {
    /// Not DICOM at all (no meta group and no sniffable data set).
    #[error("not DICOM: {0}")]
    NotDicom(String),
    /// A transfer syntax we cannot even read the data set of.
    #[error("unsupported transfer syntax {0}")]
    UnsupportedTransferSyntax(String),
    /// The bytes do not parse as a data set (truncated, broken encoding).
    #[error("cannot parse the data set: {0}")]
    Parse(String),
    /// The data set parses but lacks what its SOP class requires, or contradicts the
    /// command (SOP Class / Instance UID).
    #[error("data set does not match its SOP class: {0}")]
    Mismatch(String),
}

impl DicomError {
    /// The C-STORE failure status: `0xC000` cannot understand, `0xA900` data set does not
    /// match SOP class.
    pub fn status(&self) -> u16 {
        match self {
            DicomError::Mismatch(_) => 0xA900,
            _ => 0xC000,
        }
    }
}

/// What huren reads from one SOP instance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Instance {
    /// The index record (keys and query attributes); `original` and `institution` are filled
    /// by the caller that stores it ([`Instance::record_for`]).
    pub record: huren_model::InstanceRecord,
    /// Whether a Part 10 file meta group was present.
    pub had_meta: bool,
    /// Byte offset of the data set in the bytes parsed.
    pub dataset_offset: usize,
    /// The SR text when the instance is a structured report.
    pub sr: Option<SrReport>,
    /// Institution Name (0008,0080), for the study report.
    pub institution_name: Option<String>,
    /// Things coerced or ignored in the summary (never in the stored bytes): a non-empty list
    /// makes the C-STORE answer a warning (`0xB000`).
    pub warnings: Vec<String>,
}

impl Instance {
    /// The index record for the instance stored as `original` by `institution`.
    pub fn record_for(
        &self,
        original: ContentHash,
        size: u64,
        institution: &str,
    ) -> huren_model::InstanceRecord {
        let mut r = self.record.clone();
        r.original = original;
        r.size = size;
        r.institution = institution.to_string();
        r
    }
}

/// Where the data set starts in a Part 10 file, and what its meta group says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part10 {
    /// Offset of the first data set byte.
    pub dataset_offset: usize,
    /// Transfer Syntax UID (0002,0010).
    pub transfer_syntax: Option<String>,
    /// Media Storage SOP Class UID (0002,0002).
    pub sop_class_uid: Option<String>,
    /// Media Storage SOP Instance UID (0002,0003).
    pub sop_instance_uid: Option<String>,
}

/// Whether the bytes start like a Part 10 file (preamble + `DICM`, or `DICM` alone).
pub fn is_part10(b: &[u8]) -> bool {
    b.get(128..132) == Some(b"DICM") || b.starts_with(b"DICM")
}

fn trim_uid(s: &str) -> String {
    s.trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_string()
}

/// Walks the file meta group (always Explicit VR Little Endian) without trusting its group
/// length, so files without (0002,0000) work too.
pub fn split_part10(b: &[u8]) -> Result<Part10, DicomError> {
    let mut pos = if b.get(128..132) == Some(b"DICM") {
        132
    } else if b.starts_with(b"DICM") {
        4
    } else {
        return Err(DicomError::NotDicom("no DICM prefix".into()));
    };
    let mut out = Part10 {
        dataset_offset: pos,
        transfer_syntax: None,
        sop_class_uid: None,
        sop_instance_uid: None,
    };
    while let Some(h) = b.get(pos..pos + 8) {
        let group = u16::from_le_bytes([h[0], h[1]]);
        if group != 0x0002 {
            break;
        }
        let elem = u16::from_le_bytes([h[2], h[3]]);
        let vr = [h[4], h[5]];
        let (len, head) = if matches!(
            &vr,
            b"OB" | b"OW" | b"OF" | b"SQ" | b"UT" | b"UN" | b"OD" | b"OL" | b"OV" | b"UC" | b"UR"
        ) {
            let l = b
                .get(pos + 8..pos + 12)
                .ok_or_else(|| DicomError::Parse("file meta group truncated".into()))?;
            (u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize, 12)
        } else {
            (u16::from_le_bytes([h[6], h[7]]) as usize, 8)
        };
        if len == 0xFFFF_FFFF {
            return Err(DicomError::Parse(
                "undefined length in the file meta group".into(),
            ));
        }
        let v = b
            .get(pos + head..pos + head + len)
            .ok_or_else(|| DicomError::Parse("file meta group truncated".into()))?;
        let text = || trim_uid(&String::from_utf8_lossy(v));
        match elem {
            0x0002 => out.sop_class_uid = Some(text()),
            0x0003 => out.sop_instance_uid = Some(text()),
            0x0010 => out.transfer_syntax = Some(text()),
            _ => {}
        }
        pos += head + len;
    }
    out.dataset_offset = pos;
    Ok(out)
}

/// Guesses the transfer syntax of a raw data set (no meta group) from its first element.
pub fn sniff_transfer_syntax(b: &[u8]) -> Result<&'static str, DicomError> {
    let h = b
        .get(0..8)
        .ok_or_else(|| DicomError::NotDicom("too short for a data set".into()))?;
    let vr_ok = h[4].is_ascii_uppercase() && h[5].is_ascii_uppercase();
    let le_group = u16::from_le_bytes([h[0], h[1]]);
    let be_group = u16::from_be_bytes([h[0], h[1]]);
    let plausible = |g: u16| (0x0002..=0x0010).contains(&g) || g == 0x0020 || g == 0x0028;
    if plausible(le_group) {
        Ok(if vr_ok {
            EXPLICIT_VR_LE
        } else {
            IMPLICIT_VR_LE
        })
    } else if plausible(be_group) && vr_ok {
        Ok(EXPLICIT_VR_BE)
    } else {
        Err(DicomError::NotDicom(format!(
            "first bytes {:02x?} are neither a Part 10 header nor a data set element",
            &h[..4]
        )))
    }
}

/// Parses a file as received on disk or over DICOMweb: Part 10 (with or without preamble),
/// or a raw data set whose transfer syntax is sniffed.
pub fn parse_file(b: &[u8]) -> Result<Instance, DicomError> {
    if is_part10(b) {
        let p = split_part10(b)?;
        let ts = match &p.transfer_syntax {
            Some(ts) if !ts.is_empty() => ts.clone(),
            _ => sniff_transfer_syntax(&b[p.dataset_offset..])?.to_string(),
        };
        let outside = (
            p.sop_class_uid.as_deref(),
            p.sop_instance_uid.as_deref(),
            "the file meta group",
        );
        let mut i = parse_at(b, p.dataset_offset, &ts, outside)?;
        i.had_meta = true;
        if p.transfer_syntax.as_deref().unwrap_or("").is_empty() {
            i.warnings.push(format!(
                "file meta group has no transfer syntax; sniffed {ts}"
            ));
        }
        if let Some(c) = p.sop_class_uid.as_ref().filter(|c| !c.is_empty()) {
            if *c != i.record.sop_class_uid {
                return Err(DicomError::Mismatch(format!(
                    "meta group SOP class {c} but data set SOP class {}",
                    i.record.sop_class_uid
                )));
            }
        }
        Ok(i)
    } else {
        let ts = sniff_transfer_syntax(b)?;
        let mut i = parse_at(b, 0, ts, (None, None, ""))?;
        i.warnings.push(format!(
            "no file meta group; transfer syntax sniffed as {ts}"
        ));
        Ok(i)
    }
}

/// Reads a stored original (a Part 10 file, or a raw data set whose transfer syntax is
/// sniffed) into a dicom-rs object, behind the same structural guard and panic barrier as
/// ingest. Answers the object and its transfer syntax UID.
pub fn read_object(b: &[u8]) -> Result<(InMemDicomObject, String), DicomError> {
    let (offset, ts_uid) = if is_part10(b) {
        let p = split_part10(b)?;
        let ts = match p.transfer_syntax.as_deref() {
            Some(ts) if !ts.is_empty() => trim_uid(ts),
            _ => sniff_transfer_syntax(b.get(p.dataset_offset..).unwrap_or(&[]))?.to_string(),
        };
        (p.dataset_offset, ts)
    } else {
        (0, sniff_transfer_syntax(b)?.to_string())
    };
    let obj = read_data(b.get(offset..).unwrap_or(&[]), &ts_uid)?;
    Ok((obj, ts_uid))
}

/// A raw data set in `ts_uid` → a dicom-rs object: known transfer syntax, not empty, the
/// structural guard, and the parser behind a panic barrier.
pub(crate) fn read_data(data: &[u8], ts_uid: &str) -> Result<InMemDicomObject, DicomError> {
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .filter(|t| !t.is_unsupported())
        .ok_or_else(|| DicomError::UnsupportedTransferSyntax(ts_uid.to_string()))?;
    if data.is_empty() {
        return Err(DicomError::Parse("empty data set".into()));
    }
    guard::check(data, ts_uid)?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        InMemDicomObject::read_dataset_with_ts(data, ts)
    }))
    .map_err(|_| DicomError::Parse("the data set parser panicked".into()))?
    .map_err(|e| DicomError::Parse(error_chain(&e)))
}

/// Parses a raw data set in a known transfer syntax.
pub fn parse_dataset(b: &[u8], ts: &str) -> Result<Instance, DicomError> {
    parse_at(b, 0, ts, (None, None, ""))
}

/// The C-STORE path: parses the data set received in `ts` for the command's Affected SOP
/// Class and Instance UIDs; a data set whose UIDs contradict the command is a mismatch
/// (`0xA900`), one that lacks them takes the command's (with a warning).
pub fn parse_cstore(
    b: &[u8],
    ts: &str,
    sop_class: &str,
    sop_instance: &str,
) -> Result<Instance, DicomError> {
    let i = parse_at(
        b,
        0,
        ts,
        (Some(sop_class), Some(sop_instance), "the C-STORE command"),
    )?;
    let sop_class = trim_uid(sop_class);
    let sop_instance = trim_uid(sop_instance);
    if !sop_class.is_empty() && i.record.sop_class_uid != sop_class {
        return Err(DicomError::Mismatch(format!(
            "command SOP class {sop_class} but data set SOP class {}",
            i.record.sop_class_uid
        )));
    }
    if !sop_instance.is_empty() && i.record.sop_instance_uid != sop_instance {
        return Err(DicomError::Mismatch(format!(
            "command SOP instance {sop_instance} but data set SOP instance {}",
            i.record.sop_instance_uid
        )));
    }
    Ok(i)
}

fn parse_at(
    b: &[u8],
    offset: usize,
    ts_uid: &str,
    outside: Outside<'_>,
) -> Result<Instance, DicomError> {
    let ts_uid = trim_uid(ts_uid);
    let data = b.get(offset..).unwrap_or(&[]);
    let obj = read_data(data, &ts_uid)?;
    let mut inst = summarise(&obj, outside)?;
    inst.record.transfer_syntax = ts_uid;
    inst.record.dataset_hash = ContentHash::of(data);
    inst.dataset_offset = offset;
    Ok(inst)
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

pub(crate) fn text(o: &InMemDicomObject, t: Tag) -> Option<String> {
    let e = o.get(t)?;
    let v = if e.vr() == dicom_core::VR::UN {
        // Values written as UN (e.g. by a converter that lost the VRs) are the raw bytes of
        // the real value; for the UIDs and codes read here that is ASCII text.
        std::borrow::Cow::Owned(String::from_utf8_lossy(&e.to_bytes().ok()?).into_owned())
    } else {
        e.to_str().ok()?
    };
    let v = v.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!v.is_empty()).then(|| v.to_string())
}

fn int(o: &InMemDicomObject, t: Tag, warnings: &mut Vec<String>, name: &str) -> Option<i64> {
    let e = o.get(t)?;
    let s = e.to_str().ok()?;
    let s = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    if s.is_empty() {
        return None;
    }
    match e.to_int::<i64>() {
        Ok(v) => Some(v),
        Err(_) => {
            warnings.push(format!("{name} {s:?} is not a number; ignored"));
            None
        }
    }
}

/// `YYYYMMDD` kept when valid; anything else dropped with a warning.
fn date(o: &InMemDicomObject, t: Tag, warnings: &mut Vec<String>, name: &str) -> Option<String> {
    let s = text(o, t)?;
    let ok = s.len() == 8
        && s.bytes().all(|c| c.is_ascii_digit())
        && (1..=12).contains(&s[4..6].parse::<u32>().unwrap_or(0))
        && (1..=31).contains(&s[6..8].parse::<u32>().unwrap_or(0));
    if ok {
        Some(s)
    } else {
        warnings.push(format!("{name} {s:?} is not a DICOM date; ignored"));
        None
    }
}

fn time(o: &InMemDicomObject, t: Tag, warnings: &mut Vec<String>) -> Option<String> {
    let s = text(o, t)?;
    let digits: String = s.chars().take_while(|c| *c != '.').collect();
    if digits.len() >= 2 && digits.len() <= 6 && digits.bytes().all(|c| c.is_ascii_digit()) {
        Some(s)
    } else {
        warnings.push(format!("StudyTime {s:?} is not a DICOM time; ignored"));
        None
    }
}

/// A deterministic `2.25.` UID standing in for a missing one: derived from `what` and the
/// SOP Instance UID, so every re-send files the instance in the same place.
pub fn derived_uid(what: &str, sop_instance_uid: &str) -> String {
    let h = ContentHash::of(format!("{what}\0{sop_instance_uid}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.as_bytes()[..16]);
    format!("2.25.{}", u128::from_be_bytes(b))
}

/// SOP Class and Instance UIDs known outside the data set (file meta group, C-STORE
/// command), and where they came from.
type Outside<'a> = (Option<&'a str>, Option<&'a str>, &'a str);

fn summarise(o: &InMemDicomObject, outside: Outside<'_>) -> Result<Instance, DicomError> {
    let mut w = Vec::new();
    let need = |t: Tag, name: &str| {
        text(o, t).ok_or_else(|| DicomError::Mismatch(format!("{name} is missing")))
    };
    let mut from_outside = |t: Tag, name: &str, alt: Option<&str>| match (need(t, name), alt) {
        (Ok(v), _) => Ok(v),
        (Err(_), Some(a)) if !a.is_empty() => {
            w.push(format!(
                "{name} is missing in the data set; {a} taken from {}",
                outside.2
            ));
            Ok(a.to_string())
        }
        (Err(e), _) => Err(e),
    };
    let sop_class_uid = from_outside(tags::SOP_CLASS_UID, "SOP Class UID (0008,0016)", outside.0)?;
    let sop_instance_uid = from_outside(
        tags::SOP_INSTANCE_UID,
        "SOP Instance UID (0008,0018)",
        outside.1,
    )?;
    let derived = |t: Tag, name: &str, what: &str, w: &mut Vec<String>| match text(o, t) {
        Some(v) => v,
        None => {
            let d = derived_uid(what, &sop_instance_uid);
            w.push(format!("{name} is missing; filed under {d}"));
            d
        }
    };
    let study_instance_uid = derived(
        tags::STUDY_INSTANCE_UID,
        "Study Instance UID (0020,000D)",
        "study",
        &mut w,
    );
    let series_instance_uid = derived(
        tags::SERIES_INSTANCE_UID,
        "Series Instance UID (0020,000E)",
        "series",
        &mut w,
    );
    let patient_id = text(o, tags::PATIENT_ID).unwrap_or_default();
    if patient_id.is_empty() {
        w.push(
            "Patient ID (0010,0020) is empty; the study is filed under its Study Instance UID"
                .into(),
        );
    }
    let u32_of = |t: Tag| {
        o.get(t)
            .and_then(|e| e.to_int::<i64>().ok())
            .and_then(|v| u32::try_from(v).ok())
    };
    let record = huren_model::InstanceRecord {
        sop_instance_uid: sop_instance_uid.clone(),
        sop_class_uid,
        study_instance_uid,
        series_instance_uid,
        modality: text(o, tags::MODALITY),
        series_number: int(o, tags::SERIES_NUMBER, &mut w, "SeriesNumber"),
        instance_number: int(o, tags::INSTANCE_NUMBER, &mut w, "InstanceNumber"),
        series_description: text(o, tags::SERIES_DESCRIPTION),
        body_part: text(o, tags::BODY_PART_EXAMINED),
        patient_id,
        patient_id_issuer: text(o, tags::ISSUER_OF_PATIENT_ID),
        patient_name: text(o, tags::PATIENT_NAME)
            .map(|n| n.trim_end_matches(['=', '^']).to_string()),
        patient_sex: text(o, tags::PATIENT_SEX),
        patient_birth_date: date(o, tags::PATIENT_BIRTH_DATE, &mut w, "PatientBirthDate"),
        accession_number: text(o, tags::ACCESSION_NUMBER),
        study_id: text(o, tags::STUDY_ID),
        study_date: date(o, tags::STUDY_DATE, &mut w, "StudyDate"),
        study_time: time(o, tags::STUDY_TIME, &mut w),
        study_description: text(o, tags::STUDY_DESCRIPTION),
        referring_physician: text(o, tags::REFERRING_PHYSICIAN_NAME),
        rows: u32_of(tags::ROWS),
        columns: u32_of(tags::COLUMNS),
        frames: u32_of(tags::NUMBER_OF_FRAMES),
        ..Default::default()
    };
    let sr = sr::read_sr(o, &sop_instance_uid);
    Ok(Instance {
        record,
        had_meta: false,
        dataset_offset: 0,
        sr,
        institution_name: text(o, tags::INSTITUTION_NAME),
        warnings: w,
    })
}

/// Wraps a data set received in `ts` into a Part 10 file: preamble, `DICM`, a deterministic
/// file meta group (no time stamps, no AE titles, so the same data set always gives the same
/// bytes), then the data set bytes exactly as received.
pub fn to_part10(dataset: &[u8], ts: &str, sop_class: &str, sop_instance: &str) -> Vec<u8> {
    let mut out = part10_header(ts, sop_class, sop_instance, dataset.len());
    out.extend_from_slice(dataset);
    out
}

/// The preamble, `DICM` and file meta group [`to_part10`] puts in front of a data set, in a
/// buffer with room for `capacity` more bytes (the C-STORE receiver appends the data set's
/// PDVs straight after it, so a large instance is not copied once more).
pub fn part10_header(ts: &str, sop_class: &str, sop_instance: &str, capacity: usize) -> Vec<u8> {
    fn uid_bytes(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(0);
        }
        v
    }
    fn short(out: &mut Vec<u8>, elem: u16, vr: &[u8; 2], v: &[u8]) {
        out.extend_from_slice(&0x0002u16.to_le_bytes());
        out.extend_from_slice(&elem.to_le_bytes());
        out.extend_from_slice(vr);
        out.extend_from_slice(&(v.len() as u16).to_le_bytes());
        out.extend_from_slice(v);
    }
    let mut body = Vec::with_capacity(256);
    // (0002,0001) OB 00\01
    body.extend_from_slice(&0x0002u16.to_le_bytes());
    body.extend_from_slice(&0x0001u16.to_le_bytes());
    body.extend_from_slice(b"OB\0\0");
    body.extend_from_slice(&2u32.to_le_bytes());
    body.extend_from_slice(&[0, 1]);
    short(&mut body, 0x0002, b"UI", &uid_bytes(sop_class));
    short(&mut body, 0x0003, b"UI", &uid_bytes(sop_instance));
    short(&mut body, 0x0010, b"UI", &uid_bytes(ts));
    short(
        &mut body,
        0x0012,
        b"UI",
        &uid_bytes(IMPLEMENTATION_CLASS_UID),
    );
    let mut ver = IMPLEMENTATION_VERSION.as_bytes().to_vec();
    if ver.len() % 2 == 1 {
        ver.push(b' ');
    }
    short(&mut body, 0x0013, b"SH", &ver);
    let mut out = Vec::with_capacity(132 + 12 + body.len() + capacity);
    out.extend_from_slice(&[0u8; 128]);
    out.extend_from_slice(b"DICM");
    short(&mut out, 0x0000, b"UL", &(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part10_wrapper_round_trips() {
        let ds = fixtures::ct_dataset("1.2.3.4", "P1", "张^三");
        let f = to_part10(
            &ds,
            EXPLICIT_VR_LE,
            "1.2.840.10008.5.1.4.1.1.2",
            "1.2.3.4.1",
        );
        let p = split_part10(&f).unwrap();
        assert_eq!(p.transfer_syntax.as_deref(), Some(EXPLICIT_VR_LE));
        assert_eq!(&f[p.dataset_offset..], ds.as_slice());
        let i = parse_file(&f).unwrap();
        assert_eq!(i.record.patient_name.as_deref(), Some("张^三"));
        assert_eq!(i.record.dataset_hash, ContentHash::of(&ds));
        let raw = parse_file(&ds).unwrap();
        assert_eq!(raw.record.dataset_hash, i.record.dataset_hash);
        assert!(!raw.warnings.is_empty());
    }

    #[test]
    fn garbage_is_refused_not_panicking() {
        assert!(matches!(parse_file(b""), Err(DicomError::NotDicom(_))));
        assert!(matches!(
            parse_file(b"\x1f\x8b\x08\x00garbage"),
            Err(DicomError::NotDicom(_))
        ));
        let ds = fixtures::ct_dataset("1.2.3.4", "P1", "A");
        let cut = &ds[..ds.len() - 100];
        assert_eq!(
            parse_dataset(cut, EXPLICIT_VR_LE).unwrap_err().status(),
            0xC000
        );
    }

    #[test]
    fn missing_uids_are_a900_or_derived() {
        let o = fixtures::ct_object("1.2.3.4", "P1", "A");
        let mut o2 = o.clone();
        o2.remove_element(tags::SOP_INSTANCE_UID);
        let b = fixtures::encode(&o2, EXPLICIT_VR_LE);
        assert_eq!(
            parse_dataset(&b, EXPLICIT_VR_LE).unwrap_err().status(),
            0xA900
        );
        let mut o3 = o.clone();
        o3.remove_element(tags::STUDY_INSTANCE_UID);
        let b = fixtures::encode(&o3, EXPLICIT_VR_LE);
        let i = parse_dataset(&b, EXPLICIT_VR_LE).unwrap();
        assert!(i.record.study_instance_uid.starts_with("2.25."));
        assert_eq!(
            i.record.study_instance_uid,
            derived_uid("study", "1.2.3.4.1.1")
        );
        assert_eq!(i.warnings.len(), 1, "{:?}", i.warnings);
    }
}

pub mod fixtures;
