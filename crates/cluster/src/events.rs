//! Event streams on PostgreSQL: the cluster form of the embedded store's JSON-lines logs
//! (reading tasks, alerts, chest-pain cases, roster edits, the outboxes). A stream (one task,
//! one alert, one outbound message…) is the fold of its events. Its events are numbered
//! 1, 2, 3… and `(stream_id, seq)` is the table's primary key.
//!
//! **Writes are optimistic per stream, never check-then-insert under a global lock.** A node
//! checks a transition against the stream as it knows it, with `n` events, and appends it as
//! `seq = n + 1`. If another node appended `n + 1` first, the insert collides on the key and
//! [`EventTable::append`] answers [`Appended::Conflict`]. The writer then reads the events it
//! missed ([`EventTable::stream`]), folds them, and checks again. Two nodes acknowledging one
//! alert at once: exactly one is recorded, and the other sees it and answers accordingly.
//!
//! **Fan-out**: each append sends `NOTIFY huren_events, 'table:stream:seq'` in its
//! transaction, delivered at commit. [`follow_events`] `LISTEN`s on its own connection and
//! hands every notification to the node (a store applies the stream's new events; an event
//! stream page wakes). A connection lost and regained may have missed notifications. It then
//! reports [`Notice::Resync`], and the node reloads what it holds.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;

use crate::store::ClusterError;

/// The channel of event notifications.
pub const EVENTS_CHANNEL: &str = "huren_events";

/// The event tables (names fixed here: never built from input).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    /// Reading tasks.
    Tasks,
    /// Alerts.
    Alerts,
    /// Chest-pain cases.
    Cases,
    /// A centre head's roster edits.
    Roster,
    /// Signed results to the institutions.
    Outbox,
    /// Alert notices to webhooks.
    Webhooks,
    /// Shared documents to the regional platform.
    Regional,
    /// Patient authorisations (consents), one stream per person.
    Consents,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 8] = [
        Table::Tasks,
        Table::Alerts,
        Table::Cases,
        Table::Roster,
        Table::Outbox,
        Table::Webhooks,
        Table::Regional,
        Table::Consents,
    ];

    /// The SQL table name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Tasks => "task_events",
            Table::Alerts => "alert_events",
            Table::Cases => "case_events",
            Table::Roster => "roster_events",
            Table::Outbox => "outbox_events",
            Table::Webhooks => "webhook_events",
            Table::Regional => "regional_events",
            Table::Consents => "consent_events",
        }
    }

    /// The table of a name.
    pub fn of_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// What an append did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Recorded as that sequence number.
    Recorded,
    /// Another writer recorded that sequence number first: read the stream and check again.
    Conflict,
}

/// One stored event.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// The stream.
    pub stream: String,
    /// Its number in the stream, from 1.
    pub seq: i32,
    /// The node that wrote it.
    pub node: String,
    /// The event.
    pub event: serde_json::Value,
}

/// One event table of the cluster, for one node.
#[derive(Clone)]
pub struct EventTable {
    pool: deadpool_postgres::Pool,
    table: Table,
    node: Arc<str>,
}

impl EventTable {
    /// The table on `pool` (migrated: see [`crate::migrate`]), written as `node`.
    pub fn new(pool: deadpool_postgres::Pool, table: Table, node: &str) -> EventTable {
        EventTable {
            pool,
            table,
            node: node.into(),
        }
    }

