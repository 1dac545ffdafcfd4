//! The append-only commit journal. A record is
//! `[magic "HRJ1"][len u32 LE][crc32 u32 LE][payload]` and its payload is
//! `[json len u32 LE][JSON JournalRecord][blob count u32 LE]([32-byte hash][len u32 LE][bytes])*`:
//! small blobs travel inline so that one `fdatasync` makes a whole group commit durable, and
//! they stay there: the journal is their only copy, read back by position ([`JournalReader`];
//! the index keeps hash → position, derived like everything else in it).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use huren_model::{ContentHash, ReportKind, ReportStatus};
use serde::{Deserialize, Serialize};

use crate::{Outcome, StoreError};

const MAGIC: &[u8; 4] = b"HRJ1";
const HEADER: usize = 12;
/// Largest journal record accepted when reading (a guard against a corrupt length).
const MAX_RECORD: usize = 256 * 1024 * 1024;

/// A change to the identity cross-reference.
///
/// Identity ops never move another institution's local IDs: a link or a merge moves only
/// local keys of the op's own namespace (the institution before the first `:` of `local` /
/// `from`), and a national ID seen with a local key that is already linked to another
/// national ID does not relink it: the index opens an identity review item instead (see
/// `SledIndex::apply_identity`), decided later by a [`IdentityOp::Resolve`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum IdentityOp {
    /// `local` (`INSTITUTION:LOCAL_ID`) was seen with `person` (a `nidk:` key). Written by
    /// older builds; applied exactly as a [`IdentityOp::Claim`] without context.
    Link {
        /// Local key.
        local: String,
        /// Person key.
        person: String,
    },
    /// `institution` says `local` is `person` (a `nidk:` key): an ORU's PID or an ADT. The
    /// index links `local` (and its own institution's local group) to `person` unless
    /// `local` is already linked to another national ID; then the existing link stays, the
    /// reports named here are marked identity-uncertain, and an identity review item is
    /// opened (id `SEQ-ENTRY`, the position of this op in the journal).
    Claim {
        /// Local key.
        local: String,
        /// Claimed person key.
        person: String,
        /// Institution the message came from.
        institution: String,
        /// The message's control ID (HL7 MSH-10), when it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
        /// Hash of the original message.
        original: ContentHash,
        /// Reports of the message filed under `local`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        reports: Vec<ContentHash>,
        /// When received (RFC 3339).
        at: String,
    },
    /// Everything the sender's institution knows under `from` now belongs to whoever `into`
    /// belongs to (ADT A40). Only local keys of `from`'s institution move; a merge whose
    /// `from` and `into` are of different institutions changes nothing.
    Merge {
        /// The merged (retired) local key (MRG-1).
        from: String,
        /// The surviving local key (PID-3).
        into: String,
    },
    /// An identity review item decided by a person (the privacy officer).
    Resolve {
        /// Review item id.
        review: String,
        /// What was decided.
        decision: ReviewDecision,
        /// Who decided.
        by: String,
        /// Why, in words.
        #[serde(default)]
        reason: String,
        /// When (RFC 3339).
        at: String,
    },
}

/// The decision on an identity review item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    /// The existing link stays; the claim's reports belong to the existing person.
    KeepExisting,
    /// The claim is right: that one local key (with all its reports) is relinked to the
    /// claimed person; nothing else moves.
    AcceptClaim,
}

