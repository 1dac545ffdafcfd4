//! The audit log: append-only, hash-chained JSON lines, group-committed (one `fdatasync` per
//! batch) by its own writer thread. Every read of patient data and every decision is one
//! record; the answer to the request goes out only after its record is durable.
//!
//! Line format: the canonical JSON of an [`AuditEntry`]. `hash` is BLAKE3 over the canonical
//! JSON of the entry without `hash`; `prev` is the previous entry's `hash` (the first entry's
//! `prev` is `blake3:` + 64 zeros). Editing any byte of any record breaks the chain at that
//! record, which [`AuditLog::verify`] names.
//!
//! Queries ([`AuditLog::query`], [`AuditLog::for_each`]) go through a derived index in
//! `audit-index/` (see [`crate::index`]): one fixed-size record per line (offset, length,
//! time, action) chained by patient (and the person keys of `detail.persons`) and by actor,
//! with per-block time bounds, so a query reads only the lines it returns. The index is
//! updated by its own thread after the writer's `fdatasync` (never before an append is
//! acknowledged), and loaded, checked and caught up from the log by that thread after open
//! (`open` does not wait for it); lines the index has not applied yet (the last batch or two,
//! or all of a log whose index is being rebuilt) are read from the log, so a query always sees
//! every acknowledged record.

mod index;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use huren_model::ContentHash;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::index::{
    actor_key, patient_key, set_tag, Appender, AuditIndex, Chain, Item, Marker, Rec, BLOCK, LISTS,
    OTHER_ACTION,
};
use huren_store::StoreError;

/// What happened, as the caller describes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Who: clinician id, or `cert:<institution>` for a system.
    pub actor: String,
    /// The actor's institution.
    pub institution: String,
    /// The actor's role.
    #[serde(default)]
    pub role: String,
    /// What: `read_results`, `read_report`, `check`, `decision`, `read_audit`, `stats`….
    pub action: String,
    /// Person key of the patient (never a raw national ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// Purpose of use (encounter kind, or a privacy review).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// Break-glass access (and its reason in `detail`).
    #[serde(default)]
    pub break_glass: bool,
    /// `ok`, or `denied: …` / `invalid: …`.
    pub outcome: String,
    /// Report hashes whose content was returned. When `returned_set` is given too, this is
    /// the set's full list; a later record of the same answer gives only `returned_set` (and
    /// [`AuditLog::scan`] fills `returned` in from the earlier record).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub returned: Vec<String>,
    /// BLAKE3 of the JSON list of `returned` (sorted), naming a set listed in full by an
    /// earlier record of the same patient: a 200-result answer served again costs a short
    /// record, and the chain still fixes what was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returned_set: Option<String>,
    /// Anything else (decision body, query parameters).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// A durable audit entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// 1-based sequence number.
    pub seq: u64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Hash of the previous entry.
    pub prev: String,
    /// The record.
    #[serde(flatten)]
    pub record: AuditRecord,
    /// Hash of this entry (over everything above).
    pub hash: String,
}

/// An answer to [`AuditTrail::submit`], to await.
pub type AuditAnswer =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<AuditEntry, StoreError>> + Send>>;

/// Where the gate writes its audit records and the privacy officer's views read them: the
/// file log of one machine ([`AuditLog`]) or a cluster's per-node chains (`huren-cluster`).
pub trait AuditTrail: Send + Sync {
    /// Queues a record; the answer comes once it is durable.
    fn submit(&self, record: AuditRecord) -> Result<AuditAnswer, StoreError>;
    /// Appends a record from a thread outside the runtime; returns once it is durable.
    fn append_blocking(&self, record: AuditRecord) -> Result<AuditEntry, StoreError>;
    /// Streams the entries `filter` selects to `visit` (false stops), in the trail's order;
    /// how many were visited. Blocking.
    fn visit(
        &self,
        filter: &AuditFilter,
        visit: &mut dyn FnMut(AuditEntry) -> bool,
    ) -> Result<usize, StoreError>;
}

impl dyn AuditTrail + '_ {
    /// Appends a record; returns once it is durable.
    pub async fn append(&self, record: AuditRecord) -> Result<AuditEntry, StoreError> {
        self.submit(record)?.await
    }

    /// Streams the entries `filter` selects (see [`AuditLog::for_each`]).
    pub fn for_each(
        &self,
        filter: &AuditFilter,
        mut visit: impl FnMut(AuditEntry) -> bool,
    ) -> Result<usize, StoreError> {
        self.visit(filter, &mut visit)
    }

    /// The entries `filter` selects, by `seq` (see [`AuditLog::query`]).
    pub fn query(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let mut out = Vec::new();
        self.visit(filter, &mut |e| {
            out.push(e);
            true
        })?;
        out.sort_by_key(|e| e.seq);
        Ok(out)
    }
}

impl AuditTrail for AuditLog {
    fn submit(&self, record: AuditRecord) -> Result<AuditAnswer, StoreError> {
        let rx = self.queue(record)?;
        Ok(Box::pin(async move {
            rx.await.map_err(|_| StoreError::WriterGone)?
        }))
    }

    fn append_blocking(&self, record: AuditRecord) -> Result<AuditEntry, StoreError> {
        AuditLog::append_blocking(self, record)
    }

    fn visit(
        &self,
        filter: &AuditFilter,
        visit: &mut dyn FnMut(AuditEntry) -> bool,
    ) -> Result<usize, StoreError> {
        AuditLog::for_each(self, filter, visit)
    }
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditBreak {
    /// 1-based line number in `audit.log`.
    pub line: u64,
    /// Sequence number expected at that line.
    pub seq: u64,
    /// What is wrong.
    pub reason: String,
}

/// Result of [`AuditLog::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditVerify {
    /// Entries checked.
    pub entries: u64,
    /// The first broken link, if any.
    pub broken: Option<AuditBreak>,
}

/// Longest free text an audit record keeps, in characters. Longer text (a decision's
/// `other_text`, a break-glass reason, anything a request supplied) is cut to this length and
/// the BLAKE3 hash and length of the whole value are recorded beside it.
pub const MAX_AUDIT_TEXT_CHARS: usize = 500;

/// The hash and length of a value that was cut: `"… [cut: N chars, blake3:HEX]"`.
fn cut(s: &str) -> Option<(String, String, usize)> {
    let n = s.chars().count();
    if n <= MAX_AUDIT_TEXT_CHARS {
        return None;
    }
    let head: String = s.chars().take(MAX_AUDIT_TEXT_CHARS).collect();
    Some((head, ContentHash::of(s.as_bytes()).to_string(), n))
}

/// A string field that must stay a string: cut, with the hash and length appended.
fn bound_str(s: &mut String) {
    if let Some((head, hash, n)) = cut(s) {
        *s = format!("{head}… [cut: {n} chars, {hash}]");
    }
}

fn bound_value(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => bound_str(s),
        Value::Array(a) => a.iter_mut().for_each(bound_value),
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, mut v) in std::mem::take(m) {
                let mut k = k;
                bound_str(&mut k);
                match &v {
                    Value::String(s) => {
                        if let Some((head, hash, n)) = cut(s) {
                            out.insert(format!("{k}_blake3"), Value::String(hash));
                            out.insert(format!("{k}_chars"), Value::from(n));
                            v = Value::String(format!("{head}…"));
                        }
                    }
                    _ => bound_value(&mut v),
                }
                out.insert(k, v);
            }
            *m = out;
        }
        _ => {}
    }
}

impl AuditRecord {
    /// Bounds every free-text field: a string longer than [`MAX_AUDIT_TEXT_CHARS`] is cut to
    /// that many characters; in `detail` the BLAKE3 hash and the length of the whole value
    /// are recorded beside it as `KEY_blake3` and `KEY_chars` (inside a list, and in the
    /// record's own fields, they are appended to the cut text). Every record passes here
    /// before it is written ([`AuditLog::append`]), so no path can write unbounded text.
    pub fn bounded(mut self) -> AuditRecord {
        for s in [
            &mut self.actor,
            &mut self.institution,
            &mut self.role,
            &mut self.action,
            &mut self.outcome,
        ] {
            bound_str(s);
        }
        for s in [&mut self.patient, &mut self.purpose, &mut self.returned_set]
            .into_iter()
            .flatten()
        {
            bound_str(s);
        }
        self.returned.iter_mut().for_each(bound_str);
        bound_value(&mut self.detail);
        self
    }
}

/// The `prev` of a chain's first entry.
pub const GENESIS: &str = "blake3:0000000000000000000000000000000000000000000000000000000000000000";

type Reply = oneshot::Sender<Result<AuditEntry, StoreError>>;

/// The audit log of one store directory (`audit.log`, and its index `audit-index/`).
pub struct AuditLog {
    path: PathBuf,
    /// For positional reads of lines.
    reader: File,
    progress: Arc<Progress>,
    tx: Option<mpsc::Sender<(AuditRecord, Reply)>>,
    thread: Option<std::thread::JoinHandle<()>>,
    indexer: Option<std::thread::JoinHandle<()>>,
}

