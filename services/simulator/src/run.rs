//! Drives a world into a sink: the event budget, the pace, the progress line and the summary.

use std::io::Write;
use std::time::{Duration, Instant};

use kizuna_proto::v1::PurchaseKind;
use kizuna_proto::v1::input_event::Event;

use crate::calendar::{Secs, rfc3339};
use crate::sink::Sink;
use crate::world::World;

#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Stop after this many events; 0: the whole history.
    pub max_events: u64,
    /// Events per second; 0: as fast as possible.
    pub rate: f64,
    /// Print a progress line on stderr.
    pub progress: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub events: u64,
    pub purchases: u64,
    pub refunds: u64,
    pub ticket_updates: u64,
    pub survey_answers: u64,
    pub first_at: Option<Secs>,
    pub last_at: Option<Secs>,
    /// The whole history was sent (otherwise the event budget cut it short).
    pub complete: bool,
    pub elapsed: Duration,
}

impl Summary {
    fn count(&mut self, event: &Event, at: Secs) {
        self.events += 1;
        match event {
            Event::Purchase(p) if p.kind == PurchaseKind::Refund as i32 => self.refunds += 1,
            Event::Purchase(_) => self.purchases += 1,
            Event::SupportTicket(_) => self.ticket_updates += 1,
            Event::SurveyResponse(_) => self.survey_answers += 1,
        }
        self.first_at.get_or_insert(at);
        self.last_at = Some(at);
    }

    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The time the ground truth is valid at: the end of the history when it was all sent,
    /// the last event sent otherwise.
    pub fn as_of(&self, world: &World) -> Secs {
        if self.complete {
            world.end()
        } else {
            self.last_at.unwrap_or(world.start())
        }
    }
}

fn progress(summary: &Summary, started: Instant) {
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let at = summary.last_at.map(rfc3339).unwrap_or_default();
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\rkizuna-sim: {} events, {:.0}/s, simulated time {at}   ",
        summary.events,
        summary.events as f64 / elapsed
    );
    let _ = err.flush();
}

/// Sends the world's events to `sink` in time order, at `options.rate`.
pub async fn run(
    world: &mut World,
    sink: &mut Sink,
    options: RunOptions,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let interval = (options.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / options.rate));
    let mut summary = Summary::default();
    let mut shown = started;
    loop {
        if options.max_events > 0 && summary.events >= options.max_events {
            break;
        }
        let Some(event) = world.next() else {
            summary.complete = true;
            break;
        };
        summary.count(&event.event, event.at);
        sink.send(event).await?;
        if let Some(interval) = interval {
            // An absolute schedule: a late wake-up is made up by the following events.
            let due = started + interval.mul_f64(summary.events as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
        }
        if options.progress && summary.events % 512 == 0 {
            let now = Instant::now();
            if now.duration_since(shown) >= Duration::from_millis(250) {
                shown = now;
                progress(&summary, started);
            }
        }
    }
    sink.finish().await?;
    summary.elapsed = started.elapsed();
    if options.progress {
        progress(&summary, started);
        eprintln!();
    }
    Ok(summary)
}
