//! Per-person change counters for caches of per-patient answers.
//!
//! The writer bumps the counter of every person a commit touches, after the index shows the
//! change. A reader takes the counter *before* it reads the index; an answer it keeps is
//! still current while the counter has not moved. Counters are striped (a fixed table of
//! atomics indexed by a hash of the person key): memory stays bounded however many patients
//! there are, and two persons sharing a stripe only cost an extra re-evaluation.

use std::sync::atomic::{AtomicU64, Ordering};

const STRIPES: usize = 1 << 16;

/// Striped per-person generation counters (in memory; a restart starts every cache empty).
pub struct Generations {
    stripes: Box<[AtomicU64]>,
}

impl Generations {
    /// All counters at zero.
    pub fn new() -> Generations {
        Generations {
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The stripe of `person`: the same on every node and every build (BLAKE3 of the key), so
    /// nodes can tell each other which stripes moved.
    pub fn stripe_of(person: &str) -> u16 {
        let h = huren_model::ContentHash::of(person.as_bytes());
        u16::from_le_bytes([h.as_bytes()[0], h.as_bytes()[1]])
    }

    fn stripe(&self, person: &str) -> &AtomicU64 {
        &self.stripes[usize::from(Self::stripe_of(person)) % STRIPES]
    }

    /// Marks every person of stripe `stripe` stale (a change another node reported).
    pub fn bump_stripe(&self, stripe: u16) {
        self.stripes[usize::from(stripe) % STRIPES].fetch_add(1, Ordering::Release);
    }

    /// The current counter of `person`.
    pub fn get(&self, person: &str) -> u64 {
        // Acquire: a reader that sees the bumped value also sees the index writes before it.
        self.stripe(person).load(Ordering::Acquire)
    }

    /// Marks `person`'s answers stale.
    pub fn bump(&self, person: &str) {
        self.stripe(person).fetch_add(1, Ordering::Release);
    }

    /// Marks every answer stale (after changes were missed, e.g. a lost notification feed).
    pub fn bump_all(&self) {
        for s in self.stripes.iter() {
            s.fetch_add(1, Ordering::Release);
        }
    }
}

impl Default for Generations {
    fn default() -> Self {
        Generations::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bump_moves_only_its_person() {
        let g = Generations::new();
        let (a, b) = (g.get("nidk:a"), g.get("FX-ZX:1"));
        g.bump("nidk:a");
        assert_ne!(g.get("nidk:a"), a);
        // Different stripe with overwhelming probability; the point is the other key's value.
        if g.stripe("nidk:a").as_ptr() != g.stripe("FX-ZX:1").as_ptr() {
            assert_eq!(g.get("FX-ZX:1"), b);
        }
    }
}
