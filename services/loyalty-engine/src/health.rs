//! Liveness and readiness facts shared by the ingest loop, the relay and `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Clone)]
pub struct Health {
    ingest_ok: Arc<AtomicBool>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            ingest_ok: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl Health {
    /// False while batches fail to commit (database down, for example).
    pub fn set_ingest_ok(&self, ok: bool) {
        self.ingest_ok.store(ok, Ordering::SeqCst);
    }

    pub fn ingest_ok(&self) -> bool {
        self.ingest_ok.load(Ordering::SeqCst)
    }
}
