//! Alerts (`alerts.log`, issue 18): one JSON line per alert event
//! ([`huren_alerting::Event`]), appended and `fdatasync`ed before the caller is answered,
//! never rewritten; every alert held in memory as the fold of its events. An event is checked
//! by `huren-alerting` against the alert as it is, under the same lock as its append, so of
//! two acknowledgements at once exactly one is recorded. The changes feed the event streams.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use huren_alerting::{Alert, AlertError, AlertId, Event, Raised};
use serde::{Deserialize, Serialize};

use crate::events::EventSink;
use crate::feed::Feed;
use crate::jsonl::JsonLines;
use crate::StoreError;

/// Folds one event into `alerts`: a raise creates the alert, anything else applies to it.
fn fold(
    alerts: &mut HashMap<AlertId, (Alert, u32)>,
    id: &AlertId,
    event: &Event,
) -> Result<(), String> {
    let next = match (event, alerts.get(id)) {
        (Event::Raised(r), None) => (Alert::new(r), 1),
        (_, Some((a, n))) => (a.apply(event).map_err(|e| e.to_string())?, n + 1),
        (_, None) => return Err(format!("event for unknown alert {}", id.0)),
    };
    alerts.insert(id.clone(), next);
    Ok(())
}

fn value_of(e: &Event) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(e).map_err(|e| StoreError::Corrupt(format!("alert event: {e}")))
}

fn event_of(v: serde_json::Value) -> Result<Event, StoreError> {
    serde_json::from_value(v).map_err(|e| StoreError::Corrupt(format!("alert event: {e}")))
}

#[derive(Serialize, Deserialize)]
struct Line {
    alert: AlertId,
    #[serde(flatten)]
    event: Event,
}

