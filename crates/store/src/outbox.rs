//! The durable outboxes: outbound messages and what became of them — `outbox.log`, signed
//! reports going back to the acquiring institution as HL7 ORU^R01 (issue 17), and
//! `webhooks.log`, alert notifications posted to a recipient group's webhook (issue 18; there
//! `msh10` holds the delivery id, the `webhook-id` header, and `ack_code` the HTTP status). One JSON line per
//! event — enqueued, attempted, delivered, parked — appended and `fdatasync`ed before the
//! caller goes on, never rewritten; every entry held in memory as the fold of its events. An
//! entry is enqueued once per id (the signed report's hash), so a retry or a start-up
//! reconciliation never queues it twice; an entry that is delivered or parked takes no more
//! events, so nothing is recorded as delivered twice. A torn last line (a crash mid-append) is
//! cut at open; a damaged line elsewhere is refused.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::events::{EventSink, Lease};
use crate::jsonl::JsonLines;
use crate::StoreError;

/// One outbox event, as written to `outbox.log`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum OutboxEvent {
    /// A message to deliver.
    Enqueued {
        /// The entry id (the signed report's hash).
        id: String,
        /// Where it goes: the institution code whose result destination receives it.
        destination: String,
        /// The message's control id (MSH-10), the same on every attempt.
        msh10: String,
        /// The message, exactly as it is sent (HL7 is text; UTF-8).
        message: String,
        /// When it was enqueued.
        created_at: DateTime<Utc>,
    },
    /// An attempt that did not deliver it.
    Attempted {
        /// The entry.
        id: String,
        /// When.
        at: DateTime<Utc>,
        /// What happened (`AE: …`, `connect: …`, `timeout`, …).
        result: String,
        /// When to try again.
        next_at: DateTime<Utc>,
    },
    /// Acknowledged with AA (or CA).
    Delivered {
        /// The entry.
        id: String,
        /// When the ACK came.
        at: DateTime<Utc>,
        /// MSA-1.
        ack_code: String,
        /// MSA-2 (the message's MSH-10).
        ack_control_id: String,
    },
    /// Given up on: an operator has to look.
    Parked {
        /// The entry.
        id: String,
        /// When.
        at: DateTime<Utc>,
        /// Why (the last attempt's result).
        reason: String,
    },
}

impl OutboxEvent {
    fn id(&self) -> &str {
        match self {
            OutboxEvent::Enqueued { id, .. }
            | OutboxEvent::Attempted { id, .. }
            | OutboxEvent::Delivered { id, .. }
            | OutboxEvent::Parked { id, .. } => id,
        }
    }
}

/// Where an entry stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxState {
    /// Not delivered yet; due at `next_at`.
    Pending,
    /// Acknowledged (AA/CA).
    Delivered,
    /// Given up on.
    Parked,
}

impl OutboxState {
    /// `pending`, `delivered`, `parked`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Delivered => "delivered",
            OutboxState::Parked => "parked",
        }
    }

    /// The state of that name.
    pub fn parse(s: &str) -> Option<OutboxState> {
        match s {
            "pending" => Some(OutboxState::Pending),
            "delivered" => Some(OutboxState::Delivered),
            "parked" => Some(OutboxState::Parked),
            _ => None,
        }
    }
}

/// One outbound message and what became of it.
#[derive(Clone, Debug, Serialize)]
pub struct OutboxEntry {
    /// The entry id (the signed report's hash).
    pub id: String,
    /// The institution code whose destination receives it.
    pub destination: String,
    /// MSH-10.
    pub msh10: String,
    /// The message bytes (patient data: never logged, not in the operator view).
    #[serde(skip)]
    pub message: String,
    /// Where it stands.
    pub state: OutboxState,
    /// Attempts that did not deliver it.
    pub attempts: u32,
    /// The last attempt's result (or the park reason).
    pub last_result: Option<String>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it was last tried (or delivered, or parked).
    pub last_at: Option<DateTime<Utc>>,
    /// When it is due (pending entries).
    pub next_at: DateTime<Utc>,
    /// MSA-1 of the acknowledgement that delivered it.
    pub ack_code: Option<String>,
    /// MSA-2 of that acknowledgement.
    pub ack_control_id: Option<String>,
}

