//! The derived index. [`Index`] is the small trait a server database could implement;
//! [`SledIndex`] is the embedded implementation on sled 0.34.7.
//!
//! Every write here is idempotent, so replaying journal records that were already applied
//! (after a crash between the journal sync and the index update) changes nothing.

use std::collections::BTreeSet;
use std::path::Path;

use huren_model::{ContentHash, InstanceRecord, ReportKind, ReportStatus};
use serde::{Deserialize, Serialize};

use crate::journal::{Entry, IdentityOp, JournalRecord, ReviewDecision};
use crate::StoreError;

/// How firmly the reports of a query are tied to the person asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityLink {
    /// Linked through the (keyed) national ID.
    ExactNationalId,
    /// Only the institution-local ID (and explicit merges) connect them.
    LocalOnly,
}

impl IdentityLink {
    /// How a person key ties the reports filed under it to the person asked about: a keyed
    /// national ID, or only a local key (and explicit merges).
    pub fn of_person(person: &str) -> IdentityLink {
        if person.starts_with("nidk:") {
            IdentityLink::ExactNationalId
        } else {
            IdentityLink::LocalOnly
        }
    }
}

/// What the index knows about one report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportMeta {
    /// Report hash.
    pub hash: ContentHash,
    /// Original message hash.
    pub original: ContentHash,
    /// Kind.
    pub kind: ReportKind,
    /// Status.
    pub status: ReportStatus,
    /// Version chain key.
    pub chain: String,
    /// Patient local key.
    pub local: String,
    /// Sending institution.
    pub institution: String,
    /// Clinical time (ms since epoch).
    pub time_ms: Option<i64>,
    /// Received at (RFC 3339).
    pub received_at: String,
    /// 1-based version in its chain.
    pub version: u32,
    /// The newer version that replaces this one, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<ContentHash>,
    /// The open identity review item this report waits on: its message claimed a national ID
    /// that contradicts the existing link of its local key. While set, the report is
    /// identity-uncertain: it is filed under its local key (and so its existing person) but
    /// its content is not to be shown as anyone's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_review: Option<String>,
}

impl ReportMeta {
    /// The metadata a report entry records, as version `version` of its chain, not
    /// superseded and not waiting on an identity review; `None` for other entries.
    pub fn of_entry(e: &Entry, version: u32) -> Option<ReportMeta> {
        let Entry::Report {
            hash,
            original,
            kind,
            status,
            chain,
            local,
            institution,
            time_ms,
            received_at,
            ..
        } = e
        else {
            return None;
        };
        Some(ReportMeta {
            hash: *hash,
            original: *original,
            kind: *kind,
            status: *status,
            chain: chain.clone(),
            local: local.clone(),
            institution: institution.clone(),
            time_ms: *time_ms,
            received_at: received_at.clone(),
            version,
            superseded_by: None,
            identity_review: None,
        })
    }
}

/// Where an identity review item stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ReviewState {
    /// Waiting for a decision.
    Open,
    /// A decision is being applied (a crash may cut it short; the replay finishes it with
    /// the person noted here).
    Resolving {
        /// The decision.
        decision: ReviewDecision,
        /// The person `local` belonged to when the decision was applied.
        from: String,
    },
    /// Decided.
    Resolved {
        /// The decision.
        decision: ReviewDecision,
        /// The person `local` belonged to before the decision.
        from: String,
        /// Who decided.
        by: String,
        /// Why.
        reason: String,
        /// When.
        at: String,
        /// The journal record that holds the decision.
        seq: u64,
    },
}

/// A national ID claimed for a local key that is already linked to another one: the link
/// stayed, the claim waits here for a person to decide.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewItem {
    /// `SEQ-ENTRY`: the claim's position in the journal.
    pub id: String,
    /// The local key claimed.
    pub local: String,
    /// The person it is linked to (a keyed `nidk:` key).
    pub current: String,
    /// The person claimed (a keyed `nidk:` key).
    pub claimed: String,
    /// The institution whose message made the claim.
    pub institution: String,
    /// The message's control ID, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The message's original, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<ContentHash>,
    /// The message's reports, marked identity-uncertain while the item is open.
    #[serde(default)]
    pub reports: Vec<ContentHash>,
    /// When the claim was received.
    pub at: String,
    /// Open, being resolved, or resolved.
    pub state: ReviewState,
}

/// What C-FIND and QIDO-RS match a study on, kept up to date as instances arrive.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudyRow {
    /// Study Instance UID.
    pub study_instance_uid: String,
    /// Institution code of the first instance.
    pub institution: String,
    /// Patient ID as sent (empty when absent).
    pub patient_id: String,
    /// Issuer of Patient ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_id_issuer: Option<String>,
    /// Patient's Name, decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_name: Option<String>,
    /// Patient's Sex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_sex: Option<String>,
    /// Patient's Birth Date (DA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_birth_date: Option<String>,
    /// Accession Number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accession_number: Option<String>,
    /// Study ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study_id: Option<String>,
    /// Study Date (DA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study_date: Option<String>,
    /// Study Time (TM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study_time: Option<String>,
    /// Study Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study_description: Option<String>,
    /// Referring Physician's Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referring_physician: Option<String>,
    /// Modalities in Study, sorted, unique.
    #[serde(default)]
    pub modalities: Vec<String>,
    /// SOP classes in the study, sorted, unique.
    #[serde(default)]
    pub sop_classes: Vec<String>,
    /// Number of Study Related Series.
    pub series_count: u32,
    /// Number of Study Related Instances.
    pub instance_count: u32,
    /// The SOP Instance UID counted last, so that replaying a record whose index update was
    /// cut short by a crash counts its instance once (see `apply_instance`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_counted: Option<String>,
}

/// What C-FIND and QIDO-RS match a series on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesRow {
    /// Series Instance UID.
    pub series_instance_uid: String,
    /// Its study.
    pub study_instance_uid: String,
    /// Modality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modality: Option<String>,
    /// Series Number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_number: Option<i64>,
    /// Series Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_description: Option<String>,
    /// Body Part Examined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_part: Option<String>,
    /// Number of Series Related Instances.
    pub instance_count: u32,
    /// The SOP Instance UID counted last (as [`StudyRow::last_counted`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_counted: Option<String>,
}

