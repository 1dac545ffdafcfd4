//! ORU^R01, ADT A01 / A03 / A04 visits and ADT A08 / A40 → the report model.

use huren_model::{
    AbnormalFlag, ContentHash, LabBody, LabObservation, OrderIds, PatientRef, Report, ReportKind,
    ReportStatus, Source, SystemKind,
};

use crate::diag::{Diagnostic, RejectKind, Rejection, Severity};
use crate::parse::{component_of, nth_piece, MessageHeader};
use crate::{parse_timestamp, Message, Segment};

/// Per-sender settings from the configuration.
#[derive(Clone, Debug)]
pub struct SenderConfig {
    /// Institution code the sender belongs to.
    pub institution: String,
    /// Charset when MSH-18 is empty.
    pub charset: Option<crate::Charset>,
    /// Time zone of timestamps without offset.
    pub time_zone: chrono_tz::Tz,
    /// Secret for national-ID keys.
    pub national_id_secret: String,
}

impl Default for SenderConfig {
    /// Institution `CHECK`, charset from MSH-18 else UTF-8, Asia/Shanghai, an empty secret
    /// (national-ID keys made with it are only good for display, never for storage).
    fn default() -> Self {
        SenderConfig {
            institution: "CHECK".into(),
            charset: None,
            time_zone: chrono_tz::Asia::Shanghai,
            national_id_secret: String::new(),
        }
    }
}

/// What a message means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// ORU^R01: one lab report per OBR group.
    Lab(Vec<Report>),
    /// ADT A08 (also A28, A31): demographics update.
    PatientUpdate(PatientRef),
    /// ADT A01 / A04 (admitted or registered) and A03 (discharged): a visit event with its
    /// time; its PID links identities as an update does.
    Visit(Visit),
    /// ADT A40: `surviving` (PID-3) absorbs each `merged` (MRG-1).
    PatientMerge {
        /// The surviving patient.
        surviving: PatientRef,
        /// The retired identifiers.
        merged: Vec<PatientRef>,
    },
}

/// What happened at a visit (ADT trigger event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VisitEvent {
    /// A01: admitted (or, in a Chinese HIS, often the emergency visit).
    Admitted,
    /// A04: an outpatient or emergency visit registered.
    Registered,
    /// A03: discharged, the visit ended.
    Discharged,
}

impl VisitEvent {
    /// The patient came in (A01, A04) rather than left (A03).
    pub fn is_arrival(self) -> bool {
        !matches!(self, VisitEvent::Discharged)
    }
}

/// A visit event: who, what and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Visit {
    /// PID-3 (with the national-ID key when sent).
    pub patient: PatientRef,
    /// The trigger event.
    pub event: VisitEvent,
    /// RFC 3339 with offset: PV1-44 (A01/A04) or PV1-45 (A03), else EVN-6, else EVN-2.
    pub at: String,
    /// The field `at` came from (`PV1-44`, `PV1-45`, `EVN-6`, `EVN-2`).
    pub at_field: &'static str,
}

/// An accepted message.
#[derive(Clone, Debug)]
pub struct Interpreted {
    /// Its header.
    pub header: MessageHeader,
    /// Its meaning.
    pub content: Content,
    /// Oddities tolerated.
    pub warnings: Vec<Diagnostic>,
}

/// Identifier type codes (CX.5) and assigning authorities (CX.4.1) taken as the national ID
/// (居民身份证号). The value is turned into a keyed hash at once and never kept.
const NATIONAL_TYPES: &[&str] = &["NI", "NNCHN", "SFZ", "IDCARD"];
const NATIONAL_AUTHORITIES: &[&str] = &["NNCHN", "CHN", "SFZ"];

struct Ctx<'a> {
    cfg: &'a SenderConfig,
    header: MessageHeader,
    diags: Vec<Diagnostic>,
    /// Segments seen so far per ID (for `OBX[3]` style locations).
    counts: Vec<(&'static str, usize)>,
    /// The last timestamp converted (OBX-14 is usually the same for every OBX).
    last_ts: Option<(String, String)>,
}

