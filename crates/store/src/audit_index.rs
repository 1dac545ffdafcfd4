//! The derived index of the audit log: `DATA/audit-index/` (sled 0.34.7), postings of every
//! `audit.log` line by patient (person key), by actor and by time, and the first full listing
//! of each named `returned` set per patient. A posting is the line's position in the log
//! (offset, length) plus its time and action, so a query filters on those before reading a
//! line and then reads only the lines it returns (`pread`). The log stays the truth: a line read
//! through a posting must carry the posting's sequence number, or the query fails (never a
//! wrong answer), and the index is brought up to date from the log at open (see
//! [`crate::audit`]).
//!
//! Every write is idempotent (keys are fixed by the record's sequence number), and the marker
//! of the last applied record (`applied`) is written after the postings of its batch, so a
//! crash that cuts an update short (sled keeps a prefix of its writes) is repaired by applying
//! the same records again.

use std::path::Path;

use crate::StoreError;

/// Layout of the trees below; an index of another format is rebuilt at open.
pub(crate) const FORMAT: u32 = 1;
const FORMAT_KEY: &[u8] = b"format";
const APPLIED: &[u8] = b"applied";
/// sled page cache of the audit index.
const CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// What the index keeps of one audit line.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Item {
    pub seq: u64,
    /// Offset of the line in `audit.log`.
    pub off: u64,
    /// Length of the line without its newline.
    pub len: u32,
    /// `at` in ms since the epoch (`i64::MIN` when it does not parse).
    pub at_ms: i64,
    pub patient: Option<String>,
    pub actor: String,
    pub action: String,
    /// `returned_set` of a line that also lists `returned` in full.
    pub listed_set: Option<String>,
    pub hash: String,
}

/// One posting: where a line is and what a query may filter on before reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Posting {
    pub seq: u64,
    pub off: u64,
    pub len: u32,
    pub at_ms: i64,
    pub action: Vec<u8>,
}

/// The last record the index applied, and the end of the log it covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Marker {
    pub seq: u64,
    pub off: u64,
    pub len: u32,
    /// Log offset up to which every line was applied (or skipped as unreadable).
    pub end: u64,
    pub hash: String,
}

