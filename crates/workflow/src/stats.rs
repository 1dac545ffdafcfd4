//! A centre's workload: from the tasks signed in a period, per reader and per institution,
//! how many, how long from creation to signature (median, p90) and what share was signed by
//! its due time, and the tasks signed per hour.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::task::Task;

/// Figures of one group of signed tasks.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Figures {
    /// Tasks signed.
    pub count: u64,
    /// Median seconds from creation to signature (nearest rank); none without tasks.
    pub median_secs: Option<i64>,
    /// 90th percentile of the same (nearest rank).
    pub p90_secs: Option<i64>,
    /// Tasks signed at or before their due time.
    pub within_due: u64,
    /// `within_due / count`; none without tasks.
    pub share_within_due: Option<f64>,
    /// `count` per hour of the period.
    pub per_hour: f64,
}

/// The workload of a period.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Workload {
    /// Every task signed in the period.
    pub all: Figures,
    /// By signing reader.
    pub by_reader: BTreeMap<String, Figures>,
    /// By acquiring institution.
    pub by_institution: BTreeMap<String, Figures>,
}

/// The nearest-rank `p`-th percentile of sorted values: the value at rank ⌈p/100 · n⌉.
fn percentile(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (n * p as usize).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

fn figures(samples: &mut [(i64, bool)], hours: f64) -> Figures {
    samples.sort_unstable();
    let secs: Vec<i64> = samples.iter().map(|s| s.0).collect();
    let count = samples.len() as u64;
    let within_due = samples.iter().filter(|s| s.1).count() as u64;
    Figures {
        count,
        median_secs: percentile(&secs, 50),
        p90_secs: percentile(&secs, 90),
        within_due,
        share_within_due: (count > 0).then(|| within_due as f64 / count as f64),
        per_hour: if hours > 0.0 {
            count as f64 / hours
        } else {
            0.0
        },
    }
}

/// The workload of the tasks signed in `[from, to)`; other tasks (open, cancelled, signed
/// outside the period) are ignored. A task amended later counts once, at its signature.
pub fn workload<'a>(
    tasks: impl IntoIterator<Item = &'a Task>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Workload {
    let hours = (to - from).num_milliseconds() as f64 / 3_600_000.0;
    let mut all = Vec::new();
    let mut by_reader: BTreeMap<String, Vec<(i64, bool)>> = BTreeMap::new();
    let mut by_institution: BTreeMap<String, Vec<(i64, bool)>> = BTreeMap::new();
    for t in tasks {
        let Some((by, at)) = t.signed() else {
            continue;
        };
        if at < from || at >= to {
            continue;
        }
        let sample = ((at - t.created_at).num_seconds(), at <= t.due_at);
        all.push(sample);
        by_reader.entry(by.to_string()).or_default().push(sample);
        by_institution
            .entry(t.institution.clone())
            .or_default()
            .push(sample);
    }
    Workload {
        all: figures(&mut all, hours),
        by_reader: by_reader
            .into_iter()
            .map(|(k, mut v)| (k, figures(&mut v, hours)))
            .collect(),
        by_institution: by_institution
            .into_iter()
            .map(|(k, mut v)| (k, figures(&mut v, hours)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Created, Event, Kind, Priority, TaskId};
    use proptest::prelude::*;

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + min * 60, 0).unwrap()
    }

    fn signed(id: usize, inst: &str, reader: &str, created: i64, sign: i64) -> Task {
        let task = Task::new(&Created {
            id: TaskId(format!("t{id}")),
            kind: Kind::Ecg,
            priority: Priority::Routine,
            centre: "c".into(),
            institution: inst.into(),
            report: "blake3:p".into(),
            at: t(created),
            due_at: t(created + 30),
            claim_timeout_secs: 900,
        });
        task.apply(&Event::Claimed {
            by: reader.into(),
            at: t(created),
        })
        .unwrap()
        .apply(&Event::Signed {
            by: reader.into(),
            at: t(sign),
            report: format!("blake3:s{id}"),
        })
        .unwrap()
    }

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&v, 50), Some(5));
        assert_eq!(percentile(&v, 90), Some(9));
        assert_eq!(percentile(&[7], 90), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn per_reader_and_institution() {
        let tasks = [
            signed(1, "CHC1", "a", 0, 10),
            signed(2, "CHC1", "a", 0, 40),
            signed(3, "CHC2", "b", 10, 30),
            signed(4, "CHC2", "b", 100, 200), // outside the period
        ];
        let open = Task::new(&Created {
            id: TaskId("o".into()),
            kind: Kind::Ecg,
            priority: Priority::Routine,
            centre: "c".into(),
            institution: "CHC1".into(),
            report: "blake3:p".into(),
            at: t(0),
            due_at: t(30),
            claim_timeout_secs: 900,
        });
        let w = workload(tasks.iter().chain([&open]), t(0), t(120));
        assert_eq!(w.all.count, 3);
        assert_eq!(w.all.within_due, 2);
        assert_eq!(w.all.median_secs, Some(20 * 60));
        assert_eq!(w.all.p90_secs, Some(40 * 60));
        assert!((w.all.per_hour - 1.5).abs() < 1e-9);
        assert_eq!(w.by_reader["a"].count, 2);
        assert_eq!(w.by_reader["a"].share_within_due, Some(0.5));
        assert_eq!(w.by_reader["b"].median_secs, Some(20 * 60));
        assert_eq!(w.by_institution["CHC2"].count, 1);
        assert!(!w.by_reader.contains_key("nobody"));
    }

    #[test]
    fn empty_period() {
        let w = workload(std::iter::empty(), t(0), t(0));
        assert_eq!(w.all.count, 0);
        assert_eq!(w.all.median_secs, None);
        assert_eq!(w.all.share_within_due, None);
        assert_eq!(w.all.per_hour, 0.0);
    }

    proptest! {
        #[test]
        fn groups_add_up(spec in proptest::collection::vec((0usize..3, 0usize..3, 0i64..100, 0i64..100), 0..60)) {
            let tasks: Vec<Task> = spec
                .iter()
                .enumerate()
                .map(|(i, &(inst, r, c, d))| signed(i, ["I1", "I2", "I3"][inst], ["a", "b", "c"][r], c, c + d))
                .collect();
            let w = workload(&tasks, t(0), t(300));
            prop_assert_eq!(w.all.count, tasks.len() as u64);
            prop_assert_eq!(w.by_reader.values().map(|f| f.count).sum::<u64>(), w.all.count);
            prop_assert_eq!(w.by_institution.values().map(|f| f.within_due).sum::<u64>(), w.all.within_due);
            if let (Some(m), Some(p)) = (w.all.median_secs, w.all.p90_secs) {
                prop_assert!(m <= p);
            }
        }
    }
}
