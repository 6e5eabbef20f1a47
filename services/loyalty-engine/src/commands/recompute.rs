//! `kizuna recompute`: `engine::recompute` over every customer, with a progress bar.

use crate::engine::Core;
use crate::engine::recompute::{self, RecomputeReport};

pub async fn run(core: &Core, batch: i64) -> anyhow::Result<RecomputeReport> {
    let now = core.clock.now(&core.pool).await?;
    let bar = super::progress(0, "recomputing");
    let report = recompute::run(core, now, batch, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await?;
    bar.finish_and_clear();
    Ok(report)
}
