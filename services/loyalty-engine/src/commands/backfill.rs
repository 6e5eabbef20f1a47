//! `kizuna backfill FILE|-`: ingests `InputEvent` JSON lines through the same decode, domain and
//! store code as the Kafka path, in batches, with a progress bar. Bad lines are reported with
//! their line numbers and skipped. Progress is stored like consumer offsets (source
//! `backfill:NAME`, one position per partition), so an interrupted backfill of the same file
//! resumes where it stopped, and event ids are deduplicated as always.

use std::io::BufRead;

use chrono::Utc;

use crate::domain::rejection::Rejection;
use crate::engine::batch::{Content, Incoming, Processor, Raw};
use crate::inputs::ce_headers::CeHeaders;
use crate::inputs::decode::decode_input_line;
use crate::inputs::validate::{Limits, validate};
use crate::partitioner::partition_for;

#[derive(Debug, Clone)]
pub struct BackfillOptions {
    /// Names the source in the offsets table (`backfill:NAME`).
    pub source: String,
    pub batch: usize,
    /// Partitions of the input topics: customers get the home partition Kafka would give them.
    pub partitions: i32,
}

#[derive(Debug, Default)]
pub struct BackfillReport {
    pub lines: u64,
    pub applied: u64,
    pub duplicates: u64,
    /// Lines an earlier run of the same source already applied.
    pub already_done: u64,
    pub outputs: u64,
    pub bad: Vec<(u64, Rejection)>,
}

pub async fn run(
    processor: &Processor,
    limits: &Limits,
    reader: impl BufRead,
    total_bytes: Option<u64>,
    options: &BackfillOptions,
) -> anyhow::Result<BackfillReport> {
    let bar = match total_bytes {
        Some(total) => super::progress(total, "backfilling bytes"),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let topic = format!("backfill:{}", options.source);
    let mut report = BackfillReport::default();
    let mut batch = Vec::with_capacity(options.batch);
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        let line_no = i as u64 + 1;
        report.lines = line_no;
        bar.inc(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        match decode_input_line(&line).and_then(|w| validate(&w, None, limits, Utc::now())) {
            Ok(event) => batch.push(Incoming {
                topic: topic.clone(),
                partition: partition_for(
                    event.meta.customer_id.as_str().as_bytes(),
                    options.partitions,
                ),
                offset: i64::try_from(line_no).unwrap_or(i64::MAX),
                raw: Raw {
                    key: None,
                    payload: line.into_bytes(),
                    content_type: Some(b"application/json".to_vec()),
                    ce_headers: CeHeaders::default(),
                    traceparent: None,
                },
                content: Content::Event(Box::new(event)),
            }),
            Err(rejection) => report.bad.push((line_no, rejection)),
        }
        if batch.len() >= options.batch {
            flush(processor, &mut batch, &mut report).await?;
        }
    }
    flush(processor, &mut batch, &mut report).await?;
    bar.finish_and_clear();
    Ok(report)
}

async fn flush(
    processor: &Processor,
    batch: &mut Vec<Incoming>,
    report: &mut BackfillReport,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let done = processor.process(batch, Utc::now()).await?;
    report.applied += done.applied as u64;
    report.duplicates += done.duplicates as u64;
    report.already_done += done.replayed as u64;
    report.outputs += done.outputs.len() as u64;
    batch.clear();
    Ok(())
}
