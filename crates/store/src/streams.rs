//! Event streams held in memory as the fold of their events, written to a JSON-lines file
//! (the embedded store) or to a cluster's shared table ([`EventSink`]). The stores of alerts
//! and reading tasks are this with their own fold and checks.
//!
//! A write sees the stream as it is and decides ([`Write`]): keep it, or append events that
//! make a new state.
//! - **On the file**, the decision runs under the file's append lock, so two writers never
//!   decide on the same state.
//! - **On a shared table**, it runs on the stream as this node knows it, with `n` events,
//!   and the events are appended as `n + 1…`. If another node took `n + 1` first, what it
//!   wrote is folded in ([`Streams::refresh`]) and the decision runs again.
//!
//! Either way, of two conflicting writers exactly one is recorded and the other decides
//! again on the state that includes it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::events::EventSink;
use crate::jsonl::JsonLines;
use crate::StoreError;

/// What a write decides, seeing the stream as it is (`None`: no such stream yet).
pub(crate) enum Write<S, E> {
    /// Record nothing; answer with this state.
    Keep(S),
    /// Record these events (at least one); they make this state.
    Append(Vec<E>, S),
}

/// Where the events are written.
enum Backing {
    File(JsonLines),
    Shared(Arc<dyn EventSink>),
}

/// Folds one event into a stream (`None`: the stream's first event).
pub(crate) type Fold<S, E> = fn(Option<&S>, &E) -> Result<S, String>;

/// Streams of state `S` made of events `E`, written to the file as lines `L`.
pub(crate) struct Streams<S, E, L> {
    backing: Backing,
    /// Each stream's state with its number of events.
    map: RwLock<HashMap<String, (S, u32)>>,
    fold: Fold<S, E>,
    /// The file line of an event of a stream.
    line: fn(&str, E) -> L,
}

