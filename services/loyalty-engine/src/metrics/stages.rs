//! Where a batch's time goes: laps of its stages, observed into the stage histogram.

use super::Metrics;

/// Times the stages of a batch into `kizuna_batch_stage_seconds{stage}`.
#[derive(Debug)]
pub struct Stages<'a> {
    metrics: &'a Metrics,
    last: std::time::Instant,
}

impl<'a> Stages<'a> {
    pub fn start(metrics: &'a Metrics) -> Self {
        Self {
            metrics,
            last: std::time::Instant::now(),
        }
    }

    pub fn lap(&mut self, stage: &'static str) {
        let now = std::time::Instant::now();
        self.metrics
            .batch_stage(stage, (now - self.last).as_secs_f64());
        self.last = now;
    }
}
