//! Data sets being received on an association (issue 16, finding 6). A data set is held in
//! memory while it is small and the listener's shared [`ReceiveBudget`] allows; a C-STORE data
//! set past `spool_above_kib`, or one arriving when the budget is used up, goes to a
//! temporary file of the store instead ([`huren_store::Spool`]), hashed on the way. So data
//! sets being received hold at most `max_associations × (max_pdu + OWN) + receive_budget_mib`
//! of memory however many peers send large ones, and a legitimate C-STORE of any size up to
//! `max_object_bytes` still gets through.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use huren_model::{ContentHash, ContentHasher};
use huren_store::Spool;

/// Bytes of a data set each association may hold in memory without drawing on the budget.
pub const OWN: usize = 64 * 1024;

/// Memory shared by the associations of one listener for data sets being received.
#[derive(Debug)]
pub struct ReceiveBudget {
    limit: usize,
    used: AtomicUsize,
}

impl ReceiveBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<ReceiveBudget> {
        Arc::new(ReceiveBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes held now.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// What one association holds of the budget; given back when dropped.
#[derive(Debug)]
pub struct Hold {
    budget: Arc<ReceiveBudget>,
    n: usize,
}

impl Hold {
    fn new(budget: Arc<ReceiveBudget>) -> Hold {
        Hold { budget, n: 0 }
    }

    /// Holds enough for `bytes` buffered bytes (the first [`OWN`] are free); `false` when
    /// the budget cannot give more (nothing changes then).
    fn cover(&mut self, bytes: usize) -> bool {
        let want = bytes.saturating_sub(OWN);
        if want > self.n {
            let more = want - self.n;
            let before = self.budget.used.fetch_add(more, Ordering::AcqRel);
            if before + more > self.budget.limit {
                self.budget.used.fetch_sub(more, Ordering::AcqRel);
                return false;
            }
        } else {
            self.budget.used.fetch_sub(self.n - want, Ordering::AcqRel);
        }
        self.n = want;
        true
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// A data set received whole.
pub enum Received {
    /// In memory: `bytes[header..]` is the data set behind a Part 10 header of `header` bytes
    /// (0 for a C-FIND identifier); `hold` keeps its share of the budget until dropped.
    Memory {
        bytes: Vec<u8>,
        header: usize,
        hold: Hold,
    },
    /// In a temporary file (Part 10 header first); `dataset_hash` and `dataset_len` are the
    /// data set's without the header.
    Spooled {
        spool: Box<Spool>,
        header: usize,
        dataset_hash: ContentHash,
        dataset_len: u64,
    },
    /// Not kept: the reason (too large, budget used up, the spool failed).
    Refused(String),
}

/// The data set of the command in progress.
pub struct Incoming {
    budget: Arc<ReceiveBudget>,
    hold: Hold,
    mem: Vec<u8>,
    header: usize,
    spool: Option<(Spool, ContentHasher)>,
    received: usize,
    spool_above: usize,
    max_object: usize,
    can_spool: bool,
    refused: Option<String>,
}

impl Incoming {
    /// Nothing in progress; data sets above `spool_above` bytes are spooled, above
    /// `max_object` refused.
    pub fn new(budget: Arc<ReceiveBudget>, spool_above: usize, max_object: usize) -> Incoming {
        Incoming {
            hold: Hold::new(budget.clone()),
            budget,
            mem: Vec::new(),
            header: 0,
            spool: None,
            received: 0,
            spool_above,
            max_object,
            can_spool: false,
            refused: None,
        }
    }

    /// Starts a data set: `header` is the Part 10 header made for a C-STORE (empty
    /// otherwise); `can_spool` whether it may go to a file (a C-STORE whose data set can be
    /// summarised from its first bytes).
    pub fn begin(&mut self, header: Vec<u8>, can_spool: bool) {
        self.spool = None;
        self.refused = None;
        self.received = 0;
        self.header = header.len();
        self.mem = header;
        self.can_spool = can_spool;
        let _ = self.hold.cover(self.mem.len());
    }

    /// Adds the next fragment; `spool` opens a temporary file when one is needed.
    pub fn push(
        &mut self,
        bytes: &[u8],
        spool: impl FnOnce() -> Result<Spool, huren_store::StoreError>,
    ) {
        if self.refused.is_some() {
            return;
        }
        if self.received + bytes.len() > self.max_object {
            self.refuse("data set larger than max_object_bytes".into());
            return;
        }
        self.received += bytes.len();
        if let Some((s, h)) = &mut self.spool {
            h.update(bytes);
            if let Err(e) = s.write(bytes) {
                self.refuse(format!("could not spool the data set: {e}"));
            }
            return;
        }
        let want = self.mem.len() + bytes.len();
        let fits = self.received <= self.spool_above && self.hold.cover(want);
        if fits {
            self.mem.extend_from_slice(bytes);
            return;
        }
        if !self.can_spool {
            self.refuse(if self.received > self.spool_above {
                "data set too large for memory and not spoolable".into()
            } else {
                "the listener's receive memory budget is used up".into()
            });
            return;
        }
        let mut h = ContentHasher::new();
        h.update(self.mem.get(self.header..).unwrap_or_default());
        h.update(bytes);
        let opened = spool().and_then(|mut s| {
            s.write(&self.mem)?;
            s.write(bytes)?;
            Ok(s)
        });
        self.mem = Vec::new();
        let _ = self.hold.cover(0);
        match opened {
            Ok(s) => self.spool = Some((s, h)),
            Err(e) => self.refuse(format!("could not spool the data set: {e}")),
        }
    }

    fn refuse(&mut self, why: String) {
        self.refused = Some(why);
        self.spool = None;
        self.mem = Vec::new();
        let _ = self.hold.cover(0);
    }

    /// The data set received whole; `Incoming` is ready for the next.
    pub fn take(&mut self) -> Received {
        let header = std::mem::take(&mut self.header);
        if let Some(why) = self.refused.take() {
            return Received::Refused(why);
        }
        if let Some((spool, h)) = self.spool.take() {
            return Received::Spooled {
                spool: Box::new(spool),
                header,
                dataset_hash: h.finish(),
                dataset_len: self.received as u64,
            };
        }
        let hold = std::mem::replace(&mut self.hold, Hold::new(self.budget.clone()));
        Received::Memory {
            bytes: std::mem::take(&mut self.mem),
            header,
            hold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let b = ReceiveBudget::new(100);
        let mut one = Hold::new(b.clone());
        let mut two = Hold::new(b.clone());
        assert!(one.cover(OWN + 60));
        assert!(!two.cover(OWN + 60), "only 40 left");
        assert_eq!(b.in_use(), 60);
        assert!(two.cover(OWN + 40));
        assert!(one.cover(OWN));
        assert_eq!(b.in_use(), 40);
        drop(two);
        assert_eq!(b.in_use(), 0);
    }

    #[test]
    fn small_data_sets_stay_in_memory_and_large_ones_need_a_spool() {
        let b = ReceiveBudget::new(1 << 20);
        let mut i = Incoming::new(b.clone(), 1000, 10_000);
        i.begin(b"HDR".to_vec(), false);
        i.push(&[1; 500], || panic!("no spool for a small data set"));
        match i.take() {
            Received::Memory { bytes, header, .. } => {
                assert_eq!(header, 3);
                assert_eq!(bytes.len(), 503);
            }
            _ => panic!("kept in memory"),
        }
        // Not spoolable and past the threshold: refused, nothing kept.
        i.begin(Vec::new(), false);
        i.push(&[1; 1500], || panic!("not spoolable"));
        assert!(matches!(i.take(), Received::Refused(_)));
        // Past max_object: refused before any spool is opened.
        i.begin(Vec::new(), true);
        i.push(&[1; 600], || panic!("still small"));
        i.push(&[1; 10_000], || panic!("never: past max_object_bytes"));
        match i.take() {
            Received::Refused(why) => assert!(why.contains("max_object_bytes"), "{why}"),
            _ => panic!("refused"),
        }
        assert_eq!(b.in_use(), 0);
    }
}