impl<S, E, L> Streams<S, E, L>
where
    S: Clone,
    E: Clone + Serialize + DeserializeOwned,
    L: Serialize + DeserializeOwned,
{
    /// Opens (or creates) `dir/name` and folds it; also returns the stream of each line, in
    /// order (for the change feed). `split` takes a line apart.
    pub(crate) fn open_file(
        dir: impl AsRef<Path>,
        name: &str,
        fold: Fold<S, E>,
        line: fn(&str, E) -> L,
        split: fn(L) -> (String, E),
    ) -> Result<(Self, Vec<String>), StoreError> {
        let mut map: HashMap<String, (S, u32)> = HashMap::new();
        let mut keys = Vec::new();
        let (log, _) = JsonLines::open(dir, name, |l: L| {
            let (id, e) = split(l);
            fold_into(&mut map, fold, &id, &e)?;
            keys.push(id);
            Ok(())
        })?;
        Ok((
            Streams {
                backing: Backing::File(log),
                map: RwLock::new(map),
                fold,
                line,
            },
            keys,
        ))
    }

    /// Loads and folds every stream of `sink`; also returns the stream of each event.
    pub(crate) fn open_shared(
        sink: Arc<dyn EventSink>,
        fold: Fold<S, E>,
        line: fn(&str, E) -> L,
    ) -> Result<(Self, Vec<String>), StoreError> {
        let mut map: HashMap<String, (S, u32)> = HashMap::new();
        let mut keys = Vec::new();
        for (id, v) in sink.all()? {
            fold_into(&mut map, fold, &id, &event_of(v)?).map_err(StoreError::Corrupt)?;
            keys.push(id);
        }
        Ok((
            Streams {
                backing: Backing::Shared(sink),
                map: RwLock::new(map),
                fold,
                line,
            },
            keys,
        ))
    }

    /// Decides on the stream `id` as it is and records the decision: the state and whether
    /// events were recorded. Durable when it returns.
    pub(crate) fn write<Err: From<StoreError>>(
        &self,
        id: &str,
        mut decide: impl FnMut(Option<&S>) -> Result<Write<S, E>, Err>,
    ) -> Result<(S, bool), Err> {
        match &self.backing {
            Backing::File(log) => {
                let mut f = log.lock()?;
                let held = self.held(id);
                match decide(held.as_ref().map(|(s, _)| s))? {
                    Write::Keep(s) => Ok((s, false)),
                    Write::Append(events, s) => {
                        let n = held.map_or(0, |(_, n)| n) + events.len() as u32;
                        let lines: Vec<L> =
                            events.into_iter().map(|e| (self.line)(id, e)).collect();
                        log.append_all(&mut f, &lines)?;
                        self.put_newer(id, s.clone(), n);
                        Ok((s, true))
                    }
                }
            }
            Backing::Shared(sink) => loop {
                let held = self.held(id);
                let n = held.as_ref().map_or(0, |(_, n)| *n);
                match decide(held.as_ref().map(|(s, _)| s))? {
                    Write::Keep(s) => return Ok((s, false)),
                    Write::Append(events, s) => {
                        let values = events
                            .iter()
                            .map(value_of)
                            .collect::<Result<Vec<_>, StoreError>>()?;
                        if sink.append(id, n + 1, &values)? {
                            self.put_newer(id, s.clone(), n + events.len() as u32);
                            return Ok((s, true));
                        }
                        // Another node wrote first: take it in, decide again.
                        self.refresh(id)?;
                    }
                }
            },
        }
    }

    /// Reads the events of `id` this node has not seen (another node wrote them) and folds
    /// them; whether there were any. A no-op on the file.
    pub(crate) fn refresh(&self, id: &str) -> Result<bool, StoreError> {
        let Backing::Shared(sink) = &self.backing else {
            return Ok(false);
        };
        let held = self.held(id);
        let n = held.as_ref().map_or(0, |(_, n)| *n);
        let missed = sink.stream(id, n)?;
        if missed.is_empty() {
            return Ok(false);
        }
        let mut local: HashMap<String, (S, u32)> = HashMap::new();
        if let Some(h) = held {
            local.insert(id.to_string(), h);
        }
        for v in missed {
            fold_into(&mut local, self.fold, id, &event_of(v)?).map_err(StoreError::Corrupt)?;
        }
        if let Some((s, n)) = local.remove(id) {
            self.put_newer(id, s, n);
        }
        Ok(true)
    }

    /// Refreshes every stream that has more events than this node holds (after
    /// notifications may have been missed); the streams that changed.
    pub(crate) fn refresh_all(&self) -> Result<Vec<String>, StoreError> {
        let Backing::Shared(sink) = &self.backing else {
            return Ok(vec![]);
        };
        let mut changed = Vec::new();
        for (id, len) in sink.lengths()? {
            let held = self.held(&id).map_or(0, |(_, n)| n);
            if len > held && self.refresh(&id)? {
                changed.push(id);
            }
        }
        Ok(changed)
    }

    /// Whether the streams are a shared table's.
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self.backing, Backing::Shared(_))
    }

    /// Records `s` as the state after `n` events unless a later one is held (two writers on
    /// one node never move a stream back).
    fn put_newer(&self, id: &str, s: S, n: u32) {
        if let Ok(mut m) = self.map.write() {
            if m.get(id).is_none_or(|(_, held)| *held < n) {
                m.insert(id.to_string(), (s, n));
            }
        }
    }

    fn held(&self, id: &str) -> Option<(S, u32)> {
        self.map.read().ok()?.get(id).cloned()
    }

    /// One stream's state.
    pub(crate) fn get(&self, id: &str) -> Option<S> {
        self.map.read().ok()?.get(id).map(|(s, _)| s.clone())
    }

    /// The states `keep` selects, cloned.
    pub(crate) fn select(&self, keep: impl Fn(&S) -> bool) -> Vec<S> {
        self.map
            .read()
            .map(|m| {
                m.values()
                    .map(|(s, _)| s)
                    .filter(|s| keep(s))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many states `keep` selects (nothing cloned).
    pub(crate) fn count(&self, keep: impl Fn(&S) -> bool) -> usize {
        self.map
            .read()
            .map(|m| m.values().filter(|(s, _)| keep(s)).count())
            .unwrap_or_default()
    }
}

fn fold_into<S, E>(
    map: &mut HashMap<String, (S, u32)>,
    fold: Fold<S, E>,
    id: &str,
    e: &E,
) -> Result<(), String> {
    let (next, n) = match map.get(id) {
        None => (fold(None, e)?, 1),
        Some((s, n)) => (fold(Some(s), e)?, n + 1),
    };
    map.insert(id.to_string(), (next, n));
    Ok(())
}

fn value_of<E: Serialize>(e: &E) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(e).map_err(|e| StoreError::Corrupt(format!("event: {e}")))
}

fn event_of<E: DeserializeOwned>(v: serde_json::Value) -> Result<E, StoreError> {
    serde_json::from_value(v).map_err(|e| StoreError::Corrupt(format!("event: {e}")))
}