impl OutboxEntry {
    /// The entry after `e`, or why `e` does not apply.
    fn apply(&self, e: &OutboxEvent) -> Result<OutboxEntry, String> {
        if self.state != OutboxState::Pending {
            return Err(format!(
                "entry {} is already {}",
                self.id,
                self.state.as_str()
            ));
        }
        let mut n = self.clone();
        match e {
            OutboxEvent::Enqueued { .. } => {
                return Err(format!("entry {} enqueued twice", self.id))
            }
            OutboxEvent::Attempted {
                at,
                result,
                next_at,
                ..
            } => {
                n.attempts += 1;
                n.last_result = Some(result.clone());
                n.last_at = Some(*at);
                n.next_at = *next_at;
            }
            OutboxEvent::Delivered {
                at,
                ack_code,
                ack_control_id,
                ..
            } => {
                n.state = OutboxState::Delivered;
                n.last_at = Some(*at);
                n.ack_code = Some(ack_code.clone());
                n.ack_control_id = Some(ack_control_id.clone());
            }
            OutboxEvent::Parked { at, reason, .. } => {
                n.state = OutboxState::Parked;
                n.last_at = Some(*at);
                n.last_result = Some(reason.clone());
            }
        }
        Ok(n)
    }

    fn new(e: &OutboxEvent) -> Option<OutboxEntry> {
        let OutboxEvent::Enqueued {
            id,
            destination,
            msh10,
            message,
            created_at,
        } = e
        else {
            return None;
        };
        Some(OutboxEntry {
            id: id.clone(),
            destination: destination.clone(),
            msh10: msh10.clone(),
            message: message.clone(),
            state: OutboxState::Pending,
            attempts: 0,
            last_result: None,
            created_at: *created_at,
            last_at: None,
            next_at: *created_at,
            ack_code: None,
            ack_control_id: None,
        })
    }
}

/// Why an outbox event was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// No entry has this id.
    #[error("no outbox entry {0}")]
    Unknown(String),
    /// The event does not apply (the entry is delivered or parked); nothing was written.
    #[error("{0}")]
    Refused(String),
    /// Writing it failed (nothing was recorded).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The outbox of one store directory, or of a cluster's event table.
pub struct Outbox {
    backing: Backing,
    entries: RwLock<Entries>,
}

/// Where the events are written.
enum Backing {
    /// The file, and the lock every event is checked and appended under.
    File(JsonLines),
    /// A cluster's event table: each entry a stream, appended optimistically.
    Shared(Arc<dyn EventSink>),
}

/// The entries, and the pending ones in delivery order per destination (so finding each
/// destination's next message does not scan what is delivered).
#[derive(Default)]
struct Entries {
    all: HashMap<String, OutboxEntry>,
    /// Each entry's number of events (its stream's length).
    lens: HashMap<String, u32>,
    /// `(destination, created_at, id)` of every pending entry.
    pending: BTreeSet<(String, DateTime<Utc>, String)>,
}

impl Entries {
    /// Records `e` as the entry after `n` events, unless a later state is held.
    fn put(&mut self, e: OutboxEntry, n: u32) {
        if self.lens.get(&e.id).is_some_and(|held| *held >= n) {
            return;
        }
        let key = |e: &OutboxEntry| (e.destination.clone(), e.created_at, e.id.clone());
        if let Some(old) = self.all.get(&e.id) {
            self.pending.remove(&key(old));
        }
        if e.state == OutboxState::Pending {
            self.pending.insert(key(&e));
        }
        self.lens.insert(e.id.clone(), n);
        self.all.insert(e.id.clone(), e);
    }

    /// Folds one event in (replay, or another node's event).
    fn fold(&mut self, ev: &OutboxEvent) -> Result<(), String> {
        let n = self.lens.get(ev.id()).copied().unwrap_or(0);
        let next = match (OutboxEntry::new(ev), self.all.get(ev.id())) {
            (Some(e), None) => e,
            (_, Some(cur)) => cur.apply(ev)?,
            (None, None) => return Err(format!("event for unknown entry {}", ev.id())),
        };
        self.put(next, n + 1);
        Ok(())
    }
}

