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
    pub(crate) kind: Kind,
    pub(crate) institution: String,
    pub(crate) chain: String,
    pub(crate) critical: bool,
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
        for (c, out) in found.into_iter().zip(&committed.reports) {
            if let Some(c) = c {
                self.ensure_task(c, out.report)?;
            }
        }
        Ok(())
    }

    /// Makes the reading task of one report chain durable unless it exists (or the chain's
    /// institution and kind go to no centre).
    pub(crate) fn ensure_task(&self, c: Candidate, report: ContentHash) -> Result<(), StoreError> {
        let wf = &self.config.workflow;
        let Some(centre) = wf.route(&c.institution, c.kind).cloned() else {
            return Ok(());
        };
        let id = task_id(&c.chain);
        if self.ingest_store().tasks().get(&id).is_some() {
            return Ok(());
        }
        let now = chrono::Utc::now();
        let priority = Priority::of(c.critical, false);
        let created = Created {
            id,
            kind: c.kind,
            priority,
            due_at: wf.due_at(now, &centre, c.kind, priority),
            claim_timeout_secs: wf.claim_timeout_secs(&centre),
            centre,
            institution: c.institution,
            report: report.to_string(),
            at: now,
        };
        match self.ingest_store().tasks().create(created) {
            Ok((t, true)) => {
                tracing::info!(task = %t.id.0, centre = %t.centre.0, priority = t.priority.as_str(), "reading task scheduled");
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(huren_store::TaskError::Store(e)) => Err(e),
            Err(e) => Err(StoreError::Corrupt(format!("reading task: {e}"))),
        }
    }

    /// Commits an ingest, then schedules its reading tasks and raises its alerts; `Ok` only
    /// when all are durable.
    pub(crate) async fn commit_read(&self, ingest: Ingest) -> Result<Committed, StoreError> {
        let found = FollowUps::of(&self.config, &ingest);
        let c = self.ingest_store().commit(ingest).await?;
        self.follow_up(found, &c)?;
        Ok(c)
    }

    /// Blocking form of [`Gateway::commit_read`].
    pub(crate) fn commit_read_blocking(&self, ingest: Ingest) -> Result<Committed, StoreError> {
        let found = FollowUps::of(&self.config, &ingest);
        let c = self.ingest_store().commit_blocking(ingest)?;
        self.follow_up(found, &c)?;
        Ok(c)
    }

    /// Makes the reading tasks and alerts of a committed ingest durable.
    pub(crate) fn follow_up(&self, f: FollowUps, c: &Committed) -> Result<(), StoreError> {
        self.schedule_reading(f.tasks, c)?;
        self.raise_alerts(f.alerts, c)
    }
}

/// What an ingest may lead to once committed: reading tasks and alerts, per report.
pub(crate) struct FollowUps {
    tasks: Vec<Option<Candidate>>,
    alerts: Vec<Option<crate::alerts::AlertCandidate>>,
}

impl FollowUps {
    /// Found in an ingest before its commit.
    pub(crate) fn of(config: &crate::config::Config, ingest: &Ingest) -> FollowUps {
        FollowUps {
            tasks: candidates(ingest),
            alerts: crate::alerts::alert_candidates(config, ingest),
        }
    }
}

/// What a reader signs (`POST /api/v1/worklist/{id}/sign`).
pub struct Signature<'a> {
    /// The task.
    pub task: &'a huren_workflow::Task,
    /// The reader's principal id.
    pub reader: &'a str,
    /// Structured statements, in order (e.g. `窦性心律`, `急性下壁心肌梗死`).
    pub statements: &'a [String],
    /// Free text.
    pub text: &'a str,
    /// When.
    pub at: chrono::DateTime<chrono::Utc>,
    /// For an amendment of the signed report (`POST …/amend`): why (never blank). `None` for
    /// the first signature.
    pub amendment: Option<&'a str>,
}

/// Most statements one signature may carry, and their longest length (characters).
const MAX_STATEMENTS: usize = 50;
const MAX_STATEMENT_CHARS: usize = 200;
const MAX_TEXT_CHARS: usize = 4000;
const MAX_REASON_CHARS: usize = 1000;

