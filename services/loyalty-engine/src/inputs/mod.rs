//! Input events at the edge: raw bytes (protobuf JSON or binary; or binary in Schema Registry
//! framing, `frame`) decoded against the `kizuna.v1` contracts, then validated into domain
//! events once. Past this module, an invalid event cannot be represented. Used by ingest,
//! backfill, the dry-run API and the gateway. Pure: fetching a registered schema is
//! `crate::registry`'s job.

pub mod ce_headers;
pub mod decode;
pub mod frame;
pub mod validate;