/// One item of a journal record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Entry {
    /// A report (new or new version); everything the index needs is here.
    Report {
        /// Report hash.
        hash: ContentHash,
        /// Original message hash.
        original: ContentHash,
        /// Report kind.
        kind: ReportKind,
        /// Report status.
        status: ReportStatus,
        /// Version chain key.
        chain: String,
        /// Patient local key `INSTITUTION:LOCAL_ID`.
        local: String,
        /// Sending institution.
        institution: String,
        /// Clinical time in ms since the epoch (for ordering), when known.
        time_ms: Option<i64>,
        /// When received (RFC 3339).
        received_at: String,
        /// Outcome as decided by the writer.
        outcome: Outcome,
    },
    /// An original kept without a report (e.g. an ADT message).
    Original {
        /// Hash of the original.
        hash: ContentHash,
        /// When received.
        received_at: String,
    },
    /// An identity change.
    Identity(IdentityOp),
    /// A received DICOM SOP instance (its original is a blob of the same record).
    Instance {
        /// The instance's keys and query attributes.
        record: Box<huren_model::InstanceRecord>,
        /// When received.
        received_at: String,
    },
}

impl Entry {
    /// Blobs this entry requires.
    pub fn blobs(&self) -> Vec<ContentHash> {
        match self {
            Entry::Report { hash, original, .. } => vec![*hash, *original],
            Entry::Original { hash, .. } => vec![*hash],
            Entry::Identity(_) => vec![],
            Entry::Instance { record, .. } => vec![record.original],
        }
    }
}

/// One group commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalRecord {
    /// Sequence number, 1-based, strictly increasing.
    pub seq: u64,
    /// Entries in commit order.
    pub entries: Vec<Entry>,
}

/// Where an inline blob's bytes sit in the journal file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InlineBlob {
    pub(crate) hash: ContentHash,
    pub(crate) start: usize,
    pub(crate) len: usize,
}

/// A decoded record with the positions of its inline blobs.
pub(crate) struct Decoded {
    /// File offset of the record's header.
    pub(crate) start: u64,
    pub(crate) record: JournalRecord,
    pub(crate) inline: Vec<InlineBlob>,
}

pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    len: u64,
    /// `O_DIRECT` appends, where the file system takes them.
    direct: Option<direct::Appender>,
    /// The record being appended (after the partial last block in direct mode), reused: a
    /// fresh buffer per group commit cost a page fault and a zeroed 2 MiB huge page each
    /// time (10 % of the server's CPU under MLLP load).
    buf: direct::Buf,
    /// The record's JSON, reused likewise.
    json: Vec<u8>,
}

/// `O_DIRECT` appends. Buffered appends cost a copy into the page cache and then writeback
/// under `fdatasync`; on the project machine buffered writes reach ~440 MB/s where direct ones
/// reach ~1.6 GB/s, and ECG and imaging records are hundreds of KB. A direct write must start
/// and end on block boundaries, so each append writes from the block that holds the
/// journal's end: that block's already-written bytes (kept in memory, identical to what is on
/// disk), the new record, then zeros up to the next boundary. The zeros are overwritten by
/// the next append; at open they are cut off like a torn tail (quietly: nothing was there).
mod direct {
    use std::fs::File;
    use std::path::Path;

    pub(super) const BLOCK: usize = 4096;
    pub(super) type Buf = aligned_vec::AVec<u8, aligned_vec::ConstAlign<BLOCK>>;
    /// The write buffer is kept between appends up to this size.
    const KEEP: usize = 16 * 1024 * 1024;

    /// Zeros are written ahead of the journal's end in steps of this many bytes.
    const ZERO_AHEAD: u64 = 2 * 1024 * 1024;
    /// Records longer than this are written past the zeroed region without zeroing ahead:
    /// zeroing costs as much as the write itself, and it saves only one metadata write.
    const ZERO_AHEAD_MAX_RECORD: usize = 512 * 1024;

    pub(super) struct Appender {
        file: File,
        /// The journal's bytes from the last block boundary to its end.
        tail: Vec<u8>,
        /// The file's size: every byte below it is written (records, then zeros). A record
        /// that ends below it is an overwrite of written blocks, so its `fdatasync` flushes
        /// the data and no inode (size, extents): ~150 µs instead of ~250 µs here.
        written_to: u64,
        /// [`ZERO_AHEAD`] zero bytes, made at the first zeroing and kept.
        zeros: Option<Buf>,
    }