    /// Appends `events` to `stream` as numbers `seq`, `seq + 1`, … in one transaction, with
    /// their notifications: all or none. `Conflict` when another writer took one of those
    /// numbers (nothing recorded). `seq` must be the stream's length as the caller knows it
    /// plus one.
    pub async fn append(
        &self,
        stream: &str,
        seq: i32,
        events: &[serde_json::Value],
    ) -> Result<Appended, ClusterError> {
        if seq < 1 {
            return Err(ClusterError::Invalid(format!(
                "event numbers start at 1, not {seq}"
            )));
        }
        if events.is_empty() {
            return Ok(Appended::Recorded);
        }
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let insert = format!(
            "INSERT INTO {} (stream_id, seq, at, node, event)
             SELECT $1, s, now(), $2, e::jsonb
             FROM unnest($3::integer[], $4::text[]) AS t(s, e)",
            self.table.name()
        );
        let seqs: Vec<i32> = (0..events.len() as i32).map(|i| seq + i).collect();
        let texts: Vec<String> = events.iter().map(|e| e.to_string()).collect();
        let node: &str = &self.node;
        match tx
            .execute(insert.as_str(), &[&stream, &node, &seqs, &texts])
            .await
        {
            Ok(_) => {}
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                return Ok(Appended::Conflict)
            }
            Err(e) => return Err(e.into()),
        }
        let last = seqs.last().copied().unwrap_or(seq);
        tx.execute(
            "SELECT pg_notify($1, $2)",
            &[
                &EVENTS_CHANNEL,
                &format!("{}:{stream}:{last}", self.table.name()),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(Appended::Recorded)
    }

    /// The events of `stream` after number `after`, in order.
    pub async fn stream(&self, stream: &str, after: i32) -> Result<Vec<StoredEvent>, ClusterError> {
        let client = self.pool.get().await?;
        let q = format!(
            "SELECT stream_id, seq, node, event::text FROM {} WHERE stream_id = $1 AND seq > $2
             ORDER BY seq",
            self.table.name()
        );
        rows(client.query(q.as_str(), &[&stream, &after]).await?)
    }

    /// A claim on `key` within this table, held by one node at a time until the returned
    /// connection is dropped (a session advisory lock on a connection taken out of the
    /// pool: it ends with the connection, also when this node dies); `None` when another
    /// node holds it.
    pub async fn try_lease(
        &self,
        key: &str,
    ) -> Result<Option<deadpool_postgres::ClientWrapper>, ClusterError> {
        let lock = lock_key(&format!("{}:{key}", self.table.name()));
        let client = deadpool_postgres::Object::take(self.pool.get().await?);
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&lock])
            .await?
            .try_get(0)?;
        Ok(got.then_some(client))
    }

    /// Each stream's number of events (what a node compares with its own after it may have
    /// missed notifications).
    pub async fn lengths(&self) -> Result<Vec<(String, i32)>, ClusterError> {
        let client = self.pool.get().await?;
        let q = format!(
            "SELECT stream_id, max(seq) FROM {} GROUP BY stream_id",
            self.table.name()
        );
        client
            .query(q.as_str(), &[])
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Every event of every stream, each stream in order (the start-up load).
    pub async fn all(&self) -> Result<Vec<StoredEvent>, ClusterError> {
        let client = self.pool.get().await?;
        let q = format!(
            "SELECT stream_id, seq, node, event::text FROM {} ORDER BY stream_id, seq",
            self.table.name()
        );
        rows(client.query(q.as_str(), &[]).await?)
    }
}

/// An [`EventTable`] as the blocking [`huren_store::EventSink`] the stores write through.
/// Each call runs on the runtime of `handle`; call it from a blocking thread
/// (`spawn_blocking`, as the stores' writers are) or a multi-threaded runtime's worker,
/// never from a current-thread runtime.
pub struct BlockingEvents {
    table: EventTable,
    handle: tokio::runtime::Handle,
}

impl BlockingEvents {
    /// The sink of `table`, running on `handle`.
    pub fn new(table: EventTable, handle: tokio::runtime::Handle) -> BlockingEvents {
        BlockingEvents { table, handle }
    }

    fn run<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, ClusterError>>,
    ) -> Result<T, huren_store::StoreError> {
        crate::node::block_on(&self.handle, fut)
    }
}

impl huren_store::EventSink for BlockingEvents {
    fn append(
        &self,
        stream: &str,
        seq: u32,
        events: &[serde_json::Value],
    ) -> Result<bool, huren_store::StoreError> {
        let seq = i32::try_from(seq)
            .map_err(|_| huren_store::StoreError::Shared(format!("event number {seq}")))?;
        self.run(self.table.append(stream, seq, events))
            .map(|a| a == Appended::Recorded)
    }

    fn stream(
        &self,
        stream: &str,
        after: u32,
    ) -> Result<Vec<serde_json::Value>, huren_store::StoreError> {
        let after = i32::try_from(after).unwrap_or(i32::MAX);
        Ok(self
            .run(self.table.stream(stream, after))?
            .into_iter()
            .map(|e| e.event)
            .collect())
    }

    fn all(&self) -> Result<Vec<(String, serde_json::Value)>, huren_store::StoreError> {
        Ok(self
            .run(self.table.all())?
            .into_iter()
            .map(|e| (e.stream, e.event))
            .collect())
    }

