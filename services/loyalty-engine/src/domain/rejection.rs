//! Why an input message was refused. Every refusal goes to the dead-letter topic with its raw
//! bytes and these reasons as headers, and is counted by reason.

use std::fmt;

/// A low-cardinality reason, used as a metric label and in the `kizuna-dlq-reason` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    Oversized,
    EmptyPayload,
    UnsupportedContentType,
    UnknownSchemaVersion,
    Unparseable,
    WrongType,
    UnknownEnum,
    MissingField,
    InvalidId,
    InvalidCustomerId,
    KeyMismatch,
    AmountOutOfRange,
    CurrencyMismatch,
    InvalidCurrency,
    FutureTimestamp,
    InvalidTimestamp,
    TooOld,
    ScoreOutOfRange,
    InvalidField,
    /// The message came from a topic the engine did not subscribe to.
    UnknownTopic,
    /// Applying the message failed every time (found by splitting a failing batch).
    ProcessingFailed,
    /// A registry-framed message whose schema id the Schema Registry does not know.
    UnknownSchemaId,
    /// A registry-framed message whose schema is not the topic's `kizuna.v1` message (another
    /// message, another package, not a protobuf schema).
    WrongSchema,
    /// A registry-framed message, and no Schema Registry is configured (`registry.url`).
    RegistryNotConfigured,
}

impl RejectReason {
    pub const ALL: [RejectReason; 24] = [
        RejectReason::Oversized,
        RejectReason::EmptyPayload,
        RejectReason::UnsupportedContentType,
        RejectReason::UnknownSchemaVersion,
        RejectReason::Unparseable,
        RejectReason::WrongType,
        RejectReason::UnknownEnum,
        RejectReason::MissingField,
        RejectReason::InvalidId,
        RejectReason::InvalidCustomerId,
        RejectReason::KeyMismatch,
        RejectReason::AmountOutOfRange,
        RejectReason::CurrencyMismatch,
        RejectReason::InvalidCurrency,
        RejectReason::FutureTimestamp,
        RejectReason::InvalidTimestamp,
        RejectReason::TooOld,
        RejectReason::ScoreOutOfRange,
        RejectReason::InvalidField,
        RejectReason::UnknownTopic,
        RejectReason::ProcessingFailed,
        RejectReason::UnknownSchemaId,
        RejectReason::WrongSchema,
        RejectReason::RegistryNotConfigured,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Oversized => "oversized",
            RejectReason::EmptyPayload => "empty_payload",
            RejectReason::UnsupportedContentType => "unsupported_content_type",
            RejectReason::UnknownSchemaVersion => "unknown_schema_version",
            RejectReason::Unparseable => "unparseable",
            RejectReason::WrongType => "wrong_type",
            RejectReason::UnknownEnum => "unknown_enum",
            RejectReason::MissingField => "missing_field",
            RejectReason::InvalidId => "invalid_id",
            RejectReason::InvalidCustomerId => "invalid_customer_id",
            RejectReason::KeyMismatch => "key_mismatch",
            RejectReason::AmountOutOfRange => "amount_out_of_range",
            RejectReason::CurrencyMismatch => "currency_mismatch",
            RejectReason::InvalidCurrency => "invalid_currency",
            RejectReason::FutureTimestamp => "future_timestamp",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::TooOld => "too_old",
            RejectReason::ScoreOutOfRange => "score_out_of_range",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::UnknownTopic => "unknown_topic",
            RejectReason::ProcessingFailed => "processing_failed",
            RejectReason::UnknownSchemaId => "unknown_schema_id",
            RejectReason::WrongSchema => "wrong_schema",
            RejectReason::RegistryNotConfigured => "registry_not_configured",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: the reason, plus a detail for the dead-letter header. The detail may quote the
/// payload, so it goes to the dead-letter topic only, never to logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}
