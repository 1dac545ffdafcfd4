//! The cluster back end against real servers (tests/peers/*.sh): PostgreSQL 15 and SeaweedFS's
//! S3 server. Outside CI a missing server skips a test with a message; under `CI=true` it fails.

mod audit;
mod blobs;
mod conformance;
mod copy;
mod events;
mod migrate;
mod nodes;
mod streams;
mod support;
mod sweep;
mod tls;
mod workflow;
