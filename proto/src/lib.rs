//! Kizuna's event contracts, package `kizuna.v1`.
//!
//! The `.proto` files next to this crate are the single source of truth. This crate holds the
//! prost types generated from them, with serde impls that follow the protobuf JSON mapping
//! (pbjson), so `serde_json` reads and writes exactly what other protobuf runtimes do.

#![allow(clippy::all, missing_debug_implementations)]

/// Generated types of package `kizuna.v1`.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/kizuna.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/kizuna.v1.serde.rs"));
}

pub use pbjson_types::Timestamp;

/// The source of `kizuna/v1/inputs.proto`, as registered in a Schema Registry.
pub const INPUTS_PROTO: &str = include_str!("../kizuna/v1/inputs.proto");

/// The source of `kizuna/v1/outputs.proto`, as registered in a Schema Registry for the output
/// topics (`kizuna topics create` with `outputs.format = "confluent-protobuf"`).
pub const OUTPUTS_PROTO: &str = include_str!("../kizuna/v1/outputs.proto");

/// The schema version carried by every Kizuna message (`ce_type` prefix, `ce_dataschema`).
pub const SCHEMA_VERSION: &str = "kizuna.v1";

/// Base of the CloudEvents `dataschema` (Kafka header `ce_dataschema`) of every output: the
/// file that defines the message, then `#` and the message's full protobuf name, which is also
/// its `ce_type`. Stable: `kizuna.v1` only grows (`buf breaking` in CI), and a `kizuna.v2` would
/// live in another file, so another URI.
pub const DATASCHEMA_BASE: &str =
    "https://github.com/kizuna-loyalty/kizuna/blob/main/proto/kizuna/v1/outputs.proto#";

/// The `dataschema` of an output of this `ce_type` (a full message name such as
/// `kizuna.v1.TierChanged`).
pub fn dataschema(ce_type: &str) -> String {
    format!("{DATASCHEMA_BASE}{ce_type}")
}

/// `content-type` of the default wire format: the protobuf JSON mapping.
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// `content-type` of binary protobuf payloads.
pub const CONTENT_TYPE_PROTOBUF: &str = "application/x-protobuf";

/// CloudEvents `ce_type` values of the outputs.
pub mod ce_type {
    pub const TIER_CHANGED: &str = "kizuna.v1.TierChanged";
    pub const TIER_WILL_DOWNGRADE: &str = "kizuna.v1.TierWillDowngrade";
    pub const CHURN_RISK_CHANGED: &str = "kizuna.v1.ChurnRiskChanged";
    pub const SEGMENT_CHANGED: &str = "kizuna.v1.SegmentChanged";
    pub const POINTS_CHANGED: &str = "kizuna.v1.PointsChanged";
    pub const POINTS_WILL_EXPIRE: &str = "kizuna.v1.PointsWillExpire";
    /// The receipt of an erasure (topic `loyalty.privacy`).
    pub const CUSTOMER_ERASED: &str = "kizuna.v1.CustomerErased";
    /// Webhook delivery stopped for a subscription (topic `kizuna.webhooks`).
    pub const WEBHOOK_SUBSCRIPTION_DISABLED: &str = "kizuna.v1.WebhookSubscriptionDisabled";
    /// An input the engine refused, raw bytes unchanged (topic `kizuna.dead-letter`).
    pub const DEAD_LETTER: &str = "kizuna.v1.DeadLetter";
}