    fn lengths(&self) -> Result<Vec<(String, u32)>, huren_store::StoreError> {
        Ok(self
            .run(self.table.lengths())?
            .into_iter()
            .map(|(s, n)| (s, n.max(0) as u32))
            .collect())
    }

    fn try_lease(&self, key: &str) -> Result<Option<huren_store::Lease>, huren_store::StoreError> {
        Ok(self
            .run(self.table.try_lease(key))?
            .map(huren_store::Lease::new))
    }
}

/// The advisory-lock key of a lease: the first eight bytes of the BLAKE3 hash of its name.
fn lock_key(name: &str) -> i64 {
    let h = huren_model::ContentHash::of(name.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    i64::from_be_bytes(b)
}

fn rows(rows: Vec<tokio_postgres::Row>) -> Result<Vec<StoredEvent>, ClusterError> {
    rows.into_iter()
        .map(|r| {
            Ok(StoredEvent {
                stream: r.try_get(0)?,
                seq: r.try_get(1)?,
                node: r.try_get(2)?,
                event: serde_json::from_str(r.try_get::<_, &str>(3)?)
                    .map_err(|e| ClusterError::Corrupt(format!("event: {e}")))?,
            })
        })
        .collect()
}

/// What the event follower reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// `stream` of `table` has events up to `seq` (at least).
    Appended {
        /// The table.
        table: Table,
        /// The stream.
        stream: String,
        /// Its newest event's number.
        seq: i32,
    },
    /// Notifications may have been missed (the first connection, or one regained): reload.
    Resync,
}

/// Follows every node's appends: a task on its own connection `LISTEN`s on
/// [`EVENTS_CHANNEL`] and sends each notification to `tx` as a [`Notice`]. After every
/// (re)connection it sends [`Notice::Resync`] first; a lost connection is retried every
/// second. It ends when `tx`'s receiver is dropped.
pub fn follow_events(
    config: crate::PgConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    tx: mpsc::UnboundedSender<Notice>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match listen(&config, &tls, &tx).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "event feed lost; reconnecting in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
}

/// One session: `Ok` when the receiver is gone, `Err` when the connection is.
async fn listen(
    config: &crate::PgConfig,
    tls: &Option<Arc<rustls::ClientConfig>>,
    out: &mpsc::UnboundedSender<Notice>,
) -> Result<(), ClusterError> {
    let mut config = config.clone();
    config.connect_timeout(Duration::from_secs(10));
    let (ntx, mut nrx) = mpsc::unbounded_channel();
    let (client, driver) = match tls {
        Some(t) => {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new((**t).clone());
            let (client, connection) = config.connect(tls).await?;
            (client, crate::store::drive(connection, ntx))
        }
        None => {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            (client, crate::store::drive(connection, ntx))
        }
    };
    let _stop = crate::store::AbortOnDrop(driver);
    client
        .batch_execute(&format!("LISTEN {EVENTS_CHANNEL}"))
        .await?;
    if out.send(Notice::Resync).is_err() {
        return Ok(());
    }
    loop {
        let next = tokio::time::timeout(Duration::from_secs(1), nrx.recv()).await;
        if out.is_closed() {
            return Ok(());
        }
        match next {
            Err(_) => continue,
            Ok(None) => return Err(ClusterError::CommitFailed("event feed closed".into())),
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(Some(Ok(payload))) => {
                if let Some(n) = parse_notice(&payload) {
                    if out.send(n).is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// `table:stream:seq` (the stream may hold `:`; the table and the number may not).
fn parse_notice(payload: &str) -> Option<Notice> {
    let (table, rest) = payload.split_once(':')?;
    let (stream, seq) = rest.rsplit_once(':')?;
    Some(Notice::Appended {
        table: Table::of_name(table)?,
        stream: stream.to_string(),
        seq: seq.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_parse_and_table_names_round_trip() {
        for t in Table::ALL {
            assert_eq!(Table::of_name(t.name()), Some(t));
        }
        assert_eq!(
            parse_notice("alert_events:a-1:FX-ZX:3"),
            Some(Notice::Appended {
                table: Table::Alerts,
                stream: "a-1:FX-ZX".into(),
                seq: 3
            })
        );
        assert_eq!(parse_notice("nope:x:1"), None);
        assert_eq!(parse_notice("task_events:x:one"), None);
        assert_eq!(parse_notice("garbage"), None);
    }
}