/// A record number, the log offset just past its line, and (for the index) how many index
/// records cover the log up to there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Mark {
    seq: u64,
    end: u64,
    recs: u64,
}

/// Whether there is an index.
#[derive(Clone)]
enum IndexState {
    /// The indexer thread is opening it (queries wait: that is a checkpoint read, not a
    /// catch-up).
    Loading,
    Ready(Arc<AuditIndex>),
    /// None could be opened or made: queries read the log.
    Off,
}

struct Marks {
    durable: Mark,
    applied: Mark,
    index: IndexState,
}

/// How far the log is durable and how far the index has applied it.
struct Progress {
    marks: Mutex<Marks>,
    changed: Condvar,
    /// The log is being closed: a catch-up stops where it is (and checkpoints).
    closing: std::sync::atomic::AtomicBool,
}

impl Progress {
    fn new(durable: Mark) -> Progress {
        Progress {
            marks: Mutex::new(Marks {
                durable,
                applied: Mark::default(),
                index: IndexState::Loading,
            }),
            changed: Condvar::new(),
            closing: Default::default(),
        }
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Marks> {
        self.marks.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// The marks and the index, once it is loaded (or known to be absent).
    fn get(&self) -> (Mark, Mark, Option<Arc<AuditIndex>>) {
        let mut g = self.lock();
        while matches!(g.index, IndexState::Loading) {
            g = self.changed.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        let ix = match &g.index {
            IndexState::Ready(ix) => Some(ix.clone()),
            _ => None,
        };
        (g.durable, g.applied, ix)
    }
    fn set_durable(&self, m: Mark) {
        self.lock().durable = m;
    }
    fn set_applied(&self, m: Mark) {
        self.lock().applied = m;
        self.changed.notify_all();
    }
    fn set_index(&self, ix: IndexState, applied: Mark) {
        let mut g = self.lock();
        g.index = ix;
        g.applied = applied;
        drop(g);
        self.changed.notify_all();
    }
}

/// Turns the index off if the indexer thread ends while still loading it (a panic), so no
/// query waits for it forever.
struct LoadGuard(Arc<Progress>);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        let loading = matches!(self.0.lock().index, IndexState::Loading);
        if loading {
            self.0.set_index(IndexState::Off, Mark::default());
        }
    }
}

/// How far the index has caught up with the log ([`AuditLog::index_status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AuditIndexStatus {
    /// Last durable record.
    pub durable_seq: u64,
    /// Last record the index has applied; queries read the records after it from the log.
    pub indexed_seq: u64,
    /// Whether an index is in use at all (without one every query reads the whole log).
    pub enabled: bool,
}

/// What [`AuditLog::query`] and [`AuditLog::for_each`] select. Every field given must match
/// (`None`: any). The cheapest key given drives the index: `patient`, else `actor`, else the
/// time range; `actions` and the time range are checked on the index before a line is read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Person key: records of this patient, and records naming the key in `detail.persons`
    /// (a JSON array of strings; records without either never match).
    pub patient: Option<String>,
    /// Principal (`actor`).
    pub actor: Option<String>,
    /// Records at or after this instant (by their `at`).
    pub from: Option<DateTime<Utc>>,
    /// Records strictly before this instant.
    pub to: Option<DateTime<Utc>>,
    /// Records whose action is one of these.
    pub actions: Option<Vec<String>>,
    /// Records with a larger sequence number (paging: the last `seq` of the previous page).
    pub after_seq: Option<u64>,
    /// At most this many records (the first ones, in the order described at
    /// [`AuditLog::for_each`]).
    pub limit: Option<usize>,
}

impl AuditFilter {
    /// The records of one patient.
    pub fn patient(key: impl Into<String>) -> AuditFilter {
        AuditFilter {
            patient: Some(key.into()),
            ..Default::default()
        }
    }

    /// Restricts to the UTC calendar days `from..=to` (the statistics' `from`/`to`: a
    /// record's day is the first 10 characters of its `at`).
    pub fn days(mut self, from: Option<NaiveDate>, to: Option<NaiveDate>) -> AuditFilter {
        self.from = from
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc());
        self.to = to
            .and_then(|d| d.succ_opt())
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc());
        self
    }

    fn start_ms(&self) -> Option<i64> {
        self.from.map(|t| t.timestamp_millis())
    }

    fn end_ms(&self) -> Option<i64> {
        self.to.map(|t| t.timestamp_millis())
    }

    /// The checks an index record can answer besides the action: sequence number and time.
    fn matches_seq_time(&self, seq: u64, at_ms: i64) -> bool {
        self.after_seq.is_none_or(|a| seq > a)
            && self
                .start_ms()
                .is_none_or(|f| at_ms != i64::MIN && at_ms >= f)
            && self.end_ms().is_none_or(|t| at_ms < t)
    }

    /// Whether an entry is selected (every check; `after_seq` against the entry's `seq`).
    pub fn matches(&self, e: &AuditEntry) -> bool {
        self.patient.as_ref().is_none_or(|p| {
            e.record.patient.as_ref() == Some(p) || persons(&e.record.detail).any(|x| x == p)
        }) && self.actor.as_ref().is_none_or(|a| &e.record.actor == a)
            && self.after_seq.is_none_or(|a| e.seq > a)
            && (self.from.is_none() && self.to.is_none()
                || self.matches_seq_time(e.seq, at_ms(&e.at)))
            && self
                .actions
                .as_ref()
                .is_none_or(|a| a.contains(&e.record.action))
    }
}

/// The person keys of `detail.persons` (its strings).
fn persons(detail: &serde_json::Value) -> impl Iterator<Item = &str> {
    detail
        .get("persons")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
}

/// `at` in ms since the epoch; `i64::MIN` when it does not parse.
fn at_ms(at: &str) -> i64 {
    DateTime::parse_from_rfc3339(at).map_or(i64::MIN, |t| t.timestamp_millis())
}

/// An audit line as stored, flat (faster to read than [`AuditEntry`]'s flattened record).
#[derive(Deserialize)]
struct Wire {
    seq: u64,
    at: String,
    prev: String,
    actor: String,
    institution: String,
    #[serde(default)]
    role: String,
    action: String,
    #[serde(default)]
    patient: Option<String>,
    #[serde(default)]
    purpose: Option<String>,
    #[serde(default)]
    break_glass: bool,
    outcome: String,
    #[serde(default)]
    returned: Vec<String>,
    #[serde(default)]
    returned_set: Option<String>,
    #[serde(default)]
    detail: serde_json::Value,
    hash: String,
}

impl From<Wire> for AuditEntry {
    fn from(w: Wire) -> AuditEntry {
        AuditEntry {
            seq: w.seq,
            at: w.at,
            prev: w.prev,
            record: AuditRecord {
                actor: w.actor,
                institution: w.institution,
                role: w.role,
                action: w.action,
                patient: w.patient,
                purpose: w.purpose,
                break_glass: w.break_glass,
                outcome: w.outcome,
                returned: w.returned,
                returned_set: w.returned_set,
                detail: w.detail,
            },
            hash: w.hash,
        }
    }
}

fn parse_line(line: &[u8]) -> Option<AuditEntry> {
    serde_json::from_slice::<Wire>(line)
        .ok()
        .map(AuditEntry::from)
}

/// What the index needs of an audit line.
#[derive(Deserialize)]
struct Light {
    seq: u64,
    at: String,
    actor: String,
    action: String,
    #[serde(default)]
    patient: Option<String>,
    #[serde(default)]
    returned: Vec<serde::de::IgnoredAny>,
    #[serde(default)]
    returned_set: Option<String>,
    #[serde(default, deserialize_with = "detail_persons")]
    detail: Vec<String>,
    hash: String,
}

/// `detail.persons` of a line's `detail` (any JSON), without building the rest of it.
fn detail_persons<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(k) = m.next_key::<String>()? {
                if k == "persons" {
                    let v: serde_json::Value = m.next_value()?;
                    out = v
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect();
                } else {
                    m.next_value::<IgnoredAny>()?;
                }
            }
            Ok(out)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Vec<String>, A::Error> {
            while s.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Vec::new())
        }
        fn visit_unit<E>(self) -> Result<Vec<String>, E> {
            Ok(Vec::new())
        }
        fn visit_bool<E>(self, _: bool) -> Result<Vec<String>, E> {
            Ok(Vec::new())
        }
        fn visit_i64<E>(self, _: i64) -> Result<Vec<String>, E> {
            Ok(Vec::new())
        }
        fn visit_u64<E>(self, _: u64) -> Result<Vec<String>, E> {
            Ok(Vec::new())
        }
        fn visit_f64<E>(self, _: f64) -> Result<Vec<String>, E> {
            Ok(Vec::new())
        }
        fn visit_str<E>(self, _: &str) -> Result<Vec<String>, E> {
            Ok(Vec::new())
        }
    }
    d.deserialize_any(V)
}

