//! Alerts raised on ingest (issue 18): a community ECG the cart flags as acute MI / STEMI
//! (the ECG critical catalogue's `stemi` rule), and a lab result with a critical value
//! (OBX-8 `HH`, `LL` or `AA`, or a configured `[[critical_threshold]]` crossed), from an
//! institution that `[[alert_route]]` sends to a group. The alert is made durable after the
//! report's commit and before the sender's acknowledgement, like a reading task; one alert per
//! report chain, so a resend or a correction does not raise a second one.

use huren_alerting::{AlertId, AlertKind, Raised};
use huren_model::{ContentHash, LabObservation, Report, ReportKind};
use huren_store::{Committed, Ingest, StoreError};

use crate::config::Config;
use crate::Gateway;

/// What in one report may raise an alert.
pub(crate) struct AlertCandidate {
    kind: AlertKind,
    institution: String,
    chain: String,
    summary: String,
}

/// Whether an observation is a critical value: OBX-8 `HH` / `LL` / `AA`, or a configured
/// threshold crossed by its numeric value.
pub fn is_critical(config: &Config, o: &LabObservation) -> bool {
    if o.abnormal_flags.iter().any(|f| f.is_critical()) {
        return true;
    }
    let raw = o.abnormal_flags_raw.as_deref().unwrap_or("");
    if raw.split('~').any(|f| f.trim().eq_ignore_ascii_case("AA")) {
        return true;
    }
    o.value.trim().parse::<f64>().ok().is_some_and(|v| {
        config
            .alerting
            .crossed(&o.code, v, o.unit.as_deref())
            .is_some()
    })
}

fn candidate(config: &Config, r: &Report) -> Option<AlertCandidate> {
    let (kind, summary) = match r.kind {
        ReportKind::Ecg => {
            let c = r.ecg.as_deref()?.critical.as_ref()?;
            if c.rule != "stemi" {
                return None;
            }
            (AlertKind::Stemi, c.statement.clone())
        }
        ReportKind::Lab => {
            let crit: Vec<String> = r
                .lab
                .as_ref()?
                .observations
                .iter()
                .filter(|o| is_critical(config, o))
                .map(|o| {
                    format!(
                        "{} {} {} {}",
                        o.name.as_deref().unwrap_or(&o.code),
                        o.value,
                        o.unit.as_deref().unwrap_or(""),
                        o.abnormal_flags_raw.as_deref().unwrap_or("")
                    )
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                })
                .collect();
            if crit.is_empty() {
                return None;
            }
            (AlertKind::LabCritical, crit.join("；"))
        }
        ReportKind::Imaging => return None,
    };
    Some(AlertCandidate {
        kind,
        institution: r.source.institution.clone(),
        chain: r.source.chain_key(r.kind),
        summary: summary.chars().take(500).collect(),
    })
}

/// The reports of an ingest that may raise an alert, in the ingest's order (`None` for the
/// others), so they pair with [`Committed::reports`].
pub(crate) fn alert_candidates(config: &Config, ingest: &Ingest) -> Vec<Option<AlertCandidate>> {
    ingest
        .reports
        .iter()
        .map(|r| candidate(config, r))
        .collect()
}

/// The alert id of a report chain: stable across versions and resends.
pub fn alert_id(chain: &str) -> AlertId {
    huren_store::AlertStore::id_of_chain(chain)
}

impl Gateway {
    /// Raises the alert of a stored report (a reader's signed version with a critical
    /// statement) unless its chain has one. Durable before it returns.
    pub fn raise_alert_for(&self, report: &ContentHash) -> Result<(), StoreError> {
        let Some(r) = self.ingest_store().report_shared(report)? else {
            return Ok(());
        };
        self.raise(std::iter::once((candidate(&self.config, &r), *report)))
    }

    /// Makes the alerts of a committed ingest durable (those that exist are kept).
    pub(crate) fn raise_alerts(
        &self,
        found: Vec<Option<AlertCandidate>>,
        committed: &Committed,
    ) -> Result<(), StoreError> {
        self.raise(
            found
                .into_iter()
                .zip(committed.reports.iter().map(|r| r.report)),
        )
    }

    fn raise(
        &self,
        found: impl Iterator<Item = (Option<AlertCandidate>, ContentHash)>,
    ) -> Result<(), StoreError> {
        let now = chrono::Utc::now();
        for (c, report) in found {
            let Some(c) = c else { continue };
            let Some(group) = self.config.alerting.route(&c.institution, c.kind) else {
                continue;
            };
            let (a, new) = self.ingest_store().alerts().raise(Raised {
                id: alert_id(&c.chain),
                kind: c.kind,
                institution: c.institution,
                group: group.to_string(),
                report: report.to_string(),
                summary: c.summary,
                at: now,
            })?;
            if new {
                tracing::warn!(alert = %a.raised.id, kind = a.raised.kind.as_str(), group = %a.raised.group, "alert raised");
            }
        }
        Ok(())
    }
}

