//! Repeated wrong codes for one person lock further tries for a while (pure; the caller
//! passes the time). Memory is bounded: at most `capacity` people are tracked, the stalest
//! dropped first.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};

/// Failures per person within a window; `max` of them lock the person for `lock`.
#[derive(Debug)]
pub struct Lockout {
    max: usize,
    window: Duration,
    lock: Duration,
    capacity: usize,
    failures: HashMap<String, VecDeque<DateTime<Utc>>>,
}

impl Lockout {
    /// `max` failures within `window` lock further tries for `lock`.
    pub fn new(max: usize, window: Duration, lock: Duration, capacity: usize) -> Lockout {
        Lockout {
            max: max.max(1),
            window,
            lock,
            capacity: capacity.max(1),
            failures: HashMap::new(),
        }
    }

    /// Until when tries for `person` are locked, if they are.
    pub fn locked_until(&self, person: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let f = self.failures.get(person)?;
        if f.len() < self.max {
            return None;
        }
        let last = *f.back()?;
        let first = f[f.len() - self.max];
        (last - first <= self.window && now < last + self.lock).then_some(last + self.lock)
    }

    /// Records a wrong code for `person`; returns the lock's end if this failure locked.
    pub fn fail(&mut self, person: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.failures.contains_key(person) && self.failures.len() >= self.capacity {
            self.evict(now);
        }
        let f = self.failures.entry(person.to_string()).or_default();
        f.push_back(now);
        while f.len() > self.max {
            f.pop_front();
        }
        self.locked_until(person, now)
    }

    /// A verified code clears the person's failures.
    pub fn succeed(&mut self, person: &str) {
        self.failures.remove(person);
    }

    fn evict(&mut self, now: DateTime<Utc>) {
        let horizon = self.window.max(self.lock);
        self.failures
            .retain(|_, f| f.back().is_some_and(|t| now - *t < horizon));
        if self.failures.len() >= self.capacity {
            let stalest = self
                .failures
                .iter()
                .min_by_key(|(_, f)| f.back().copied())
                .map(|(k, _)| k.clone());
            if let Some(k) = stalest {
                self.failures.remove(&k);
            }
        }
    }

    /// People tracked now.
    pub fn tracked(&self) -> usize {
        self.failures.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn five_failures_lock_then_the_lock_ends() {
        let mut l = Lockout::new(5, Duration::minutes(15), Duration::minutes(15), 100);
        for i in 0..4 {
            assert_eq!(l.fail("p", t(i)), None);
        }
        assert_eq!(l.fail("p", t(4)), Some(t(4) + Duration::minutes(15)));
        assert!(l.locked_until("p", t(60)).is_some());
        assert!(l.locked_until("q", t(60)).is_none());
        assert!(l.locked_until("p", t(4 + 15 * 60)).is_none());
        l.succeed("p");
        assert!(l.locked_until("p", t(5)).is_none());
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_lock() {
        let mut l = Lockout::new(3, Duration::minutes(1), Duration::minutes(10), 100);
        for i in 0..10 {
            assert_eq!(l.fail("p", t(i * 61)), None);
        }
    }

    proptest! {
        #[test]
        fn memory_stays_bounded(people in proptest::collection::vec(0u32..10_000, 1..500)) {
            let mut l = Lockout::new(5, Duration::minutes(15), Duration::minutes(15), 64);
            for (i, p) in people.iter().enumerate() {
                l.fail(&p.to_string(), t(i as i64));
                prop_assert!(l.tracked() <= 64);
            }
        }
    }
}