fn light_item(line: &[u8], off: u64) -> Option<Item> {
    let l: Light = serde_json::from_slice(line).ok()?;
    Some(Item {
        seq: l.seq,
        off,
        len: line.len() as u32,
        at_ms: at_ms(&l.at),
        patient: l.patient,
        persons: l.detail,
        actor: l.actor,
        action: l.action,
        lists: l.returned_set.is_some() && !l.returned.is_empty(),
        set: l.returned_set,
        hash: l.hash,
    })
}

fn item_of(e: &AuditEntry, off: u64, len: u32, at_ms: i64) -> Item {
    Item {
        seq: e.seq,
        off,
        len,
        at_ms,
        patient: e.record.patient.clone(),
        persons: persons(&e.record.detail).map(String::from).collect(),
        actor: e.record.actor.clone(),
        action: e.record.action.clone(),
        set: e.record.returned_set.clone(),
        lists: e.record.returned_set.is_some() && !e.record.returned.is_empty(),
        hash: e.hash.clone(),
    }
}

/// Reads the lines of `path` in `[from, to)` (whole lines: `from` is a line start, `to` a line
/// end), calling `f(offset, line)` for each non-empty one.
fn read_lines(
    path: &Path,
    from: u64,
    to: u64,
    mut f: impl FnMut(u64, &[u8]) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    if from >= to {
        return Ok(());
    }
    let io = |e| StoreError::io(path, e);
    let mut file = File::open(path).map_err(io)?;
    file.seek(SeekFrom::Start(from)).map_err(io)?;
    let mut r = BufReader::with_capacity(1 << 20, file.take(to - from));
    let mut line = Vec::new();
    let mut off = from;
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line).map_err(io)?;
        if n == 0 {
            return Ok(());
        }
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        if !body.is_empty() && !f(off, body)? {
            return Ok(());
        }
        off += n as u64;
    }
}

fn hash_of(entry_without_hash: &serde_json::Value) -> Result<String, StoreError> {
    let bytes = huren_model::canonical_json(entry_without_hash)?;
    Ok(ContentHash::of(&bytes).to_string())
}

/// Seals a record as entry `seq` after `prev`: the entry with its hash and its line (canonical
/// JSON and a newline). The one format every audit chain uses (the log file and the cluster's
/// per-node chains).
pub fn entry_line(
    seq: u64,
    at: String,
    prev: String,
    record: AuditRecord,
) -> Result<(AuditEntry, Vec<u8>), StoreError> {
    let mut entry = AuditEntry {
        seq,
        at,
        prev,
        record,
        hash: String::new(),
    };
    let mut v =
        serde_json::to_value(&entry).map_err(|e| StoreError::Corrupt(format!("audit: {e}")))?;
    if let Some(m) = v.as_object_mut() {
        m.remove("hash");
    }
    entry.hash = hash_of(&v)?;
    let mut line = huren_model::canonical_json(&entry)?;
    line.push(b'\n');
    Ok((entry, line))
}

/// Reads `audit.log` backwards from its end, as far as needed: the length up to the last
/// newline (what follows it is a torn record) and the last complete non-empty line. Opening
/// a log of any size costs a few reads, never the whole file.
fn read_tail(file: &File, len: u64) -> std::io::Result<(u64, Option<Vec<u8>>)> {
    use std::os::unix::fs::FileExt;
    const CHUNK: u64 = 64 * 1024;
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let from = start.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; (start - from) as usize];
        file.read_exact_at(&mut chunk, from)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        start = from;
        let Some(nl) = buf.iter().rposition(|b| *b == b'\n') else {
            if start == 0 {
                return Ok((0, None));
            }
            continue;
        };
        let complete = start + nl as u64 + 1;
        let body = &buf[..nl];
        let mut end = body.len();
        loop {
            match body[..end].iter().rposition(|b| *b == b'\n') {
                Some(s) if s + 1 < end => return Ok((complete, Some(body[s + 1..end].to_vec()))),
                Some(s) => end = s,
                None if start == 0 => {
                    return Ok((complete, (end > 0).then(|| body[..end].to_vec())))
                }
                None => break,
            }
        }
    }
}

/// Sets listed in full that a query has met, and where a search of the index found none.
#[derive(Default)]
struct Sets {
    found: HashMap<(Option<String>, String), Vec<String>>,
    /// No listing of the set by the patient in the index below this sequence number.
    none_below: HashMap<(Option<String>, String), u64>,
}

/// One run of [`AuditLog::for_each`].
struct Query<'a> {
    log: &'a AuditLog,
    filter: &'a AuditFilter,
    ix: Option<&'a AuditIndex>,
    /// Index records applied when the query began.
    count: u64,
    sets: Sets,
    buf: Vec<u8>,
    n: usize,
    limit: usize,
}

impl Query<'_> {
    /// Reads the lines of `recs` (in log order): one `pread` per run of lines at most a page
    /// apart, each line parsed from the buffer; visits those the filter keeps. False when
    /// the query is done.
    fn read(
        &mut self,
        recs: &[Rec],
        visit: &mut impl FnMut(AuditEntry) -> bool,
    ) -> Result<bool, StoreError> {
        const GAP: u64 = 4096;
        const RUN: u64 = 1 << 20;
        let mut buf = std::mem::take(&mut self.buf);
        let mut i = 0;
        while i < recs.len() {
            let start = recs[i].off;
            let mut end = start + u64::from(recs[i].len);
            let mut j = i + 1;
            while let Some(r) = recs.get(j) {
                let r_end = r.off + u64::from(r.len);
                if r.off < end || r.off > end + GAP || r_end - start > RUN {
                    break;
                }
                end = r_end;
                j += 1;
            }
            buf.resize((end - start) as usize, 0);
            self.log
                .reader
                .read_exact_at(&mut buf, start)
                .map_err(|e| StoreError::io(&self.log.path, e))?;
            for r in &recs[i..j] {
                let line = &buf[(r.off - start) as usize..][..r.len as usize];
                let e = entry_at(line, r)?;
                if !self.filter.matches(&e) {
                    continue;
                }
                let e = self.fill(e, Some(r.prev_patient))?;
                self.n += 1;
                if !visit(e) || self.n >= self.limit {
                    self.buf = buf;
                    return Ok(false);
                }
            }
            i = j;
        }
        self.buf = buf;
        Ok(true)
    }

    /// Fills `returned` of a record naming a set from a listing of the set by its patient:
    /// one met by this query, else the nearest earlier one in the index, found by walking the
    /// patient's chain back from `from` (the record's own link; `None`: from the newest).
    fn fill(&mut self, e: AuditEntry, from: Option<u64>) -> Result<AuditEntry, StoreError> {
        let Some(set) = &e.record.returned_set else {
            return Ok(e);
        };
        let key = (e.record.patient.clone(), set.clone());
        if !e.record.returned.is_empty() {
            self.sets
                .found
                .entry(key)
                .or_insert_with(|| e.record.returned.clone());
            return Ok(e);
        }
        if let (false, Some(ix)) = (self.sets.found.contains_key(&key), self.ix) {
            let floor = self.sets.none_below.get(&key).copied().unwrap_or(0);
            let start = from.unwrap_or_else(|| ix.head(patient_key(key.0.as_deref())));
            let tag = set_tag(&key.1);
            let mut list = None;
            let mut buf = Vec::new();
            ix.walk(Chain::Patient, start, self.count, |_, r, via_node| {
                if r.seq <= floor {
                    return Ok(false);
                }
                if r.seq >= e.seq || via_node || r.flags & LISTS == 0 || r.set != tag {
                    return Ok(true);
                }
                buf.resize(r.len as usize, 0);
                self.log
                    .reader
                    .read_exact_at(&mut buf, r.off)
                    .map_err(|err| StoreError::io(&self.log.path, err))?;
                let l = entry_at(&buf, r)?;
                if l.record.patient == key.0
                    && l.record.returned_set.as_ref() == Some(&key.1)
                    && !l.record.returned.is_empty()
                {
                    list = Some(l.record.returned);
                    return Ok(false);
                }
                Ok(true)
            })?;
            match list {
                Some(list) => {
                    self.sets.found.insert(key, list);
                }
                None => {
                    let b = self.sets.none_below.entry(key).or_default();
                    *b = (*b).max(e.seq);
                }
            }
        }
        Ok(fill_from(&mut self.sets.found, e))
    }
}

/// The entry of a line read through index record `r`, which it must be.
fn entry_at(line: &[u8], r: &Rec) -> Result<AuditEntry, StoreError> {
    match parse_line(line) {
        Some(e) if e.seq == r.seq => Ok(e),
        _ => Err(StoreError::Corrupt(format!(
            "audit index: record {} is not at offset {} of audit.log \
             (remove audit-index/ to rebuild it)",
            r.seq, r.off
        ))),
    }
}

