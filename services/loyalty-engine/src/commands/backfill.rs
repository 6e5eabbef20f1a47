//! `kizuna backfill FILE|-`: ingests `InputEvent` JSON lines through the same decode, domain and
//! store code as the Kafka path, in batches, with a progress bar. Bad lines are reported with
//! their line numbers and skipped. Progress is stored like consumer offsets (source
//! `backfill:NAME`, one position per partition), so an interrupted backfill of the same file
//! resumes where it stopped, and event ids are deduplicated as always.
//!
//! Old history is welcome: "too old for the ledger" (`ledger.retention_days`) is judged
//! against the backfill's own event-time clock, the newest event time of its input (of the
//! whole file, found by a first read; from stdin, of the lines read so far), not against the
//! wall clock, so ten years of orders load with the default retention. `--retention-clock
//! wall` judges against the wall clock instead, as the engine does. Either way an event older
//! than what the ledger pruning job has already deleted (`ledger_pruned`) is refused: it may
//! have been applied and pruned, and could not be recognised.

use std::io::BufRead;

use chrono::{DateTime, Utc};

use crate::domain::rejection::{RejectReason, Rejection};
use crate::engine::batch::{Content, Incoming, Processor, Raw};
use crate::inputs::ce_headers::CeHeaders;
use crate::inputs::decode::decode_input_line;
use crate::inputs::validate::{Limits, check_age, validate};
use crate::partitioner::partition_for;

/// What "too old for the ledger" is judged against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RetentionClock {
    /// The newest event time of the backfill's input.
    #[default]
    Backfill,
    /// The wall clock, as the engine does.
    Wall,
}

#[derive(Debug, Clone)]
pub struct BackfillOptions {
    /// Names the source in the offsets table (`backfill:NAME`).
    pub source: String,
    pub batch: usize,
    /// Partitions of the input topics: customers get the home partition Kafka would give them.
    pub partitions: i32,
    pub retention_clock: RetentionClock,
    /// The newest event time of the whole input when known beforehand (`newest_event_time`
    /// of a file); otherwise the newest read so far.
    pub newest: Option<DateTime<Utc>>,
}

/// The newest event time among the valid lines of an input (a first read of a file).
pub fn newest_event_time(
    limits: &Limits,
    reader: impl BufRead,
) -> std::io::Result<Option<DateTime<Utc>>> {
    let unbounded = Limits {
        max_age: None,
        ..limits.clone()
    };
    let now = Utc::now();
    let mut newest = None;
    for line in reader.lines() {
        let line = line?;
        if let Ok(event) =
            decode_input_line(&line).and_then(|w| validate(&w, None, &unbounded, now))
        {
            newest = newest.max(Some(event.meta.occurred_at));
        }
    }
    Ok(newest)
}

/// The age rules of one backfill: the clock it judges against and the ledger's pruned horizon.
struct Age {
    max_age: Option<chrono::Duration>,
    clock: RetentionClock,
    newest: Option<DateTime<Utc>>,
    pruned_before: Option<DateTime<Utc>>,
}

impl Age {
    fn check(&mut self, occurred_at: DateTime<Utc>) -> Result<(), Rejection> {
        if let Some(pruned) = self.pruned_before
            && occurred_at < pruned
        {
            return Err(Rejection::new(
                RejectReason::TooOld,
                format!(
                    "occurred_at {occurred_at} is before {pruned}, up to which the ledger was pruned (ledger.retention_days): it may have been applied already and could not be deduplicated"
                ),
            ));
        }
        let reference = match self.clock {
            RetentionClock::Wall => Utc::now(),
            RetentionClock::Backfill => {
                self.newest = self.newest.max(Some(occurred_at));
                self.newest.unwrap_or(occurred_at)
            }
        };
        check_age(occurred_at, self.max_age, reference)
    }
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
    // The age is checked here, against the backfill's clock, not in `validate`.
    let unbounded = Limits {
        max_age: None,
        ..limits.clone()
    };
    let mut age = Age {
        max_age: limits.max_age,
        clock: options.retention_clock,
        newest: options.newest,
        pruned_before: crate::store::ledger::pruned_before(&processor.core.pool).await?,
    };
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
        let checked = decode_input_line(&line)
            .and_then(|w| validate(&w, None, &unbounded, Utc::now()))
            .and_then(|event| age.check(event.meta.occurred_at).map(|()| event));
        match checked {
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

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
            .single()
            .expect("date")
    }

    fn age(clock: RetentionClock, newest: Option<DateTime<Utc>>) -> Age {
        Age {
            max_age: Some(Duration::days(1095)),
            clock,
            newest,
            pruned_before: None,
        }
    }

    #[test]
    fn from_stdin_the_clock_is_the_newest_event_read_so_far() {
        let mut a = age(RetentionClock::Backfill, None);
        assert!(a.check(day(2016, 1, 1)).is_ok());
        assert!(a.check(day(2020, 1, 1)).is_ok());
        // Now more than three years after 2016-06: too old.
        let refused = a.check(day(2016, 6, 1)).expect_err("too old");
        assert_eq!(refused.reason, RejectReason::TooOld);
        assert!(a.check(day(2017, 6, 1)).is_ok());
    }

    #[test]
    fn a_file_is_judged_against_its_newest_event_from_the_first_line() {
        let mut a = age(RetentionClock::Backfill, Some(day(2020, 1, 1)));
        assert!(a.check(day(2016, 6, 1)).is_err());
        assert!(a.check(day(2017, 6, 1)).is_ok());
        let mut wall = age(RetentionClock::Wall, Some(day(2020, 1, 1)));
        assert!(wall.check(day(2017, 6, 1)).is_err(), "ten years before now");
    }

    #[test]
    fn events_before_the_pruned_horizon_are_refused_whatever_the_clock() {
        let mut a = Age {
            pruned_before: Some(day(2019, 1, 1)),
            ..age(RetentionClock::Backfill, None)
        };
        let refused = a.check(day(2018, 12, 31)).expect_err("pruned");
        assert!(refused.detail.contains("pruned"), "{}", refused.detail);
        assert!(a.check(day(2019, 1, 1)).is_ok());
    }
}
