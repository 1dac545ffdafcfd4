//! Reading tasks (`tasks.log`): one JSON line per task event ([`huren_workflow::Event`]),
//! appended and `fdatasync`ed before the caller is answered, never rewritten; every task held
//! in memory as the fold of its events. The transition rules are `huren-workflow`'s: an event
//! is checked against the task as it is, under the same lock as its append, so of two readers
//! claiming one task at once exactly one wins. A torn last line (a crash mid-append, never
//! acknowledged) is cut at open; a damaged line elsewhere is refused.

use std::path::Path;
use std::sync::Arc;

use huren_workflow::{Created, Event, Task, TaskId, TransitionError};
use serde::{Deserialize, Serialize};

use crate::events::EventSink;
use crate::feed::Feed;
use crate::streams::{Streams, Write};
use crate::StoreError;

#[derive(Serialize, Deserialize)]
struct Line {
    task: TaskId,
    #[serde(flatten)]
    event: Event,
}

/// Why a task event was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// No task has this id.
    #[error("no reading task {0}")]
    Unknown(String),
    /// The event does not apply to the task as it is (nothing was written).
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// Writing it failed (nothing was recorded).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The reading tasks of one store directory (`tasks.log`), or of a cluster's event table.
pub struct TaskStore {
    /// The tasks, and where their events are written.
    streams: Streams<Task, Event, Line>,
    /// The changes, numbered by their line in `tasks.log` (so the numbers survive a restart).
    feed: Feed<TaskId>,
}

/// A creation makes the task; anything else is a transition of it.
fn fold(t: Option<&Task>, e: &Event) -> Result<Task, String> {
    match (e, t) {
        (Event::Created(c), None) => Ok(Task::new(c)),
        (_, Some(t)) => t.apply(e).map_err(|e| e.to_string()),
        (_, None) => Err("event for a task that was not created".into()),
    }
}

fn line(id: &str, event: Event) -> Line {
    Line {
        task: TaskId(id.to_string()),
        event,
    }
}

fn split(l: Line) -> (String, Event) {
    (l.task.0, l.event)
}

/// The events of `dir/tasks.log` as a cluster's table holds them: `(stream, event)` in order.
pub(crate) fn file_events(
    dir: &std::path::Path,
) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
    crate::jsonl::read_lines::<Line>(dir, "tasks.log")?
        .into_iter()
        .map(|l| {
            let (id, e) = split(l);
            serde_json::to_value(&e)
                .map(|v| (id, v))
                .map_err(|e| StoreError::Corrupt(format!("tasks.log: {e}")))
        })
        .collect()
}

impl TaskStore {
    /// Opens (or creates) `dir/tasks.log` and replays it.
    pub fn open(dir: impl AsRef<Path>) -> Result<TaskStore, StoreError> {
        let (streams, keys) = Streams::open_file(dir, "tasks.log", fold, line, split)?;
        Ok(TaskStore {
            streams,
            feed: Feed::replayed(keys.into_iter().map(TaskId).collect()),
        })
    }

    /// The tasks of a cluster's event table (every stream loaded and folded); writes go
    /// there, and [`TaskStore::refresh`] brings in what other nodes wrote.
    pub fn shared(sink: Arc<dyn EventSink>) -> Result<TaskStore, StoreError> {
        let (streams, keys) = Streams::open_shared(sink, fold, line)?;
        Ok(TaskStore {
            streams,
            feed: Feed::replayed(keys.into_iter().map(TaskId).collect()),
        })
    }