impl Ctx<'_> {
    fn nth(&mut self, id: &'static str) -> usize {
        match self.counts.iter_mut().find(|(s, _)| *s == id) {
            Some((_, c)) => {
                *c += 1;
                *c
            }
            None => {
                self.counts.push((id, 1));
                1
            }
        }
    }
    fn warn(
        &mut self,
        seg: &Segment<'_>,
        nth: usize,
        field: usize,
        code: u16,
        msg: impl Into<String>,
    ) {
        self.diags.push(Diagnostic::at(
            Severity::Warning,
            seg.id(),
            nth,
            seg.line,
            field,
            code,
            msg,
        ));
    }
    fn error(
        &mut self,
        seg: &Segment<'_>,
        nth: usize,
        field: usize,
        code: u16,
        msg: impl Into<String>,
    ) {
        self.diags.push(Diagnostic::at(
            Severity::Error,
            seg.id(),
            nth,
            seg.line,
            field,
            code,
            msg,
        ));
    }
    fn ts(&mut self, seg: &Segment<'_>, nth: usize, field: usize) -> Option<String> {
        let raw = seg.component(field, 1);
        let raw = raw.trim();
        if raw.is_empty() {
            return None;
        }
        if let Some((r, t)) = &self.last_ts {
            if r == raw {
                return Some(t.clone());
            }
        }
        match parse_timestamp(raw, self.cfg.time_zone) {
            Ok(t) => {
                self.last_ts = Some((raw.to_string(), t.clone()));
                Some(t)
            }
            Err(e) => {
                self.warn(seg, nth, field, 102, format!("{e}; ignored"));
                None
            }
        }
    }
}

fn opt(s: std::borrow::Cow<'_, str>) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn is_cjk(s: &str) -> bool {
    !s.is_ascii()
}

/// The institution-local identifier (CX.1 and CX.4.1) and the national-ID key found in the
/// repetitions of a CX field (PID-3, MRG-1). A national ID is turned into its keyed hash at
/// once; the raw value is never kept.
type Identifiers = (Option<(String, Option<String>)>, Option<String>);

/// The repetitions of a CX field, each as (ID, assigning authority, whether it is a national
/// ID by its type or authority).
fn cx_ids(seg: &Segment<'_>, field: usize) -> Vec<(String, String, bool)> {
    let d = *seg.delimiters_ref();
    let cs = seg.charset_of();
    let mut out = Vec::new();
    for rep in seg.repetitions(field).take(32) {
        let id = component_of(rep, 1, &d, cs).trim().to_string();
        if id.is_empty() {
            continue;
        }
        // CX.4.1: the namespace ID of the assigning authority (HD).
        let comp4 = nth_piece(rep, d.component, 3).unwrap_or("");
        let authority = crate::unescape(nth_piece(comp4, d.subcomponent, 0).unwrap_or(""), &d, cs)
            .0
            .trim()
            .to_string();
        let auth_uc = authority.to_uppercase();
        let typ = component_of(rep, 5, &d, cs).trim().to_uppercase();
        let is_national = NATIONAL_TYPES.contains(&typ.as_str())
            || NATIONAL_AUTHORITIES.contains(&auth_uc.as_str())
            || (typ.starts_with("NN") && auth_uc.ends_with("CHN"));
        out.push((id, authority, is_national));
    }
    out
}

/// The national IDs, in the clear, that a message's PID segments carry (PID-3), for the one
/// reader that may show them (a WS/T 500 header for an authorised caller). The caller checks
/// each against the report's keyed hash; the store never keeps them.
pub fn national_ids(msg: &Message) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for seg in msg.segments().filter(|s| s.id() == "PID") {
        for (id, _, national) in cx_ids(&seg, 3) {
            if national && !out.contains(&id) {
                out.push(id);
            }
        }
    }
    out
}

fn identifiers(ctx: &Ctx<'_>, seg: &Segment<'_>, field: usize) -> Identifiers {
    let mut local: Option<(String, Option<String>)> = None;
    let mut national: Option<String> = None;
    for (id, authority, is_national) in cx_ids(seg, field) {
        if is_national {
            national.get_or_insert_with(|| {
                huren_model::national_id_key(&ctx.cfg.national_id_secret, &id)
            });
        } else if local.is_none() {
            local = Some((id, (!authority.is_empty()).then_some(authority)));
        }
    }
    (local, national)
}