/// Where to read postings from.
pub(crate) enum Source<'a> {
    Patient(&'a str),
    Actor(&'a str),
    /// `[from, to)` in ms.
    Time(Option<i64>, Option<i64>),
}

pub(crate) struct AuditIndex {
    db: sled::Db,
    meta: sled::Tree,
    by_patient: sled::Tree,
    by_actor: sled::Tree,
    by_time: sled::Tree,
    sets: sled::Tree,
}

fn lp(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn name_key(name: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 12);
    lp(&mut k, name);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn time_prefix(at_ms: i64) -> [u8; 8] {
    ((at_ms as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_key(at_ms: i64, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&time_prefix(at_ms));
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn set_key(patient: Option<&str>, set: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(set.len() + 8);
    match patient {
        None => k.push(0),
        Some(p) => {
            k.push(1);
            lp(&mut k, p);
        }
    }
    k.extend_from_slice(set.as_bytes());
    k
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().unwrap_or([0; 8]))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap_or([0; 4]))
}

fn posting_value(it: &Item) -> Vec<u8> {
    let mut v = Vec::with_capacity(20 + it.action.len());
    v.extend_from_slice(&it.off.to_be_bytes());
    v.extend_from_slice(&it.len.to_be_bytes());
    v.extend_from_slice(&it.at_ms.to_be_bytes());
    v.extend_from_slice(it.action.as_bytes());
    v
}

fn posting(seq: u64, v: &[u8]) -> Result<Posting, StoreError> {
    if v.len() < 20 {
        return Err(StoreError::Corrupt("audit index: short posting".into()));
    }
    Ok(Posting {
        seq,
        off: be64(v),
        len: be32(&v[8..]),
        at_ms: be64(&v[12..]) as i64,
        action: v[20..].to_vec(),
    })
}

impl AuditIndex {
    /// Opens (or creates) the index in `dir`; an index of another format is emptied.
    pub(crate) fn open(dir: &Path) -> Result<AuditIndex, StoreError> {
        let db = crate::index::open_db(dir, CACHE_BYTES)?;
        let ix = AuditIndex {
            meta: db.open_tree("meta")?,
            by_patient: db.open_tree("by_patient")?,
            by_actor: db.open_tree("by_actor")?,
            by_time: db.open_tree("by_time")?,
            sets: db.open_tree("sets")?,
            db,
        };
        let format = ix.meta.get(FORMAT_KEY)?.map(|v| be32(&v));
        if format != Some(FORMAT) {
            if format.is_some() || ix.meta.get(APPLIED)?.is_some() {
                tracing::warn!(?format, "audit index of another format; rebuilding");
            }
            for t in [
                &ix.by_patient,
                &ix.by_actor,
                &ix.by_time,
                &ix.sets,
                &ix.meta,
            ] {
                t.clear()?;
            }
            ix.meta.insert(FORMAT_KEY, &FORMAT.to_be_bytes())?;
        }
        Ok(ix)
    }

    /// The last applied record, if any.
    pub(crate) fn marker(&self) -> Result<Option<Marker>, StoreError> {
        let Some(v) = self.meta.get(APPLIED)? else {
            return Ok(None);
        };
        if v.len() < 28 {
            return Err(StoreError::Corrupt("audit index: short marker".into()));
        }
        Ok(Some(Marker {
            seq: be64(&v),
            off: be64(&v[8..]),
            len: be32(&v[16..]),
            end: be64(&v[20..]),
            hash: String::from_utf8_lossy(&v[28..]).into_owned(),
        }))
    }

    /// Applies `items` (in log order), then marks the last of them applied, with `end` the log
    /// offset every line before which has been seen.
    pub(crate) fn apply(&self, items: &[Item], end: u64) -> Result<(), StoreError> {
        let Some(last) = items.last() else {
            return Ok(());
        };
        let (mut p, mut a, mut t) = (
            sled::Batch::default(),
            sled::Batch::default(),
            sled::Batch::default(),
        );
        let mut new_sets: std::collections::HashMap<Vec<u8>, Vec<u8>> = Default::default();
        for it in items {
            let v = posting_value(it);
            if let Some(pat) = &it.patient {
                p.insert(name_key(pat, it.seq), v.clone());
            }
            a.insert(name_key(&it.actor, it.seq), v.clone());
            t.insert(time_key(it.at_ms, it.seq), v);
            if let Some(set) = &it.listed_set {
                let k = set_key(it.patient.as_deref(), set);
                if new_sets.contains_key(&k) {
                    continue;
                }
                // The first listing wins (a replay finds its own, equal, entry).
                let first = match self.sets.get(&k)? {
                    Some(old) => be64(&old) > it.seq,
                    None => true,
                };
                if first {
                    let mut v = Vec::with_capacity(20);
                    v.extend_from_slice(&it.seq.to_be_bytes());
                    v.extend_from_slice(&it.off.to_be_bytes());
                    v.extend_from_slice(&it.len.to_be_bytes());
                    new_sets.insert(k, v);
                }
            }
        }
        self.by_patient.apply_batch(p)?;
        self.by_actor.apply_batch(a)?;
        self.by_time.apply_batch(t)?;
        if !new_sets.is_empty() {
            let mut s = sled::Batch::default();
            for (k, v) in new_sets {
                s.insert(k, v);
            }
            self.sets.apply_batch(s)?;
        }
        let mut m = Vec::with_capacity(28 + last.hash.len());
        m.extend_from_slice(&last.seq.to_be_bytes());
        m.extend_from_slice(&last.off.to_be_bytes());
        m.extend_from_slice(&last.len.to_be_bytes());
        m.extend_from_slice(&end.to_be_bytes());
        m.extend_from_slice(last.hash.as_bytes());
        self.meta.insert(APPLIED, m)?;
        Ok(())
    }

    /// Postings of `source` with `after < seq <= upto`: in sequence order for a patient or an
    /// actor, in (time, sequence) order for a time range.
    pub(crate) fn postings<'a>(
        &'a self,
        source: &Source<'_>,
        after: u64,
        upto: u64,
    ) -> Box<dyn Iterator<Item = Result<Posting, StoreError>> + 'a> {
        if after >= upto {
            return Box::new(std::iter::empty());
        }
        let named = |tree: &'a sled::Tree, name: &str| {
            let (lo, hi) = (
                name_key(name, after.saturating_add(1)),
                name_key(name, upto),
            );
            let plen = hi.len() - 8;
            Box::new(tree.range(lo..=hi).map(move |r| {
                let (k, v) = r?;
                posting(be64(&k[plen..]), &v)
            })) as Box<dyn Iterator<Item = _>>
        };
        match source {
            Source::Patient(p) => named(&self.by_patient, p),
            Source::Actor(a) => named(&self.by_actor, a),
            Source::Time(from, to) => {
                let lo = time_prefix(from.unwrap_or(i64::MIN)).to_vec();
                let it = match to {
                    Some(to) => self.by_time.range(lo..time_prefix(*to).to_vec()),
                    None => self.by_time.range(lo..),
                };
                Box::new(
                    it.map(|r| {
                        let (k, v) = r?;
                        posting(be64(&k[8..]), &v)
                    })
                    .filter(move |p| p.as_ref().map_or(true, |p| p.seq > after && p.seq <= upto)),
                )
            }
        }
    }

    /// Where the first full listing of `set` by `patient` is: (seq, offset, length).
    pub(crate) fn set_listing(
        &self,
        patient: Option<&str>,
        set: &str,
    ) -> Result<Option<(u64, u64, u32)>, StoreError> {
        Ok(self
            .sets
            .get(set_key(patient, set))?
            .filter(|v| v.len() >= 20)
            .map(|v| (be64(&v), be64(&v[8..]), be32(&v[16..]))))
    }

    /// Bytes on disk (sled's estimate).
    pub(crate) fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn set_marker_hash_for_test(&self, hash: &str) {
        let mut m = self.meta.get(APPLIED).unwrap().unwrap().to_vec();
        m.truncate(28);
        m.extend_from_slice(hash.as_bytes());
        self.meta.insert(APPLIED, m).unwrap();
        self.db.flush().unwrap();
    }
}