/// Checks one line against the chain (entry `seq` after `prev`, its hash over its content);
/// returns its entry.
pub fn check_line(line: &str, seq: u64, prev: &str) -> Result<AuditEntry, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let entry: AuditEntry =
        serde_json::from_value(v.clone()).map_err(|e| format!("not an audit entry: {e}"))?;
    if entry.seq != seq {
        return Err(format!("sequence {} where {seq} was expected", entry.seq));
    }
    if entry.prev != prev {
        return Err("prev does not match the previous entry's hash".into());
    }
    let mut without = v;
    if let Some(m) = without.as_object_mut() {
        m.remove("hash");
    }
    let want = hash_of(&without).map_err(|e| e.to_string())?;
    if want != entry.hash {
        return Err("content does not match its hash (edited)".into());
    }
    Ok(entry)
}

impl AuditLog {
    /// Opens (or creates) `dir/audit.log`. A torn last line (a crash mid-append: no newline)
    /// is cut off; it was never acknowledged.
    pub fn open(dir: impl AsRef<Path>) -> Result<AuditLog, StoreError> {
        let path = dir.as_ref().join("audit.log");
        let io = |e| StoreError::io(&path, e);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let (complete, last) = read_tail(&file, len).map_err(io)?;
        if complete < len {
            tracing::warn!(
                dropped = len - complete,
                "audit.log ends in a torn record; cutting it off"
            );
            file.set_len(complete).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        let (mut seq, mut prev) = (0u64, GENESIS.to_string());
        if let Some(last) = last {
            let e: AuditEntry = serde_json::from_slice(&last)
                .map_err(|e| StoreError::Corrupt(format!("last audit record: {e}")))?;
            seq = e.seq;
            prev = e.hash;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        let reader = File::open(&path).map_err(io)?;
        let progress = Arc::new(Progress::new(Mark {
            seq,
            end: complete,
            recs: 0,
        }));
        // The index is loaded, checked and caught up by its own thread; `open` does not wait.
        let (itx, irx) = mpsc::channel::<Vec<Item>>();
        let (ipath, pr, p) = (
            dir.as_ref().join("audit-index"),
            progress.clone(),
            path.clone(),
        );
        let indexer = match std::thread::Builder::new()
            .name("huren-audit-index".into())
            .spawn(move || indexer(ipath, p, pr, complete, irx))
        {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(error = %e, "audit indexer thread; queries read the log");
                progress.set_index(IndexState::Off, Mark::default());
                None
            }
        };
        let itx = indexer.as_ref().map(|_| itx);
        let (tx, rx) = mpsc::channel::<(AuditRecord, Reply)>();
        let wpath = path.clone();
        let pr = progress.clone();
        let thread = std::thread::Builder::new()
            .name("huren-audit".into())
            .spawn(move || writer(file, wpath, rx, seq, prev, complete, pr, itx))
            .map_err(io)?;
        Ok(AuditLog {
            path,
            reader,
            progress,
            tx: Some(tx),
            thread: Some(thread),
            indexer,
        })
    }

    /// Appends `records` with the given times to `dir/audit.log` directly, in the writer's
    /// exact line format and chain (for bulk loads: benchmarks, tests, imports), and syncs
    /// once at the end. The log must not be open. The index is not touched: the next
    /// [`AuditLog::open`] catches it up from the log. Returns the last sequence number.
    #[doc(hidden)]
    pub fn append_at_unopened(
        dir: impl AsRef<Path>,
        records: impl IntoIterator<Item = (DateTime<Utc>, AuditRecord)>,
    ) -> Result<u64, StoreError> {
        let path = dir.as_ref().join("audit.log");
        let io = |e| StoreError::io(&path, e);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let (complete, last) = read_tail(&file, len).map_err(io)?;
        if complete < len {
            file.set_len(complete).map_err(io)?;
        }
        let (mut seq, mut prev) = (0u64, GENESIS.to_string());
        if let Some(last) = last {
            let e: AuditEntry = serde_json::from_slice(&last)
                .map_err(|e| StoreError::Corrupt(format!("last audit record: {e}")))?;
            (seq, prev) = (e.seq, e.hash);
        }
        let mut w = std::io::BufWriter::with_capacity(4 << 20, &mut file);
        for (at, record) in records {
            let at = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let (entry, line) = entry_line(seq + 1, at, prev, record)?;
            w.write_all(&line).map_err(io)?;
            seq = entry.seq;
            prev = entry.hash;
        }
        w.flush().map_err(io)?;
        drop(w);
        file.sync_data().map_err(io)?;
        Ok(seq)
    }

    /// How far the index has caught up with the log.
    pub fn index_status(&self) -> AuditIndexStatus {
        let g = self.progress.lock();
        AuditIndexStatus {
            durable_seq: g.durable.seq,
            indexed_seq: g.applied.seq,
            enabled: !matches!(g.index, IndexState::Off),
        }
    }

    /// Waits until the index has applied every record durable when called (at most
    /// `timeout`); true if it has. Queries never need this (they read what the index lacks
    /// from the log); it is for tests, benchmarks and an orderly shutdown.
    pub fn wait_for_index(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut g = self.progress.lock();
        let want = g.durable.seq;
        while g.applied.seq < want || matches!(g.index, IndexState::Loading) {
            let now = std::time::Instant::now();
            if now >= deadline || matches!(g.index, IndexState::Off) {
                return false;
            }
            g = self
                .progress
                .changed
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Bytes the index files take on disk (0 without an index).
    pub fn index_size_on_disk(&self) -> Result<u64, StoreError> {
        self.progress.get().2.map_or(Ok(0), |ix| ix.size_on_disk())
    }

    /// The entries `filter` selects, in sequence order, with `returned` filled in for a
    /// record that names a set (`returned_set`) listed in full by an earlier record of the
    /// same patient — whether or not that record is selected. This is the same answer as
    /// [`AuditLog::scan`] with the same predicate when the filter is a patient alone, but
    /// reads only that patient's lines (and a set's listing when it is not among them).
    pub fn query(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let mut out = Vec::new();
        self.for_each(filter, |e| {
            out.push(e);
            true
        })?;
        out.sort_by_key(|e| e.seq);
        Ok(out)
    }

    /// Streams the entries `filter` selects to `visit` (which returns false to stop), with
    /// `returned` filled as in [`AuditLog::query`]; returns how many were visited. Nothing is
    /// collected beyond the index records of one patient or actor (or one time block), so a
    /// statistics pass over millions of records holds one entry at a time.
    ///
    /// Order: by sequence number (records the index has not applied yet come last, and they
    /// are the newest).
    pub fn for_each(
        &self,
        filter: &AuditFilter,
        mut visit: impl FnMut(AuditEntry) -> bool,
    ) -> Result<usize, StoreError> {
        let (durable, applied, index) = self.progress.get();
        let limit = filter.limit.unwrap_or(usize::MAX);
        if limit == 0 {
            return Ok(0);
        }
        let mut q = Query {
            log: self,
            filter,
            ix: index.as_deref(),
            count: applied.recs,
            sets: Sets::default(),
            buf: Vec::new(),
            n: 0,
            limit,
        };
        let after = filter.after_seq.unwrap_or(0);
        if let Some(ix) = index.as_deref().filter(|_| applied.seq > after) {
            let (ids, other) = filter
                .actions
                .as_ref()
                .map_or((Vec::new(), false), |a| ix.action_ids(a));
            let wanted = |r: &Rec| {
                filter.matches_seq_time(r.seq, r.at_ms)
                    && (filter.actions.is_none()
                        || ids.contains(&r.action)
                        || (other && r.action == OTHER_ACTION))
            };
            let chain = match (&filter.patient, &filter.actor) {
                (Some(p), _) => Some((Chain::Patient, patient_key(Some(p)))),
                (None, Some(a)) => Some((Chain::Actor, actor_key(a))),
                _ => None,
            };
            if let Some((chain, key)) = chain {
                // Newest first down the chain, as far as `after_seq` and `from` allow.
                let floor = ix.floor_for(filter.start_ms());
                let mut hits = Vec::new();
                ix.walk(chain, ix.head(key), applied.recs, |i, r, _| {
                    if r.seq <= after || i < floor {
                        return Ok(false);
                    }
                    if wanted(r) {
                        hits.push(*r);
                    }
                    Ok(true)
                })?;
                hits.reverse();
                for chunk in hits.chunks(512) {
                    if !q.read(chunk, &mut visit)? {
                        return Ok(q.n);
                    }
                }
            } else {
                let (mut recs, mut buf, mut hits) = (Vec::new(), Vec::new(), Vec::new());
                let first = ix.first_after(after, applied.recs)? / BLOCK;
                for b in ix.blocks_for(filter.start_ms(), filter.end_ms(), applied.recs) {
                    if b < first {
                        continue;
                    }
                    ix.read_block(b, applied.recs, &mut recs, &mut buf)?;
                    hits.clear();
                    hits.extend(recs.iter().filter(|r| wanted(r)));
                    if !q.read(&hits, &mut visit)? {
                        return Ok(q.n);
                    }
                }
            }
        }
        // What the index has not applied yet, from the log.
        let indexed = index.is_some();
        let start = if indexed { applied.end } else { 0 };
        read_lines(&self.path, start, durable.end, |_, line| {
            let Some(mut e) = parse_line(line) else {
                return Ok(true);
            };
            if e.seq <= applied.seq && indexed {
                return Ok(true);
            }
            let keep = filter.matches(&e);
            if let (Some(set), false) = (&e.record.returned_set, e.record.returned.is_empty()) {
                q.sets
                    .found
                    .entry((e.record.patient.clone(), set.clone()))
                    .or_insert_with(|| e.record.returned.clone());
            } else if keep {
                e = q.fill(e, None)?;
            }
            if keep {
                q.n += 1;
                if !visit(e) || q.n >= limit {
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        Ok(q.n)
    }

    fn queue(
        &self,
        record: AuditRecord,
    ) -> Result<oneshot::Receiver<Result<AuditEntry, StoreError>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .as_ref()
            .ok_or(StoreError::WriterGone)?
            .send((record.bounded(), reply))
            .map_err(|_| StoreError::WriterGone)?;
        Ok(rx)
    }

    /// Appends a record; returns once it is durable.
    pub async fn append(&self, record: AuditRecord) -> Result<AuditEntry, StoreError> {
        self.queue(record)?
            .await
            .map_err(|_| StoreError::WriterGone)?
    }

    /// Blocking form of [`AuditLog::append`].
    pub fn append_blocking(&self, record: AuditRecord) -> Result<AuditEntry, StoreError> {
        self.queue(record)?
            .blocking_recv()
            .map_err(|_| StoreError::WriterGone)?
    }

    /// Reads every entry that `keep` accepts (a linear scan; the log is the source of truth).
    pub fn scan(
        &self,
        mut keep: impl FnMut(&AuditEntry) -> bool,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let f = File::open(&self.path).map_err(|e| StoreError::io(&self.path, e))?;
        let mut out = Vec::new();
        // Sets listed in full by kept records (a set is listed before it is named alone, by
        // a record of the same patient, so a patient filter keeps both).
        let mut sets: std::collections::HashMap<String, Vec<String>> = Default::default();
        for line in BufReader::new(f).lines() {
            let line = line.map_err(|e| StoreError::io(&self.path, e))?;
            if line.is_empty() {
                continue;
            }
            if let Ok(mut e) = serde_json::from_str::<AuditEntry>(&line) {
                if keep(&e) {
                    if let Some(set) = &e.record.returned_set {
                        if e.record.returned.is_empty() {
                            if let Some(list) = sets.get(set) {
                                e.record.returned = list.clone();
                            }
                        } else if !sets.contains_key(set) {
                            sets.insert(set.clone(), e.record.returned.clone());
                        }
                    }
                    out.push(e);
                }
            }
        }
        Ok(out)
    }

    /// Verifies the whole chain of `dir/audit.log` and names the first broken record.
    pub fn verify(dir: impl AsRef<Path>) -> Result<AuditVerify, StoreError> {
        let path = dir.as_ref().join("audit.log");
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(AuditVerify {
                    entries: 0,
                    broken: None,
                })
            }
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let mut prev = GENESIS.to_string();
        let mut n = 0u64;
        for (i, line) in BufReader::new(f).split(b'\n').enumerate() {
            let line = line.map_err(|e| StoreError::io(&path, e))?;
            let text = String::from_utf8_lossy(&line);
            match check_line(&text, n + 1, &prev) {
                Ok(e) => {
                    prev = e.hash;
                    n += 1;
                }
                Err(reason) => {
                    return Ok(AuditVerify {
                        entries: n,
                        broken: Some(AuditBreak {
                            line: i as u64 + 1,
                            seq: n + 1,
                            reason,
                        }),
                    })
                }
            }
        }
        Ok(AuditVerify {
            entries: n,
            broken: None,
        })
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // The writer has dropped its sender: the indexer applies what is left (a catch-up
        // stops where it is), checkpoints and ends.
        self.progress
            .closing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.indexer.take() {
            let _ = t.join();
        }
    }
}

/// Fills `returned` of a record naming a set from `sets` (listings seen so far), or records
/// the listing it holds.
fn fill_from(
    sets: &mut HashMap<(Option<String>, String), Vec<String>>,
    mut e: AuditEntry,
) -> AuditEntry {
    if let Some(set) = &e.record.returned_set {
        let key = (e.record.patient.clone(), set.clone());
        if e.record.returned.is_empty() {
            if let Some(list) = sets.get(&key) {
                e.record.returned = list.clone();
            }
        } else {
            sets.entry(key).or_insert_with(|| e.record.returned.clone());
        }
    }
    e
}

/// Whether `m` (a checkpoint's marker) names a line of the log (complete length `len`): the
/// line at its offset is its record, with its hash, and the end it covered is in the log.
fn marker_ok(log: &File, len: u64, m: &Marker) -> bool {
    if m.seq == 0 {
        // Nothing indexed yet: only unreadable lines were seen, up to `end`.
        return m.end <= len;
    }
    m.end <= len && m.off + u64::from(m.len) < m.end && {
        let mut b = vec![0u8; m.len as usize + 1];
        log.read_exact_at(&mut b, m.off).is_ok()
            && b.last() == Some(&b'\n')
            && light_item(&b[..m.len as usize], m.off)
                .is_some_and(|it| it.seq == m.seq && it.hash == m.hash)
    }
}

/// The index thread: opens the index in `ipath` and checks it against the log (a mismatched
/// or unreadable one is rebuilt), catches it up with the log as it was at open (`open_end`),
/// then applies what the writer sends after each sync, a queue-full at a time, checkpointing
/// every [`crate::index::CHECKPOINT_EVERY`] records and at the end. After an index error
/// it stops applying (queries then read the growing unapplied part from the log, and the
/// next open catches up).
fn indexer(
    ipath: PathBuf,
    path: PathBuf,
    progress: Arc<Progress>,
    open_end: u64,
    rx: mpsc::Receiver<Vec<Item>>,
) {
    const CATCH_UP_BATCH: usize = 20_000;
    let guard = LoadGuard(progress.clone());
    let t0 = std::time::Instant::now();
    let loaded = File::open(&path)
        .map_err(|e| StoreError::io(&path, e))
        .and_then(|log| AuditIndex::load(&ipath, |m| marker_ok(&log, open_end, m)));
    let (ix, mut app) = match loaded {
        Ok((ix, app)) => (Arc::new(ix), app),
        Err(e) => {
            tracing::error!(error = %e, "audit index cannot be opened or made; queries read the log");
            progress.set_index(IndexState::Off, Mark::default());
            while rx.recv().is_ok() {}
            return;
        }
    };
    let mark = |app: &Appender| Mark {
        seq: app.marker.seq,
        end: app.marker.end,
        recs: app.records(),
    };
    let from = mark(&app);
    progress.set_index(IndexState::Ready(ix.clone()), from);
    drop(guard);
    tracing::debug!(
        seq = from.seq,
        ms = t0.elapsed().as_millis() as u64,
        "audit index loaded"
    );
    let (mut failed, mut stopped) = (false, false);
    if from.end < open_end {
        let mut items = Vec::with_capacity(CATCH_UP_BATCH);
        let mut end = from.end;
        let res = read_lines(&path, from.end, open_end, |off, line| {
            if progress.closing.load(std::sync::atomic::Ordering::Relaxed) {
                // What the writer queued lies beyond the gap: left to the next open.
                stopped = true;
                return Ok(false);
            }
            if let Some(it) = light_item(line, off) {
                items.push(it);
            }
            end = off + line.len() as u64 + 1;
            if items.len() >= CATCH_UP_BATCH {
                ix.apply(&mut app, &items, end)?;
                progress.set_applied(mark(&app));
                items.clear();
                if app.checkpoint_due() {
                    ix.checkpoint(&mut app)?;
                }
            }
            Ok(true)
        })
        .and_then(|_| ix.apply(&mut app, &items, end))
        .and_then(|_| {
            progress.set_applied(mark(&app));
            ix.checkpoint(&mut app)
        });
        match res {
            Ok(()) => tracing::info!(
                seq = app.marker.seq,
                ms = t0.elapsed().as_millis() as u64,
                stopped,
                "audit index caught up with audit.log (or stopped at close)"
            ),
            Err(e) => {
                tracing::error!(error = %e, "audit index catch-up failed; queries read the log");
                failed = true;
            }
        }
    }
    while let Ok(first) = rx.recv() {
        let mut items = first;
        while let Ok(more) = rx.try_recv() {
            items.extend(more);
        }
        if failed || stopped {
            continue;
        }
        let Some(last) = items.last() else { continue };
        let end = last.off + u64::from(last.len) + 1;
        let res = ix.apply(&mut app, &items, end).and_then(|_| {
            progress.set_applied(mark(&app));
            if app.checkpoint_due() {
                ix.checkpoint(&mut app)?;
            }
            Ok(())
        });
        if let Err(e) = res {
            tracing::error!(error = %e, "audit index update failed; queries read the log");
            failed = true;
        }
    }
    if !failed && !stopped {
        if let Err(e) = ix.checkpoint(&mut app) {
            tracing::warn!(error = %e, "audit index checkpoint failed");
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn writer(
    mut file: File,
    path: PathBuf,
    rx: mpsc::Receiver<(AuditRecord, Reply)>,
    mut seq: u64,
    mut prev: String,
    mut end: u64,
    progress: Arc<Progress>,
    itx: Option<mpsc::Sender<Vec<Item>>>,
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < 4096 {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut buf = Vec::new();
        let mut done: Vec<(Result<AuditEntry, StoreError>, Reply)> = Vec::new();
        // Line lengths (without newline) of the entries made, in order.
        let mut lens: Vec<u32> = Vec::new();
        let (seq0, prev0) = (seq, prev.clone());
        for (record, reply) in jobs {
            match entry_line(seq + 1, at.clone(), prev.clone(), record) {
                Ok((entry, line)) => {
                    seq += 1;
                    prev = entry.hash.clone();
                    lens.push(line.len() as u32 - 1);
                    buf.extend_from_slice(&line);
                    done.push((Ok(entry), reply));
                }
                Err(e) => done.push((Err(e), reply)),
            }
        }
        let res = file.write_all(&buf).and_then(|_| file.sync_data());
        if let Err(e) = res {
            tracing::error!(error = %e, "audit log write failed");
            // Nothing of this batch is acknowledged; cut back to the last durable record.
            let len = file
                .metadata()
                .map(|m| m.len().saturating_sub(buf.len() as u64));
            if let Ok(len) = len {
                let _ = file.set_len(len);
            }
            if let Ok(m) = file.metadata() {
                end = m.len();
            }
            seq = seq0;
            prev = prev0;
            for (_, reply) in done {
                let _ = reply.send(Err(StoreError::io(
                    &path,
                    std::io::Error::other(e.to_string()),
                )));
            }
            continue;
        }
        // Durable: queries see it (from the log until the index has it) before any caller
        // is answered; the index update itself is the indexer's, off this path.
        let items = itx.as_ref().map(|_| {
            let ms = at_ms(&at);
            let mut off = end;
            done.iter()
                .filter_map(|(r, _)| r.as_ref().ok())
                .zip(&lens)
                .map(|(e, len)| {
                    let it = item_of(e, off, *len, ms);
                    off += u64::from(*len) + 1;
                    it
                })
                .collect::<Vec<_>>()
        });
        end += buf.len() as u64;
        progress.set_durable(Mark { seq, end, recs: 0 });
        for (r, reply) in done {
            let _ = reply.send(r);
        }
        if let (Some(itx), Some(items)) = (&itx, items) {
            let _ = itx.send(items);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u32) -> AuditRecord {
        AuditRecord {
            actor: format!("dr{i}"),
            institution: "FX-ZX".into(),
            role: "clinician".into(),
            action: "read_results".into(),
            patient: Some("nidk:abc".into()),
            outcome: "ok".into(),
            ..Default::default()
        }
    }

    #[test]
    fn long_text_is_cut_with_its_hash_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        let long = "长".repeat(100_000);
        let mut r = rec(1);
        r.outcome = format!("invalid: {long}");
        r.detail = serde_json::json!({"other_text": long, "short": "ok",
            "nested": {"reason": long, "list": [long, "x"]}, "n": 3});
        let e = log.append_blocking(r).unwrap();
        let d = &e.record.detail;
        let whole = ContentHash::of(long.as_bytes()).to_string();
        assert_eq!(d["other_text"].as_str().unwrap().chars().count(), 501);
        assert_eq!(d["other_text_blake3"], whole.as_str());
        assert_eq!(d["other_text_chars"], 100_000);
        assert_eq!(d["nested"]["reason_blake3"], whole.as_str());
        assert!(d["nested"]["list"][0]
            .as_str()
            .unwrap()
            .ends_with(&format!("{whole}]")));
        assert_eq!(
            (&d["short"], &d["n"]),
            (&serde_json::json!("ok"), &serde_json::json!(3))
        );
        assert!(e.record.outcome.chars().count() < 600);
        let size = std::fs::metadata(dir.path().join("audit.log"))
            .unwrap()
            .len();
        assert!(size < 8_000, "{size} bytes");
        drop(log);
        assert!(AuditLog::verify(dir.path()).unwrap().broken.is_none());
    }

    #[test]
    fn chain_survives_reopen_and_detects_tampering() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = AuditLog::open(dir.path()).unwrap();
            for i in 0..5 {
                assert_eq!(log.append_blocking(rec(i)).unwrap().seq, u64::from(i) + 1);
            }
        }
        {
            let log = AuditLog::open(dir.path()).unwrap();
            let e = log.append_blocking(rec(9)).unwrap();
            assert_eq!(e.seq, 6);
            assert_eq!(log.scan(|e| e.record.actor == "dr9").unwrap().len(), 1);
        }
        let v = AuditLog::verify(dir.path()).unwrap();
        assert_eq!((v.entries, v.broken.is_none()), (6, true));
        // Edit one byte of record 3.
        let p = dir.path().join("audit.log");
        let text = std::fs::read_to_string(&p).unwrap();
        let edited = text.replacen("\"actor\":\"dr2\"", "\"actor\":\"dr7\"", 1);
        assert_ne!(text, edited);
        std::fs::write(&p, edited).unwrap();
        let v = AuditLog::verify(dir.path()).unwrap();
        let b = v.broken.unwrap();
        assert_eq!((b.line, b.seq), (3, 3), "{b:?}");
        assert!(b.reason.contains("hash"), "{b:?}");
    }

    #[test]
    fn records_longer_than_a_read_chunk_reopen() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..2u64 {
            let log = AuditLog::open(dir.path()).unwrap();
            let mut r = rec(1);
            r.returned = (0..3000).map(|i| format!("blake3:{i:064}")).collect();
            assert_eq!(log.append_blocking(r).unwrap().seq, 2 * round + 1);
            assert_eq!(log.append_blocking(rec(2)).unwrap().seq, 2 * round + 2);
            drop(log);
            if round == 0 {
                // A long record torn mid-way.
                let p = dir.path().join("audit.log");
                let mut f = OpenOptions::new().append(true).open(&p).unwrap();
                f.write_all(&vec![b'x'; 200_000]).unwrap();
            }
        }
        assert!(AuditLog::verify(dir.path()).unwrap().broken.is_none());
        let log = AuditLog::open(dir.path()).unwrap();
        assert_eq!(log.append_blocking(rec(4)).unwrap().seq, 5);
    }

    #[test]
    fn torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = AuditLog::open(dir.path()).unwrap();
            log.append_blocking(rec(1)).unwrap();
        }
        let p = dir.path().join("audit.log");
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"seq\":2,\"at\":\"x").unwrap();
        drop(f);
        let log = AuditLog::open(dir.path()).unwrap();
        assert_eq!(log.append_blocking(rec(2)).unwrap().seq, 2);
        drop(log);
        assert!(AuditLog::verify(dir.path()).unwrap().broken.is_none());
    }

    #[test]
    fn a_named_set_is_read_back_as_its_list_and_the_chain_covers_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        let set = Some("blake3:set1".to_string());
        let mut first = rec(1);
        first.returned = vec!["blake3:a".into(), "blake3:b".into()];
        first.returned_set = set.clone();
        log.append_blocking(first).unwrap();
        let mut again = rec(2);
        again.returned_set = set.clone();
        log.append_blocking(again).unwrap();
        let mut unknown = rec(3);
        unknown.returned_set = Some("blake3:other".into());
        log.append_blocking(unknown).unwrap();
        let got = log.scan(|_| true).unwrap();
        assert_eq!(got[1].record.returned, ["blake3:a", "blake3:b"]);
        assert!(
            got[2].record.returned.is_empty(),
            "never listed: left as named"
        );
        // The short record is what is on disk, and it is chained.
        let text = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
        // (Not "blake3:a": the chain's `prev` hash may begin with it.)
        assert_eq!(
            text.lines().nth(1).map(|l| l.contains("\"returned\"")),
            Some(false)
        );
        drop(log);
        let v = AuditLog::verify(dir.path()).unwrap();
        assert_eq!((v.entries, v.broken.is_none()), (3, true));
    }

    // ---- the index ----

    const ACTIONS: [&str; 4] = ["read_results", "check", "decision", "read_audit"];

    /// Every line of the log, with `returned` filled per patient from the first earlier
    /// listing: what a query must answer, before filtering.
    fn model(dir: &Path) -> Vec<AuditEntry> {
        let text = std::fs::read(dir.join("audit.log")).unwrap();
        let mut sets = HashMap::new();
        text.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(parse_line)
            .map(|e| fill_from(&mut sets, e))
            .collect()
    }

    fn expect(all: &[AuditEntry], f: &AuditFilter) -> Vec<AuditEntry> {
        let mut v: Vec<AuditEntry> = all.iter().filter(|e| f.matches(e)).cloned().collect();
        if let Some(l) = f.limit {
            v.truncate(l);
        }
        v
    }

    fn set_of(list: &[String]) -> String {
        let mut l = list.to_vec();
        l.sort();
        ContentHash::of(&serde_json::to_vec(&l).unwrap()).to_string()
    }

    /// A record from a few random numbers: patients p0..p5 (or none), actors a0..a3, sets
    /// listed in full then named alone, like the API does.
    fn gen(x: u64, listed: &mut Vec<(Option<String>, Vec<String>)>) -> AuditRecord {
        let patient = (x % 7 != 6).then(|| format!("nidk:p{}", x % 6));
        let mut r = AuditRecord {
            actor: format!("a{}", (x >> 3) % 4),
            institution: "H1".into(),
            role: "clinician".into(),
            action: ACTIONS[((x >> 5) % 4) as usize].into(),
            patient: patient.clone(),
            break_glass: (x >> 7) % 9 < 1,
            outcome: "ok".into(),
            ..Default::default()
        };
        if (x >> 40).is_multiple_of(4) {
            // Other persons (p6 only ever appears here).
            r.detail =
                serde_json::json!({ "persons": [format!("nidk:p{}", (x >> 42) % 7), "nidk:p6"] });
        }
        match (x >> 9) % 4 {
            0 => {
                let list: Vec<String> = (0..1 + (x >> 11) % 3)
                    .map(|k| format!("blake3:{:064x}", (x >> 13) % 5 + k))
                    .collect();
                r.returned_set = Some(set_of(&list));
                r.returned = list.clone();
                listed.push((patient, list));
            }
            1 => {
                // Name a set listed earlier (by this or, sometimes, another patient).
                if let Some((p, list)) = listed.get(((x >> 11) as usize) % listed.len().max(1)) {
                    r.patient = p.clone();
                    r.returned_set = Some(set_of(list));
                }
            }
            2 => r.returned_set = Some("blake3:never-listed".into()),
            _ => {}
        }
        r
    }

    fn filters(x: u64, t0: DateTime<Utc>) -> AuditFilter {
        let mut f = AuditFilter::default();
        if x % 3 < 1 {
            f.patient = Some(format!("nidk:p{}", (x >> 2) % 7));
        }
        if (x >> 5) % 3 < 1 {
            f.actor = Some(format!("a{}", (x >> 7) % 5));
        }
        if (x >> 10) % 2 < 1 {
            f.from = Some(t0 + chrono::Duration::seconds(((x >> 11) % 60) as i64));
        }
        if (x >> 17) % 2 < 1 {
            f.to = Some(t0 + chrono::Duration::seconds(((x >> 18) % 90) as i64));
        }
        if (x >> 25) % 2 < 1 {
            f.actions = Some(vec![
                ACTIONS[((x >> 26) % 4) as usize].into(),
                "stats".into(),
            ]);
        }
        if (x >> 28) % 4 < 1 {
            f.after_seq = Some((x >> 30) % 40);
        }
        // A limit picks the first records in sequence order when a patient or an actor drives
        // the query; times below are not monotonic, so only then.
        if (x >> 36) % 3 < 1 && (f.patient.is_some() || f.actor.is_some()) {
            f.limit = Some(((x >> 38) % 10) as usize);
        }
        f
    }

    fn check_all(log: &AuditLog, dir: &Path, seeds: &[u64], t0: DateTime<Utc>) {
        let all = model(dir);
        for p in (0..7).map(|i| format!("nidk:p{i}")) {
            let want = log
                .scan(|e| e.record.patient.as_deref() == Some(p.as_str()))
                .unwrap();
            let got = log.query(&AuditFilter::patient(&p)).unwrap();
            assert_eq!(got, expect(&all, &AuditFilter::patient(&p)), "{p}");
            // Its own records (not those naming it in `detail.persons`) are `scan`'s.
            let own: Vec<_> = got
                .into_iter()
                .filter(|e| e.record.patient.as_deref() == Some(p.as_str()))
                .collect();
            assert_eq!(own, want, "{p}");
        }
        assert_eq!(log.query(&AuditFilter::default()).unwrap(), all);
        for x in seeds {
            let f = filters(*x, t0);
            let mut streamed = Vec::new();
            let n = log
                .for_each(&f, |e| {
                    streamed.push(e);
                    true
                })
                .unwrap();
            streamed.sort_by_key(|e| e.seq);
            assert_eq!(n, streamed.len());
            let got = log.query(&f).unwrap();
            assert_eq!(got, expect(&all, &f), "{f:?}");
            assert_eq!(streamed, got, "{f:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Random logs written in sessions: through the writer (indexed after each sync) and,
        /// between sessions, directly with random times (the index behind the log, as after a
        /// crash before its update). Queries equal the model (and `scan` for a patient) while
        /// the index is behind, and after it has caught up.
        #[test]
        fn index_answers_like_the_log(
            sessions in proptest::collection::vec(
                (proptest::collection::vec(proptest::prelude::any::<u64>(), 0..40),
                 proptest::collection::vec(proptest::prelude::any::<u64>(), 0..40)),
                1..4),
            seeds in proptest::collection::vec(proptest::prelude::any::<u64>(), 12),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let t0 = Utc::now() - chrono::Duration::seconds(30);
            let mut listed = Vec::new();
            for (live, direct) in &sessions {
                let recs: Vec<_> = direct
                    .iter()
                    .map(|x| (t0 + chrono::Duration::milliseconds((x % 60_000) as i64), gen(*x, &mut listed)))
                    .collect();
                AuditLog::append_at_unopened(dir.path(), recs).unwrap();
                let log = AuditLog::open(dir.path()).unwrap();
                check_all(&log, dir.path(), &seeds, t0);
                for x in live {
                    log.append_blocking(gen(*x, &mut listed)).unwrap();
                }
                check_all(&log, dir.path(), &seeds, t0);
                assert!(log.wait_for_index(Duration::from_secs(10)));
                check_all(&log, dir.path(), &seeds, t0);
                let st = log.index_status();
                proptest::prop_assert!(st.enabled && st.indexed_seq == st.durable_seq);
            }
            proptest::prop_assert!(AuditLog::verify(dir.path()).unwrap().broken.is_none());
        }
    }

    fn fill_log(dir: &Path, n: u64) {
        let log = AuditLog::open(dir).unwrap();
        let mut listed = Vec::new();
        for i in 0..n {
            log.append_blocking(gen(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), &mut listed))
                .unwrap();
        }
        assert!(log.wait_for_index(Duration::from_secs(10)));
    }

    fn same_as_scan(dir: &Path) {
        let log = AuditLog::open(dir).unwrap();
        assert!(log.wait_for_index(Duration::from_secs(10)));
        let st = log.index_status();
        assert!(st.enabled && st.indexed_seq == st.durable_seq, "{st:?}");
        let all = model(dir);
        for p in (0..7).map(|i| format!("nidk:p{i}")) {
            let want = log
                .scan(|e| e.record.patient.as_deref() == Some(p.as_str()))
                .unwrap();
            let got = log.query(&AuditFilter::patient(&p)).unwrap();
            assert_eq!(got, expect(&all, &AuditFilter::patient(&p)), "{p}");
            let own: Vec<_> = got
                .into_iter()
                .filter(|e| e.record.patient.as_deref() == Some(p.as_str()))
                .collect();
            assert_eq!(own, want);
        }
        assert_eq!(log.query(&AuditFilter::default()).unwrap(), all);
    }

    #[test]
    fn a_deleted_index_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        fill_log(dir.path(), 200);
        std::fs::remove_dir_all(dir.path().join("audit-index")).unwrap();
        same_as_scan(dir.path());
    }

    #[test]
    fn an_index_of_another_log_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        fill_log(dir.path(), 120);
        // Its checkpoint's marker names a record that is not in the log.
        AuditIndex::set_marker_hash_for_test(
            &dir.path().join("audit-index"),
            "blake3:not-this-log",
        );
        same_as_scan(dir.path());
        // A log shorter than the index (restored from an older copy).
        let p = dir.path().join("audit.log");
        let text = std::fs::read_to_string(&p).unwrap();
        let half: String = text.lines().take(50).map(|l| format!("{l}\n")).collect();
        std::fs::write(&p, half).unwrap();
        same_as_scan(dir.path());
        let log = AuditLog::open(dir.path()).unwrap();
        assert_eq!(log.append_blocking(rec(1)).unwrap().seq, 51);
    }