/// The escalation worker (spawned by `huren serve`): every second, takes the escalation step
/// that has fallen due of each open alert (from its last stored step, so a restart resumes
/// the ladder), stamped and durable.
pub async fn escalate(gw: Gateway) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let g = gw.clone();
        let done = tokio::task::spawn_blocking(move || g.escalate_due(chrono::Utc::now())).await;
        if let Ok(Err(e)) = done {
            tracing::error!(error = %e, "alert escalation not recorded; retrying");
        }
    }
}

impl Gateway {
    /// Takes every escalation step due at `now`; how many were taken.
    pub fn escalate_due(&self, now: chrono::DateTime<chrono::Utc>) -> Result<usize, StoreError> {
        let alerts = self.ingest_store().alerts();
        let mut n = 0;
        for a in alerts.select(|a| a.is_open()) {
            let Some(step) = self.config.alerting.ladder(&a.raised.group).due(&a, now) else {
                continue;
            };
            match alerts.apply(&a.raised.id, huren_alerting::Event::Escalated(step.clone())) {
                Ok(_) => {
                    n += 1;
                    tracing::warn!(alert = %a.raised.id, step = step.step, "alert escalated");
                }
                // Acknowledged or escalated meanwhile: nothing to do.
                Err(huren_store::AlertStoreError::Refused(_)) => {}
                Err(huren_store::AlertStoreError::Unknown(_)) => {}
                Err(huren_store::AlertStoreError::Store(e)) => return Err(e),
            }
        }
        Ok(n)
    }
}

/// How far back the start-up reconciliation raises the alerts of signed reports that have
/// none: an hour (an older STEMI alert would only mislead).
pub const RAISE_RECONCILE_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(1);

impl Gateway {
    /// Raises the alerts of reports signed (or amended) within [`RAISE_RECONCILE_WINDOW`]
    /// whose chain has none — a crash between a signature and its raise, or a route
    /// configured since: run at start-up. How many it raised.
    pub fn reconcile_alerts(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<usize, StoreError> {
        let store = self.ingest_store();
        let since = now - RAISE_RECONCILE_WINDOW;
        let before = store.alerts().count(|_| true);
        for t in store
            .tasks()
            .select(|t| matches!(t.state, huren_workflow::State::Completed { .. }))
        {
            let huren_workflow::State::Completed { report, at, .. } = &t.state else {
                continue;
            };
            let signed = std::iter::once((report, *at))
                .chain(t.amendments.iter().map(|a| (&a.report, a.at)))
                .filter(|(_, at)| *at >= since);
            for (report, _) in signed {
                if let Ok(hash) = report.parse::<ContentHash>() {
                    self.raise_alert_for(&hash)?;
                }
            }
        }
        Ok(store.alerts().count(|_| true).saturating_sub(before))
    }

    /// What follows a change of an alert: its notices for the group's webhooks (first: a
    /// page waits on them), then its chest-pain case and stamps. Durable when it returns;
    /// idempotent.
    pub fn follow_alert(&self, a: &huren_alerting::Alert) -> Result<(), StoreError> {
        self.enqueue_notices(a, None)?;
        self.case_from_alert(a)?;
        Ok(())
    }
}

/// The alert follower (spawned by `huren serve`): at start, the cases of every STEMI alert and
/// the webhook notices of the last hour that a crash left behind; then, on the alerts'
/// change feed, [`Gateway::follow_alert`] for each changed alert.
pub async fn follow(gw: Gateway) {
    let feed = gw.ingest_store().alerts().feed();
    let mut rx = feed.subscribe();
    let mut seen = feed.sequence();
    let g = gw.clone();
    let start = tokio::task::spawn_blocking(move || -> Result<(usize, usize), StoreError> {
        let notices = g.reconcile_notices(chrono::Utc::now())?;
        Ok((g.reconcile_cases()?, notices))
    })
    .await;
    match start {
        Ok(Ok((_, n))) if n > 0 => tracing::warn!(notices = n, "alert notices queued at start-up"),
        Ok(Err(e)) => tracing::error!(error = %e, "alert follow-ups not reconciled at start-up"),
        _ => {}
    }
    loop {
        if rx.changed().await.is_err() {
            return;
        }
        let latest = *rx.borrow_and_update();
        let changed = gw
            .ingest_store()
            .alerts()
            .feed()
            .changes_since(seen, usize::MAX);
        let g = gw.clone();
        let done = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            let alerts = g.ingest_store().alerts();
            match changed {
                Some(ids) => {
                    for (_, id) in ids {
                        if let Some(a) = alerts.get(&id) {
                            g.follow_alert(&a)?;
                        }
                    }
                }
                // Fell behind the kept changes: look at everything.
                None => {
                    g.reconcile_notices(chrono::Utc::now())?;
                    g.reconcile_cases()?;
                }
            }
            Ok(())
        })
        .await;
        match done {
            Ok(Ok(())) => seen = latest,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "alert follow-ups not recorded; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
        }
    }
}