/// The events of the outbox `dir/name` as a cluster's table holds them: `(entry id, event)`
/// in order.
pub(crate) fn file_events(
    dir: &Path,
    name: &str,
) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
    crate::jsonl::read_lines::<OutboxEvent>(dir, name)?
        .into_iter()
        .map(|ev| Ok((ev.id().to_string(), value_of(&ev)?)))
        .collect()
}

impl Outbox {
    /// Opens (or creates) `dir/outbox.log` and replays it.
    pub fn open(dir: impl AsRef<Path>) -> Result<Outbox, StoreError> {
        Outbox::open_file(dir, "outbox.log")
    }

    /// Opens (or creates) the outbox `dir/name` and replays it.
    pub fn open_file(dir: impl AsRef<Path>, name: &str) -> Result<Outbox, StoreError> {
        let mut entries = Entries::default();
        let (log, _) = JsonLines::open(dir, name, |ev: OutboxEvent| entries.fold(&ev))?;
        Ok(Outbox {
            backing: Backing::File(log),
            entries: RwLock::new(entries),
        })
    }

    /// The outbox of a cluster's event table (every entry loaded and folded); writes go
    /// there, and [`Outbox::refresh`] brings in what other nodes wrote.
    pub fn shared(sink: Arc<dyn EventSink>) -> Result<Outbox, StoreError> {
        let mut entries = Entries::default();
        for (_, v) in sink.all()? {
            entries.fold(&event_of(v)?).map_err(StoreError::Corrupt)?;
        }
        Ok(Outbox {
            backing: Backing::Shared(sink),
            entries: RwLock::new(entries),
        })
    }

    /// Reads the events of entry `id` this node has not seen (another node wrote them) and
    /// folds them; whether there were any. A no-op on the file back end.
    pub fn refresh(&self, id: &str) -> Result<bool, StoreError> {
        let Backing::Shared(sink) = &self.backing else {
            return Ok(false);
        };
        let n = self.len_of(id);
        let missed = sink.stream(id, n)?;
        if missed.is_empty() {
            return Ok(false);
        }
        let mut m = self
            .entries
            .write()
            .map_err(|_| StoreError::Corrupt("outbox: poisoned lock".into()))?;
        // Another refresh may have folded some of them meanwhile.
        let from = m.lens.get(id).copied().unwrap_or(0).saturating_sub(n) as usize;
        for v in missed.into_iter().skip(from) {
            m.fold(&event_of(v)?).map_err(StoreError::Corrupt)?;
        }
        Ok(true)
    }