    /// An empty buffer for records.
    pub(super) fn buffer() -> Buf {
        Buf::new(BLOCK)
    }

    /// Drops a buffer that grew past what is worth keeping.
    pub(super) fn trim(buf: &mut Buf) {
        if buf.capacity() > KEEP {
            *buf = buffer();
        }
    }

    impl Appender {
        /// Opens `path` for direct writes; `None` when the file system refuses `O_DIRECT`
        /// (tmpfs) or it is not Linux. `len` is the journal's length, `file` a readable
        /// handle used to load the partial last block.
        pub(super) fn open(path: &Path, file: &File, len: u64) -> Option<Appender> {
            #[cfg(target_os = "linux")]
            {
                use rustix::fs::{Mode, OFlags};
                use std::os::unix::fs::FileExt;
                let fd = rustix::fs::open(
                    path,
                    OFlags::WRONLY | OFlags::DIRECT | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .ok()?;
                let start = len - len % BLOCK as u64;
                let mut tail = vec![0u8; (len - start) as usize];
                file.read_exact_at(&mut tail, start).ok()?;
                Some(Appender {
                    file: File::from(fd),
                    tail,
                    written_to: len,
                    zeros: None,
                })
            }
            #[cfg(not(target_os = "linux"))]
            {
                let _ = (path, file, len);
                None
            }
        }

        /// The bytes a record's buffer must start with: the partial last block.
        pub(super) fn tail(&self) -> &[u8] {
            &self.tail
        }

        /// Writes `buf` (the partial last block, then a record; padded here with zeros to the
        /// block boundary) at the block that holds `len`, the journal's end, and
        /// `fdatasync`s. On error nothing is known about the blocks written; the caller cuts
        /// the file back to `len`.
        pub(super) fn write(&mut self, len: u64, buf: &mut Buf) -> std::io::Result<()> {
            use std::os::unix::fs::FileExt;
            let start = len - self.tail.len() as u64;
            let used = buf.len();
            let padded = used.div_ceil(BLOCK) * BLOCK;
            buf.resize(padded, 0);
            let end = start + padded as u64;
            let r = self
                .zero_ahead(end, padded)
                .and_then(|_| self.file.write_all_at(&buf[..padded], start))
                .and_then(|_| self.file.sync_data());
            match &r {
                Ok(()) => {
                    let keep = used % BLOCK;
                    self.tail.clear();
                    self.tail.extend_from_slice(&buf[used - keep..used]);
                    self.written_to = self.written_to.max(end);
                }
                // The caller cuts the file back to `len`.
                Err(_) => self.written_to = len,
            }
            r
        }

        /// Before a record of `padded` bytes that would end at `end`, past the written
        /// region: writes zeros from the region's end to [`ZERO_AHEAD`] past `end` (not
        /// synced here: the record's own `fdatasync` makes both durable).
        fn zero_ahead(&mut self, end: u64, padded: usize) -> std::io::Result<()> {
            use std::os::unix::fs::FileExt;
            if end <= self.written_to || padded > ZERO_AHEAD_MAX_RECORD {
                return Ok(());
            }
            // From the first whole block past the written bytes (the partial block there is
            // the journal's tail, which the record's write covers).
            let from = self.written_to.div_ceil(BLOCK as u64) * BLOCK as u64;
            let to = (end + ZERO_AHEAD).div_ceil(BLOCK as u64) * BLOCK as u64;
            let zeros = self.zeros.get_or_insert_with(|| {
                let mut z = Buf::new(BLOCK);
                z.resize(ZERO_AHEAD as usize, 0);
                z
            });
            let mut at = from;
            while at < to {
                let n = (to - at).min(ZERO_AHEAD) as usize;
                self.file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
            self.written_to = to;
            Ok(())
        }
    }
}

impl Journal {
    /// Opens the journal, truncating a torn tail (a record that was being written when the
    /// process died; it was never acknowledged), and returns the records from `hint` on.
    ///
    /// `hint` is `(seq, start)` of a record known to be applied (the index keeps it). When
    /// the record at `start` decodes and has that sequence number, only it and what follows
    /// are read and checked: the prefix was checked when it was written and at earlier
    /// opens, and `huren verify` re-reads all of it. Otherwise (no hint, a hint that does
    /// not match) every record is read, as on a first open.
    pub(crate) fn open(
        path: PathBuf,
        hint: Option<(u64, u64)>,
    ) -> Result<(Journal, Vec<Decoded>), StoreError> {
        let io = |e| StoreError::io(&path, e);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let base = match hint {
            Some((seq, start)) if record_at(&file, start, file_len).is_some_and(|s| s == seq) => {
                start
            }
            _ => 0,
        };
        let mut bytes = Vec::with_capacity((file_len - base) as usize);
        file.seek(SeekFrom::Start(base)).map_err(io)?;
        (&mut file)
            .take(file_len - base)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        let (records, valid) = decode_all(&bytes, base as usize);
        if let Some(at) = later_valid_record(&bytes, valid) {
            // Damage in the middle is not a torn tail: acknowledged records follow it.
            return Err(StoreError::Corrupt(format!(
                "{}: record at byte {} is damaged but a valid record follows at byte {}; \
                 refusing to truncate (restore the journal from a replica or backup)",
                path.display(),
                base as usize + valid,
                base as usize + at
            )));
        }
        let len = base + valid as u64;
        if len < file_len {
            if bytes[valid..].iter().all(|b| *b == 0) {
                // The zero padding of the last direct append, not a torn record.
                tracing::debug!(
                    bytes = file_len - len,
                    "cutting the journal's block padding"
                );
            } else {
                tracing::warn!(
                    dropped = file_len - len,
                    "journal had a torn tail (unacknowledged); truncating"
                );
            }
            file.set_len(len).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        let direct = direct::Appender::open(&path, &file, len);
        Ok((
            Journal {
                file,
                path,
                len,
                direct,
                buf: direct::buffer(),
                json: Vec::new(),
            },
            records,
        ))
    }

    /// Length of the journal: where the next record starts.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Reads every valid record without modifying the file.
    pub(crate) fn read_all(path: &Path) -> Result<Vec<JournalRecord>, StoreError> {
        Ok(Self::read_decoded(path)?
            .0
            .into_iter()
            .map(|d| d.record)
            .collect())
    }

    /// Reads every valid record with the positions of its inline blobs, without modifying
    /// the file; also returns the file's bytes and how many of them decode.
    pub(crate) fn read_decoded(path: &Path) -> Result<(Vec<Decoded>, Vec<u8>, usize), StoreError> {
        match std::fs::read(path) {
            Ok(b) => {
                let (d, valid) = decode_all(&b, 0);
                Ok((d, b, valid))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Vec::new(), Vec::new(), 0)),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    /// Reads the valid records from file offset `from`, about `max_bytes` of them (always at
    /// least one whole record when one starts there), without modifying the file; also
    /// returns where the bytes read stop decoding. A record being appended is not read.
    pub(crate) fn read_from(
        path: &Path,
        from: u64,
        max_bytes: usize,
    ) -> Result<(Vec<Decoded>, u64), StoreError> {
        use std::os::unix::fs::FileExt;
        let io = |e| StoreError::io(path, e);
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), from)),
            Err(e) => return Err(io(e)),
        };
        let file_len = file.metadata().map_err(io)?.len();
        if from >= file_len {
            return Ok((Vec::new(), from));
        }
        let avail = (file_len - from) as usize;
        // Enough for the first record whole, however large.
        let mut want = max_bytes.max(HEADER).min(avail);
        let mut h = [0u8; HEADER];
        if avail >= HEADER && file.read_exact_at(&mut h, from).is_ok() && &h[0..4] == MAGIC {
            let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
            if len <= MAX_RECORD {
                want = want.max((HEADER + len).min(avail));
            }
        }
        let mut buf = vec![0u8; want];
        file.read_exact_at(&mut buf, from).map_err(io)?;
        let (decoded, valid) = decode_all(&buf, from as usize);
        Ok((decoded, from + valid as u64))
    }

