//! Failed authentication per peer address (pure; the caller passes the time): a rate limit
//! and the aggregation of audit records. Each peer has a fixed window that opens with its
//! first failure; that failure is recorded at once, later failures of the window are only
//! counted, and a peer with more than `limit` failures in its window is refused until the
//! window ends. The counted failures are recorded when the window has ended — by
//! [`AuthFailures::due`] (a periodic flush) or, if a failure opens the next window first,
//! in that failure's record. Memory is bounded: at most `capacity` peers are tracked.

use std::collections::HashMap;
use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};

/// The key of a peer: its IPv4 address, or the /64 of an IPv6 one (one host owns a /64).
pub fn peer_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[derive(Debug)]
struct Peer {
    start: DateTime<Utc>,
    in_window: u64,
    unrecorded: u64,
}

/// What to do with one failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// Write a record now, for this many failures (this one and any not yet recorded).
    pub record: Option<u64>,
    /// The peer is over its limit: refuse (429) and retry after this long.
    pub retry_after: Option<Duration>,
}

/// Failed authentication per peer.
#[derive(Debug)]
pub struct AuthFailures {
    limit: u64,
    window: Duration,
    capacity: usize,
    peers: HashMap<String, Peer>,
    /// Unrecorded failures of peers dropped to stay within `capacity`.
    dropped: u64,
}

impl AuthFailures {
    /// More than `limit` failures of one peer within `window` are refused.
    pub fn new(limit: u64, window: Duration, capacity: usize) -> AuthFailures {
        AuthFailures {
            limit: limit.max(1),
            window: window.max(Duration::seconds(1)),
            capacity: capacity.max(1),
            peers: HashMap::new(),
            dropped: 0,
        }
    }

    /// The window's length.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Notes one failed authentication of `peer`.
    pub fn fail(&mut self, peer: &str, now: DateTime<Utc>) -> Failure {
        let window = self.window;
        if !self.peers.contains_key(peer) && self.peers.len() >= self.capacity {
            self.evict(now);
        }
        match self.peers.get_mut(peer) {
            Some(p) if now < p.start + window => {
                p.in_window += 1;
                p.unrecorded += 1;
                Failure {
                    record: None,
                    retry_after: (p.in_window > self.limit)
                        .then(|| (p.start + window - now).max(Duration::seconds(1))),
                }
            }
            Some(p) => {
                let n = p.unrecorded + 1;
                *p = Peer {
                    start: now,
                    in_window: 1,
                    unrecorded: 0,
                };
                Failure {
                    record: Some(n),
                    retry_after: None,
                }
            }
            None => {
                self.peers.insert(
                    peer.to_string(),
                    Peer {
                        start: now,
                        in_window: 1,
                        unrecorded: 0,
                    },
                );
                Failure {
                    record: Some(1),
                    retry_after: None,
                }
            }
        }
    }

    /// Until when `peer` is refused, if it is over its limit.
    pub fn limited(&self, peer: &str, now: DateTime<Utc>) -> Option<Duration> {
        let p = self.peers.get(peer)?;
        (now < p.start + self.window && p.in_window > self.limit)
            .then(|| (p.start + self.window - now).max(Duration::seconds(1)))
    }

    /// The failures to record now: `(peer, count)` for every window that has ended with
    /// failures not yet recorded (`"*"` for peers dropped to bound memory). Ended windows
    /// are forgotten.
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<(String, u64)> {
        let window = self.window;
        let mut out = Vec::new();
        self.peers.retain(|k, p| {
            if now < p.start + window {
                return true;
            }
            if p.unrecorded > 0 {
                out.push((k.clone(), p.unrecorded));
            }
            false
        });
        if self.dropped > 0 {
            out.push(("*".to_string(), std::mem::take(&mut self.dropped)));
        }
        out.sort();
        out
    }

    fn evict(&mut self, now: DateTime<Utc>) {
        let window = self.window;
        let mut dropped = 0;
        self.peers.retain(|_, p| {
            let live = now < p.start + window;
            if !live {
                dropped += p.unrecorded;
            }
            live
        });
        if self.peers.len() >= self.capacity {
            let oldest = self
                .peers
                .iter()
                .min_by_key(|(_, p)| p.start)
                .map(|(k, _)| k.clone());
            if let Some(p) = oldest.and_then(|k| self.peers.remove(&k)) {
                dropped += p.unrecorded;
            }
        }
        self.dropped += dropped;
    }

    /// Peers tracked now.
    pub fn tracked(&self) -> usize {
        self.peers.len()
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
    fn first_failure_recorded_later_ones_counted_then_limited() {
        let mut f = AuthFailures::new(20, Duration::minutes(1), 100);
        assert_eq!(f.fail("a", t(0)).record, Some(1));
        for i in 1..20 {
            assert_eq!(
                f.fail("a", t(i)),
                Failure {
                    record: None,
                    retry_after: None
                }
            );
        }
        // The 21st within the minute is refused until the window ends.
        assert_eq!(f.fail("a", t(30)).retry_after, Some(Duration::seconds(30)));
        assert_eq!(f.limited("a", t(31)), Some(Duration::seconds(29)));
        assert_eq!(f.limited("b", t(31)), None);
        // Another peer is not affected.
        assert_eq!(f.fail("b", t(31)).record, Some(1));
        // Nothing is due before the window ends; then the 20 counted failures are.
        assert!(f.due(t(59)).is_empty());
        assert_eq!(f.due(t(60)), vec![("a".to_string(), 20)]);
        assert_eq!(f.limited("a", t(61)), None);
        assert_eq!(f.fail("a", t(62)).record, Some(1));
    }

    #[test]
    fn a_new_window_carries_unrecorded_failures_when_no_flush_ran() {
        let mut f = AuthFailures::new(20, Duration::minutes(1), 100);
        f.fail("a", t(0));
        f.fail("a", t(1));
        f.fail("a", t(2));
        assert_eq!(f.fail("a", t(61)).record, Some(3));
        assert!(f.due(t(100)).is_empty());
    }

    #[test]
    fn ipv6_peers_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(peer_key(a), peer_key(b));
        assert_eq!(peer_key("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1");
    }

    proptest! {
        #[test]
        fn every_failure_is_recorded_once_and_memory_stays_bounded(
            events in proptest::collection::vec((0u32..200, 0i64..5), 1..400)
        ) {
            let mut f = AuthFailures::new(5, Duration::seconds(30), 32);
            let (mut now, mut recorded) = (0i64, 0u64);
            for (peer, dt) in &events {
                now += dt;
                if let Some(n) = f.fail(&peer.to_string(), t(now)).record {
                    recorded += n;
                }
                prop_assert!(f.tracked() <= 32);
            }
            recorded += f.due(t(now + 3600)).iter().map(|(_, n)| n).sum::<u64>();
            prop_assert_eq!(recorded, events.len() as u64);
        }
    }
}
