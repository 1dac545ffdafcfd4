//! The derived index of the audit log: `DATA/audit-index/`, three files of its own format.
//!
//! - `records`: one fixed-size record ([`REC`] = 56 bytes) per indexed `audit.log` line, in log
//!   order (record `i` is the `i`-th indexed line): sequence number, offset and length of the
//!   line, its time (ms), action id, flags, a tag of its `returned_set`, and two back-pointers:
//!   to the previous record of the same patient and of the same actor; CRC-32 at the end.
//! - `persons`: 16-byte nodes `(record, previous)` chaining a record into the list of each
//!   person key of its `detail.persons` that is not its `patient`.
//! - `checkpoint`: the heads table (per hashed patient / actor key, the newest entry of its
//!   chain), the action names, per block of [`BLOCK`] records the smallest and largest time,
//!   and the marker of the last record covered (seq, offset, length, hash, log end); CRC-32.
//!   Written (after an `fdatasync` of the two files, to a temp file renamed into place) every
//!   [`CHECKPOINT_EVERY`] records, after a catch-up and at close.
//!
//! Keys are hashed to 64 bits (BLAKE3, a domain byte first): records reached through a chain
//! are always read and checked against the whole filter, so a collision costs a read, never
//! a wrong answer. A patient's chain holds its own records (pointer = record number + 1) and
//! the records naming it in `detail.persons` (pointer = [`EXTRA`] | node number + 1); a
//! record without a patient is chained under a reserved key (for set listings).
//!
//! Everything is appended by one thread (the indexer), one `write` per file per batch, before
//! the in-memory heads and blocks are updated, so a query that follows a head finds its
//! record on disk. At open the checkpoint is read and checked against the log (its last
//! record must be where it says, with its hash), the files are cut back to what it covers,
//! and the rest is caught up from the log; an index that does not match is rebuilt.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard};

use huren_store::StoreError;

/// Layout of the files below; an index of another format (or the sled index of format 1) is
/// rebuilt at open.
pub(crate) const FORMAT: u32 = 2;
const MAGIC: &[u8; 4] = b"HRAX";
/// Bytes of one line record.
pub(crate) const REC: usize = 56;
/// Bytes of one persons node.
const NODE: usize = 16;
/// Records per time block.
pub(crate) const BLOCK: u64 = 1024;
/// Tag of a chain pointer to a persons node.
const EXTRA: u64 = 1 << 63;
/// Records between checkpoints.
pub(crate) const CHECKPOINT_EVERY: u64 = 1_000_000;
/// Action id of the actions after the first 65,535 (checked on the line).
pub(crate) const OTHER_ACTION: u16 = u16::MAX;

/// The line lists its `returned_set` in full.
pub(crate) const LISTS: u16 = 1;
/// The line names a `returned_set` without listing it.
pub(crate) const NAMES: u16 = 2;

/// What the index needs of one audit line.
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
    /// `detail.persons` (strings only).
    pub persons: Vec<String>,
    pub actor: String,
    pub action: String,
    pub set: Option<String>,
    /// `returned` is given in full (with `set`).
    pub lists: bool,
    pub hash: String,
}

/// One line record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rec {
    pub seq: u64,
    pub off: u64,
    pub len: u32,
    pub action: u16,
    pub flags: u16,
    pub at_ms: i64,
    /// Chain pointer (0: none).
    pub prev_patient: u64,
    /// Record number + 1 (0: none).
    pub prev_actor: u64,
    /// Tag of `returned_set` (when `flags` has [`LISTS`] or [`NAMES`]).
    pub set: u32,
}

impl Rec {
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.off.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&self.action.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&self.at_ms.to_le_bytes());
        out.extend_from_slice(&self.prev_patient.to_le_bytes());
        out.extend_from_slice(&self.prev_actor.to_le_bytes());
        out.extend_from_slice(&self.set.to_le_bytes());
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Option<Rec> {
        if b.len() < REC || crc32fast::hash(&b[..REC - 4]) != le32(&b[REC - 4..]) {
            return None;
        }
        Some(Rec {
            seq: le64(b),
            off: le64(&b[8..]),
            len: le32(&b[16..]),
            action: u16::from_le_bytes([b[20], b[21]]),
            flags: u16::from_le_bytes([b[22], b[23]]),
            at_ms: le64(&b[24..]) as i64,
            prev_patient: le64(&b[32..]),
            prev_actor: le64(&b[40..]),
            set: le32(&b[48..]),
        })
    }
}

fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]))
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().unwrap_or([0; 4]))
}

fn hash64(domain: u8, s: &str) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&[domain]);
    h.update(s.as_bytes());
    le64(h.finalize().as_bytes())
}

/// Chain key of a patient (or of records without one).
pub(crate) fn patient_key(p: Option<&str>) -> u64 {
    match p {
        Some(p) => hash64(b'p', p),
        None => hash64(b'n', ""),
    }
}

/// Chain key of an actor.
pub(crate) fn actor_key(a: &str) -> u64 {
    hash64(b'a', a)
}

/// Tag of a `returned_set`.
pub(crate) fn set_tag(s: &str) -> u32 {
    hash64(b's', s) as u32
}

/// The last record the index covers, and the end of the log it covered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Marker {
    pub seq: u64,
    pub off: u64,
    pub len: u32,
    /// Log offset up to which every line was applied (or skipped as unreadable).
    pub end: u64,
    pub hash: String,
}

/// Which chain to follow.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chain {
    Patient,
    Actor,
}

#[derive(Default)]
struct Mem {
    heads: HashMap<u64, u64>,
    /// (smallest, largest) `at_ms` per block of [`BLOCK`] records.
    blocks: Vec<(i64, i64)>,
    actions: Vec<String>,
    action_ids: HashMap<String, u16>,
}

/// The read side, shared with queries.
pub(crate) struct AuditIndex {
    dir: PathBuf,
    recs: File,
    nodes: File,
    mem: RwLock<Mem>,
}

/// The write side, owned by the indexer thread.
pub(crate) struct Appender {
    recs: File,
    nodes: File,
    n_recs: u64,
    n_nodes: u64,
    since_checkpoint: u64,
    pub(crate) marker: Marker,
}

impl Appender {
    /// Records written.
    pub(crate) fn records(&self) -> u64 {
        self.n_recs
    }

    /// Whether a checkpoint is due.
    pub(crate) fn checkpoint_due(&self) -> bool {
        self.since_checkpoint >= CHECKPOINT_EVERY
    }
}

struct Checkpoint {
    n_recs: u64,
    n_nodes: u64,
    marker: Marker,
    actions: Vec<String>,
    blocks: Vec<(i64, i64)>,
    heads: Vec<(u64, u64)>,
}

impl Checkpoint {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64 + self.blocks.len() * 16 + self.heads.len() * 16);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&FORMAT.to_le_bytes());
        b.extend_from_slice(&self.n_recs.to_le_bytes());
        b.extend_from_slice(&self.n_nodes.to_le_bytes());
        let m = &self.marker;
        b.extend_from_slice(&m.seq.to_le_bytes());
        b.extend_from_slice(&m.off.to_le_bytes());
        b.extend_from_slice(&m.len.to_le_bytes());
        b.extend_from_slice(&m.end.to_le_bytes());
        b.extend_from_slice(&(m.hash.len() as u32).to_le_bytes());
        b.extend_from_slice(m.hash.as_bytes());
        b.extend_from_slice(&(self.actions.len() as u32).to_le_bytes());
        for a in &self.actions {
            b.extend_from_slice(&(a.len() as u32).to_le_bytes());
            b.extend_from_slice(a.as_bytes());
        }
        b.extend_from_slice(&(self.blocks.len() as u64).to_le_bytes());
        for (lo, hi) in &self.blocks {
            b.extend_from_slice(&lo.to_le_bytes());
            b.extend_from_slice(&hi.to_le_bytes());
        }
        b.extend_from_slice(&(self.heads.len() as u64).to_le_bytes());
        for (k, p) in &self.heads {
            b.extend_from_slice(&k.to_le_bytes());
            b.extend_from_slice(&p.to_le_bytes());
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Checkpoint> {
        let (body, crc) = b.split_at(b.len().checked_sub(4)?);
        if crc32fast::hash(body) != le32(crc) || !body.starts_with(MAGIC) {
            return None;
        }
        let mut r = Cursor(&body[4..]);
        if r.u32()? != FORMAT {
            return None;
        }
        let n_recs = r.u64()?;
        let n_nodes = r.u64()?;
        let marker = Marker {
            seq: r.u64()?,
            off: r.u64()?,
            len: r.u32()?,
            end: r.u64()?,
            hash: r.string()?,
        };
        let actions = (0..r.u32()?)
            .map(|_| r.string())
            .collect::<Option<Vec<_>>>()?;
        let nb = r.u64()?;
        if nb > body.len() as u64 / 16 {
            return None;
        }
        let blocks = (0..nb)
            .map(|_| Some((r.u64()? as i64, r.u64()? as i64)))
            .collect::<Option<Vec<_>>>()?;
        let nh = r.u64()?;
        if nh > body.len() as u64 / 16 {
            return None;
        }
        let heads = (0..nh)
            .map(|_| Some((r.u64()?, r.u64()?)))
            .collect::<Option<Vec<_>>>()?;
        Some(Checkpoint {
            n_recs,
            n_nodes,
            marker,
            actions,
            blocks,
            heads,
        })
    }
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(le32)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(le64)
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        self.take(n)
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
    }
}