/// The signed version of a task's report: the reader's statements and text, final,
/// confirmed by the reader at the centre, in the same chain (so it supersedes the cart's
/// preliminary version, which stays retrievable); its original is the act of signing as
/// JSON (task, centre, reader, time, what was signed, the version it supersedes). The
/// critical flag is the configured catalogue's verdict on the reader's statements. For an
/// imaging task the statements are the impression and the text the findings, kept with the
/// reader, centre, task and time in `imaging.reading`; the conclusion is the impression.
///
/// An amendment ([`Signature::amendment`]) is built the same way from the current signed
/// version, with status corrected (HL7 result status C in the ORU), the reason kept in the
/// report (`ecg.confirmation.amendment_reason`) and in the act (`huren-reading-amendment`).
pub fn signed_report(
    config: &crate::config::Config,
    prev: &Report,
    prev_hash: ContentHash,
    s: &Signature<'_>,
) -> Result<Ingest, String> {
    if prev.ecg.is_none() && prev.imaging.is_none() {
        return Err("only ECG and imaging reports are signed in the reading centre".into());
    }
    let statements: Vec<String> = s
        .statements
        .iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    let text = s.text.trim();
    let reason = match s.amendment.map(str::trim) {
        Some("") => return Err("an amendment needs a reason".into()),
        Some(r) if r.chars().count() > MAX_REASON_CHARS => {
            return Err(format!(
                "the reason is longer than {MAX_REASON_CHARS} characters"
            ))
        }
        r => r,
    };
    if statements.is_empty() && text.is_empty() {
        return Err("a signature needs at least one statement or a text".into());
    }
    if statements.len() > MAX_STATEMENTS {
        return Err(format!("at most {MAX_STATEMENTS} statements"));
    }
    if let Some(long) = statements
        .iter()
        .find(|t| t.chars().count() > MAX_STATEMENT_CHARS)
    {
        return Err(format!(
            "a statement is longer than {MAX_STATEMENT_CHARS} characters ({} …)",
            long.chars().take(20).collect::<String>()
        ));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(format!(
            "the text is longer than {MAX_TEXT_CHARS} characters"
        ));
    }
    let at =
        s.at.with_timezone(&chrono_tz::Asia::Shanghai)
            .fixed_offset()
            .to_rfc3339();
    let mut act = serde_json::json!({
        "kind": if reason.is_some() { "huren-reading-amendment" } else { "huren-reading-signature" },
        "task": s.task.id.0,
        "centre": s.task.centre.0,
        "reader": s.reader,
        "at": at,
        "statements": statements,
        "text": text,
        "supersedes": prev_hash.to_string(),
    });
    if let Some(r) = reason {
        act["reason"] = r.into();
    }
    let original = huren_model::Hashed::new(act.to_string().into_bytes());
    let mut report = prev.clone();
    if let Some(ecg) = prev.ecg.as_deref() {
        let mut body = ecg.clone();
        body.statements = statements
            .iter()
            .map(|t| huren_model::ecg::EcgStatement {
                text: t.clone(),
                reason: None,
                code: None,
            })
            .collect();
        body.confirmation = huren_model::ecg::EcgConfirmation {
            state: huren_model::ecg::ConfirmationState::Confirmed,
            physician: Some(s.reader.to_string()),
            confirmed_at: Some(at.clone()),
            centre: Some(s.task.centre.0.clone()),
            task: Some(s.task.id.0.clone()),
            amendment_reason: reason.map(str::to_string),
        };
        let opts = crate::ecg::parse_options(config);
        body.critical = huren_ecg::critical(
            statements
                .iter()
                .map(String::as_str)
                .chain(std::iter::once(text)),
            &opts.catalogue,
        )
        .map(|m| huren_model::ecg::EcgCritical {
            rule: m.rule,
            label: m.label,
            statement: m.statement,
        });
        report.conclusion = Some(if text.is_empty() {
            statements.join("；")
        } else {
            text.to_string()
        });
        report.ecg = Some(Box::new(body));
    } else if let Some(img) = prev.imaging.as_deref() {
        // Imaging: the statements are the impression (诊断意见), the text the findings (检查所见).
        let mut body = img.clone();
        body.reading = Some(huren_model::imaging::ImagingReading {
            findings: (!text.is_empty()).then(|| text.to_string()),
            impression: statements.clone(),
            reader: s.reader.to_string(),
            centre: s.task.centre.0.clone(),
            task: s.task.id.0.clone(),
            signed_at: at.clone(),
            amendment_reason: reason.map(str::to_string),
        });
        report.conclusion = Some(if statements.is_empty() {
            text.to_string()
        } else {
            statements.join("；")
        });
        report.imaging = Some(Box::new(body));
    }
    report.status = if reason.is_some() {
        huren_model::ReportStatus::Corrected
    } else {
        huren_model::ReportStatus::Final
    };
    report.reported_at = Some(at.clone());
    report.original = original.hash();
    Ok(Ingest {
        original: original.into(),
        reports: vec![report],
        identity: vec![],
        received_at: at,
        attachments: vec![],
        message_id: None,
    })
}