    /// Appends a record and `fdatasync`s it; returns where its inline blobs now sit. On
    /// failure the file is cut back to its previous length so no half record remains; if even
    /// that fails the error says so.
    pub(crate) fn append(
        &mut self,
        rec: &JournalRecord,
        inline: &[(ContentHash, &[u8])],
    ) -> Result<Vec<InlineBlob>, StoreError> {
        self.json.clear();
        serde_json::to_writer(&mut self.json, rec)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let buf = &mut self.buf;
        buf.clear();
        // Direct mode writes from the block that holds the end: its bytes come first.
        if let Some(d) = &self.direct {
            buf.extend_from_slice(d.tail());
        }
        let at = buf.len();
        let blob_bytes: usize = inline.iter().map(|(_, b)| 36 + b.len()).sum();
        let plen = 8 + self.json.len() + blob_bytes;
        buf.reserve(HEADER + plen + direct::BLOCK);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&(plen as u32).to_le_bytes());
        buf.extend_from_slice(&[0; 4]); // crc, filled below
        buf.extend_from_slice(&(self.json.len() as u32).to_le_bytes());
        buf.extend_from_slice(&self.json);
        buf.extend_from_slice(&(inline.len() as u32).to_le_bytes());
        let mut located = Vec::with_capacity(inline.len());
        for (h, b) in inline {
            buf.extend_from_slice(h.as_bytes());
            buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
            located.push(InlineBlob {
                hash: *h,
                start: self.len as usize + (buf.len() - at),
                len: b.len(),
            });
            buf.extend_from_slice(b);
        }
        let crc = crc32fast::hash(&buf[at + HEADER..]);
        buf[at + 8..at + 12].copy_from_slice(&crc.to_le_bytes());
        let rec_len = (buf.len() - at) as u64;
        let res = match &mut self.direct {
            Some(d) => d.write(self.len, buf),
            None => self
                .file
                .write_all(&buf[at..])
                .and_then(|_| self.file.sync_data()),
        };
        direct::trim(buf);
        if self.json.capacity() > 16 * 1024 * 1024 {
            self.json = Vec::new();
        }
        match res {
            Ok(()) => {
                self.len += rec_len;
                Ok(located)
            }
            Err(e) => {
                let err = StoreError::io(&self.path, e);
                match self
                    .file
                    .set_len(self.len)
                    .and_then(|_| self.file.sync_all())
                {
                    Ok(()) => Err(err),
                    Err(e2) => Err(StoreError::Poisoned(format!(
                        "{err}; rollback failed: {e2}"
                    ))),
                }
            }
        }
    }
}