    /// Refreshes every entry that has more events than this node holds; how many changed.
    pub fn refresh_all(&self) -> Result<usize, StoreError> {
        let Backing::Shared(sink) = &self.backing else {
            return Ok(0);
        };
        let mut n = 0;
        for (id, len) in sink.lengths()? {
            if len > self.len_of(&id) && self.refresh(&id)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The claim on `destination`'s deliveries: on a cluster, held by one node at a time
    /// (`None`: another node delivers there now); on the file, always this process's.
    pub fn lease(&self, destination: &str) -> Result<Option<Lease>, StoreError> {
        match &self.backing {
            Backing::File(_) => Ok(Some(Lease::new(()))),
            Backing::Shared(sink) => sink.try_lease(&format!("deliver:{destination}")),
        }
    }

    fn len_of(&self, id: &str) -> u32 {
        self.entries
            .read()
            .map(|m| m.lens.get(id).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Enqueues a message unless an entry with its id exists (in any state); returns whether
    /// it is new. Returns once it is durable.
    pub fn enqueue(
        &self,
        id: &str,
        destination: &str,
        msh10: &str,
        message: String,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = self.enqueue_all(
            vec![Enqueue {
                id: id.to_string(),
                destination: destination.to_string(),
                msh10: msh10.to_string(),
                message,
            }],
            now,
        )?;
        Ok(n == 1)
    }

    /// Enqueues messages whose id has no entry yet (in any state), made durable together
    /// (one `fdatasync`); they leave in the order given (their times are a nanosecond
    /// apart). Returns how many were new.
    pub fn enqueue_all(
        &self,
        items: Vec<Enqueue>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let log = match &self.backing {
            Backing::File(log) => log,
            Backing::Shared(sink) => return self.enqueue_shared(sink.as_ref(), items, now),
        };
        let mut f = log.lock()?;
        let events = self.new_events(items, now);
        log.append_all(&mut f, &events)?;
        if let Ok(mut m) = self.entries.write() {
            for ev in &events {
                if let Some(e) = OutboxEntry::new(ev) {
                    m.put(e, 1);
                }
            }
        }
        Ok(events.len())
    }

    /// The `Enqueued` events of the items whose id has no entry, a nanosecond apart.
    fn new_events(&self, items: Vec<Enqueue>, now: DateTime<Utc>) -> Vec<OutboxEvent> {
        let mut seen = HashSet::new();
        items
            .into_iter()
            .filter(|i| !self.contains(&i.id) && seen.insert(i.id.clone()))
            .enumerate()
            .map(|(n, i)| OutboxEvent::Enqueued {
                id: i.id,
                destination: i.destination,
                msh10: i.msh10,
                message: i.message,
                // A nanosecond apart, so the batch leaves in its order.
                created_at: now + chrono::Duration::nanoseconds(n as i64),
            })
            .collect()
    }

    /// [`Outbox::enqueue_all`] on an event table: each message is the first event of its
    /// stream; one another node enqueued first is taken in and not counted.
    fn enqueue_shared(
        &self,
        sink: &dyn EventSink,
        items: Vec<Enqueue>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let mut n = 0;
        for ev in self.new_events(items, now) {
            let Some(e) = OutboxEntry::new(&ev) else {
                continue;
            };
            if sink.append(&e.id, 1, &[value_of(&ev)?])? {
                if let Ok(mut m) = self.entries.write() {
                    m.put(e, 1);
                }
                n += 1;
            } else {
                self.refresh(&e.id)?;
            }
        }
        Ok(n)
    }

    /// Records an event for an existing pending entry: checked, made durable, then applied.
    /// Nothing is written when it does not apply (the entry is delivered or parked).
    pub fn record(&self, ev: OutboxEvent) -> Result<OutboxEntry, OutboxError> {
        let log = match &self.backing {
            Backing::File(log) => log,
            Backing::Shared(sink) => return self.record_shared(sink.as_ref(), ev),
        };
        let mut f = log.lock()?;
        let cur = self
            .get(ev.id())
            .ok_or_else(|| OutboxError::Unknown(ev.id().to_string()))?;
        let n = self.len_of(ev.id());
        let next = cur.apply(&ev).map_err(OutboxError::Refused)?;
        log.append(&mut f, &ev)?;
        if let Ok(mut m) = self.entries.write() {
            m.put(next.clone(), n + 1);
        }
        Ok(next)
    }

    /// [`Outbox::record`] on an event table: checked against the entry as this node knows
    /// it and appended as its next event; when another node appended first (it delivered the
    /// message, say), its events are taken in and the event is checked again.
    fn record_shared(
        &self,
        sink: &dyn EventSink,
        ev: OutboxEvent,
    ) -> Result<OutboxEntry, OutboxError> {
        let id = ev.id().to_string();
        let mut looked = false;
        loop {
            let Some(cur) = self.get(&id) else {
                if !looked && self.refresh(&id)? {
                    looked = true;
                    continue;
                }
                return Err(OutboxError::Unknown(id));
            };
            let n = self.len_of(&id);
            let next = cur.apply(&ev).map_err(OutboxError::Refused)?;
            if sink.append(&id, n + 1, &[value_of(&ev)?])? {
                if let Ok(mut m) = self.entries.write() {
                    m.put(next.clone(), n + 1);
                }
                return Ok(next);
            }
            self.refresh(&id)?;
        }
    }

    /// One entry.
    pub fn get(&self, id: &str) -> Option<OutboxEntry> {
        self.entries.read().ok()?.all.get(id).cloned()
    }

    /// The entries in `state` (all when `None`), oldest first.
    pub fn list(&self, state: Option<OutboxState>) -> Vec<OutboxEntry> {
        let mut v: Vec<OutboxEntry> = self
            .entries
            .read()
            .map(|m| {
                m.all
                    .values()
                    .filter(|e| state.is_none_or(|s| e.state == s))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        v
    }

    /// Whether an entry with this id exists, in any state (nothing cloned).
    pub fn contains(&self, id: &str) -> bool {
        self.entries.read().is_ok_and(|m| m.all.contains_key(id))
    }

    /// How many entries are in `state` (nothing cloned: a message may be large).
    pub fn count(&self, state: OutboxState) -> usize {
        self.entries
            .read()
            .map(|m| match state {
                OutboxState::Pending => m.pending.len(),
                s => m.all.values().filter(|e| e.state == s).count(),
            })
            .unwrap_or_default()
    }

    /// The entries to attempt at `now`: for each destination its oldest pending entry, when
    /// that one is due — a destination's messages go out in the order they were enqueued, a
    /// later one never overtakes an earlier one waiting for its retry. Costs one step per
    /// destination, however many messages wait.
    pub fn due(&self, now: DateTime<Utc>) -> Vec<OutboxEntry> {
        let Ok(m) = self.entries.read() else {
            return Vec::new();
        };
        let mut heads = Vec::new();
        let mut next = m.pending.iter().next();
        while let Some((destination, _, id)) = next {
            if let Some(e) = m.all.get(id).filter(|e| e.next_at <= now) {
                heads.push(e.clone());
            }
            // The first entry of the next destination: `destination + "\0"` is the least
            // string after `destination`.
            let after = (
                format!("{destination}\0"),
                DateTime::<Utc>::MIN_UTC,
                String::new(),
            );
            next = m.pending.range(after..).next();
        }
        heads.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        heads
    }
}

fn value_of(e: &OutboxEvent) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(e).map_err(|e| StoreError::Corrupt(format!("outbox event: {e}")))
}

fn event_of(v: serde_json::Value) -> Result<OutboxEvent, StoreError> {
    serde_json::from_value(v).map_err(|e| StoreError::Corrupt(format!("outbox event: {e}")))
}

/// One message for [`Outbox::enqueue_all`].
#[derive(Clone, Debug)]
pub struct Enqueue {
    /// Its id (unique in the outbox; a second enqueue of the same id does nothing).
    pub id: String,
    /// Where it goes.
    pub destination: String,
    /// The control id the receiver answers with (HL7 MSH-10, `webhook-id`, document id).
    pub msh10: String,
    /// The message.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, 8, 0, 0).unwrap()
    }

    const MSG: &str = "MSH|^~\\&|HUREN|fx-ecg||FX-SQ01|20261206160000+0800||ORU^R01^ORU_R01|abc|P|2.5.1\rPID|1||P1^^^FX-SQ01^PI||张三\r";

    /// A batch is enqueued once per id, durable across a reopen; each destination's head is
    /// its oldest pending entry, also for a destination whose name starts another's.
    #[test]
    fn batches_enqueue_once_and_heads_follow_each_destination() {
        let dir = tempfile::tempdir().unwrap();
        let item = |id: &str, d: &str| Enqueue {
            id: id.into(),
            destination: d.into(),
            msh10: id.into(),
            message: String::new(),
        };
        {
            let o = Outbox::open(dir.path()).unwrap();
            let batch = vec![item("a1", "FX"), item("b1", "FX-SQ"), item("a1", "FX")];
            assert_eq!(o.enqueue_all(batch, t0()).unwrap(), 2);
            let later = t0() + Duration::seconds(1);
            let batch = vec![item("a1", "FX"), item("a2", "FX"), item("b2", "FX-SQ")];
            assert_eq!(o.enqueue_all(batch, later).unwrap(), 2);
            assert_eq!(o.enqueue_all(vec![], later).unwrap(), 0);
        }
        let o = Outbox::open(dir.path()).unwrap();
        assert_eq!(o.count(OutboxState::Pending), 4);
        let heads = |o: &Outbox| -> Vec<String> {
            o.due(t0() + Duration::seconds(5))
                .into_iter()
                .map(|e| e.id)
                .collect()
        };
        assert_eq!(heads(&o), ["a1", "b1"]);
        o.record(OutboxEvent::Delivered {
            id: "a1".into(),
            at: t0(),
            ack_code: "200".into(),
            ack_control_id: "a1".into(),
        })
        .unwrap();
        assert_eq!(heads(&o), ["b1", "a2"]);
        assert_eq!(o.count(OutboxState::Pending), 3);
        assert_eq!(o.count(OutboxState::Delivered), 1);
        // A head waiting for its retry holds its destination back, not the other.
        o.record(OutboxEvent::Attempted {
            id: "b1".into(),
            at: t0(),
            result: "HTTP 503".into(),
            next_at: t0() + Duration::hours(1),
        })
        .unwrap();
        assert_eq!(heads(&o), ["a2"]);
    }

    #[test]
    fn entries_survive_reopen_enqueue_is_idempotent_and_finished_entries_take_nothing() {
        let dir = tempfile::tempdir().unwrap();
        {
            let o = Outbox::open(dir.path()).unwrap();
            assert!(o.enqueue("r1", "FX-SQ01", "abc", MSG.into(), t0()).unwrap());
            assert!(!o.enqueue("r1", "FX-SQ01", "abc", MSG.into(), t0()).unwrap());
            assert!(o.enqueue("r2", "FX-SQ01", "def", MSG.into(), t0()).unwrap());
            assert!(o.enqueue("w1", "FX-SQ02", "ghi", MSG.into(), t0()).unwrap());
            // One head per destination, the oldest.
            let heads: Vec<String> = o.due(t0()).into_iter().map(|e| e.id).collect();
            assert_eq!(heads, ["r1", "w1"]);
            o.record(OutboxEvent::Attempted {
                id: "r1".into(),
                at: t0(),
                result: "connect: refused".into(),
                next_at: t0() + Duration::seconds(2),
            })
            .unwrap();
            let heads: Vec<String> = o.due(t0()).into_iter().map(|e| e.id).collect();
            assert_eq!(heads, ["w1"], "r1 waits for its backoff, and r2 behind it");
            o.record(OutboxEvent::Delivered {
                id: "r2".into(),
                at: t0(),
                ack_code: "AA".into(),
                ack_control_id: "def".into(),
            })
            .unwrap();
            let again = o.record(OutboxEvent::Delivered {
                id: "r2".into(),
                at: t0(),
                ack_code: "AA".into(),
                ack_control_id: "def".into(),
            });
            assert!(matches!(again, Err(OutboxError::Refused(_))), "{again:?}");
            assert!(matches!(
                o.record(OutboxEvent::Parked {
                    id: "nope".into(),
                    at: t0(),
                    reason: "x".into()
                }),
                Err(OutboxError::Unknown(_))
            ));
        }
        let o = Outbox::open(dir.path()).unwrap();
        let r1 = o.get("r1").unwrap();
        assert_eq!(r1.state, OutboxState::Pending);
        assert_eq!(r1.attempts, 1);
        assert_eq!(r1.message, MSG, "exact bytes");
        assert_eq!(r1.last_result.as_deref(), Some("connect: refused"));
        assert_eq!(o.get("r2").unwrap().state, OutboxState::Delivered);
        assert_eq!(o.list(Some(OutboxState::Delivered)).len(), 1);
        assert_eq!(o.due(t0() + Duration::seconds(2)).len(), 2, "r1 and w1");
        assert!(!o.enqueue("r2", "FX-SQ01", "def", MSG.into(), t0()).unwrap());
        let log = std::fs::read_to_string(dir.path().join("outbox.log")).unwrap();
        assert_eq!(log.lines().count(), 5, "{log}");
    }

    #[test]
    fn a_torn_last_line_is_cut_and_damage_before_the_end_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let o = Outbox::open(dir.path()).unwrap();
            o.enqueue("r3", "FX-SQ01", "abc", MSG.into(), t0()).unwrap();
        }
        let p = dir.path().join("outbox.log");
        let mut b = std::fs::read(&p).unwrap();
        b.extend_from_slice(b"{\"event\":\"delivered\",\"id\":\"r3\",\"at");
        std::fs::write(&p, &b).unwrap();
        {
            let o = Outbox::open(dir.path()).unwrap();
            assert_eq!(o.get("r3").unwrap().state, OutboxState::Pending);
            // The torn line is gone: the next event appends cleanly.
            o.record(OutboxEvent::Parked {
                id: "r3".into(),
                at: t0(),
                reason: "AE: nope".into(),
            })
            .unwrap();
        }
        let o = Outbox::open(dir.path()).unwrap();
        assert_eq!(o.get("r3").unwrap().state, OutboxState::Parked);
        let mut b = b"garbage\n".to_vec();
        b.extend_from_slice(&std::fs::read(&p).unwrap());
        std::fs::write(&p, &b).unwrap();
        assert!(Outbox::open(dir.path()).is_err());
    }
}
