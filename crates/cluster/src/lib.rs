//! huren's cluster back end (issue 19), first slice: blobs on an S3-compatible object store
//! ([`S3Blobs`]), the same blob semantics over a plain directory ([`DirBlobs`], for the
//! conformance suite), the PostgreSQL schema and its migrations ([`migrate`]), and the
//! `[store]` / `[store.s3]` configuration ([`StoreConfig`]). Not wired into `huren serve` yet;
//! see `docs/cluster.md`.

mod audit;
mod blobs;
mod config;
mod copy;
mod demo;
mod events;
mod node;
mod pg;
mod s3;
mod store;
mod sweep;

pub use audit::{
    audit_of_patient, checkpoint, spawn_checkpoints, verify_audit, AuditCheck, Checkpoint,
    ClusterAudit, CHECKPOINT_LOCK,
};
pub use blobs::{blob_key, BlobBackend, BlobError, DirBlobs, Put};
pub use config::{Backend, ClusterConfig, ConfigError, S3Section, S3Settings, StoreConfig};
pub use copy::{copy_store, CopyReport};
/// A pool of PostgreSQL connections (deadpool-postgres).
pub use deadpool_postgres::Pool as PgPool;
pub use demo::{demo_once, demo_state, DemoState, DEMO_LOCK};
pub use events::{
    follow_events, Appended, BlockingEvents, EventTable, Notice, StoredEvent, Table, EVENTS_CHANNEL,
};
pub use node::{follow_into_store, store_error, NodeAudit, NodeReports};
pub use pg::{
    migrate, migrate_with, pool, pool_with, MigrateError, Migration, MIGRATIONS, MIGRATION_LOCK,
};
pub use s3::S3Blobs;
pub use store::{
    ClusterError, ClusterOptions, ClusterStore, ClusterVerify, CHANGES_CHANNEL, IDENTITY_LOCK,
};
pub use sweep::{
    spawn_sweeper, sweep, SweepReport, DEFAULT_GRACE, MIN_GRACE, SWEEPER_LOCK, SWEEP_LOCK,
};
/// The PostgreSQL connection settings `[store] postgres` parses into.
pub use tokio_postgres::Config as PgConfig;