fn patient(ctx: &mut Ctx<'_>, pid: &Segment<'_>, nth: usize) -> Option<PatientRef> {
    let (mut local, national) = identifiers(ctx, pid, 3);
    // PID-2 (external ID, older versions) when PID-3 has no local ID.
    if local.is_none() {
        if let Some(id) = opt(pid.component(2, 1)) {
            local = Some((id, None));
        }
    }
    let Some((local_id, assigning_authority)) = local else {
        ctx.error(
            pid,
            nth,
            3,
            101,
            "PID-3 has no patient identifier the institution issued",
        );
        return None;
    };
    let family = pid.component(5, 1).trim().to_string();
    let given = pid.component(5, 2).trim().to_string();
    let name = match (family.is_empty(), given.is_empty()) {
        (true, true) => None,
        (false, true) => Some(family),
        (true, false) => Some(given),
        (false, false) if is_cjk(&family) && is_cjk(&given) => Some(format!("{family}{given}")),
        (false, false) => Some(format!("{family} {given}")),
    };
    let birth_date = match opt(pid.component(7, 1)) {
        None => None,
        Some(raw) => match parse_timestamp(&raw, ctx.cfg.time_zone) {
            Ok(t) => Some(t.get(..10).unwrap_or(&t).to_string()),
            Err(e) => {
                ctx.warn(pid, nth, 7, 102, format!("birth date: {e}; ignored"));
                None
            }
        },
    };
    Some(PatientRef {
        institution: ctx.cfg.institution.clone(),
        local_id,
        assigning_authority,
        national_id_key: national,
        name,
        sex: opt(pid.component(8, 1)),
        birth_date,
    })
}

/// Normalises one OBX-8 flag (HL7 table 0078, plus the arrows some Chinese LIS send).
/// Codes that say nothing about normal/abnormal (susceptibility S/R/I, trend U/D/B/W, …)
/// give `None`: they stay in `abnormal_flags_raw` only.
fn flag(s: &str) -> Option<AbnormalFlag> {
    Some(match s {
        "N" => AbnormalFlag::Normal,
        "L" | "<" | "↓" | "LU" => AbnormalFlag::Low,
        "H" | ">" | "↑" | "HU" => AbnormalFlag::High,
        "LL" | "↓↓" => AbnormalFlag::CriticalLow,
        "HH" | "↑↑" => AbnormalFlag::CriticalHigh,
        "A" | "AA" | "POS" => AbnormalFlag::Abnormal,
        _ => return None,
    })
}

/// HL7 NM: optional sign, digits, optional decimal point.
fn is_hl7_number(s: &str) -> bool {
    let t = s.trim();
    let t = t.strip_prefix(['+', '-']).unwrap_or(t);
    let mut digits = 0;
    let mut dots = 0;
    for c in t.chars() {
        match c {
            '0'..='9' => digits += 1,
            '.' => dots += 1,
            _ => return false,
        }
    }
    digits > 0 && dots <= 1
}