/// Reads inline blobs back from the journal file by position (`pread`; any number of
/// readers at once, alongside the appending writer).
pub(crate) struct JournalReader {
    file: File,
    path: PathBuf,
}

impl JournalReader {
    pub(crate) fn open(path: PathBuf) -> Result<Self, StoreError> {
        let file = File::open(&path).map_err(|e| StoreError::io(&path, e))?;
        Ok(JournalReader { file, path })
    }

    /// The `len` bytes at `start`.
    pub(crate) fn read_at(&self, start: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        let mut buf = vec![0u8; len];
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file
                .read_exact_at(&mut buf, start)
                .map_err(|e| StoreError::io(&self.path, e))?;
        }
        #[cfg(not(unix))]
        {
            let mut f = File::open(&self.path).map_err(|e| StoreError::io(&self.path, e))?;
            f.seek(SeekFrom::Start(start))
                .and_then(|_| f.read_exact(&mut buf))
                .map_err(|e| StoreError::io(&self.path, e))?;
            let _ = &self.file;
        }
        Ok(buf)
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

/// Decodes one payload that starts at file offset `base`.
fn decode_payload(payload: &[u8], base: usize) -> Option<Decoded> {
    let jlen = u32_at(payload, 0)?;
    let record: JournalRecord = serde_json::from_slice(payload.get(4..4 + jlen)?).ok()?;
    let mut pos = 4 + jlen;
    let n = u32_at(payload, pos)?;
    pos += 4;
    let mut inline = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let h: [u8; 32] = payload.get(pos..pos + 32)?.try_into().ok()?;
        let len = u32_at(payload, pos + 32)?;
        let start = pos + 36;
        payload.get(start..start + len)?;
        inline.push(InlineBlob {
            hash: ContentHash::from_bytes(h),
            start: base + start,
            len,
        });
        pos = start + len;
    }
    (pos == payload.len()).then_some(Decoded {
        start: (base - HEADER) as u64,
        record,
        inline,
    })
}

