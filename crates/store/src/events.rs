//! Where a store's event streams live on a cluster (issue 19). The embedded store writes its
//! JSON-lines files; a cluster node writes each stream (one alert, one task…) to a table
//! shared by every node, through an [`EventSink`] the cluster back end provides
//! (`huren_cluster::BlockingEvents`).

use crate::StoreError;

/// A shared table of event streams, blocking (the stores write from blocking threads).
/// Appends are optimistic: a stream's next event is appended as number `len + 1`, and a
/// number another writer took first is refused (`Ok(false)`, nothing recorded): the writer
/// reads what it missed ([`EventSink::stream`]) and checks again.
pub trait EventSink: Send + Sync {
    /// Appends `events` to `stream` as numbers `seq`, `seq + 1`…, all or none; `Ok(false)`
    /// when one of those numbers is taken.
    fn append(
        &self,
        stream: &str,
        seq: u32,
        events: &[serde_json::Value],
    ) -> Result<bool, StoreError>;
    /// The events of `stream` after number `after`, in order.
    fn stream(&self, stream: &str, after: u32) -> Result<Vec<serde_json::Value>, StoreError>;
    /// Every event of every stream, each stream in order: `(stream, event)`.
    fn all(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError>;
    /// Each stream with its number of events.
    fn lengths(&self) -> Result<Vec<(String, u32)>, StoreError>;
    /// Holds `key` for this node until the returned guard is dropped, or `None` when another
    /// node holds it (a delivery loop's claim on a destination). Never waits.
    fn try_lease(&self, key: &str) -> Result<Option<Lease>, StoreError>;
}

/// A claim held until dropped ([`EventSink::try_lease`]).
pub struct Lease(#[allow(dead_code)] Box<dyn Send + Sync>);

impl Lease {
    /// A lease that holds `guard` (released when the guard is dropped).
    pub fn new(guard: impl Send + Sync + 'static) -> Lease {
        Lease(Box::new(guard))
    }
}