/// `s` in ASCII upper case, without allocating when it already is.
fn upper(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_lowercase()) {
        std::borrow::Cow::Owned(s.to_ascii_uppercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// At most 60 characters of `s`, for diagnostics.
fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

fn obr_status(s: &str) -> Option<ReportStatus> {
    Some(match s {
        "F" => ReportStatus::Final,
        "C" | "A" => ReportStatus::Corrected,
        "X" | "D" => ReportStatus::Cancelled,
        "P" | "I" | "R" | "S" | "O" | "Y" | "Z" => ReportStatus::Preliminary,
        _ => return None,
    })
}

struct Group {
    report: Report,
    obx_status: Vec<String>,
    obr_status_given: bool,
    line: usize,
    nth: usize,
}

/// Maps a parsed message to the model. `original` is the hash of the original bytes.
pub fn interpret(
    msg: &Message,
    cfg: &SenderConfig,
    original: ContentHash,
) -> Result<Interpreted, Rejection> {
    let header = msg.header().clone();
    let mut ctx = Ctx {
        cfg,
        header: header.clone(),
        diags: msg.warnings().to_vec(),
        counts: Vec::new(),
        last_ts: None,
    };
    let reject = |code: u16, field: usize, m: String| {
        Rejection::new(
            Some(header.clone()),
            RejectKind::Reject,
            Diagnostic::at(Severity::Error, "MSH", 1, 1, field, code, m),
        )
    };
    let v = header.version.trim();
    let supported = v
        .strip_prefix("2.")
        .and_then(|r| r.split('.').next())
        .and_then(|m| m.parse::<u32>().ok())
        .is_some_and(|m| (1..=8).contains(&m));
    if !supported {
        return Err(reject(
            203,
            12,
            format!("HL7 version {v:?} is not supported (2.1–2.8)"),
        ));
    }
    let content = match (header.message_type.as_str(), header.trigger_event.as_str()) {
        ("ORU", "R01") => oru(msg, &mut ctx, original).map(Content::Lab),
        ("ADT", "A01") => adt_visit(msg, &mut ctx, VisitEvent::Admitted).map(Content::Visit),
        ("ADT", "A04") => adt_visit(msg, &mut ctx, VisitEvent::Registered).map(Content::Visit),
        ("ADT", "A03") => adt_visit(msg, &mut ctx, VisitEvent::Discharged).map(Content::Visit),
        ("ADT", "A08" | "A28" | "A31") => adt_update(msg, &mut ctx).map(Content::PatientUpdate),
        ("ADT", "A40") => adt_merge(msg, &mut ctx),
        ("ORU" | "ADT", ev) => {
            return Err(reject(
                201,
                9,
                format!("event {ev:?} of {} is not supported", header.message_type),
            ))
        }
        (t, ev) => {
            return Err(reject(
                200,
                9,
                format!(
                    "message type {t}^{ev} is not supported (ORU^R01, ADT^A01/A03/A04/A08/A40)"
                ),
            ))
        }
    };
    let errors = ctx.diags.iter().any(|d| d.severity == Severity::Error);
    match content {
        Some(c) if !errors => Ok(Interpreted {
            header,
            content: c,
            warnings: ctx.diags,
        }),
        _ => {
            let mut diags = ctx.diags;
            if !diags.iter().any(|d| d.severity == Severity::Error) {
                diags.push(Diagnostic::general(
                    Severity::Error,
                    "message",
                    100,
                    "message has no usable content",
                ));
            }
            diags.sort_by_key(|d| d.severity != Severity::Error);
            Err(Rejection {
                header: Some(Box::new(ctx.header)),
                diagnostics: diags,
                kind: RejectKind::Error,
            })
        }
    }
}

fn oru(msg: &Message, ctx: &mut Ctx<'_>, original: ContentHash) -> Option<Vec<Report>> {
    let mut current_patient: Option<PatientRef> = None;
    let mut orc: Option<(Option<String>, Option<String>)> = None;
    let mut groups: Vec<Group> = Vec::new();
    let mut msh_time: Option<String> = None;
    let mut saw_pid = false;
    for seg in msg.segments() {
        match seg.id() {
            "MSH" => {
                let n = ctx.nth("MSH");
                msh_time = ctx.ts(&seg, n, 7);
            }
            "PID" => {
                let n = ctx.nth("PID");
                saw_pid = true;
                current_patient = patient(ctx, &seg, n);
                orc = None;
            }
            "ORC" => {
                ctx.nth("ORC");
                orc = Some((opt(seg.component(2, 1)), opt(seg.component(3, 1))));
            }
            "OBR" => {
                let n = ctx.nth("OBR");
                let Some(p) = current_patient.clone() else {
                    if !saw_pid {
                        ctx.error(&seg, n, 0, 100, "OBR before any PID segment");
                    }
                    continue;
                };
                // An ORC belongs to the OBR that follows it, never to a later one.
                let (orc_placer, orc_filler) = orc.take().unwrap_or((None, None));
                let placer = opt(seg.component(2, 1)).or(orc_placer);
                let filler = opt(seg.component(3, 1)).or(orc_filler);
                let source_key = match (&filler, &placer) {
                    (Some(f), _) => f.clone(),
                    (None, Some(pl)) => {
                        ctx.warn(&seg, n, 3, 101, "no filler order number (OBR-3); the placer order number identifies the report");
                        format!("placer:{pl}")
                    }
                    (None, None) => {
                        ctx.error(&seg, n, 3, 101, "neither filler (OBR-3) nor placer (OBR-2) order number: the report cannot be identified");
                        continue;
                    }
                };
                let status_raw = seg.component(25, 1).trim().to_uppercase();
                let status = obr_status(&status_raw);
                if status.is_none() && !status_raw.is_empty() {
                    ctx.warn(
                        &seg,
                        n,
                        25,
                        103,
                        format!(
                            "result status {:?} is not in HL7 table 0123",
                            shorten(&status_raw)
                        ),
                    );
                }
                let specimen = opt(seg.component(15, 1));
                let collected = ctx.ts(&seg, n, 7);
                let reported = ctx.ts(&seg, n, 22).or_else(|| msh_time.clone());
                groups.push(Group {
                    report: Report {
                        kind: ReportKind::Lab,
                        source: Source {
                            institution: ctx.cfg.institution.clone(),
                            system: SystemKind::Lis,
                            application: (!ctx.header.sending_application.is_empty())
                                .then(|| ctx.header.sending_application.clone()),
                            source_key,
                        },
                        patient: p,
                        status: status.unwrap_or(ReportStatus::Preliminary),
                        order: OrderIds { placer, filler },
                        specimen_collected_at: collected,
                        performed_at: None,
                        reported_at: reported,
                        lab: Some(LabBody {
                            service_code: opt(seg.component(4, 1)),
                            service_name: opt(seg.component(4, 2)),
                            specimen,
                            observations: vec![],
                        }),
                        ecg: None,
                        imaging: None,
                        conclusion: None,
                        original,
                        attachments: vec![],
                    },
                    obx_status: vec![],
                    obr_status_given: status.is_some(),
                    line: seg.line,
                    nth: n,
                });
            }
            "OBX" => {
                let n = ctx.nth("OBX");
                let Some(g) = groups.last_mut() else {
                    ctx.warn(&seg, n, 0, 100, "OBX before any OBR ignored");
                    continue;
                };
                let code = seg.component(3, 1).trim().to_string();
                let value_type = opt(seg.component(2, 1));
                let d = *seg.delimiters_ref();
                let cs = seg.charset_of();
                // The value as sent, unescaped as a whole: repetitions stay joined by the
                // repetition separator and CE/CWE components by the component separator.
                let value = seg.field(5).into_owned();
                let unit = opt(seg.component(6, 1)).or_else(|| opt(seg.component(6, 2)));
                let mut abnormal_flags = Vec::new();
                for r in seg.repetitions(8).take(16) {
                    let f = component_of(r, 1, &d, cs);
                    if let Some(fl) = flag(&upper(f.trim())) {
                        abnormal_flags.push(fl);
                    }
                }
                let abnormal_flags_raw = opt(seg.field(8));
                let status = opt(seg.component(11, 1)).map(|s| upper(&s).into_owned());
                let observed_at = ctx.ts(&seg, n, 14);
                if code.is_empty() {
                    ctx.error(&seg, n, 3, 101, "OBX-3 observation identifier is empty");
                    continue;
                }
                if value_type.as_deref() == Some("NM")
                    && !value.trim().is_empty()
                    && !is_hl7_number(&value)
                {
                    ctx.warn(
                        &seg,
                        n,
                        5,
                        102,
                        format!(
                            "value {:?} of type NM is not a number; kept as sent",
                            shorten(&value)
                        ),
                    );
                }
                if let Some(s) = &status {
                    g.obx_status.push(s.clone());
                }
                if let Some(lab) = g.report.lab.as_mut() {
                    lab.observations.push(LabObservation {
                        code,
                        code_system: opt(seg.component(3, 3)),
                        name: opt(seg.component(3, 2)),
                        value_type,
                        value,
                        unit,
                        reference_range: opt(seg.field(7)),
                        abnormal_flags,
                        abnormal_flags_raw,
                        result_status: status,
                        observed_at,
                    });
                }
            }
            "NTE" => {
                ctx.nth("NTE");
                if let Some(g) = groups.last_mut() {
                    let text = seg.field(3).trim().to_string();
                    if !text.is_empty() {
                        let c = g.report.conclusion.get_or_insert_with(String::new);
                        if !c.is_empty() {
                            c.push('\n');
                        }
                        c.push_str(&text);
                    }
                }
            }
            "SPM" => {
                ctx.nth("SPM");
                if let Some(lab) = groups.last_mut().and_then(|g| g.report.lab.as_mut()) {
                    if lab.specimen.is_none() {
                        lab.specimen =
                            opt(seg.component(4, 2)).or_else(|| opt(seg.component(4, 1)));
                    }
                }
            }
            _ => {}
        }
    }
    if !saw_pid {
        ctx.diags.push(Diagnostic::general(
            Severity::Error,
            "PID",
            100,
            "ORU^R01 without a PID segment",
        ));
        return None;
    }
    if groups.is_empty() {
        ctx.diags.push(Diagnostic::general(
            Severity::Error,
            "OBR",
            100,
            "ORU^R01 without an OBR segment",
        ));
        return None;
    }
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let mut r = g.report;
        let any = |s: &str| g.obx_status.iter().any(|x| x == s);
        if any("C") && r.status == ReportStatus::Final {
            r.status = ReportStatus::Corrected;
        }
        if !g.obr_status_given {
            let all = |s: &[&str]| {
                !g.obx_status.is_empty() && g.obx_status.iter().all(|x| s.contains(&x.as_str()))
            };
            r.status = if any("C") {
                ReportStatus::Corrected
            } else if all(&["X", "D", "W"]) {
                ReportStatus::Cancelled
            } else if all(&["F"]) {
                ReportStatus::Final
            } else {
                ReportStatus::Preliminary
            };
            ctx.diags.push(Diagnostic::general(
                Severity::Warning,
                format!("OBR[{}]-25", g.nth),
                101,
                format!(
                    "OBR-25 result status empty (line {}); status derived from OBX-11",
                    g.line
                ),
            ));
        }
        out.push(r);
    }
    Some(out)
}

fn first_pid(msg: &Message, ctx: &mut Ctx<'_>) -> Option<PatientRef> {
    let seg = msg.segments().find(|s| s.id() == "PID");
    match seg {
        Some(s) => patient(ctx, &s, 1),
        None => {
            ctx.diags.push(Diagnostic::general(
                Severity::Error,
                "PID",
                100,
                "ADT message without a PID segment",
            ));
            None
        }
    }
}

fn adt_update(msg: &Message, ctx: &mut Ctx<'_>) -> Option<PatientRef> {
    first_pid(msg, ctx)
}

/// The visit time: PV1-44 (admit) or PV1-45 (discharge), else EVN-6 (event occurred), else
/// EVN-2 (recorded); without offset in the sender's zone. A value that is not a time of day
/// is an error at its field (a door time cannot be guessed), as is no time at all.
fn visit_time(
    msg: &Message,
    ctx: &mut Ctx<'_>,
    event: VisitEvent,
) -> Option<(String, &'static str)> {
    let pv1 = if event.is_arrival() {
        ("PV1", 44, "PV1-44")
    } else {
        ("PV1", 45, "PV1-45")
    };
    for (id, field, name) in [pv1, ("EVN", 6, "EVN-6"), ("EVN", 2, "EVN-2")] {
        let Some(seg) = msg.segments().find(|s| s.id() == id) else {
            continue;
        };
        let raw = seg.component(field, 1);
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        match parse_timestamp(raw, ctx.cfg.time_zone) {
            // Date-only values are `YYYY[-MM[-DD]]`; a time has more.
            Ok(t) if t.len() > 10 => return Some((t, name)),
            Ok(_) => ctx.error(
                &seg,
                1,
                field,
                102,
                format!("{name} {:?} has no time of day", shorten(raw)),
            ),
            Err(e) => ctx.error(&seg, 1, field, 102, format!("{name}: {e}")),
        }
        return None;
    }
    ctx.diags.push(Diagnostic {
        severity: Severity::Error,
        location: format!("PV1[1]-{}", pv1.1),
        segment: Some("PV1".into()),
        line: None,
        field: Some(pv1.1),
        code: 101,
        message: format!("no visit time: {}, EVN-6 and EVN-2 are empty", pv1.2),
    });
    None
}

fn adt_visit(msg: &Message, ctx: &mut Ctx<'_>, event: VisitEvent) -> Option<Visit> {
    let patient = first_pid(msg, ctx);
    let at = visit_time(msg, ctx, event);
    let (patient, (at, at_field)) = (patient?, at?);
    Some(Visit {
        patient,
        event,
        at,
        at_field,
    })
}

fn adt_merge(msg: &Message, ctx: &mut Ctx<'_>) -> Option<Content> {
    let surviving = first_pid(msg, ctx)?;
    let mut merged = Vec::new();
    let mut nth = 0;
    for seg in msg.segments().filter(|s| s.id() == "MRG") {
        nth += 1;
        match identifiers(ctx, &seg, 1) {
            (Some((local_id, assigning_authority)), national_id_key) => merged.push(PatientRef {
                institution: ctx.cfg.institution.clone(),
                local_id,
                assigning_authority,
                national_id_key,
                ..Default::default()
            }),
            (None, _) => ctx.error(
                &seg,
                nth,
                1,
                101,
                "MRG-1 has no prior patient identifier the institution issued",
            ),
        }
    }
    if merged.is_empty() && nth == 0 {
        ctx.diags.push(Diagnostic::general(
            Severity::Error,
            "MRG",
            100,
            "ADT^A40 without an MRG segment",
        ));
        return None;
    }
    Some(Content::PatientMerge { surviving, merged })
}
