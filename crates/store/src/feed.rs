//! A change feed over a JSON-lines log: each durable event numbered by its line in the log
//! (so the numbers survive a restart), the most recent changes kept for replay
//! (`Last-Event-ID`), and a watch that wakes waiters on the next one.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;

/// How many recent changes a feed keeps for replay.
pub const CHANGES_KEPT: usize = 100_000;

/// The changes of one log: `(sequence, key)` of its recent events.
pub struct Feed<K> {
    changes: Mutex<VecDeque<(u64, K)>>,
    latest: tokio::sync::watch::Sender<u64>,
}

impl<K: Clone + Eq + Hash> Feed<K> {
    /// A feed replayed from `keys` (the keys of the log's lines, in order).
    pub(crate) fn replayed(keys: Vec<K>) -> Feed<K> {
        let seq = keys.len() as u64;
        let skip = keys.len().saturating_sub(CHANGES_KEPT);
        let changes = keys
            .into_iter()
            .enumerate()
            .skip(skip)
            .map(|(i, k)| (i as u64 + 1, k))
            .collect();
        Feed {
            changes: Mutex::new(changes),
            latest: tokio::sync::watch::Sender::new(seq),
        }
    }

    /// Records a durable change (called under the log's append lock, after the append).
    pub(crate) fn changed(&self, key: &K) {
        let mut c = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        let seq = self.latest.borrow().saturating_add(1);
        if c.len() == CHANGES_KEPT {
            c.pop_front();
        }
        c.push_back((seq, key.clone()));
        drop(c);
        self.latest.send_replace(seq);
    }

    /// The sequence number of the last durable event (0: none yet).
    pub fn sequence(&self) -> u64 {
        *self.latest.borrow()
    }

    /// A receiver that wakes when an event becomes durable.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// The keys changed after sequence `after`, oldest first, each with the sequence of its
    /// latest change at the time of the call (a key changed twice appears once, at its later
    /// sequence). `None` when changes after `after` are no longer kept or `after` is from
    /// the future (the caller starts over from the current state); at most `limit` entries.
    pub fn changes_since(&self, after: u64, limit: usize) -> Option<Vec<(u64, K)>> {
        let c = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        let first = c.front().map(|(s, _)| *s);
        let latest = self.sequence();
        if after > latest {
            return None;
        }
        match first {
            Some(f) if after + 1 < f => return None,
            None if after < latest => return None,
            _ => {}
        }
        let start = c.partition_point(|(s, _)| *s <= after);
        let mut out: Vec<(u64, K)> = Vec::new();
        let mut seen: HashMap<&K, usize> = HashMap::new();
        for (s, id) in c.range(start..) {
            match seen.get(id) {
                Some(&i) => out[i].0 = *s,
                None => {
                    if out.len() == limit {
                        break;
                    }
                    seen.insert(id, out.len());
                    out.push((*s, id.clone()));
                }
            }
        }
        out.sort_by_key(|(s, _)| *s);
        Some(out)
    }
}