impl Gateway {
    /// Completes the tasks whose signed report is stored but whose `Signed` event is not (a
    /// crash between the two), and records such amendments likewise: run at start-up.
    /// Returns how many events it recorded.
    pub fn reconcile_reading(&self) -> Result<usize, StoreError> {
        let store = self.ingest_store();
        let mut done = 0;
        done += self.reconcile_amendments()?;
        for t in store.tasks().select(|t| t.is_open()) {
            let Ok(first) = t.report.parse::<ContentHash>() else {
                continue;
            };
            let Some(r) = store.report_shared(&first)? else {
                continue;
            };
            let Some((_, head)) = store.chain_head(&r.source.chain_key(r.kind))? else {
                continue;
            };
            let Some(h) = store.report_shared(&head)? else {
                continue;
            };
            let Some(m) = Mark::of(&h) else {
                continue;
            };
            if m.task != t.id.0 {
                continue;
            }
            let (at, by) = (m.at, m.by);
            // Signed needs the signer to hold the claim: the claim is taken again first if
            // it lapsed (both recorded, so the log says what happened).
            let claim = huren_workflow::Event::Claimed { by: by.clone(), at };
            let _ = store.tasks().apply(&t.id, claim);
            match store.tasks().apply(
                &t.id,
                huren_workflow::Event::Signed {
                    by,
                    at,
                    report: head.to_string(),
                },
            ) {
                Ok(_) => done += 1,
                Err(huren_store::TaskError::Store(e)) => return Err(e),
                Err(e) => {
                    tracing::warn!(task = %t.id.0, error = %e, "signed report found but the task cannot complete")
                }
            }
        }
        Ok(done)
    }
}

impl Gateway {
    /// Records the amendments whose amended report is stored but whose `Amended` event is not
    /// (a crash between the two): the head of a completed task's chain names the task and an
    /// amendment reason and is not the task's current version. Returns how many it recorded.
    fn reconcile_amendments(&self) -> Result<usize, StoreError> {
        let store = self.ingest_store();
        let mut done = 0;
        for t in store
            .tasks()
            .select(|t| matches!(t.state, huren_workflow::State::Completed { .. }))
        {
            let Ok(current) = t.current_report().parse::<ContentHash>() else {
                continue;
            };
            let Some(r) = store.report_shared(&current)? else {
                continue;
            };
            let Some((_, head)) = store.chain_head(&r.source.chain_key(r.kind))? else {
                continue;
            };
            if head == current {
                continue;
            }
            let Some(h) = store.report_shared(&head)? else {
                continue;
            };
            let Some(m) = Mark::of(&h) else {
                continue;
            };
            let (Some(reason), true) = (m.reason, m.task == t.id.0) else {
                continue;
            };
            let event = huren_workflow::Event::Amended {
                by: m.by,
                at: m.at,
                report: head.to_string(),
                reason,
            };
            match store.tasks().apply(&t.id, event) {
                Ok(_) => done += 1,
                Err(huren_store::TaskError::Store(e)) => return Err(e),
                Err(e) => {
                    tracing::warn!(task = %t.id.0, error = %e, "amended report found but the amendment cannot be recorded")
                }
            }
        }
        Ok(done)
    }
}

/// What a version signed in the reading centre says about its signature: the task, the
/// reader, when, and the amendment's reason (ECG confirmation or imaging reading).
struct Mark {
    task: String,
    by: String,
    at: chrono::DateTime<chrono::Utc>,
    reason: Option<String>,
}

impl Mark {
    fn of(r: &Report) -> Option<Mark> {
        let (task, by, at, reason) = if let Some(e) = r.ecg.as_deref() {
            let c = &e.confirmation;
            (
                c.task.clone()?,
                c.physician.clone().unwrap_or_default(),
                c.confirmed_at.clone(),
                c.amendment_reason.clone(),
            )
        } else {
            let g = r.imaging.as_deref()?.reading.as_ref()?;
            (
                g.task.clone(),
                g.reader.clone(),
                Some(g.signed_at.clone()),
                g.amendment_reason.clone(),
            )
        };
        let at = at
            .as_deref()
            .and_then(|a| chrono::DateTime::parse_from_rfc3339(a).ok())
            .map_or_else(chrono::Utc::now, |a| a.with_timezone(&chrono::Utc));
        Some(Mark {
            task,
            by,
            at,
            reason,
        })
    }
}