fn open_rw(p: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(p)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "audit index: {what} (remove audit-index/ to rebuild it)"
    ))
}

impl AuditIndex {
    /// Opens the index in `dir`: reads its checkpoint and, if `marker_ok` accepts the
    /// checkpoint's marker (its line is in the log with its hash), cuts the files back to what
    /// the checkpoint covers; otherwise (none, another format, damaged, another log) empties
    /// the directory and starts a new index. Errors only when the directory cannot be made.
    pub(crate) fn load(
        dir: &Path,
        marker_ok: impl FnOnce(&Marker) -> bool,
    ) -> Result<(AuditIndex, Appender), StoreError> {
        let io = |e| StoreError::io(dir, e);
        let cp = match std::fs::read(dir.join("checkpoint")) {
            Ok(b) => match Checkpoint::decode(&b) {
                Some(cp) => Some(cp),
                None => {
                    tracing::warn!(
                        "audit index checkpoint unreadable or of another format; rebuilding"
                    );
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if dir.exists() {
                    // A stop before the first checkpoint (every 1M records, after a catch-up,
                    // at close), e.g. a kill: rebuilt from the log in the background.
                    tracing::info!(
                        "audit index without a checkpoint (or of another format); rebuilding"
                    );
                }
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "audit index checkpoint unreadable; rebuilding");
                None
            }
        };
        if let Some(cp) = cp {
            match Self::resume(dir, cp, marker_ok) {
                Ok(Some(x)) => return Ok(x),
                Ok(None) => tracing::warn!("audit index does not match audit.log; rebuilding it"),
                Err(e) => tracing::warn!(error = %e, "audit index unreadable; rebuilding it"),
            }
        }
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        let ix = Self::files(dir, Mem::default())?;
        let app = Appender {
            recs: open_rw(&dir.join("records")).map_err(io)?,
            nodes: open_rw(&dir.join("persons")).map_err(io)?,
            n_recs: 0,
            n_nodes: 0,
            since_checkpoint: 0,
            marker: Marker::default(),
        };
        Ok((ix, app))
    }

    fn files(dir: &Path, mem: Mem) -> Result<AuditIndex, StoreError> {
        let open = |name: &str| {
            let p = dir.join(name);
            open_rw(&p).map_err(|e| StoreError::io(&p, e))
        };
        Ok(AuditIndex {
            dir: dir.to_path_buf(),
            recs: open("records")?,
            nodes: open("persons")?,
            mem: RwLock::new(mem),
        })
    }

    fn resume(
        dir: &Path,
        cp: Checkpoint,
        marker_ok: impl FnOnce(&Marker) -> bool,
    ) -> Result<Option<(AuditIndex, Appender)>, StoreError> {
        let io = |p: &Path, e| StoreError::io(p, e);
        let (rp, np) = (dir.join("records"), dir.join("persons"));
        let recs = open_rw(&rp).map_err(|e| io(&rp, e))?;
        let nodes = open_rw(&np).map_err(|e| io(&np, e))?;
        let rlen = recs.metadata().map_err(|e| io(&rp, e))?.len();
        let nlen = nodes.metadata().map_err(|e| io(&np, e))?.len();
        if rlen < cp.n_recs * REC as u64
            || nlen < cp.n_nodes * NODE as u64
            || cp.blocks.len() as u64 != cp.n_recs.div_ceil(BLOCK)
        {
            return Ok(None);
        }
        if cp.n_recs > 0 {
            let mut b = [0u8; REC];
            recs.read_exact_at(&mut b, (cp.n_recs - 1) * REC as u64)
                .map_err(|e| io(&rp, e))?;
            let m = &cp.marker;
            match Rec::decode(&b) {
                Some(r) if r.seq == m.seq && r.off == m.off && r.len == m.len => {}
                _ => return Ok(None),
            }
        }
        if (cp.n_recs > 0 || cp.marker.end > 0) && !marker_ok(&cp.marker) {
            return Ok(None);
        }
        // What was written after the checkpoint is redone from the log.
        recs.set_len(cp.n_recs * REC as u64)
            .map_err(|e| io(&rp, e))?;
        nodes
            .set_len(cp.n_nodes * NODE as u64)
            .map_err(|e| io(&np, e))?;
        let action_ids = cp
            .actions
            .iter()
            .enumerate()
            .map(|(i, a)| (a.clone(), i as u16))
            .collect();
        let mem = Mem {
            heads: cp.heads.into_iter().collect(),
            blocks: cp.blocks,
            actions: cp.actions,
            action_ids,
        };
        let ix = Self::files(dir, mem)?;
        let app = Appender {
            recs,
            nodes,
            n_recs: cp.n_recs,
            n_nodes: cp.n_nodes,
            since_checkpoint: 0,
            marker: cp.marker,
        };
        Ok(Some((ix, app)))
    }

