//! Planning a group commit: which reports are new, duplicates or new versions of a chain,
//! which blobs must be stored, and the journal entries that record it. Pure over a
//! [`PlanView`] of what is already stored, so the embedded writer and the cluster back end
//! decide every commit alike.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use huren_model::{ContentHash, InstanceRecord, Report};

use crate::journal::{Entry, IdentityOp};
use crate::{Committed, Ingest, Original, Outcome, ReportOutcome, StoreError};

/// A blob to store: its hash and bytes.
pub type Blob = (ContentHash, Arc<Vec<u8>>);

/// An ingest with its hashing and serialisation done (by the caller's thread, so a single
/// writer only plans, writes and syncs).
#[derive(Clone, Debug)]
pub struct Prepared {
    /// Hash of the original.
    pub original: ContentHash,
    /// The original's bytes; `None` when it is already a durable file
    /// ([`Original::Stored`], see [`Prepared::stored_original`]).
    pub original_bytes: Option<Arc<Vec<u8>>>,
    /// The spooled file of a [`Original::Stored`] original.
    pub stored_original: Option<crate::StoredFile>,
    /// Each report with the hash and bytes of its canonical JSON.
    pub reports: Vec<(Report, ContentHash, Arc<Vec<u8>>)>,
    /// Identity changes the message makes.
    pub identity: Vec<IdentityOp>,
    /// When the gateway received the message (RFC 3339).
    pub received_at: String,
    /// Further blobs the reports name.
    pub attachments: Vec<Blob>,
    /// DICOM instance records of the original.
    pub instances: Vec<InstanceRecord>,
    /// The sender's message ID.
    pub message_id: Option<String>,
}

impl Prepared {
    /// Hashes and serialises `ingest`; every report must name the original's hash.
    pub fn new(ingest: Ingest, instances: Vec<InstanceRecord>) -> Result<Prepared, StoreError> {
        let original = ingest.original.hash();
        let mut reports = Vec::with_capacity(ingest.reports.len());
        for r in ingest.reports {
            if r.original != original {
                return Err(StoreError::OriginalMismatch {
                    report: r.original,
                    original,
                });
            }
            let bytes = r.to_canonical_json()?;
            let hash = ContentHash::of(&bytes);
            reports.push((r, hash, Arc::new(bytes)));
        }
        let (original_bytes, stored_original) = match ingest.original {
            Original::Bytes(h) => (Some(Arc::new(h.into_bytes())), None),
            Original::Stored(f) => (None, Some(f)),
        };
        Ok(Prepared {
            original,
            original_bytes,
            stored_original,
            reports,
            identity: ingest.identity,
            received_at: ingest.received_at,
            attachments: ingest
                .attachments
                .into_iter()
                .map(|b| (b.hash(), Arc::new(b.into_bytes())))
                .collect(),
            instances,
            message_id: ingest.message_id,
        })
    }

    /// Every blob this ingest carries in memory: the original (unless spooled), the reports'
    /// canonical JSON and the attachments, each once.
    pub fn blobs(&self) -> Vec<Blob> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let all = self
            .original_bytes
            .iter()
            .map(|b| (self.original, b.clone()))
            .chain(self.reports.iter().map(|(_, h, b)| (*h, b.clone())))
            .chain(self.attachments.iter().cloned());
        for (h, b) in all {
            if seen.insert(h) {
                out.push((h, b));
            }
        }
        out
    }
}

/// What a planner needs to know of the stored state.
pub trait PlanView {
    /// The version of a stored report, `None` when it is not stored.
    fn report_version(&self, hash: &ContentHash) -> Result<Option<u32>, StoreError>;
    /// The number of versions a chain has (0 when it has none).
    fn chain_length(&self, chain: &str) -> Result<u32, StoreError>;
    /// Whether a blob is stored; `len` is its length when the caller has the bytes.
    fn has_blob(&self, hash: &ContentHash, len: Option<usize>) -> Result<bool, StoreError>;
}

/// Plans the ingests of one group in order; later ones see what earlier ones add.
#[derive(Default)]
pub struct Planner {
    /// Reports planned so far, with their versions.
    pending_reports: HashMap<ContentHash, u32>,
    /// Chain key → number of versions it will have after the ingests planned so far.
    pending_chains: HashMap<String, u32>,
    staged_hashes: HashSet<ContentHash>,
    staged: Vec<Blob>,
}

impl Planner {
    /// A planner for a new group.
    pub fn new() -> Planner {
        Planner::default()
    }

    /// The blobs the planned ingests need stored, each once.
    pub fn staged(&self) -> &[Blob] {
        &self.staged
    }

    /// Takes the staged blobs.
    pub fn into_staged(self) -> Vec<Blob> {
        self.staged
    }