/// Why an alert event was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum AlertStoreError {
    /// No alert has this id.
    #[error("no alert {0}")]
    Unknown(String),
    /// The event does not apply to the alert as it is (nothing was written).
    #[error(transparent)]
    Refused(#[from] AlertError),
    /// Writing it failed (nothing was recorded).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The alerts of one store directory, or of a cluster's event table.
pub struct AlertStore {
    backing: Backing,
    /// Each alert with the number of its events (its stream's length).
    alerts: RwLock<HashMap<AlertId, (Alert, u32)>>,
    feed: Feed<AlertId>,
}

/// Where the events are written.
enum Backing {
    /// `alerts.log`, checked and appended under its lock.
    File(JsonLines),
    /// A cluster's event table: optimistic appends per alert (see [`EventSink`]).
    Shared(Arc<dyn EventSink>),
}

impl AlertStore {
    /// The alert id of a report chain: stable across versions and resends (one alert per
    /// chain).
    pub fn id_of_chain(chain: &str) -> AlertId {
        let h = huren_model::ContentHash::of(format!("alert|{chain}").as_bytes()).hex();
        AlertId(format!("a-{}", &h[..20]))
    }

    /// Opens (or creates) `dir/alerts.log` and replays it.
    pub fn open(dir: impl AsRef<Path>) -> Result<AlertStore, StoreError> {
        let mut alerts: HashMap<AlertId, (Alert, u32)> = HashMap::new();
        let mut keys = Vec::new();
        let (log, _) = JsonLines::open(dir, "alerts.log", |l: Line| {
            fold(&mut alerts, &l.alert, &l.event)?;
            keys.push(l.alert);
            Ok(())
        })?;
        Ok(AlertStore {
            backing: Backing::File(log),
            alerts: RwLock::new(alerts),
            feed: Feed::replayed(keys),
        })
    }

    /// The alerts of a cluster's event table (every stream loaded and folded); writes go
    /// there, and [`AlertStore::refresh`] brings in what other nodes wrote.
    pub fn shared(sink: Arc<dyn EventSink>) -> Result<AlertStore, StoreError> {
        let mut alerts: HashMap<AlertId, (Alert, u32)> = HashMap::new();
        let mut keys = Vec::new();
        for (stream, v) in sink.all()? {
            let id = AlertId(stream);
            fold(&mut alerts, &id, &event_of(v)?).map_err(StoreError::Corrupt)?;
            keys.push(id);
        }
        Ok(AlertStore {
            backing: Backing::Shared(sink),
            alerts: RwLock::new(alerts),
            feed: Feed::replayed(keys),
        })
    }

    /// Reads the events of `id` this node has not seen (another node wrote them), folds them
    /// and announces the change; whether there were any. A no-op on the file back end.
    pub fn refresh(&self, id: &AlertId) -> Result<bool, StoreError> {
        let Backing::Shared(sink) = &self.backing else {
            return Ok(false);
        };
        let (current, n) = match self.alerts.read() {
            Ok(m) => m
                .get(id)
                .map(|(a, n)| (Some(a.clone()), *n))
                .unwrap_or((None, 0)),
            Err(_) => return Err(StoreError::Corrupt("alerts: poisoned lock".into())),
        };
        let missed = sink.stream(&id.0, n)?;
        if missed.is_empty() {
            return Ok(false);
        }
        let mut local: HashMap<AlertId, (Alert, u32)> = HashMap::new();
        if let Some(a) = current {
            local.insert(id.clone(), (a, n));
        }
        for v in missed {
            fold(&mut local, id, &event_of(v)?).map_err(StoreError::Corrupt)?;
        }
        if let Some((a, n)) = local.remove(id) {
            self.put_newer(id, a, n);
        }
        self.feed.changed(id);
        Ok(true)
    }

    /// Records `a` with `n` events unless a later state is held already (two writers on
    /// this node never move an alert back).
    fn put_newer(&self, id: &AlertId, a: Alert, n: u32) {
        if let Ok(mut m) = self.alerts.write() {
            if m.get(id).is_none_or(|(_, held)| *held < n) {
                m.insert(id.clone(), (a, n));
            }
        }
    }

    fn held(&self, id: &AlertId) -> Option<(Alert, u32)> {
        self.alerts.read().ok()?.get(id).cloned()
    }

    /// Raises an alert unless one with its id exists; the alert and whether it is new.
    /// Returns once it is durable.
    pub fn raise(&self, r: Raised) -> Result<(Alert, bool), StoreError> {
        let log = match &self.backing {
            Backing::File(log) => log,
            Backing::Shared(sink) => return self.raise_shared(sink.as_ref(), r),
        };
        let mut f = log.lock()?;
        if let Some(a) = self.get(&r.id) {
            return Ok((a, false));
        }
        let alert = Alert::new(&r);
        let line = Line {
            alert: r.id.clone(),
            event: Event::Raised(r),
        };
        log.append(&mut f, &line)?;
        self.put_newer(&line.alert, alert.clone(), 1);
        self.feed.changed(&line.alert);
        Ok((alert, true))
    }

    fn raise_shared(&self, sink: &dyn EventSink, r: Raised) -> Result<(Alert, bool), StoreError> {
        loop {
            if let Some(a) = self.get(&r.id) {
                return Ok((a, false));
            }
            let alert = Alert::new(&r);
            let id = r.id.clone();
            let event = Event::Raised(r.clone());
            if sink.append(&id.0, 1, &[value_of(&event)?])? {
                self.put_newer(&id, alert.clone(), 1);
                self.feed.changed(&id);
                return Ok((alert, true));
            }
            // Raised on another node first: take it in, and answer with it.
            self.refresh(&id)?;
        }
    }

    /// Applies an event: checked against the alert as it is, made durable, then answered.
    /// Nothing is written when it does not apply. A delivery or read already recorded for
    /// that principal is answered without writing again.
    pub fn apply(&self, id: &AlertId, event: Event) -> Result<Alert, AlertStoreError> {
        let log = match &self.backing {
            Backing::File(log) => log,
            Backing::Shared(sink) => return self.apply_shared(sink.as_ref(), id, event),
        };
        let mut f = log.lock()?;
        let (current, n) = self
            .held(id)
            .ok_or_else(|| AlertStoreError::Unknown(id.0.clone()))?;
        let next = current.apply(&event)?;
        if next == current {
            return Ok(next);
        }
        log.append(
            &mut f,
            &Line {
                alert: id.clone(),
                event,
            },
        )?;
        self.put_newer(id, next.clone(), n + 1);
        self.feed.changed(id);
        Ok(next)
    }

    /// [`AlertStore::apply`] on an event table: checked against the alert as this node
    /// knows it and appended as its next event; when another node appended first, its
    /// events are taken in and the event is checked again.
    fn apply_shared(
        &self,
        sink: &dyn EventSink,
        id: &AlertId,
        event: Event,
    ) -> Result<Alert, AlertStoreError> {
        loop {
            let (current, n) = match self.held(id) {
                Some(h) => h,
                None => {
                    // Raised on another node, maybe: look once before refusing.
                    if !self.refresh(id)? {
                        return Err(AlertStoreError::Unknown(id.0.clone()));
                    }
                    continue;
                }
            };
            let next = current.apply(&event)?;
            if next == current {
                return Ok(next);
            }
            if sink.append(&id.0, n + 1, &[value_of(&event)?])? {
                self.put_newer(id, next.clone(), n + 1);
                self.feed.changed(id);
                return Ok(next);
            }
            self.refresh(id)?;
        }
    }

    /// One alert.
    pub fn get(&self, id: &AlertId) -> Option<Alert> {
        self.alerts.read().ok()?.get(id).map(|(a, _)| a.clone())
    }

    /// The alerts `keep` selects, cloned.
    pub fn select(&self, keep: impl Fn(&Alert) -> bool) -> Vec<Alert> {
        self.alerts
            .read()
            .map(|m| {
                m.values()
                    .map(|(a, _)| a)
                    .filter(|a| keep(a))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many alerts `keep` selects (nothing cloned).
    pub fn count(&self, keep: impl Fn(&Alert) -> bool) -> usize {
        self.alerts
            .read()
            .map(|m| m.values().filter(|(a, _)| keep(a)).count())
            .unwrap_or_default()
    }

    /// The alert changes (for event streams).
    pub fn feed(&self) -> &Feed<AlertId> {
        &self.feed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use huren_alerting::{AlertKind, Decision};

    fn raised(id: &str) -> Raised {
        Raised {
            id: AlertId(id.into()),
            kind: AlertKind::Stemi,
            institution: "FX-SQ01".into(),
            group: "fx-pci".into(),
            report: format!("blake3:{}", "a".repeat(64)),
            summary: "急性下壁心肌梗死".into(),
            at: Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, 0).unwrap(),
        }
    }

    fn ack(by: &str) -> Event {
        Event::Acknowledged {
            by: by.into(),
            at: Utc.with_ymd_and_hms(2026, 12, 7, 8, 1, 0).unwrap(),
            decision: Decision::StemiTransfer,
            note: String::new(),
        }
    }

    #[test]
    fn alerts_survive_reopen_one_acknowledgement_wins_and_repeats_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let id = AlertId("a1".into());
        {
            let s = std::sync::Arc::new(AlertStore::open(dir.path()).unwrap());
            assert!(s.raise(raised("a1")).unwrap().1);
            assert!(!s.raise(raised("a1")).unwrap().1, "raised once");
            let delivered = Event::Delivered {
                to: "dr.c".into(),
                at: Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, 1).unwrap(),
            };
            s.apply(&id, delivered.clone()).unwrap();
            s.apply(&id, delivered).unwrap();
            let wins: usize = std::thread::scope(|sc| {
                let hs: Vec<_> = (0..8)
                    .map(|i| {
                        let s = s.clone();
                        let id = id.clone();
                        sc.spawn(move || s.apply(&id, ack(&format!("dr.{i}"))).is_ok() as usize)
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum()
            });
            assert_eq!(wins, 1);
            assert_eq!(s.feed().sequence(), 3);
        }
        let s = AlertStore::open(dir.path()).unwrap();
        let a = s.get(&id).unwrap();
        assert_eq!(a.state.as_str(), "acknowledged");
        assert_eq!(a.delivered.len(), 1);
        assert_eq!(s.feed().sequence(), 3, "raise, delivery, acknowledgement");
        let lines = std::fs::read_to_string(dir.path().join("alerts.log")).unwrap();
        assert_eq!(lines.lines().count(), 3, "{lines}");
        assert!(matches!(
            s.apply(&AlertId("nope".into()), ack("x")),
            Err(AlertStoreError::Unknown(_))
        ));
    }
}