    fn mem(&self) -> RwLockReadGuard<'_, Mem> {
        self.mem.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `items` (in log order, after everything applied so far); `end` is the log
    /// offset every line before which has been seen. One write per file; the heads, blocks
    /// and action names are updated after the writes.
    pub(crate) fn apply(
        &self,
        app: &mut Appender,
        items: &[Item],
        end: u64,
    ) -> Result<(), StoreError> {
        let mut recs = Vec::with_capacity(items.len() * REC);
        let mut nodes = Vec::new();
        let mut heads: HashMap<u64, u64> = HashMap::with_capacity(items.len() * 2);
        let mut new_actions: Vec<String> = Vec::new();
        {
            let mem = self.mem();
            let head = |heads: &HashMap<u64, u64>, k: u64| {
                heads
                    .get(&k)
                    .or_else(|| mem.heads.get(&k))
                    .copied()
                    .unwrap_or(0)
            };
            let mut keys = Vec::new();
            for (j, it) in items.iter().enumerate() {
                let i = app.n_recs + j as u64;
                let pk = patient_key(it.patient.as_deref());
                let prev_patient = head(&heads, pk);
                heads.insert(pk, i + 1);
                let ak = actor_key(&it.actor);
                let prev_actor = head(&heads, ak);
                heads.insert(ak, i + 1);
                keys.clear();
                keys.push(pk);
                for p in &it.persons {
                    let k = patient_key(Some(p));
                    if keys.contains(&k) {
                        continue;
                    }
                    keys.push(k);
                    let node = app.n_nodes + (nodes.len() / NODE) as u64;
                    nodes.extend_from_slice(&i.to_le_bytes());
                    nodes.extend_from_slice(&head(&heads, k).to_le_bytes());
                    heads.insert(k, EXTRA | (node + 1));
                }
                let action = match mem.action_ids.get(&it.action) {
                    Some(id) => *id,
                    None => match new_actions.iter().position(|a| *a == it.action) {
                        Some(p) => (mem.actions.len() + p).min(OTHER_ACTION as usize) as u16,
                        None if mem.actions.len() + new_actions.len() < OTHER_ACTION as usize => {
                            new_actions.push(it.action.clone());
                            (mem.actions.len() + new_actions.len() - 1) as u16
                        }
                        None => OTHER_ACTION,
                    },
                };
                let (flags, set) = match &it.set {
                    Some(s) => (if it.lists { LISTS } else { NAMES }, set_tag(s)),
                    None => (0, 0),
                };
                Rec {
                    seq: it.seq,
                    off: it.off,
                    len: it.len,
                    action,
                    flags,
                    at_ms: it.at_ms,
                    prev_patient,
                    prev_actor,
                    set,
                }
                .encode(&mut recs);
            }
        }
        if !nodes.is_empty() {
            app.nodes
                .write_all(&nodes)
                .map_err(|e| StoreError::io(&self.dir.join("persons"), e))?;
        }
        if !recs.is_empty() {
            app.recs
                .write_all(&recs)
                .map_err(|e| StoreError::io(&self.dir.join("records"), e))?;
        }
        {
            let mut mem = self.mem.write().unwrap_or_else(|e| e.into_inner());
            mem.heads.extend(heads);
            for a in new_actions {
                let id = mem.actions.len() as u16;
                mem.action_ids.insert(a.clone(), id);
                mem.actions.push(a);
            }
            for (j, it) in items.iter().enumerate() {
                let b = ((app.n_recs + j as u64) / BLOCK) as usize;
                match mem.blocks.get_mut(b) {
                    Some((lo, hi)) => {
                        *lo = (*lo).min(it.at_ms);
                        *hi = (*hi).max(it.at_ms);
                    }
                    None => mem.blocks.push((it.at_ms, it.at_ms)),
                }
            }
        }
        app.n_recs += items.len() as u64;
        app.n_nodes += (nodes.len() / NODE) as u64;
        app.since_checkpoint += items.len() as u64;
        if let Some(last) = items.last() {
            app.marker = Marker {
                seq: last.seq,
                off: last.off,
                len: last.len,
                end,
                hash: last.hash.clone(),
            };
        }
        app.marker.end = end;
        Ok(())
    }

