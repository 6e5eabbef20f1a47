//! Input events at the edge: raw bytes (protobuf JSON or binary) decoded against the
//! `kizuna.v1` contracts, then validated into domain events once. Past this module, an invalid
//! event cannot be represented. Used by ingest, backfill, the dry-run API and the gateway.

pub mod decode;
pub mod validate;