    /// Reads the events of `id` this node has not seen (another node wrote them), folds them
    /// and announces the change; whether there were any. A no-op on the file back end.
    pub fn refresh(&self, id: &TaskId) -> Result<bool, StoreError> {
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
            self.feed.changed(&TaskId(id.clone()));
        }
        Ok(changed.len())
    }

    /// The task changes (for event streams).
    pub fn feed(&self) -> &Feed<TaskId> {
        &self.feed
    }

    /// The sequence number of the last durable task event (0: none yet).
    pub fn sequence(&self) -> u64 {
        self.feed.sequence()
    }

    /// A receiver that wakes when a task event becomes durable.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.feed.subscribe()
    }

    /// See [`Feed::changes_since`].
    pub fn changes_since(&self, after: u64, limit: usize) -> Option<Vec<(u64, TaskId)>> {
        self.feed.changes_since(after, limit)
    }

    /// Creates a task unless one with its id exists; returns the task and whether it is new.
    /// Returns once it is durable.
    pub fn create(&self, c: Created) -> Result<(Task, bool), TaskError> {
        let id = c.id.clone();
        let (task, new) = self.streams.write(&id.0, |held| {
            Ok::<_, TaskError>(match held {
                Some(t) => Write::Keep(t.clone()),
                None => Write::Append(vec![Event::Created(c.clone())], Task::new(&c)),
            })
        })?;
        if new {
            self.feed.changed(&id);
        }
        Ok((task, new))
    }

    /// Applies an event to a task: checked against the task as it is, then made durable, then
    /// answered. Nothing is written when it does not apply.
    pub fn apply(&self, id: &TaskId, event: Event) -> Result<Task, TaskError> {
        let attempt = |held: Option<&Task>| -> Result<Write<Task, Event>, TaskError> {
            let current = held.ok_or_else(|| TaskError::Unknown(id.0.clone()))?;
            Ok(Write::Append(vec![event.clone()], current.apply(&event)?))
        };
        let (task, _) = match self.streams.write(&id.0, attempt) {
            // Created on another node, maybe: look once before refusing.
            Err(TaskError::Unknown(_)) if self.streams.is_shared() && self.refresh(id)? => {
                self.streams.write(&id.0, attempt)
            }
            other => other,
        }?;
        self.feed.changed(id);
        Ok(task)
    }

    /// One task.
    pub fn get(&self, id: &TaskId) -> Option<Task> {
        self.streams.get(&id.0)
    }

    /// The tasks `keep` selects, cloned.
    pub fn select(&self, keep: impl Fn(&Task) -> bool) -> Vec<Task> {
        self.streams.select(keep)
    }

    /// How many tasks `keep` selects (nothing cloned).
    pub fn count(&self, keep: impl Fn(&Task) -> bool) -> usize {
        self.streams.count(keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone, Utc};
    use huren_workflow::{CentreId, Kind, Priority, State};

    fn created(id: &str) -> Created {
        let at = Utc.with_ymd_and_hms(2026, 12, 6, 8, 0, 0).unwrap();
        Created {
            id: TaskId(id.into()),
            kind: Kind::Ecg,
            priority: Priority::Routine,
            centre: CentreId("fx-ecg".into()),
            institution: "FX-SQ1".into(),
            report: format!("blake3:{}", "a".repeat(64)),
            at,
            due_at: at + Duration::minutes(30),
            claim_timeout_secs: 900,
        }
    }

    #[test]
    fn tasks_survive_reopen_and_refused_events_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let id = TaskId("t1".into());
        let at = Utc.with_ymd_and_hms(2026, 12, 6, 8, 1, 0).unwrap();
        {
            let s = TaskStore::open(dir.path()).unwrap();
            assert!(s.create(created("t1")).unwrap().1);
            assert!(!s.create(created("t1")).unwrap().1, "created once");
            s.apply(
                &id,
                Event::Claimed {
                    by: "r1".into(),
                    at,
                },
            )
            .unwrap();
            let e = s
                .apply(
                    &id,
                    Event::Claimed {
                        by: "r2".into(),
                        at,
                    },
                )
                .unwrap_err();
            assert!(
                matches!(e, TaskError::Transition(TransitionError::ClaimHeld { .. })),
                "{e}"
            );
            assert!(matches!(
                s.apply(
                    &TaskId("nope".into()),
                    Event::Claimed {
                        by: "r1".into(),
                        at
                    }
                ),
                Err(TaskError::Unknown(_))
            ));
        }
        let s = TaskStore::open(dir.path()).unwrap();
        let t = s.get(&id).unwrap();
        assert!(matches!(t.state, State::InProgress { ref claimed_by, .. } if claimed_by == "r1"));
        let lines = std::fs::read_to_string(dir.path().join("tasks.log")).unwrap();
        assert_eq!(lines.lines().count(), 2, "{lines}");
    }

    #[test]
    fn changes_are_numbered_by_line_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let at = Utc.with_ymd_and_hms(2026, 12, 6, 8, 1, 0).unwrap();
        {
            let s = TaskStore::open(dir.path()).unwrap();
            assert_eq!(s.sequence(), 0);
            assert_eq!(s.changes_since(0, 10), Some(vec![]));
            let mut rx = s.subscribe();
            s.create(created("a")).unwrap();
            assert!(rx.has_changed().unwrap());
            assert_eq!(*rx.borrow_and_update(), 1);
            s.create(created("b")).unwrap();
            s.apply(&TaskId("a".into()), Event::Claimed { by: "r".into(), at })
                .unwrap();
            // A refused event is no change.
            let _ = s.apply(&TaskId("a".into()), Event::Claimed { by: "x".into(), at });
            assert_eq!(s.sequence(), 3);
            let ids =
                |v: Vec<(u64, TaskId)>| v.into_iter().map(|(n, t)| (n, t.0)).collect::<Vec<_>>();
            assert_eq!(
                ids(s.changes_since(0, 10).unwrap()),
                vec![(2, "b".to_string()), (3, "a".to_string())],
                "a task changed twice appears once, at its later sequence"
            );
            assert_eq!(ids(s.changes_since(2, 10).unwrap()), vec![(3, "a".into())]);
            assert_eq!(s.changes_since(3, 10), Some(vec![]));
            assert_eq!(s.changes_since(4, 10), None, "from the future: start over");
            assert_eq!(s.changes_since(0, 1).unwrap().len(), 1);
        }
        let s = TaskStore::open(dir.path()).unwrap();
        assert_eq!(s.sequence(), 3, "the sequence is the line number");
        assert_eq!(s.changes_since(2, 10).unwrap().len(), 1);
        s.create(created("c")).unwrap();
        assert_eq!(s.sequence(), 4);
    }

    #[test]
    fn concurrent_claims_have_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(TaskStore::open(dir.path()).unwrap());
        s.create(created("t2")).unwrap();
        let at = Utc.with_ymd_and_hms(2026, 12, 6, 8, 1, 0).unwrap();
        let wins: usize = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let s = s.clone();
                    sc.spawn(move || {
                        s.apply(
                            &TaskId("t2".into()),
                            Event::Claimed {
                                by: format!("r{i}"),
                                at,
                            },
                        )
                        .is_ok() as usize
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 1);
    }

    #[test]
    fn a_torn_last_line_is_cut_and_damage_before_the_end_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = TaskStore::open(dir.path()).unwrap();
            s.create(created("t3")).unwrap();
        }
        let p = dir.path().join("tasks.log");
        let mut b = std::fs::read(&p).unwrap();
        b.extend_from_slice(b"{\"task\":\"t3\",\"ev");
        std::fs::write(&p, &b).unwrap();
        assert!(TaskStore::open(dir.path())
            .unwrap()
            .get(&TaskId("t3".into()))
            .is_some());
        let mut b = b"garbage\n".to_vec();
        b.extend_from_slice(&std::fs::read(&p).unwrap());
        std::fs::write(&p, &b).unwrap();
        assert!(TaskStore::open(dir.path()).is_err());
    }
}