    /// Syncs the files and writes the checkpoint (temp file, sync, rename, directory sync).
    pub(crate) fn checkpoint(&self, app: &mut Appender) -> Result<(), StoreError> {
        let io = |p: &Path, e| StoreError::io(p, e);
        app.recs
            .sync_data()
            .map_err(|e| io(&self.dir.join("records"), e))?;
        app.nodes
            .sync_data()
            .map_err(|e| io(&self.dir.join("persons"), e))?;
        let bytes = {
            let mem = self.mem();
            Checkpoint {
                n_recs: app.n_recs,
                n_nodes: app.n_nodes,
                marker: app.marker.clone(),
                actions: mem.actions.clone(),
                blocks: mem.blocks.clone(),
                heads: mem.heads.iter().map(|(k, v)| (*k, *v)).collect(),
            }
            .encode()
        };
        let tmp = self.dir.join("checkpoint.tmp");
        let dst = self.dir.join("checkpoint");
        let mut f = File::create(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_data())
            .map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &dst).map_err(|e| io(&dst, e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&self.dir, e))?;
        app.since_checkpoint = 0;
        Ok(())
    }

    /// Ids of `actions` (unknown ones left out) and whether [`OTHER_ACTION`] may be one of
    /// them.
    pub(crate) fn action_ids(&self, actions: &[String]) -> (Vec<u16>, bool) {
        let mem = self.mem();
        let ids = actions
            .iter()
            .filter_map(|a| mem.action_ids.get(a).copied())
            .collect();
        let other = mem.actions.len() >= OTHER_ACTION as usize
            && actions.iter().any(|a| !mem.action_ids.contains_key(a));
        (ids, other)
    }

    /// The newest entry of the chain of `key` (0: none).
    pub(crate) fn head(&self, key: u64) -> u64 {
        self.mem().heads.get(&key).copied().unwrap_or(0)
    }

    /// Records below this number all have `at_ms < from` (the first block whose largest
    /// time reaches `from`, times the block size).
    pub(crate) fn floor_for(&self, from: Option<i64>) -> u64 {
        let Some(from) = from else { return 0 };
        let mem = self.mem();
        let b = mem
            .blocks
            .iter()
            .position(|(_, hi)| *hi >= from)
            .unwrap_or(mem.blocks.len());
        b as u64 * BLOCK
    }

    /// Blocks (below record `count`) that may hold a time in `[from, to)`.
    pub(crate) fn blocks_for(&self, from: Option<i64>, to: Option<i64>, count: u64) -> Vec<u64> {
        let mem = self.mem();
        mem.blocks
            .iter()
            .enumerate()
            .take(count.div_ceil(BLOCK) as usize)
            .filter(|(_, (lo, hi))| from.is_none_or(|f| *hi >= f) && to.is_none_or(|t| *lo < t))
            .map(|(b, _)| b as u64)
            .collect()
    }

    /// The records of block `b` below `count`.
    pub(crate) fn read_block(
        &self,
        b: u64,
        count: u64,
        out: &mut Vec<Rec>,
        buf: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        out.clear();
        let first = b * BLOCK;
        let n = count.saturating_sub(first).min(BLOCK);
        buf.resize(n as usize * REC, 0);
        self.recs
            .read_exact_at(buf, first * REC as u64)
            .map_err(|e| StoreError::io(&self.dir.join("records"), e))?;
        for c in buf.chunks_exact(REC) {
            out.push(Rec::decode(c).ok_or_else(|| corrupt("damaged record"))?);
        }
        Ok(())
    }

    /// The first record (below `count`) with a sequence number above `after` (records are in
    /// sequence order): a binary search, ~24 reads at 10M records.
    pub(crate) fn first_after(&self, after: u64, count: u64) -> Result<u64, StoreError> {
        let (mut lo, mut hi) = (0, count);
        if after == 0 {
            return Ok(0);
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.rec(mid)?.seq <= after {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Record `i`.
    pub(crate) fn rec(&self, i: u64) -> Result<Rec, StoreError> {
        let mut b = [0u8; REC];
        self.recs
            .read_exact_at(&mut b, i * REC as u64)
            .map_err(|e| StoreError::io(&self.dir.join("records"), e))?;
        Rec::decode(&b).ok_or_else(|| corrupt("damaged record"))
    }

    fn node(&self, j: u64) -> Result<(u64, u64), StoreError> {
        let mut b = [0u8; NODE];
        self.nodes
            .read_exact_at(&mut b, j * NODE as u64)
            .map_err(|e| StoreError::io(&self.dir.join("persons"), e))?;
        Ok((le64(&b), le64(&b[8..])))
    }

    /// Follows a chain from `ptr`, newest first, calling `visit(record number, record, via a
    /// persons node)` for each entry below record `count` until it returns false. Entries
    /// must go strictly back in the log, or the index is damaged (an error, never a loop).
    pub(crate) fn walk(
        &self,
        chain: Chain,
        mut ptr: u64,
        count: u64,
        mut visit: impl FnMut(u64, &Rec, bool) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut last = u64::MAX;
        while ptr != 0 {
            let (i, via_node, node_prev) = if chain == Chain::Patient && ptr & EXTRA != 0 {
                let (i, prev) = self.node((ptr & !EXTRA) - 1)?;
                (i, true, prev)
            } else {
                (ptr - 1, false, 0)
            };
            if i >= last {
                return Err(corrupt("a chain does not go back in the log"));
            }
            last = i;
            let r = self.rec(i)?;
            if i < count && !visit(i, &r, via_node)? {
                return Ok(());
            }
            ptr = match (chain, via_node) {
                (_, true) => node_prev,
                (Chain::Patient, false) => r.prev_patient,
                (Chain::Actor, false) => r.prev_actor,
            };
        }
        Ok(())
    }

    /// Bytes of the index files.
    pub(crate) fn size_on_disk(&self) -> Result<u64, StoreError> {
        let mut n = 0;
        for e in std::fs::read_dir(&self.dir).map_err(|e| StoreError::io(&self.dir, e))? {
            let e = e.map_err(|e| StoreError::io(&self.dir, e))?;
            n += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
        Ok(n)
    }

    /// Rewrites the checkpoint of the index in `dir` with another marker hash.
    #[cfg(test)]
    pub(crate) fn set_marker_hash_for_test(dir: &Path, hash: &str) {
        let p = dir.join("checkpoint");
        let mut cp = Checkpoint::decode(&std::fs::read(&p).unwrap()).unwrap();
        cp.marker.hash = hash.into();
        std::fs::write(&p, cp.encode()).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_a_flipped_bit_is_caught() {
        let r = Rec {
            seq: 7,
            off: 1 << 40,
            len: 555,
            action: 3,
            flags: LISTS,
            at_ms: -5,
            prev_patient: EXTRA | 9,
            prev_actor: 4,
            set: 0xdead_beef,
        };
        let mut b = Vec::new();
        r.encode(&mut b);
        assert_eq!(b.len(), REC);
        assert_eq!(Rec::decode(&b), Some(r));
        b[30] ^= 1;
        assert_eq!(Rec::decode(&b), None);
    }

    #[test]
    fn a_checkpoint_round_trips_and_a_cut_one_is_refused() {
        let cp = Checkpoint {
            n_recs: 3,
            n_nodes: 1,
            marker: Marker {
                seq: 3,
                off: 100,
                len: 50,
                end: 151,
                hash: "blake3:x".into(),
            },
            actions: vec!["check".into(), "read_results".into()],
            blocks: vec![(1, 2)],
            heads: vec![(5, 1), (6, EXTRA | 1)],
        };
        let b = cp.encode();
        let d = Checkpoint::decode(&b).unwrap();
        assert_eq!(
            (d.n_recs, d.n_nodes, &d.marker, &d.actions, &d.blocks, &d.heads),
            (3, 1, &cp.marker, &cp.actions, &cp.blocks, &cp.heads)
        );
        assert!(Checkpoint::decode(&b[..b.len() - 1]).is_none());
        assert!(Checkpoint::decode(b"").is_none());
    }
}