/// The sequence number of the record whose header is at `start`, if a whole valid record
/// is there.
fn record_at(file: &File, start: u64, file_len: u64) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let mut h = [0u8; HEADER];
    file.read_exact_at(&mut h, start).ok()?;
    if &h[0..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
    if len > MAX_RECORD || start + (HEADER + len) as u64 > file_len {
        return None;
    }
    let mut payload = vec![0u8; len];
    file.read_exact_at(&mut payload, start + HEADER as u64)
        .ok()?;
    if crc32fast::hash(&payload) != u32::from_le_bytes([h[8], h[9], h[10], h[11]]) {
        return None;
    }
    decode_payload(&payload, start as usize + HEADER).map(|d| d.record.seq)
}

/// Decodes the valid records at the start of `bytes`, which sit at file offset `base`;
/// returns them and how many bytes they take.
fn decode_all(bytes: &[u8], base: usize) -> (Vec<Decoded>, usize) {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while bytes.len() - pos >= HEADER {
        let Some(h) = bytes.get(pos..pos + HEADER) else {
            break;
        };
        if &h[0..4] != MAGIC {
            break;
        }
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        let crc = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
        if len > MAX_RECORD {
            break;
        }
        let Some(payload) = bytes.get(pos + HEADER..pos + HEADER + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(rec) = decode_payload(payload, base + pos + HEADER) else {
            break;
        };
        out.push(rec);
        pos += HEADER + len;
    }
    (out, pos)
}

/// The offset of a decodable record after `from`, if any.
fn later_valid_record(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from + 1;
    while i + HEADER <= bytes.len() {
        if bytes.get(i..i + 4) == Some(MAGIC.as_slice()) && !decode_all(&bytes[i..], 0).0.is_empty()
        {
            return Some(i);
        }
        i += 1;
    }
    None
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    let f = File::open(dir).map_err(|e| StoreError::io(dir, e))?;
    f.sync_all().map_err(|e| StoreError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tail_is_truncated_and_valid_records_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.log");
        let (mut j, recs) = Journal::open(p.clone(), None).unwrap();
        assert!(recs.is_empty());
        for seq in 1..=3 {
            let blob = format!("blob {seq}").into_bytes();
            j.append(
                &JournalRecord {
                    seq,
                    entries: vec![Entry::Identity(IdentityOp::Link {
                        local: format!("A:{seq}"),
                        person: "nidk:x".into(),
                    })],
                },
                &[(ContentHash::of(&blob), &blob)],
            )
            .unwrap();
        }
        let jlen = j.len() as usize;
        drop(j);
        // Inline blobs are where append said, readable by position.
        let (recs, _, _) = Journal::read_decoded(&p).unwrap();
        let r = JournalReader::open(p.clone()).unwrap();
        let b = recs[2].inline[0];
        assert_eq!(r.read_at(b.start as u64, b.len).unwrap(), b"blob 3");
        // (A direct append leaves zero padding after the end; it is not part of the journal.)
        let full = std::fs::read(&p).unwrap()[..jlen].to_vec();
        // Cut the last record in half, as a crash mid-write would.
        std::fs::write(&p, &full[..full.len() - 7]).unwrap();
        let (_, recs) = Journal::open(p.clone(), None).unwrap();
        assert_eq!(
            recs.iter().map(|r| r.record.seq).collect::<Vec<_>>(),
            vec![1, 2]
        );
        let b = recs[1].inline[0];
        assert_eq!(r.read_at(b.start as u64, b.len).unwrap(), b"blob 2");
        assert_eq!(b.hash, ContentHash::of(b"blob 2"));
        assert!(std::fs::metadata(&p).unwrap().len() < full.len() as u64);
        // A flipped byte in the last payload ends the valid prefix there too.
        let mut bad = std::fs::read(&p).unwrap();
        let n = bad.len();
        bad[n - 3] ^= 0xff;
        std::fs::write(&p, &bad).unwrap();
        assert_eq!(Journal::read_all(&p).unwrap().len(), 1);
        // Damage in the first record with a valid one after it: refuse, never truncate.
        let mut mid = std::fs::read(&p).unwrap();
        mid[HEADER + 2] ^= 0xff;
        std::fs::write(&p, &mid).unwrap();
        std::fs::write(&p, [&mid[..], &full[mid.len()..]].concat()).unwrap();
        let before = std::fs::metadata(&p).unwrap().len();
        assert!(matches!(
            Journal::open(p.clone(), None),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), before);
    }

    /// Appends record `seq` holding one inline blob.
    fn append_blob(j: &mut Journal, seq: u64, blob: &[u8]) {
        let rec = JournalRecord {
            seq,
            entries: vec![],
        };
        j.append(&rec, &[(ContentHash::of(blob), blob)]).unwrap();
    }

    /// Appends records 1..=n; returns where each starts and where the journal ends.
    fn appended(p: &Path, n: u64) -> (Vec<u64>, u64) {
        let (mut j, _) = Journal::open(p.to_path_buf(), None).unwrap();
        let mut starts = vec![];
        for seq in 1..=n {
            starts.push(j.len());
            append_blob(&mut j, seq, format!("blob {seq}").as_bytes());
        }
        (starts, j.len())
    }

    #[test]
    fn a_matching_hint_reads_only_the_tail_and_still_cuts_a_torn_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.log");
        let (starts, end) = appended(&p, 5);
        let seqs = |d: &[Decoded]| d.iter().map(|r| r.record.seq).collect::<Vec<_>>();
        let (_, recs) = Journal::open(p.clone(), Some((4, starts[3]))).unwrap();
        assert_eq!(seqs(&recs), [4, 5]);
        assert_eq!(recs[0].start, starts[3]);
        // Positions are file offsets, as from a full read.
        let r = JournalReader::open(p.clone()).unwrap();
        let b = recs[1].inline[0];
        assert_eq!(r.read_at(b.start as u64, b.len).unwrap(), b"blob 5");
        // A hint that does not match (wrong sequence, not a record start, past the end)
        // falls back to reading everything.
        for hint in [(3, starts[3]), (4, starts[3] + 1), (9, 1 << 40)] {
            let (_, recs) = Journal::open(p.clone(), Some(hint)).unwrap();
            assert_eq!(seqs(&recs), [1, 2, 3, 4, 5], "{hint:?}");
        }
        // A torn tail after the hint is cut off.
        let full = std::fs::read(&p).unwrap();
        std::fs::write(&p, &full[..end as usize - 3]).unwrap();
        let (j, recs) = Journal::open(p.clone(), Some((4, starts[3]))).unwrap();
        assert_eq!(seqs(&recs), [4]);
        assert_eq!(j.len(), starts[4]);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), starts[4]);
        drop(j);
        // Damage after the hint with a valid record behind it is refused, not truncated.
        let (starts, _) = {
            std::fs::remove_file(&p).unwrap();
            appended(&p, 5)
        };
        let mut bad = std::fs::read(&p).unwrap();
        bad[starts[3] as usize + HEADER + 1] ^= 0xff;
        std::fs::write(&p, &bad).unwrap();
        assert!(matches!(
            Journal::open(p.clone(), Some((3, starts[2]))),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), bad.len() as u64);
    }

    /// Small records are written into zeros written ahead of them (so their sync changes no
    /// inode); the file is longer than the journal meanwhile, the zeros are cut at open, and a
    /// record torn inside them is cut like any torn tail.
    #[test]
    fn records_written_into_zeros_ahead_survive_reopen_and_a_torn_one_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.log");
        let (mut j, _) = Journal::open(p.clone(), None).unwrap();
        if j.direct.is_none() {
            eprintln!("no O_DIRECT on this file system: nothing to test");
            return;
        }
        for seq in 1..=20 {
            append_blob(&mut j, seq, &vec![seq as u8; 3000]);
        }
        let len = j.len();
        let size = std::fs::metadata(&p).unwrap().len();
        assert!(
            size >= len + direct::BLOCK as u64,
            "zeros ahead: {size} vs {len}"
        );
        // A large record goes past the zeroed region without zeroing ahead of itself.
        append_blob(&mut j, 21, &vec![7u8; 3_000_000]);
        let len = j.len();
        let size = std::fs::metadata(&p).unwrap().len();
        assert_eq!(
            size,
            len.div_ceil(direct::BLOCK as u64) * direct::BLOCK as u64
        );
        append_blob(&mut j, 22, b"small again");
        let len = j.len();
        drop(j);
        // A torn record: its first bytes reached the zeros, the rest never did.
        {
            use std::os::unix::fs::FileExt;
            let f = OpenOptions::new().write(true).open(&p).unwrap();
            f.write_all_at(b"HRJ1\x40\0\0\0garbage", len).unwrap();
        }
        let (mut j, recs) = Journal::open(p.clone(), None).unwrap();
        assert_eq!(recs.len(), 22);
        assert_eq!(j.len(), len);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), len);
        append_blob(&mut j, 23, b"after the cut");
        drop(j);
        let (_, recs) = Journal::open(p.clone(), None).unwrap();
        assert_eq!(
            recs.iter().map(|d| d.record.seq).collect::<Vec<_>>(),
            (1..=23).collect::<Vec<_>>()
        );
    }

    /// Appends of every size land byte for byte, across reopens (the partial last block is
    /// reloaded), and the zero padding a direct append leaves is cut at open.
    #[test]
    fn appends_of_any_size_read_back_exactly_across_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.log");
        let mut want: Vec<(u64, Vec<u8>)> = vec![];
        let mut seq = 0u64;
        for round in 0..3 {
            let (mut j, recs) = Journal::open(p.clone(), None).unwrap();
            assert_eq!(recs.len(), want.len(), "round {round}");
            for (d, (s, b)) in recs.iter().zip(&want) {
                assert_eq!(d.record.seq, *s);
                let r = JournalReader::open(p.clone()).unwrap();
                assert_eq!(&r.read_at(d.inline[0].start as u64, b.len()).unwrap(), b);
            }
            for size in [0usize, 1, 4000, 4096, 5000, 70_000, 300_001] {
                seq += 1;
                let blob: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
                append_blob(&mut j, seq, &blob);
                want.push((seq, blob));
            }
            let len = j.len();
            drop(j);
            assert!(std::fs::metadata(&p).unwrap().len() >= len);
        }
        let (recs, _, valid) = Journal::read_decoded(&p).unwrap();
        assert_eq!(recs.len(), want.len());
        assert_eq!(
            valid as u64,
            std::fs::metadata(&p).unwrap().len().min(valid as u64)
        );
    }
}