/// The operations the store needs from an index.
pub trait Index: Send + Sync {
    /// Sequence number of the last journal record applied.
    fn applied_seq(&self) -> Result<u64, StoreError>;
    /// Applies one journal record (idempotent). Returns the person keys whose current
    /// reports may have changed (before or after the record: a link or merge moves reports
    /// between persons), for caches of per-patient answers.
    ///
    /// `at` is the file offset of the record in the journal; the index keeps it with the
    /// applied sequence number so that the next open reads the journal from there.
    fn apply(&self, rec: &JournalRecord, at: u64) -> Result<Vec<String>, StoreError>;
    /// Metadata of a report.
    fn report_meta(&self, hash: &ContentHash) -> Result<Option<ReportMeta>, StoreError>;
    /// Versions of a chain, oldest first.
    fn chain(&self, chain: &str) -> Result<Vec<ContentHash>, StoreError>;
    /// The newest version of a chain and its number (1-based), without reading the others.
    fn chain_head(&self, chain: &str) -> Result<Option<(u32, ContentHash)>, StoreError>;
    /// The person a local key belongs to (the key itself when unlinked).
    fn person_of(&self, local: &str) -> Result<String, StoreError>;
    /// Current (not superseded) reports of a person, newest first.
    fn reports_of_person(
        &self,
        person: &str,
        kind: Option<ReportKind>,
    ) -> Result<Vec<ReportMeta>, StoreError>;
    /// Makes the index durable (best effort; the journal is the truth).
    fn flush(&self) -> Result<(), StoreError>;
    /// The latest record of a SOP instance.
    fn instance(&self, sop_instance_uid: &str) -> Result<Option<InstanceRecord>, StoreError>;
    /// A study's row.
    fn study(&self, study_uid: &str) -> Result<Option<StudyRow>, StoreError>;
    /// Studies of a Patient ID (every study when `None`).
    fn studies(&self, patient_id: Option<&str>) -> Result<Vec<StudyRow>, StoreError>;
    /// Series of a study, by series number then UID.
    fn series_of_study(&self, study_uid: &str) -> Result<Vec<SeriesRow>, StoreError>;
    /// Latest records of a study's instances, by series then instance number.
    fn instances_of_study(&self, study_uid: &str) -> Result<Vec<InstanceRecord>, StoreError>;
}

/// sled-backed [`Index`].
pub struct SledIndex {
    db: sled::Db,
    meta: sled::Tree,
    reports: sled::Tree,
    /// `chain \0 version (u32 BE)` → report hash (32 bytes): one key per version, so adding
    /// a version costs the same however long the chain is.
    chain_versions: sled::Tree,
    /// `chain` → `version (u32 BE) ‖ hash (32 bytes)` of the newest version.
    chain_heads: sled::Tree,
    by_local: sled::Tree,
    l2p: sled::Tree,
    p2l: sled::Tree,
    /// SOP Instance UID → latest [`InstanceRecord`].
    instances: sled::Tree,
    /// Study UID → [`StudyRow`].
    studies: sled::Tree,
    /// Series UID → [`SeriesRow`].
    series: sled::Tree,
    /// `study \0 series` and `study \0 \x01 sop` → ().
    study_members: sled::Tree,
    /// `patient id \0 study` → ().
    patient_studies: sled::Tree,
    /// Derived-blob cache: key (e.g. `preview|…`) → blob hash. Not in the journal; a
    /// reindex forgets it and the blobs are made again on demand.
    cache: sled::Tree,
    /// Blob hash (32 bytes) → `start (u64 BE) ‖ len (u32 BE)` of its bytes inline in
    /// `journal.log`, for every blob a journal record carries.
    blob_locations: sled::Tree,
    /// Identity review item id → [`ReviewItem`].
    reviews: sled::Tree,
}

const APPLIED: &[u8] = b"applied_seq";
/// How long [`open_db`] waits for a file lock that the same process is still releasing.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens the sled database. sled lets go of its file lock only when its background threads
/// end, shortly after the last handle is dropped, so a reopen in the same process right after
/// a close (a test, `reindex`) can find it still held: that is waited out, for at most
/// [`LOCK_WAIT`]. A lock held by another live process is still refused after the wait.
pub(crate) fn open_db(dir: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()
        {
            // sled 0.34 reports it as an `Other` I/O error with this text.
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return Ok(r?),
        }
    }
}

const FORMAT: &[u8] = b"index_format";
/// The layout of the trees below. An index of another format (or of none: the first one kept
/// each chain as one JSON list, rewritten per version, and had no blob locations) is rebuilt
/// from the journal at open. 2: one key per chain version; 3: journal blob locations; 4:
/// identity ops move only their own institution's local keys and a contradicting national
/// ID opens a review item (an index of format 3 may hold groups moved across institutions,
/// so it is rebuilt under the new rules).
pub const INDEX_FORMAT: u32 = 4;

