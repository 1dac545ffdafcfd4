//! Reading tasks for what the centres read (issue 17): an ECG or imaging report from an
//! institution that `[[reading_route]]` sends to a diagnosis centre gets a task on that
//! centre's worklist. The task is made durable after the report's commit and before the
//! sender's acknowledgement; its id comes from the report's chain (the recording or the
//! study), so a resent message, a corrected cart version or the next instance of a study finds
//! the task it already has instead of making another. A crash between the two commits is not
//! acknowledged: the sender's retry is a duplicate report and makes the missing task then.

use huren_model::{ContentHash, Report, ReportKind};
use huren_store::{Committed, Ingest, StoreError};
use huren_workflow::{Created, Kind, Priority, TaskId};

use crate::Gateway;

/// What the task of one report needs, taken before its commit.
pub(crate) struct Candidate {
    kind: Kind,
    institution: String,
    chain: String,
    critical: bool,
}

/// The reports of an ingest that the centres may read, in the ingest's order (`None` for
/// the others), so they pair with [`Committed::reports`].
pub(crate) fn candidates(ingest: &Ingest) -> Vec<Option<Candidate>> {
    ingest.reports.iter().map(candidate).collect()
}

fn candidate(r: &Report) -> Option<Candidate> {
    let kind = match r.kind {
        ReportKind::Ecg => Kind::Ecg,
        ReportKind::Imaging => Kind::Imaging,
        _ => return None,
    };
    Some(Candidate {
        kind,
        institution: r.source.institution.clone(),
        chain: r.source.chain_key(r.kind),
        critical: r.ecg.as_ref().is_some_and(|e| e.critical.is_some()),
    })
}

/// The task id of a report chain: stable across versions and resends.
pub fn task_id(chain: &str) -> TaskId {
    let h = ContentHash::of(chain.as_bytes()).hex();
    TaskId(format!("t-{}", &h[..20]))
}

impl Gateway {
    /// Makes the reading tasks of a committed ingest durable (those that exist are kept).
    pub(crate) fn schedule_reading(
        &self,
        found: Vec<Option<Candidate>>,
        committed: &Committed,
    ) -> Result<(), StoreError> {
        let wf = &self.config.workflow;
        let now = chrono::Utc::now();
        for (c, out) in found.into_iter().zip(&committed.reports) {
            let Some(c) = c else { continue };
            let Some(centre) = wf.route(&c.institution, c.kind).cloned() else {
                continue;
            };
            let priority = Priority::of(c.critical, false);
            let created = Created {
                id: task_id(&c.chain),
                kind: c.kind,
                priority,
                due_at: wf.due_at(now, &centre, c.kind, priority),
                claim_timeout_secs: wf.claim_timeout_secs(&centre),
                centre,
                institution: c.institution,
                report: out.report.to_string(),
                at: now,
            };
            match self.ingest_store().tasks().create(created) {
                Ok((t, true)) => {
                    tracing::info!(task = %t.id.0, centre = %t.centre.0, priority = t.priority.as_str(), "reading task scheduled")
                }
                Ok(_) => {}
                Err(huren_store::TaskError::Store(e)) => return Err(e),
                Err(e) => return Err(StoreError::Corrupt(format!("reading task: {e}"))),
            }
        }
        Ok(())
    }

    /// Commits an ingest, then schedules its reading tasks; `Ok` only when both are durable.
    pub(crate) async fn commit_read(&self, ingest: Ingest) -> Result<Committed, StoreError> {
        let found = candidates(&ingest);
        let c = self.ingest_store().commit(ingest).await?;
        self.schedule_reading(found, &c)?;
        Ok(c)
    }

    /// Blocking form of [`Gateway::commit_read`].
    pub(crate) fn commit_read_blocking(&self, ingest: Ingest) -> Result<Committed, StoreError> {
        let found = candidates(&ingest);
        let c = self.ingest_store().commit_blocking(ingest)?;
        self.schedule_reading(found, &c)?;
        Ok(c)
    }
}
