//! The application layer: "evaluate these customers and write what changed", in the caller's
//! transaction. Ingest, the sweeper, the admin endpoints and `recompute` all go through it, and
//! it owns what they share: the clock (one "now"), the churn model in use, which input
//! partitions this instance owns, and how outputs become Kafka messages.
//!
//! Dependencies run one way: `domain` ← `store` ← `engine` ← {`ingest`, `sweeper`, `relay`,
//! `http`, `commands`}.

pub mod apply;
pub mod batch;
pub mod clock;
pub mod erasure;
pub mod model_cache;
pub mod outputs;
pub mod overrides;
pub mod ownership;
pub mod recompute;
pub mod sweep;
pub mod write;

use std::sync::Arc;

use sqlx::PgPool;

use crate::config::{Settings, Topics};
use crate::domain::programme::Programme;
use crate::metrics::Metrics;

use self::clock::EngineClock;
use self::model_cache::ModelCache;

/// A failure that says "try again": writers competed for the same rows. The caller retries
/// the same work later.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Contention(pub String);

/// What every component of a running engine shares.
#[derive(Debug, Clone)]
pub struct Core {
    pub pool: PgPool,
    pub metrics: Metrics,
    pub programme: Arc<Programme>,
    pub topics: Topics,
    pub clock: EngineClock,
    pub model: ModelCache,
    /// Partitions of the input topics: a new customer's home partition is the one Kafka's
    /// default partitioner gives their id among them.
    pub partitions: i32,
    /// Erasure: the keyed hash's key, and what a later event for an erased id does.
    pub erasure_key: Arc<erasure::ErasureKey>,
    pub privacy: crate::config::PrivacySettings,
}

impl Core {
    pub fn new(
        settings: &Settings,
        pool: PgPool,
        programme: Arc<Programme>,
        metrics: Metrics,
        partitions: i32,
    ) -> Self {
        Self {
            pool,
            metrics,
            programme,
            topics: settings.kafka.topics.clone(),
            clock: EngineClock::new(settings.clock, settings.kafka.group_id.clone()),
            model: ModelCache::default(),
            partitions,
            erasure_key: Arc::new(erasure::ErasureKey::new(&settings.privacy)),
            privacy: settings.privacy.clone(),
        }
    }
}
