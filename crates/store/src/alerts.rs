//! Alerts (`alerts.log`, issue 18): one JSON line per alert event
//! ([`huren_alerting::Event`]), appended and `fdatasync`ed before the caller is answered,
//! never rewritten; every alert held in memory as the fold of its events. An event is checked
//! by `huren-alerting` against the alert as it is, under the same lock as its append, so of
//! two acknowledgements at once exactly one is recorded. The changes feed the event streams.

use std::path::Path;
use std::sync::Arc;

use huren_alerting::{Alert, AlertError, AlertId, Event, Raised};
use serde::{Deserialize, Serialize};

use crate::events::EventSink;
use crate::feed::Feed;
use crate::streams::{Streams, Write};
use crate::StoreError;

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

/// The alerts of one store directory (`alerts.log`), or of a cluster's event table.
pub struct AlertStore {
    streams: Streams<Alert, Event, Line>,
    feed: Feed<AlertId>,
}

/// A raise creates the alert; anything else applies to it.
fn fold(a: Option<&Alert>, e: &Event) -> Result<Alert, String> {
    match (e, a) {
        (Event::Raised(r), None) => Ok(Alert::new(r)),
        (_, Some(a)) => a.apply(e).map_err(|e| e.to_string()),
        (_, None) => Err("event for an alert that was not raised".into()),
    }
}

fn line(id: &str, event: Event) -> Line {
    Line {
        alert: AlertId(id.to_string()),
        event,
    }
}

fn split(l: Line) -> (String, Event) {
    (l.alert.0, l.event)
}

/// The events of `dir/alerts.log` as a cluster's table holds them: `(stream, event)` in order.
pub(crate) fn file_events(
    dir: &std::path::Path,
) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
    crate::jsonl::read_lines::<Line>(dir, "alerts.log")?
        .into_iter()
        .map(|l| {
            let (id, e) = split(l);
            serde_json::to_value(&e)
                .map(|v| (id, v))
                .map_err(|e| StoreError::Corrupt(format!("alerts.log: {e}")))
        })
        .collect()
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
        let (streams, keys) = Streams::open_file(dir, "alerts.log", fold, line, split)?;
        Ok(AlertStore {
            streams,
            feed: Feed::replayed(keys.into_iter().map(AlertId).collect()),
        })
    }

    /// The alerts of a cluster's event table (every stream loaded and folded); writes go
    /// there, and [`AlertStore::refresh`] brings in what other nodes wrote.
    pub fn shared(sink: Arc<dyn EventSink>) -> Result<AlertStore, StoreError> {
        let (streams, keys) = Streams::open_shared(sink, fold, line)?;
        Ok(AlertStore {
            streams,
            feed: Feed::replayed(keys.into_iter().map(AlertId).collect()),
        })
    }

    /// Reads the events of `id` this node has not seen (another node wrote them), folds them
    /// and announces the change; whether there were any. A no-op on the file back end.
    pub fn refresh(&self, id: &AlertId) -> Result<bool, StoreError> {
        let new = self.streams.refresh(&id.0)?;
        if new {
            self.feed.changed(id);
        }
        Ok(new)
    }

    /// Refreshes every stream with events this node has not seen (after notifications
    /// may have been missed) and announces each; how many changed.
    pub fn refresh_all(&self) -> Result<usize, StoreError> {
        let changed = self.streams.refresh_all()?;
        for id in &changed {
            self.feed.changed(&AlertId(id.clone()));
        }
        Ok(changed.len())
    }

    /// Raises an alert unless one with its id exists; the alert and whether it is new.
    /// Returns once it is durable.
    pub fn raise(&self, r: Raised) -> Result<(Alert, bool), StoreError> {
        let id = r.id.clone();
        let (alert, new) = self.streams.write(&id.0, |held| {
            Ok::<_, StoreError>(match held {
                Some(a) => Write::Keep(a.clone()),
                None => Write::Append(vec![Event::Raised(r.clone())], Alert::new(&r)),
            })
        })?;
        if new {
            self.feed.changed(&id);
        }
        Ok((alert, new))
    }

    /// Applies an event: checked against the alert as it is, made durable, then answered.
    /// Nothing is written when it does not apply. A delivery or read already recorded for
    /// that principal is answered without writing again.
    pub fn apply(&self, id: &AlertId, event: Event) -> Result<Alert, AlertStoreError> {
        let attempt = |held: Option<&Alert>| -> Result<Write<Alert, Event>, AlertStoreError> {
            let current = held.ok_or_else(|| AlertStoreError::Unknown(id.0.clone()))?;
            let next = current.apply(&event)?;
            Ok(if next == *current {
                Write::Keep(next)
            } else {
                Write::Append(vec![event.clone()], next)
            })
        };
        let (alert, written) = match self.streams.write(&id.0, attempt) {
            // Raised on another node, maybe: look once before refusing.
            Err(AlertStoreError::Unknown(_)) if self.streams.is_shared() && self.refresh(id)? => {
                self.streams.write(&id.0, attempt)
            }
            other => other,
        }?;
        if written {
            self.feed.changed(id);
        }
        Ok(alert)
    }

    /// One alert.
    pub fn get(&self, id: &AlertId) -> Option<Alert> {
        self.streams.get(&id.0)
    }

    /// The alerts `keep` selects, cloned.
    pub fn select(&self, keep: impl Fn(&Alert) -> bool) -> Vec<Alert> {
        self.streams.select(keep)
    }

    /// How many alerts `keep` selects (nothing cloned).
    pub fn count(&self, keep: impl Fn(&Alert) -> bool) -> usize {
        self.streams.count(keep)
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
