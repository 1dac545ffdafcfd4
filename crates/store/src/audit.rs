//! The audit log: append-only, hash-chained JSON lines, group-committed (one `fdatasync` per
//! batch) by its own writer thread. Every read of patient data and every decision is one
//! record; the answer to the request goes out only after its record is durable.
//!
//! Line format: the canonical JSON of an [`AuditEntry`]. `hash` is BLAKE3 over the canonical
//! JSON of the entry without `hash`; `prev` is the previous entry's `hash` (the first entry's
//! `prev` is `blake3:` + 64 zeros). Editing any byte of any record breaks the chain at that
//! record, which [`AuditLog::verify`] names.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use huren_model::ContentHash;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::StoreError;

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

const GENESIS: &str = "blake3:0000000000000000000000000000000000000000000000000000000000000000";

type Reply = oneshot::Sender<Result<AuditEntry, StoreError>>;

/// The audit log of one store directory (`audit.log`).
pub struct AuditLog {
    path: PathBuf,
    tx: Option<mpsc::Sender<(AuditRecord, Reply)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn hash_of(entry_without_hash: &serde_json::Value) -> Result<String, StoreError> {
    let bytes = huren_model::canonical_json(entry_without_hash)?;
    Ok(ContentHash::of(&bytes).to_string())
}

fn entry_line(
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

/// Checks one line against the chain; returns its entry.
fn check_line(line: &str, seq: u64, prev: &str) -> Result<AuditEntry, String> {
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
        let (tx, rx) = mpsc::channel::<(AuditRecord, Reply)>();
        let wpath = path.clone();
        let thread = std::thread::Builder::new()
            .name("huren-audit".into())
            .spawn(move || writer(file, wpath, rx, seq, prev))
            .map_err(io)?;
        Ok(AuditLog {
            path,
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn submit(
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
        self.submit(record)?
            .await
            .map_err(|_| StoreError::WriterGone)?
    }

    /// Blocking form of [`AuditLog::append`].
    pub fn append_blocking(&self, record: AuditRecord) -> Result<AuditEntry, StoreError> {
        self.submit(record)?
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
    }
}

fn writer(
    mut file: File,
    path: PathBuf,
    rx: mpsc::Receiver<(AuditRecord, Reply)>,
    mut seq: u64,
    mut prev: String,
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
        let (seq0, prev0) = (seq, prev.clone());
        for (record, reply) in jobs {
            match entry_line(seq + 1, at.clone(), prev.clone(), record) {
                Ok((entry, line)) => {
                    seq += 1;
                    prev = entry.hash.clone();
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
        for (r, reply) in done {
            let _ = reply.send(r);
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
}