    fn stage(
        &mut self,
        view: &impl PlanView,
        hash: ContentHash,
        bytes: &Arc<Vec<u8>>,
    ) -> Result<(), StoreError> {
        if self.staged_hashes.contains(&hash) || view.has_blob(&hash, Some(bytes.len()))? {
            return Ok(());
        }
        self.staged.push((hash, bytes.clone()));
        self.staged_hashes.insert(hash);
        Ok(())
    }

    fn stage_original(
        &mut self,
        view: &impl PlanView,
        ingest: &Prepared,
    ) -> Result<(), StoreError> {
        match &ingest.original_bytes {
            Some(b) => self.stage(view, ingest.original, b),
            None => Ok(()),
        }
    }

    /// Plans one ingest: its outcomes (duplicate, stored, superseded with versions) and the
    /// journal entries that record what is new. Nothing is recorded on an error.
    pub fn plan(
        &mut self,
        view: &impl PlanView,
        ingest: &Prepared,
    ) -> Result<(Committed, Vec<Entry>), StoreError> {
        let original = ingest.original;
        let mut entries = Vec::new();
        let mut outcomes = Vec::new();
        let mut identity: Vec<IdentityOp> = Vec::new();
        // (local, claimed person) → the reports filed under it: one claim per pair.
        let mut claims: Vec<(String, String, Vec<ContentHash>)> = Vec::new();
        // Checked before anything is staged, so a refused ingest stages nothing.
        for rec in &ingest.instances {
            if rec.original != original {
                return Err(StoreError::OriginalMismatch {
                    report: rec.original,
                    original,
                });
            }
        }
        for (r, hash, bytes) in &ingest.reports {
            let hash = *hash;
            if let Some(v) = self.pending_reports.get(&hash) {
                outcomes.push(ReportOutcome {
                    report: hash,
                    outcome: Outcome::Duplicate,
                    version: *v,
                });
                continue;
            }
            if let Some(version) = view.report_version(&hash)? {
                outcomes.push(ReportOutcome {
                    report: hash,
                    outcome: Outcome::Duplicate,
                    version,
                });
                continue;
            }
            let chain = r.source.chain_key(r.kind);
            let existing = match self.pending_chains.get(&chain) {
                Some(n) => *n,
                None => view.chain_length(&chain)?,
            };
            let version = existing + 1;
            let outcome = if existing == 0 {
                Outcome::Stored
            } else {
                Outcome::Superseded
            };
            self.stage(view, hash, bytes)?;
            self.stage_original(view, ingest)?;
            for (h, b) in &ingest.attachments {
                self.stage(view, *h, b)?;
            }
            self.pending_reports.insert(hash, version);
            self.pending_chains.insert(chain.clone(), version);
            let local = r.patient.local_key();
            if let Some(nidk) = &r.patient.national_id_key {
                match claims.iter_mut().find(|(l, p, _)| l == &local && p == nidk) {
                    Some(c) => c.2.push(hash),
                    None => claims.push((local.clone(), nidk.clone(), vec![hash])),
                }
            }
            entries.push(Entry::Report {
                hash,
                original,
                kind: r.kind,
                status: r.status,
                chain,
                local,
                institution: r.source.institution.clone(),
                time_ms: r.clinical_time().and_then(time_ms),
                received_at: ingest.received_at.clone(),
                outcome,
            });
            outcomes.push(ReportOutcome {
                report: hash,
                outcome,
                version,
            });
        }
        for (local, person, reports) in claims {
            identity.push(IdentityOp::Claim {
                institution: crate::index::namespace(&local)
                    .unwrap_or_default()
                    .to_string(),
                local,
                person,
                message_id: ingest.message_id.clone(),
                original,
                reports,
                at: ingest.received_at.clone(),
            });
        }
        identity.extend(ingest.identity.iter().cloned());
        for rec in &ingest.instances {
            self.stage_original(view, ingest)?;
            entries.push(Entry::Instance {
                record: Box::new(rec.clone()),
                received_at: ingest.received_at.clone(),
            });
        }
        let original_len = ingest.original_bytes.as_ref().map(|b| b.len());
        if !identity.is_empty()
            || (ingest.reports.is_empty() && !view.has_blob(&original, original_len)?)
        {
            if ingest.reports.is_empty() {
                self.stage_original(view, ingest)?;
                entries.push(Entry::Original {
                    hash: original,
                    received_at: ingest.received_at.clone(),
                });
            }
            entries.extend(identity.into_iter().map(Entry::Identity));
        }
        Ok((
            Committed {
                original,
                reports: outcomes,
                seq: 0,
            },
            entries,
        ))
    }
}

/// Milliseconds since the epoch of an RFC 3339 time or a `YYYY-MM-DD` date (UTC midnight).
pub fn time_ms(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}