    #[test]
    fn a_damaged_index_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        fill_log(dir.path(), 150);
        let ipath = dir.path().join("audit-index");
        for e in std::fs::read_dir(&ipath).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                std::fs::write(&p, b"garbage, not an index").unwrap();
            }
        }
        same_as_scan(dir.path());
    }

    #[test]
    fn an_index_behind_the_log_catches_up_and_queries_see_every_record_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        fill_log(dir.path(), 100);
        // Records durable in the log that the index never saw (a crash before its update).
        let t = Utc::now();
        let extra = (0..30).map(|i| {
            let mut r = rec(i);
            r.patient = Some("nidk:p0".into());
            (t, r)
        });
        assert_eq!(
            AuditLog::append_at_unopened(dir.path(), extra).unwrap(),
            130
        );
        let want = model(dir.path());
        let log = AuditLog::open(dir.path()).unwrap();
        // Whether or not the indexer has caught up yet, the answer is complete.
        assert_eq!(log.query(&AuditFilter::default()).unwrap(), want);
        assert!(log.wait_for_index(Duration::from_secs(10)));
        assert_eq!(log.index_status().indexed_seq, 130);
        drop(log);
        same_as_scan(dir.path());
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_index_follows() {
        let dir = tempfile::tempdir().unwrap();
        fill_log(dir.path(), 40);
        let p = dir.path().join("audit.log");
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"seq\":41,\"at\":\"x").unwrap();
        drop(f);
        let log = AuditLog::open(dir.path()).unwrap();
        let mut r = rec(1);
        r.patient = Some("nidk:p3".into());
        assert_eq!(log.append_blocking(r).unwrap().seq, 41);
        // Seen at once (from the log or the index).
        let got = log.query(&AuditFilter::patient("nidk:p3")).unwrap();
        assert_eq!(got.last().map(|e| e.seq), Some(41));
        drop(log);
        assert!(AuditLog::verify(dir.path()).unwrap().broken.is_none());
        same_as_scan(dir.path());
    }

    #[test]
    fn days_paging_and_a_set_listed_before_the_page() {
        let dir = tempfile::tempdir().unwrap();
        let day = |d: u32, h: u32| {
            NaiveDate::from_ymd_opt(2026, 3, d)
                .unwrap()
                .and_hms_opt(h, 0, 0)
                .unwrap()
                .and_utc()
        };
        let list = vec!["blake3:a".to_string(), "blake3:b".to_string()];
        let mut first = rec(1);
        first.returned = list.clone();
        first.returned_set = Some("blake3:s".into());
        let mut again = rec(2);
        again.returned_set = Some("blake3:s".into());
        again.action = "check".into();
        AuditLog::append_at_unopened(
            dir.path(),
            [
                (day(1, 23), first),
                (day(2, 0), again.clone()),
                (day(2, 23), rec(3)),
                (day(3, 0), again),
            ],
        )
        .unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        assert!(log.wait_for_index(Duration::from_secs(10)));
        let d2 = NaiveDate::from_ymd_opt(2026, 3, 2);
        let got = log.query(&AuditFilter::default().days(d2, d2)).unwrap();
        assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
        // The set was listed on day 1, outside the range: still filled.
        assert_eq!(got[0].record.returned, list);
        let f = AuditFilter {
            actions: Some(vec!["check".into()]),
            after_seq: Some(2),
            ..AuditFilter::patient("nidk:abc")
        };
        let got = log.query(&f).unwrap();
        assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), [4]);
        assert_eq!(got[0].record.returned, list);
        let f = AuditFilter {
            limit: Some(2),
            ..AuditFilter::patient("nidk:abc")
        };
        assert_eq!(log.query(&f).unwrap().len(), 2);
        assert_eq!(log.query(&AuditFilter::patient("nidk:zzz")).unwrap(), []);
    }

    #[test]
    fn persons_in_detail_are_found_by_patient() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |patient: Option<&str>, persons: serde_json::Value| {
            let mut r = rec(1);
            r.patient = patient.map(String::from);
            r.detail =
                serde_json::json!({ "persons": persons, "other": [1, {"persons": ["nidk:no"]}] });
            r
        };
        // Written before open (caught up from the log) and after (indexed live).
        AuditLog::append_at_unopened(
            dir.path(),
            [
                (
                    Utc::now(),
                    mk(Some("nidk:a"), serde_json::json!(["nidk:b", "nidk:c"])),
                ),
                (Utc::now(), mk(None, serde_json::json!(["nidk:b"]))),
                (
                    Utc::now(),
                    mk(Some("nidk:c"), serde_json::json!(["nidk:c", "nidk:c", 7])),
                ),
                (Utc::now(), mk(Some("nidk:d"), serde_json::json!("nidk:b"))),
            ],
        )
        .unwrap();
        let seqs = |log: &AuditLog, k: &str| {
            log.query(&AuditFilter::patient(k))
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        };
        let check = |log: &AuditLog| {
            assert_eq!(seqs(log, "nidk:a"), [1, 5]);
            assert_eq!(seqs(log, "nidk:b"), [1, 2, 5, 6]);
            assert_eq!(seqs(log, "nidk:c"), [1, 3, 5]);
            assert_eq!(seqs(log, "nidk:d"), [4]);
            assert!(seqs(log, "nidk:no").is_empty());
            let f = AuditFilter {
                after_seq: Some(1),
                limit: Some(2),
                ..AuditFilter::patient("nidk:b")
            };
            assert_eq!(
                log.query(&f)
                    .unwrap()
                    .iter()
                    .map(|e| e.seq)
                    .collect::<Vec<_>>(),
                [2, 5]
            );
        };
        let log = AuditLog::open(dir.path()).unwrap();
        log.append_blocking(mk(Some("nidk:a"), serde_json::json!(["nidk:b", "nidk:c"])))
            .unwrap();
        log.append_blocking(mk(Some("nidk:e"), serde_json::json!(["nidk:b"])))
            .unwrap();
        check(&log);
        assert!(log.wait_for_index(Duration::from_secs(10)));
        check(&log);
        drop(log);
        // After a reopen (from the checkpoint) and after a rebuild.
        check(&AuditLog::open(dir.path()).unwrap());
        std::fs::remove_dir_all(dir.path().join("audit-index")).unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        assert!(log.wait_for_index(Duration::from_secs(10)));
        check(&log);
    }

    #[test]
    fn records_written_after_the_checkpoint_are_redone_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        fill_log(dir.path(), 60);
        let cp = dir.path().join("audit-index/checkpoint");
        let old = std::fs::read(&cp).unwrap();
        {
            let log = AuditLog::open(dir.path()).unwrap();
            let mut listed = Vec::new();
            for i in 0..40u64 {
                log.append_blocking(gen(i.wrapping_mul(0xD1B5_4A32_D192_ED03), &mut listed))
                    .unwrap();
            }
        }
        // As after a crash before the next checkpoint: the files hold more than it covers
        // (and a torn record at the end).
        std::fs::write(&cp, old).unwrap();
        let rp = dir.path().join("audit-index/records");
        let mut f = OpenOptions::new().append(true).open(&rp).unwrap();
        f.write_all(&[7u8; 20]).unwrap();
        drop(f);
        same_as_scan(dir.path());
        assert_eq!(
            std::fs::metadata(&rp).unwrap().len(),
            100 * crate::index::REC as u64
        );
    }

    #[test]
    fn a_sled_index_of_the_previous_format_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        fill_log(dir.path(), 30);
        let ipath = dir.path().join("audit-index");
        std::fs::remove_dir_all(&ipath).unwrap();
        drop(sled::Config::new().path(&ipath).open().unwrap());
        assert!(ipath.join("conf").exists() || ipath.join("db").exists());
        same_as_scan(dir.path());
        assert!(ipath.join("checkpoint").exists() && !ipath.join("db").exists());
    }

    #[test]
    fn time_ranges_and_actors_use_the_blocks_and_chains() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = NaiveDate::from_ymd_opt(2026, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc();
        // 3,000 records a minute apart: three blocks, one actor in seven.
        let recs = (0..3000i64).map(|i| {
            let mut r = rec((i % 7) as u32);
            r.action = ACTIONS[(i % 4) as usize].into();
            (t0 + chrono::Duration::minutes(i), r)
        });
        AuditLog::append_at_unopened(dir.path(), recs).unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        assert!(log.wait_for_index(Duration::from_secs(10)));
        let all = model(dir.path());
        let d = NaiveDate::from_ymd_opt(2026, 1, 2);
        for f in [
            AuditFilter::default().days(d, d),
            AuditFilter {
                actor: Some("dr3".into()),
                actions: Some(vec!["check".into()]),
                ..AuditFilter::default().days(d, None)
            },
            AuditFilter {
                actor: Some("dr3".into()),
                limit: Some(5),
                after_seq: Some(1000),
                ..Default::default()
            },
        ] {
            let got = log.query(&f).unwrap();
            assert!(!got.is_empty(), "{f:?}");
            assert_eq!(got, expect(&all, &f), "{f:?}");
        }
    }

    #[test]
    fn closing_during_a_catch_up_keeps_a_consistent_index() {
        let dir = tempfile::tempdir().unwrap();
        fill_log(dir.path(), 10);
        let t = Utc::now();
        let mut listed = Vec::new();
        let recs: Vec<_> = (0..30_000u64)
            .map(|i| (t, gen(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), &mut listed)))
            .collect();
        AuditLog::append_at_unopened(dir.path(), recs).unwrap();
        {
            // Closed at once, with appends queued behind the catch-up.
            let log = AuditLog::open(dir.path()).unwrap();
            log.append_blocking(rec(1)).unwrap();
        }
        same_as_scan(dir.path());
    }
}
