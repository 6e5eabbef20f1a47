//! Liveness and readiness facts shared by the ingest loop, the task supervisor and `/readyz`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct Health {
    ingest_ok: Arc<AtomicBool>,
    /// Tasks that ended while the engine was not stopping.
    ended: Arc<Mutex<Vec<&'static str>>>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            ingest_ok: Arc::new(AtomicBool::new(true)),
            ended: Arc::default(),
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

    /// A task of the engine ended while it should run: the instance is not ready any more.
    pub fn task_ended(&self, name: &'static str) {
        if let Ok(mut ended) = self.ended.lock() {
            ended.push(name);
        }
    }

    /// The tasks that ended while they should run.
    pub fn ended_tasks(&self) -> Vec<&'static str> {
        self.ended.lock().map(|e| e.clone()).unwrap_or_default()
    }
}