fn chain_version_key(chain: &str, version: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(chain.len() + 5);
    k.extend_from_slice(chain.as_bytes());
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn hash_of(v: &[u8]) -> Result<ContentHash, StoreError> {
    <[u8; 32]>::try_from(v)
        .map(ContentHash::from_bytes)
        .map_err(|_| StoreError::Corrupt(format!("index: hash of {} bytes", v.len())))
}

impl SledIndex {
    /// The blob a cache key names, if any.
    pub fn cache_get(&self, key: &str) -> Result<Option<ContentHash>, StoreError> {
        Ok(self
            .cache
            .get(key.as_bytes())?
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok()))
    }

    /// Records that `key` is answered by blob `hash`.
    pub fn cache_put(&self, key: &str, hash: &ContentHash) -> Result<(), StoreError> {
        self.cache
            .insert(key.as_bytes(), hash.to_string().as_bytes())?;
        Ok(())
    }

    /// Opens or creates the index at `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let db = open_db(dir.as_ref(), 256 * 1024 * 1024)?;
        let idx = SledIndex {
            meta: db.open_tree("meta")?,
            reports: db.open_tree("reports")?,
            chain_versions: db.open_tree("chain_versions")?,
            chain_heads: db.open_tree("chain_heads")?,
            by_local: db.open_tree("by_local")?,
            l2p: db.open_tree("l2p")?,
            p2l: db.open_tree("p2l")?,
            instances: db.open_tree("dicom_instances")?,
            studies: db.open_tree("dicom_studies")?,
            series: db.open_tree("dicom_series")?,
            study_members: db.open_tree("dicom_study_members")?,
            patient_studies: db.open_tree("dicom_patient_studies")?,
            cache: db.open_tree("blob_cache")?,
            blob_locations: db.open_tree("blob_locations")?,
            reviews: db.open_tree("identity_reviews")?,
            db,
        };
        if idx.meta.get(FORMAT)?.is_none() && idx.applied_seq()? == 0 && !idx.has_old_chains()? {
            // A new, empty index: it starts in the current format.
            idx.meta.insert(FORMAT, &INDEX_FORMAT.to_be_bytes())?;
        }
        Ok(idx)
    }

    /// Records where a journal record's inline blobs sit (idempotent: applied before the
    /// record itself, again on replay).
    pub(crate) fn put_blob_locations(
        &self,
        inline: &[crate::journal::InlineBlob],
    ) -> Result<(), StoreError> {
        for b in inline {
            let mut v = [0u8; 12];
            v[..8].copy_from_slice(&(b.start as u64).to_be_bytes());
            v[8..].copy_from_slice(&(b.len as u32).to_be_bytes());
            self.blob_locations.insert(b.hash.as_bytes(), &v)?;
        }
        Ok(())
    }

    /// Where a blob's bytes sit in the journal (start, length), if a record carries it.
    pub(crate) fn blob_location(
        &self,
        hash: &ContentHash,
    ) -> Result<Option<(u64, usize)>, StoreError> {
        match self.blob_locations.get(hash.as_bytes())? {
            None => Ok(None),
            Some(v) if v.len() == 12 => {
                let mut start = [0u8; 8];
                start.copy_from_slice(&v[..8]);
                let len = u32::from_be_bytes([v[8], v[9], v[10], v[11]]);
                Ok(Some((u64::from_be_bytes(start), len as usize)))
            }
            Some(v) => Err(StoreError::Corrupt(format!(
                "index: blob location of {} bytes",
                v.len()
            ))),
        }
    }

    /// The last applied journal record: its sequence number (0 when none) and, when the
    /// index recorded it, its offset in the journal.
    pub fn applied(&self) -> Result<(u64, Option<u64>), StoreError> {
        let be = |b: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_be_bytes(a)
        };
        Ok(match self.meta.get(APPLIED)? {
            Some(v) if v.len() == 16 => (be(&v[..8]), Some(be(&v[8..]))),
            Some(v) if v.len() == 8 => (be(&v), None),
            _ => (0, None),
        })
    }

    /// Records that the journal record `seq`, at offset `at`, is applied.
    pub(crate) fn set_applied(&self, seq: u64, at: u64) -> Result<(), StoreError> {
        let mut applied = [0u8; 16];
        applied[..8].copy_from_slice(&seq.to_be_bytes());
        applied[8..].copy_from_slice(&at.to_be_bytes());
        self.meta.insert(APPLIED, &applied)?;
        Ok(())
    }

    /// Whether the index was written in [`INDEX_FORMAT`]; an index that is not must be
    /// rebuilt from the journal ([`crate::Store::open`] does it).
    pub fn format_is_current(&self) -> Result<bool, StoreError> {
        Ok(self.meta.get(FORMAT)?.as_deref() == Some(&INDEX_FORMAT.to_be_bytes()[..]))
    }

    /// Whether the first layout's `chains` tree (one JSON list per chain) holds anything.
    fn has_old_chains(&self) -> Result<bool, StoreError> {
        let names = self.db.tree_names();
        if !names.iter().any(|n| n.as_ref() == b"chains") {
            return Ok(false);
        }
        Ok(!self.db.open_tree("chains")?.is_empty())
    }

    fn get_json<T: for<'de> Deserialize<'de>>(
        tree: &sled::Tree,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match tree.get(key)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("index value: {e}"))),
        }
    }

    fn put_json<T: Serialize>(tree: &sled::Tree, key: &[u8], v: &T) -> Result<(), StoreError> {
        let b = serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tree.insert(key, b)?;
        Ok(())
    }

    /// All local keys of a person (the person key itself when it is a local key).
    fn locals_of(&self, person: &str) -> Result<BTreeSet<String>, StoreError> {
        let mut out = BTreeSet::new();
        if !person.starts_with("nidk:") {
            out.insert(person.to_string());
        }
        let mut prefix = person.as_bytes().to_vec();
        prefix.push(0);
        for kv in self.p2l.scan_prefix(&prefix) {
            let (k, _) = kv?;
            if let Some(l) = k.get(prefix.len()..) {
                out.insert(String::from_utf8_lossy(l).into_owned());
            }
        }
        Ok(out)
    }

    /// Moves the locals of person `from` that belong to institution `ns` (the part of a
    /// local key before its first `:`) to person `into`. Other institutions' local keys stay
    /// where they are: an institution's message may move only its own IDs.
    fn move_group_ns(&self, from: &str, into: &str, ns: &str) -> Result<(), StoreError> {
        if from == into {
            return Ok(());
        }
        for l in self.locals_of(from)? {
            if l == into || namespace(&l) != Some(ns) {
                continue;
            }
            self.l2p.insert(l.as_bytes(), into.as_bytes())?;
            self.p2l.insert(pair(into, &l), &[])?;
            self.p2l.remove(pair(from, &l))?;
        }
        Ok(())
    }

    /// An identity review item.
    pub fn review(&self, id: &str) -> Result<Option<ReviewItem>, StoreError> {
        Self::get_json(&self.reviews, id.as_bytes())
    }

    /// Every identity review item (open ones only when `open_only`), oldest first.
    pub fn reviews(&self, open_only: bool) -> Result<Vec<ReviewItem>, StoreError> {
        let mut out = Vec::new();
        for kv in self.reviews.iter() {
            let (_, v) = kv?;
            let r: ReviewItem = serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("index value: {e}")))?;
            if !open_only || r.state == ReviewState::Open {
                out.push(r);
            }
        }
        // Ids are `SEQ-ENTRY`: order by the numbers, not the text.
        out.sort_by_key(|r| review_order(&r.id));
        Ok(out)
    }

    /// Current reports filed under one local key.
    pub fn reports_of_local(&self, local: &str) -> Result<Vec<ReportMeta>, StoreError> {
        let mut out = Vec::new();
        let mut prefix = local.as_bytes().to_vec();
        prefix.push(0);
        for kv in self.by_local.scan_prefix(&prefix) {
            let (k, _) = kv?;
            let Some(h) = k.get(prefix.len()..) else {
                continue;
            };
            let Ok(h) = <[u8; 32]>::try_from(h) else {
                continue;
            };
            if let Some(m) = self.report_meta(&ContentHash::from_bytes(h))? {
                if m.superseded_by.is_none() {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }

    /// Sets (or, with `None`, clears when it names `only`) a report's review mark.
    fn mark_report(
        &self,
        hash: &ContentHash,
        review: Option<&str>,
        only: &str,
    ) -> Result<(), StoreError> {
        if let Some(mut m) = Self::get_json::<ReportMeta>(&self.reports, hash.as_bytes())? {
            let want = match review {
                Some(r) => Some(r.to_string()),
                None if m.identity_review.as_deref() == Some(only) => None,
                None => return Ok(()),
            };
            if m.identity_review != want {
                m.identity_review = want;
                Self::put_json(&self.reports, hash.as_bytes(), &m)?;
            }
        }
        Ok(())
    }

    /// Applies an identity op; `id` is its position in the journal (`SEQ-ENTRY`), the id of
    /// a review item it opens. Each step is idempotent and a crash may cut the sequence
    /// anywhere: replaying the record finishes it (see the tests).
    fn apply_identity(
        &self,
        op: &IdentityOp,
        id: &str,
        seq: u64,
        touched: &mut Vec<String>,
    ) -> Result<(), StoreError> {
        match op {
            IdentityOp::Link { .. } | IdentityOp::Claim { .. } => {
                if let Some((local, person, ctx)) = claim_of(op) {
                    self.apply_claim(local, person, ctx, id, touched)?;
                }
            }
            IdentityOp::Merge { from, into } => {
                let Some(ns) = namespace(from) else {
                    return Ok(());
                };
                if namespace(into) != Some(ns) {
                    // Another institution's ID: never moved by this sender's merge.
                    return Ok(());
                }
                let pf = self.person_of(from)?;
                let pi = self.person_of(into)?;
                if pf != pi {
                    touched.push(pf.clone());
                    touched.push(from.clone());
                    touched.push(into.clone());
                    self.move_group_ns(&pf, &pi, ns)?;
                    self.l2p.insert(from.as_bytes(), pi.as_bytes())?;
                    self.p2l.insert(pair(&pi, from), &[])?;
                }
            }
            IdentityOp::Resolve {
                review,
                decision,
                by,
                reason,
                at,
            } => {
                let Some(mut item) = self.review(review)? else {
                    tracing::warn!(review = %review, "resolution of an unknown identity review item ignored");
                    return Ok(());
                };
                let from = match &item.state {
                    ReviewState::Resolved { .. } => return Ok(()),
                    ReviewState::Resolving { from, .. } => from.clone(),
                    ReviewState::Open => {
                        let from = self.person_of(&item.local)?;
                        item.state = ReviewState::Resolving {
                            decision: *decision,
                            from: from.clone(),
                        };
                        Self::put_json(&self.reviews, review.as_bytes(), &item)?;
                        from
                    }
                };
                let local = item.local.clone();
                touched.push(from.clone());
                touched.push(local.clone());
                if *decision == ReviewDecision::AcceptClaim && from != item.claimed {
                    // That one local key, nothing else.
                    self.p2l.insert(pair(&item.claimed, &local), &[])?;
                    self.l2p.insert(local.as_bytes(), item.claimed.as_bytes())?;
                    self.p2l.remove(pair(&from, &local))?;
                    touched.push(item.claimed.clone());
                }
                for h in &item.reports {
                    self.mark_report(h, None, review)?;
                }
                item.state = ReviewState::Resolved {
                    decision: *decision,
                    from,
                    by: by.clone(),
                    reason: reason.clone(),
                    at: at.clone(),
                    seq,
                };
                Self::put_json(&self.reviews, review.as_bytes(), &item)?;
            }
        }
        Ok(())
    }

    /// A national ID seen with `local`: links it (with its own institution's local group)
    /// when it is not linked to another national ID; otherwise the link stays and a review
    /// item `id` is opened, its reports marked identity-uncertain.
    fn apply_claim(
        &self,
        local: &str,
        person: &str,
        ctx: Option<ClaimContext<'_>>,
        id: &str,
        touched: &mut Vec<String>,
    ) -> Result<(), StoreError> {
        let current = self.person_of(local)?;
        if current == person {
            return Ok(());
        }
        if current.starts_with("nidk:") {
            // A contradiction: the existing link stays. A replay finds the same state (the
            // link did not move) and rewrites the same item, unless a later record already
            // decided it.
            if let Some(existing) = self.review(id)? {
                if existing.state != ReviewState::Open {
                    return Ok(());
                }
            }
            // The same message again (a retransmission, a re-sent ADT): the open item it
            // opened stands; a second one would ask the same question twice.
            if let Some(original) = ctx.as_ref().map(|c| c.original) {
                let same = self.reviews(true)?.into_iter().any(|r| {
                    r.id != id
                        && r.local == local
                        && r.claimed == person
                        && r.original.as_ref() == Some(original)
                });
                if same {
                    return Ok(());
                }
            }
            let reports = ctx.as_ref().map(|c| c.reports.to_vec()).unwrap_or_default();
            for h in &reports {
                self.mark_report(h, Some(id), id)?;
            }
            let item = ReviewItem::opened(id, local, &current, person, ctx.as_ref());
            Self::put_json(&self.reviews, id.as_bytes(), &item)?;
            touched.push(current);
            touched.push(local.to_string());
            return Ok(());
        }
        touched.push(current.clone());
        touched.push(local.to_string());
        if let Some(ns) = namespace(local) {
            self.move_group_ns(&current, person, ns)?;
        }
        // `local` may have been its own person and so not in its own group list.
        self.l2p.insert(local.as_bytes(), person.as_bytes())?;
        self.p2l.insert(pair(person, local), &[])?;
        Ok(())
    }

    /// Applies a report entry; pushes the local keys whose reports it changes (its own and,
    /// for a new version, the superseded version's).
    fn apply_report(&self, e: &Entry, touched: &mut Vec<String>) -> Result<(), StoreError> {
        let Entry::Report {
            hash, chain, local, ..
        } = e
        else {
            return Ok(());
        };
        // The report's own entry is written first: once it exists its version is fixed, so a
        // replay of a partly applied record finds it and only redoes the (idempotent) rest.
        let existing = Self::get_json::<ReportMeta>(&self.reports, hash.as_bytes())?;
        let head = self.chain_head(chain)?;
        let version = match &existing {
            Some(m) => m.version,
            None => {
                // The head is the newest version, so a new entry is not superseded yet.
                let version = head.map_or(0, |(v, _)| v) + 1;
                if let Some(meta) = ReportMeta::of_entry(e, version) {
                    Self::put_json(&self.reports, hash.as_bytes(), &meta)?;
                }
                version
            }
        };
        self.chain_versions
            .insert(chain_version_key(chain, version), hash.as_bytes())?;
        if head.is_none_or(|(v, _)| v < version) {
            let mut head = Vec::with_capacity(36);
            head.extend_from_slice(&version.to_be_bytes());
            head.extend_from_slice(hash.as_bytes());
            self.chain_heads.insert(chain.as_bytes(), head)?;
        }
        if version > 1 {
            if let Some(prev) = self
                .chain_versions
                .get(chain_version_key(chain, version - 1))?
            {
                let prev = hash_of(&prev)?;
                if let Some(mut pm) = Self::get_json::<ReportMeta>(&self.reports, prev.as_bytes())?
                {
                    if &pm.local != local {
                        touched.push(pm.local.clone());
                    }
                    if pm.superseded_by != Some(*hash) {
                        pm.superseded_by = Some(*hash);
                        Self::put_json(&self.reports, prev.as_bytes(), &pm)?;
                    }
                }
            }
        }
        let mut k = local.as_bytes().to_vec();
        k.push(0);
        k.extend_from_slice(hash.as_bytes());
        self.by_local.insert(k, &[])?;
        touched.push(local.clone());
        Ok(())
    }
}

impl SledIndex {
    /// Applies a received instance. The instance's own entry is written **last**: it marks
    /// the instance as applied, so a record replayed after a crash in the middle of this
    /// (sled keeps a prefix of its writes) is applied again, and the counters in the series
    /// and study rows count the instance once because each row notes the instance it
    /// counted last. Membership keys are idempotent inserts.
    fn apply_instance(&self, r: &InstanceRecord) -> Result<(), StoreError> {
        let sop = r.sop_instance_uid.as_bytes();
        let prev: Option<InstanceRecord> = Self::get_json(&self.instances, sop)?;
        match &prev {
            Some(p) if p.dataset_hash == r.dataset_hash => return Ok(()),
            // A replaced instance: same place in its study and series, new bytes.
            Some(_) => return Self::put_json(&self.instances, sop, r),
            None => {}
        }
        let study = r.study_instance_uid.as_str();
        let mut member = pair(study, "\u{1}");
        member.extend_from_slice(sop);
        self.study_members.insert(member, &[])?;
        let series_key = r.series_instance_uid.as_bytes();
        let (st, se, new_series) = count_instance(
            Self::get_json(&self.studies, study.as_bytes())?,
            Self::get_json(&self.series, series_key)?,
            r,
        );
        Self::put_json(&self.series, series_key, &se)?;
        if new_series {
            self.study_members
                .insert(pair(study, &r.series_instance_uid), &[])?;
        }
        Self::put_json(&self.studies, study.as_bytes(), &st)?;
        if st.instance_count == 1 {
            // The study's first instance (the row's Patient ID is fixed from then on).
            self.patient_studies
                .insert(pair(&st.patient_id, study), &[])?;
        }
        Self::put_json(&self.instances, sop, r)
    }

    fn members(&self, study: &str, instances: bool) -> Result<Vec<Vec<u8>>, StoreError> {
        let prefix = if instances {
            pair(study, "\u{1}")
        } else {
            pair(study, "")
        };
        let mut out = Vec::new();
        for kv in self.study_members.scan_prefix(&prefix) {
            let (k, _) = kv?;
            let rest = &k[prefix.len()..];
            if !instances && rest.first() == Some(&1) {
                continue;
            }
            out.push(rest.to_vec());
        }
        Ok(out)
    }
}

/// What a claim's message says besides the claim.
pub struct ClaimContext<'a> {
    /// The institution whose message made the claim.
    pub institution: &'a str,
    /// The message's control ID.
    pub message_id: Option<&'a str>,
    /// The message's original.
    pub original: &'a ContentHash,
    /// The message's reports filed under the local key.
    pub reports: &'a [ContentHash],
    /// When received.
    pub at: &'a str,
}

/// A claim op's parts: `(local, claimed person, context)`; `None` for other ops. A
/// [`IdentityOp::Link`] is a claim without context.
pub fn claim_of(op: &IdentityOp) -> Option<(&str, &str, Option<ClaimContext<'_>>)> {
    match op {
        IdentityOp::Link { local, person } => Some((local, person, None)),
        IdentityOp::Claim {
            local,
            person,
            institution,
            message_id,
            original,
            reports,
            at,
        } => Some((
            local,
            person,
            Some(ClaimContext {
                institution,
                message_id: message_id.as_deref(),
                original,
                reports,
                at,
            }),
        )),
        _ => None,
    }
}

impl ReviewItem {
    /// The open item `id` for a claim of `claimed` on `local`, which is linked to `current`.
    pub fn opened(
        id: &str,
        local: &str,
        current: &str,
        claimed: &str,
        ctx: Option<&ClaimContext<'_>>,
    ) -> ReviewItem {
        ReviewItem {
            id: id.to_string(),
            local: local.to_string(),
            current: current.to_string(),
            claimed: claimed.to_string(),
            institution: ctx
                .map(|c| c.institution.to_string())
                .or_else(|| namespace(local).map(str::to_string))
                .unwrap_or_default(),
            message_id: ctx.and_then(|c| c.message_id.map(str::to_string)),
            original: ctx.map(|c| *c.original),
            reports: ctx.map(|c| c.reports.to_vec()).unwrap_or_default(),
            at: ctx.map(|c| c.at.to_string()).unwrap_or_default(),
            state: ReviewState::Open,
        }
    }
}

/// The institution of a local key `INSTITUTION:LOCAL_ID`.
pub fn namespace(local: &str) -> Option<&str> {
    local
        .split_once(':')
        .map(|(ns, _)| ns)
        .filter(|ns| !ns.is_empty())
}

fn review_order(id: &str) -> (u64, u64) {
    let (a, b) = id.split_once('-').unwrap_or((id, "0"));
    (a.parse().unwrap_or(u64::MAX), b.parse().unwrap_or(0))
}

/// Counts a new instance into its study's and its series' rows (`None`: the first of
/// either): the rows as they are then, and whether it is the first of its series. The one
/// rule for both back ends: the sled index applies it as instances arrive, the cluster folds
/// a study's instances in the order they were received ([`study_rows`]).
pub fn count_instance(
    study: Option<StudyRow>,
    series: Option<SeriesRow>,
    r: &InstanceRecord,
) -> (StudyRow, SeriesRow, bool) {
    let mut se = series.unwrap_or_else(|| SeriesRow {
        series_instance_uid: r.series_instance_uid.clone(),
        study_instance_uid: r.study_instance_uid.clone(),
        ..Default::default()
    });
    if se.last_counted.as_deref() != Some(r.sop_instance_uid.as_str()) {
        se.instance_count += 1;
        se.last_counted = Some(r.sop_instance_uid.clone());
    }
    // This instance is the first of its series.
    let new_series = se.instance_count == 1;
    fill(&mut se.modality, &r.modality);
    fill(&mut se.series_description, &r.series_description);
    fill(&mut se.body_part, &r.body_part);
    if se.series_number.is_none() {
        se.series_number = r.series_number;
    }
    let mut st = study.unwrap_or_else(|| StudyRow {
        study_instance_uid: r.study_instance_uid.clone(),
        institution: r.institution.clone(),
        patient_id: r.patient_id.clone(),
        ..Default::default()
    });
    if st.last_counted.as_deref() != Some(r.sop_instance_uid.as_str()) {
        st.instance_count += 1;
        if new_series {
            st.series_count += 1;
        }
        st.last_counted = Some(r.sop_instance_uid.clone());
    }
    fill(&mut st.patient_id_issuer, &r.patient_id_issuer);
    fill(&mut st.patient_name, &r.patient_name);
    fill(&mut st.patient_sex, &r.patient_sex);
    fill(&mut st.patient_birth_date, &r.patient_birth_date);
    fill(&mut st.accession_number, &r.accession_number);
    fill(&mut st.study_id, &r.study_id);
    fill(&mut st.study_date, &r.study_date);
    fill(&mut st.study_time, &r.study_time);
    fill(&mut st.study_description, &r.study_description);
    fill(&mut st.referring_physician, &r.referring_physician);
    for (v, x) in [
        (&mut st.modalities, r.modality.as_ref()),
        (&mut st.sop_classes, Some(&r.sop_class_uid)),
    ] {
        if let Some(x) = x {
            if let Err(pos) = v.binary_search(x) {
                v.insert(pos, x.clone());
            }
        }
    }
    (st, se, new_series)
}

/// A study's query row and its series (by series number, then UID) from its instances in
/// the order they were received, each counted once; `None` without instances.
pub fn study_rows(instances: &[InstanceRecord]) -> Option<(StudyRow, Vec<SeriesRow>)> {
    let mut study: Option<StudyRow> = None;
    let mut series: Vec<SeriesRow> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in instances {
        if !seen.insert(r.sop_instance_uid.as_str()) {
            continue;
        }
        let at = series
            .iter()
            .position(|s| s.series_instance_uid == r.series_instance_uid);
        let prev = at.map(|i| series[i].clone());
        let (st, se, _) = count_instance(study.take(), prev, r);
        study = Some(st);
        match at {
            Some(i) => series[i] = se,
            None => series.push(se),
        }
    }
    series.sort_by(|a, b| {
        a.series_number
            .unwrap_or(i64::MAX)
            .cmp(&b.series_number.unwrap_or(i64::MAX))
            .then_with(|| a.series_instance_uid.cmp(&b.series_instance_uid))
    });
    study.map(|s| (s, series))
}

fn fill(slot: &mut Option<String>, v: &Option<String>) {
    if slot.is_none() {
        slot.clone_from(v);
    }
}

fn pair(a: &str, b: &str) -> Vec<u8> {
    let mut k = a.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(b.as_bytes());
    k
}

impl Index for SledIndex {
    fn applied_seq(&self) -> Result<u64, StoreError> {
        Ok(self.applied()?.0)
    }

    fn apply(&self, rec: &JournalRecord, at: u64) -> Result<Vec<String>, StoreError> {
        // Persons (before the record) and local keys (resolved after it) it touches.
        let mut touched = Vec::new();
        for (i, e) in rec.entries.iter().enumerate() {
            match e {
                Entry::Report { .. } => self.apply_report(e, &mut touched)?,
                Entry::Identity(op) => {
                    let id = format!("{}-{i}", rec.seq);
                    self.apply_identity(op, &id, rec.seq, &mut touched)?
                }
                Entry::Original { .. } => {}
                Entry::Instance { record, .. } => self.apply_instance(record)?,
            }
        }
        self.set_applied(rec.seq, at)?;
        let mut persons = Vec::with_capacity(touched.len() * 2);
        for k in touched {
            let p = self.person_of(&k)?;
            if p != k {
                persons.push(p);
            }
            persons.push(k);
        }
        persons.sort();
        persons.dedup();
        Ok(persons)
    }

    fn report_meta(&self, hash: &ContentHash) -> Result<Option<ReportMeta>, StoreError> {
        Self::get_json(&self.reports, hash.as_bytes())
    }

    fn chain(&self, chain: &str) -> Result<Vec<ContentHash>, StoreError> {
        let prefix = pair(chain, "");
        let mut out = Vec::new();
        for kv in self.chain_versions.scan_prefix(&prefix) {
            let (k, v) = kv?;
            // `chain\0` is also a prefix of longer chain keys; only 4-byte suffixes are ours.
            if k.len() == prefix.len() + 4 {
                out.push(hash_of(&v)?);
            }
        }
        Ok(out)
    }

    fn chain_head(&self, chain: &str) -> Result<Option<(u32, ContentHash)>, StoreError> {
        match self.chain_heads.get(chain.as_bytes())? {
            None => Ok(None),
            Some(v) if v.len() == 36 => {
                let version = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
                Ok(Some((version, hash_of(&v[4..])?)))
            }
            Some(v) => Err(StoreError::Corrupt(format!(
                "index: chain head of {} bytes",
                v.len()
            ))),
        }
    }

    fn person_of(&self, local: &str) -> Result<String, StoreError> {
        Ok(match self.l2p.get(local.as_bytes())? {
            Some(p) => String::from_utf8_lossy(&p).into_owned(),
            None => local.to_string(),
        })
    }

    fn reports_of_person(
        &self,
        person: &str,
        kind: Option<ReportKind>,
    ) -> Result<Vec<ReportMeta>, StoreError> {
        let mut out = Vec::new();
        for local in self.locals_of(person)? {
            let mut prefix = local.as_bytes().to_vec();
            prefix.push(0);
            for kv in self.by_local.scan_prefix(&prefix) {
                let (k, _) = kv?;
                let Some(h) = k.get(prefix.len()..) else {
                    continue;
                };
                let Ok(h) = <[u8; 32]>::try_from(h) else {
                    continue;
                };
                let hash = ContentHash::from_bytes(h);
                if let Some(m) = self.report_meta(&hash)? {
                    if m.superseded_by.is_none() && kind.is_none_or(|k| k == m.kind) {
                        out.push(m);
                    }
                }
            }
        }
        out.sort_by(|a, b| {
            b.time_ms
                .cmp(&a.time_ms)
                .then_with(|| b.received_at.cmp(&a.received_at))
        });
        Ok(out)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    fn instance(&self, sop_instance_uid: &str) -> Result<Option<InstanceRecord>, StoreError> {
        Self::get_json(&self.instances, sop_instance_uid.as_bytes())
    }

    fn study(&self, study_uid: &str) -> Result<Option<StudyRow>, StoreError> {
        Self::get_json(&self.studies, study_uid.as_bytes())
    }

    fn studies(&self, patient_id: Option<&str>) -> Result<Vec<StudyRow>, StoreError> {
        let mut out = Vec::new();
        match patient_id {
            Some(pid) => {
                let prefix = pair(pid, "");
                for kv in self.patient_studies.scan_prefix(&prefix) {
                    let (k, _) = kv?;
                    let uid = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                    if let Some(st) = self.study(&uid)? {
                        out.push(st);
                    }
                }
            }
            None => {
                for kv in self.studies.iter() {
                    let (_, v) = kv?;
                    out.push(
                        serde_json::from_slice(&v)
                            .map_err(|e| StoreError::Corrupt(format!("index value: {e}")))?,
                    );
                }
            }
        }
        Ok(out)
    }

    fn series_of_study(&self, study_uid: &str) -> Result<Vec<SeriesRow>, StoreError> {
        let mut out = Vec::new();
        for k in self.members(study_uid, false)? {
            if let Some(s) = Self::get_json::<SeriesRow>(&self.series, &k)? {
                out.push(s);
            }
        }
        out.sort_by(|a, b| {
            a.series_number
                .unwrap_or(i64::MAX)
                .cmp(&b.series_number.unwrap_or(i64::MAX))
                .then_with(|| a.series_instance_uid.cmp(&b.series_instance_uid))
        });
        Ok(out)
    }

    fn instances_of_study(&self, study_uid: &str) -> Result<Vec<InstanceRecord>, StoreError> {
        let mut out = Vec::new();
        for k in self.members(study_uid, true)? {
            if let Some(r) = Self::get_json::<InstanceRecord>(&self.instances, &k)? {
                out.push(r);
            }
        }
        out.sort_by(|a, b| {
            (a.series_number, &a.series_instance_uid, a.instance_number).cmp(&(
                b.series_number,
                &b.series_instance_uid,
                b.instance_number,
            ))
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(sop: &str, series: &str) -> InstanceRecord {
        InstanceRecord {
            sop_instance_uid: sop.into(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            study_instance_uid: "1.2.3".into(),
            series_instance_uid: series.into(),
            original: ContentHash::of(sop.as_bytes()),
            dataset_hash: ContentHash::of(sop.as_bytes()),
            institution: "FX-ZX".into(),
            patient_id: "P1".into(),
            ..Default::default()
        }
    }

    fn counts(ix: &SledIndex) -> (u32, u32, Vec<u32>, usize) {
        let st = ix.study("1.2.3").unwrap().unwrap();
        let series = ix.series_of_study("1.2.3").unwrap();
        (
            st.instance_count,
            st.series_count,
            series.iter().map(|s| s.instance_count).collect(),
            ix.studies(Some("P1")).unwrap().len(),
        )
    }

    /// sled keeps a prefix of its writes across a crash, so an instance's index update can be
    /// cut anywhere; the record is then replayed. Whatever prefix survived, the replay counts
    /// the instance once in its series and study.
    #[test]
    fn an_instance_update_cut_short_anywhere_counts_once_when_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let ix = SledIndex::open(dir.path()).unwrap();
        ix.apply_instance(&instance("1.2.3.1.1", "1.2.3.1"))
            .unwrap();
        let before = ix.study("1.2.3").unwrap().unwrap();
        let second = instance("1.2.3.2.1", "1.2.3.2");
        ix.apply_instance(&second).unwrap();
        let want = counts(&ix);
        assert_eq!(want, (2, 2, vec![1, 1], 1));
        let after_series = ix.series.get(b"1.2.3.2").unwrap();
        // Cut after the series row (study row and instance entry lost), after the study row
        // (instance entry lost), and before anything (series row lost too).
        for cut in ["after series", "after study", "before series"] {
            ix.instances
                .remove(second.sop_instance_uid.as_bytes())
                .unwrap();
            match cut {
                "after series" => {
                    SledIndex::put_json(&ix.studies, b"1.2.3", &before).unwrap();
                }
                "before series" => {
                    SledIndex::put_json(&ix.studies, b"1.2.3", &before).unwrap();
                    ix.series.remove(b"1.2.3.2").unwrap();
                }
                _ => {}
            }
            ix.apply_instance(&second).unwrap();
            assert_eq!(counts(&ix), want, "cut {cut}");
            assert_eq!(
                ix.series.get(b"1.2.3.2").unwrap(),
                after_series,
                "cut {cut}"
            );
        }
        // Applying it again once complete changes nothing.
        ix.apply_instance(&second).unwrap();
        assert_eq!(counts(&ix), want);
    }

    proptest::proptest! {
        /// The cluster folds a study's instances as received (`study_rows`); the sled index
        /// applies them one by one. Any order of arrivals, resends included, gives the same
        /// study and series rows.
        #[test]
        fn folding_a_study_equals_applying_its_instances(
            arrivals in proptest::collection::vec((0u8..6, 0u8..3, 0u8..4), 1..24)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let ix = SledIndex::open(dir.path()).unwrap();
            let mut received = Vec::new();
            for (sop, series, attr) in arrivals {
                // An instance's attributes are its own: a resend carries the same ones.
                let mut r = instance(&format!("1.2.3.{series}.{sop}"), &format!("1.2.3.{series}"));
                r.modality = Some(["CT", "MR", "US", "DX"][usize::from((sop + series) % 4)].into());
                r.series_number = Some(i64::from(series));
                r.patient_name = Some(format!("name {}", (sop + attr) % 2));
                r.study_description = Some(format!("desc {}", sop % 3));
                ix.apply_instance(&r).unwrap();
                received.push(r);
            }
            let (st, series) = study_rows(&received).unwrap();
            let mut want = ix.study("1.2.3").unwrap().unwrap();
            // Which instance a row counted last is bookkeeping of the index's replay.
            want.last_counted = None;
            let mut got = st;
            got.last_counted = None;
            proptest::prop_assert_eq!(got, want);
            let strip = |v: Vec<SeriesRow>| -> Vec<SeriesRow> {
                v.into_iter().map(|mut s| { s.last_counted = None; s }).collect()
            };
            proptest::prop_assert_eq!(strip(series), strip(ix.series_of_study("1.2.3").unwrap()));
        }
    }

    fn report(n: u8, local: &str) -> (ContentHash, Entry) {
        let hash = ContentHash::of(&[n]);
        (
            hash,
            Entry::Report {
                hash,
                original: ContentHash::of(&[n, n]),
                kind: ReportKind::Lab,
                status: ReportStatus::Final,
                chain: format!("lab|{local}|F{n}"),
                local: local.into(),
                institution: namespace(local).unwrap_or_default().into(),
                time_ms: Some(i64::from(n)),
                received_at: "2026-01-01T00:00:00+08:00".into(),
                outcome: crate::Outcome::Stored,
            },
        )
    }

    fn claim(local: &str, person: &str, reports: Vec<ContentHash>) -> Entry {
        Entry::Identity(IdentityOp::Claim {
            local: local.into(),
            person: person.into(),
            institution: namespace(local).unwrap_or_default().into(),
            message_id: Some("CTL-1".into()),
            original: ContentHash::of(b"msg"),
            reports,
            at: "2026-01-02T00:00:00+08:00".into(),
        })
    }

    fn rec(seq: u64, entries: Vec<Entry>) -> JournalRecord {
        JournalRecord { seq, entries }
    }

    type Dump = Vec<Vec<(Vec<u8>, Vec<u8>)>>;

    /// The identity-relevant trees, in full.
    fn dump(ix: &SledIndex) -> Dump {
        [&ix.l2p, &ix.p2l, &ix.reviews, &ix.reports, &ix.by_local]
            .iter()
            .map(|t| {
                t.iter()
                    .map(|kv| {
                        let (k, v) = kv.unwrap();
                        (k.to_vec(), v.to_vec())
                    })
                    .collect()
            })
            .collect()
    }

    fn restore(ix: &SledIndex, d: &Dump) {
        for (t, kvs) in [&ix.l2p, &ix.p2l, &ix.reviews, &ix.reports, &ix.by_local]
            .iter()
            .zip(d)
        {
            t.clear().unwrap();
            for (k, v) in kvs {
                t.insert(k.as_slice(), v.as_slice()).unwrap();
            }
        }
    }

    fn hashes(ix: &SledIndex, person: &str) -> Vec<ContentHash> {
        let mut h: Vec<ContentHash> = ix
            .reports_of_person(person, None)
            .unwrap()
            .into_iter()
            .map(|m| m.hash)
            .collect();
        h.sort();
        h
    }

    fn sorted(mut v: Vec<ContentHash>) -> Vec<ContentHash> {
        v.sort();
        v
    }

    /// Issue 16: a national ID claimed for a local key already linked to another one moves
    /// nothing (not the other institutions' keys, not the local key itself); it opens a
    /// review item and marks the claim's report. Replaying the records (twice, or after an
    /// update cut short) gives the same index; an accepted claim moves exactly that local
    /// key.
    #[test]
    fn a_contradicting_claim_opens_a_review_and_moves_nothing_and_replays_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let ix = SledIndex::open(dir.path()).unwrap();
        let (r1, e1) = report(1, "A:1");
        let (r2, e2) = report(2, "B:2");
        let (r3, e3) = report(3, "A:1");
        let rec1 = rec(
            1,
            vec![
                e1,
                claim("A:1", "nidk:x", vec![r1]),
                e2,
                claim("B:2", "nidk:x", vec![r2]),
            ],
        );
        // A's next message carries a typo in the national ID.
        let rec2 = rec(2, vec![e3, claim("A:1", "nidk:y", vec![r3])]);
        ix.apply(&rec1, 0).unwrap();
        let touched = ix.apply(&rec2, 100).unwrap();
        assert!(touched.contains(&"nidk:x".to_string()), "{touched:?}");
        assert_eq!(ix.person_of("A:1").unwrap(), "nidk:x");
        assert_eq!(ix.person_of("B:2").unwrap(), "nidk:x");
        assert_eq!(hashes(&ix, "nidk:x"), sorted(vec![r1, r2, r3]));
        assert!(hashes(&ix, "nidk:y").is_empty());
        let open = ix.reviews(true).unwrap();
        assert_eq!(open.len(), 1);
        let item = &open[0];
        assert_eq!(item.id, "2-1");
        assert_eq!(
            (
                item.local.as_str(),
                item.current.as_str(),
                item.claimed.as_str()
            ),
            ("A:1", "nidk:x", "nidk:y")
        );
        assert_eq!(item.message_id.as_deref(), Some("CTL-1"));
        assert_eq!(item.reports, vec![r3]);
        let marked = |h: &ContentHash| ix.report_meta(h).unwrap().unwrap().identity_review;
        assert_eq!(marked(&r3).as_deref(), Some("2-1"));
        assert_eq!(marked(&r1), None);

        // Replaying both records (twice) changes nothing.
        let after2 = dump(&ix);
        for _ in 0..2 {
            ix.apply(&rec1, 0).unwrap();
            ix.apply(&rec2, 100).unwrap();
            assert_eq!(dump(&ix), after2);
        }
        // A cut-short claim (the report marked, the item lost) replays to the same.
        ix.reviews.remove(b"2-1").unwrap();
        ix.apply(&rec2, 100).unwrap();
        assert_eq!(dump(&ix), after2);
        // The same message again in a later record (an ADT re-sent): no second item.
        ix.apply(&rec(9, vec![claim("A:1", "nidk:y", vec![])]), 300)
            .unwrap();
        assert_eq!(ix.reviews(true).unwrap().len(), 1);
        restore(&ix, &after2);

        // The privacy officer accepts the claim: exactly A:1 moves, with its reports.
        let rec3 = rec(
            3,
            vec![Entry::Identity(IdentityOp::Resolve {
                review: "2-1".into(),
                decision: ReviewDecision::AcceptClaim,
                by: "po".into(),
                reason: "registry checked".into(),
                at: "2026-01-03T00:00:00Z".into(),
            })],
        );
        ix.apply(&rec3, 200).unwrap();
        assert_eq!(ix.person_of("A:1").unwrap(), "nidk:y");
        assert_eq!(ix.person_of("B:2").unwrap(), "nidk:x");
        assert_eq!(hashes(&ix, "nidk:y"), sorted(vec![r1, r3]));
        assert_eq!(hashes(&ix, "nidk:x"), vec![r2]);
        assert_eq!(marked(&r3), None);
        assert!(ix.reviews(true).unwrap().is_empty());
        assert!(matches!(
            ix.review("2-1").unwrap().unwrap().state,
            ReviewState::Resolved { seq: 3, .. }
        ));
        let after3 = dump(&ix);
        // Replayed (twice): the same. (Replay starts after the last applied record, in
        // journal order, so nothing before a fully applied record is replayed after it.)
        for r in [&rec3, &rec3] {
            ix.apply(r, 0).unwrap();
        }
        assert_eq!(dump(&ix), after3);

        // The resolution cut short anywhere (sled keeps a prefix of its writes) and replayed.
        let resolving = {
            let mut i = ix.review("2-1").unwrap().unwrap();
            i.state = ReviewState::Resolving {
                decision: ReviewDecision::AcceptClaim,
                from: "nidk:x".into(),
            };
            i
        };
        for cut in 0..4 {
            restore(&ix, &after2);
            if cut >= 1 {
                SledIndex::put_json(&ix.reviews, b"2-1", &resolving).unwrap();
            }
            if cut >= 2 {
                ix.p2l.insert(pair("nidk:y", "A:1"), &[]).unwrap();
            }
            if cut >= 3 {
                ix.l2p.insert(b"A:1", b"nidk:y").unwrap();
            }
            ix.apply(&rec3, 200).unwrap();
            assert_eq!(dump(&ix), after3, "cut {cut}");
        }

        // Keeping the existing link moves nothing and lifts the mark.
        restore(&ix, &after2);
        let keep = rec(
            3,
            vec![Entry::Identity(IdentityOp::Resolve {
                review: "2-1".into(),
                decision: ReviewDecision::KeepExisting,
                by: "po".into(),
                reason: "typo".into(),
                at: "2026-01-03T00:00:00Z".into(),
            })],
        );
        ix.apply(&keep, 200).unwrap();
        assert_eq!(ix.person_of("A:1").unwrap(), "nidk:x");
        assert_eq!(hashes(&ix, "nidk:x"), sorted(vec![r1, r2, r3]));
        assert_eq!(marked(&r3), None);
        let kept = dump(&ix);
        ix.apply(&keep, 200).unwrap();
        assert_eq!(dump(&ix), kept);
    }

    /// An old journal's `Link` that contradicts the existing link is a claim without context.
    #[test]
    fn a_contradicting_legacy_link_is_a_review_too() {
        let dir = tempfile::tempdir().unwrap();
        let ix = SledIndex::open(dir.path()).unwrap();
        let link = |l: &str, p: &str| {
            Entry::Identity(IdentityOp::Link {
                local: l.into(),
                person: p.into(),
            })
        };
        ix.apply(
            &rec(1, vec![link("A:1", "nidk:x"), link("B:2", "nidk:x")]),
            0,
        )
        .unwrap();
        ix.apply(&rec(2, vec![link("B:2", "nidk:y")]), 0).unwrap();
        assert_eq!(ix.person_of("A:1").unwrap(), "nidk:x");
        assert_eq!(ix.person_of("B:2").unwrap(), "nidk:x");
        let open = ix.reviews(true).unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].institution, "B");
    }

    /// A merge moves only its own institution's local keys; a merge across institutions
    /// changes nothing.
    #[test]
    fn a_merge_moves_only_the_senders_own_ids() {
        let dir = tempfile::tempdir().unwrap();
        let ix = SledIndex::open(dir.path()).unwrap();
        let (r1, e1) = report(1, "A:OLD");
        let (r2, e2) = report(2, "B:2");
        let (r3, e3) = report(3, "A:NEW");
        ix.apply(
            &rec(
                1,
                vec![
                    e1,
                    claim("A:OLD", "nidk:x", vec![r1]),
                    e2,
                    claim("B:2", "nidk:x", vec![r2]),
                    e3,
                    claim("A:NEW", "nidk:z", vec![r3]),
                ],
            ),
            0,
        )
        .unwrap();
        let merge = |from: &str, into: &str| {
            Entry::Identity(IdentityOp::Merge {
                from: from.into(),
                into: into.into(),
            })
        };
        // Across institutions: refused by the index (the pipeline refuses it before).
        let before = dump(&ix);
        ix.apply(&rec(2, vec![merge("A:OLD", "B:2")]), 0).unwrap();
        ix.apply(&rec(3, vec![merge("B:2", "A:NEW")]), 0).unwrap();
        assert_eq!(dump(&ix), before);
        // A's own: A:OLD joins A:NEW's person; B:2 stays with nidk:x.
        let m = rec(4, vec![merge("A:OLD", "A:NEW")]);
        ix.apply(&m, 0).unwrap();
        assert_eq!(ix.person_of("A:OLD").unwrap(), "nidk:z");
        assert_eq!(ix.person_of("B:2").unwrap(), "nidk:x");
        assert_eq!(hashes(&ix, "nidk:z"), sorted(vec![r1, r3]));
        assert_eq!(hashes(&ix, "nidk:x"), vec![r2]);
        let after = dump(&ix);
        ix.apply(&m, 0).unwrap();
        assert_eq!(dump(&ix), after);
    }

    #[test]
    fn a_held_index_lock_is_refused_after_a_bounded_wait_and_a_released_one_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let held = SledIndex::open(dir.path()).unwrap();
        let t = std::time::Instant::now();
        let second = SledIndex::open(dir.path());
        let waited = t.elapsed();
        assert!(
            second.is_err(),
            "a lock held by a live handle must be refused"
        );
        assert!(
            waited >= LOCK_WAIT && waited < LOCK_WAIT * 3,
            "waited {waited:?}"
        );
        drop(held);
        // sled lets go of the lock from its background threads: the reopen waits for that.
        SledIndex::open(dir.path()).unwrap();
    }
}
