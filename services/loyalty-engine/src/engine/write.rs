//! Writing evaluated customers: their rows, their outputs to the outbox and the output log, in
//! the caller's transaction. Shared by ingest, the sweeper, overrides and recompute.

use std::collections::HashMap;

use sqlx::PgConnection;

use crate::domain::metrics::Metrics;
use crate::domain::output::{Cause, Output};
use crate::domain::state::CustomerState;
use crate::store::audit::{self, LoggedOutput};
use crate::store::customers::{self, Row};
use crate::store::outbox::{self, OutboxMessage};
use crate::store::points;
use crate::telemetry::TraceParent;

use super::Core;
use super::outputs::{self, Encoded};

/// A customer after evaluation.
#[derive(Debug)]
pub struct Evaluated {
    pub state: CustomerState,
    pub home_partition: i32,
    pub metrics: Metrics,
    pub outputs: Vec<Output>,
    /// The version of the stored row the evaluation started from (`customers::NO_ROW` for a
    /// customer without one).
    pub replaces: i64,
}

/// Writes customers whose rows the caller loaded and locked, then queues their outputs (after
/// `extra`, e.g. dead letters) in the outbox and the output log. Returns the encoded outputs.
pub async fn write(
    conn: &mut PgConnection,
    core: &Core,
    evaluated: &[Evaluated],
    extra: Vec<OutboxMessage>,
) -> anyhow::Result<Vec<Encoded>> {
    let stale = write_states(conn, core, evaluated.iter()).await?;
    if let Some(&i) = stale.first() {
        anyhow::bail!(
            "{} customer rows changed under their lock (the first: {})",
            stale.len(),
            evaluated[i].state.customer_id
        );
    }
    write_outputs(conn, core, evaluated, extra).await
}

/// Writes the customers' rows, each only if the stored row is still the version it was
/// evaluated from; returns the positions (in `evaluated`) of those that were not (see
/// `customers::upsert`), with their points columns folded at the evaluation's moment.
pub async fn write_states<'a>(
    conn: &mut PgConnection,
    core: &Core,
    evaluated: impl Iterator<Item = &'a Evaluated>,
) -> anyhow::Result<Vec<usize>> {
    let rules = core.programme.points_rules();
    let rows: Vec<Row<'_>> = evaluated
        .map(|e| Row {
            state: &e.state,
            home_partition: e.home_partition,
            metrics: &e.metrics,
            replaces: e.replaces,
            points: points::Columns::of(&e.state.points, rules),
        })
        .collect();
    customers::upsert(conn, &rows).await
}

/// Queues the outputs of written customers (after `extra`) in the outbox, and all but the points
/// outputs in the output log.
pub async fn write_outputs(
    conn: &mut PgConnection,
    core: &Core,
    evaluated: &[Evaluated],
    extra: Vec<OutboxMessage>,
) -> anyhow::Result<Vec<Encoded>> {
    write_outputs_traced(conn, core, evaluated, extra, &Traced::default()).await
}

/// The `traceparent`s of a batch's input events, by event id: each output an event caused
/// carries its event's (`engine::outputs::set_traceparent`). Empty (no allocation, no lookup)
/// when no input was traced.
#[derive(Debug, Default)]
pub struct Traced<'a>(HashMap<&'a str, TraceParent>);

impl<'a> Traced<'a> {
    pub fn of(events: impl Iterator<Item = (&'a str, TraceParent)>) -> Self {
        Self(events.collect())
    }

    fn of_cause(&self, cause: &Cause) -> Option<TraceParent> {
        if self.0.is_empty() {
            return None;
        }
        match cause {
            Cause::Event(id) => self.0.get(id.as_str()).copied(),
            Cause::Sweep | Cause::Operator(_) => None,
        }
    }
}

/// [`write_outputs`], each output carrying the `traceparent` of the event that caused it.
pub async fn write_outputs_traced(
    conn: &mut PgConnection,
    core: &Core,
    evaluated: &[Evaluated],
    extra: Vec<OutboxMessage>,
    traced: &Traced<'_>,
) -> anyhow::Result<Vec<Encoded>> {
    let mut encoded = Vec::new();
    for e in evaluated {
        for out in &e.outputs {
            let mut enc = outputs::encode(out, e.home_partition, &core.topics, &core.programme)?;
            if let Some(tp) = traced.of_cause(&out.cause) {
                outputs::set_traceparent(&mut enc.message, tp);
            }
            encoded.push(enc);
        }
    }
    outbox::insert(conn, extra.iter().chain(encoded.iter().map(|e| &e.message))).await?;
    let logged: Vec<LoggedOutput<'_>> = evaluated
        .iter()
        .flat_map(|e| e.outputs.iter())
        .zip(&encoded)
        // Points outputs are not logged: every purchase makes one, and the customer's points
        // book keeps each movement with its reason (the timeline and the console read it there).
        .filter_map(|(out, enc)| enc.json.as_ref().map(|json| (out, enc, json)))
        .map(|(out, enc, json)| LoggedOutput {
            customer_id: out.customer_id.as_str(),
            ce_id: uuid::Uuid::parse_str(&enc.ce_id).unwrap_or_default(),
            ce_type: enc.ce_type,
            caused_by: out.cause.as_str(),
            effective_at: out.effective_at,
            payload: json,
        })
        .collect();
    audit::log_outputs(conn, &logged).await?;
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::EventId;

    #[test]
    fn an_output_carries_the_traceparent_of_the_event_that_caused_it() {
        let tp = TraceParent {
            trace_id: [1; 16],
            span_id: [2; 8],
            flags: 1,
        };
        let traced = Traced::of([("evt-1", tp)].into_iter());
        let event = |id: &str| Cause::Event(EventId::parse(id, 64).expect("an id"));
        assert_eq!(traced.of_cause(&event("evt-1")), Some(tp));
        assert_eq!(traced.of_cause(&event("evt-2")), None);
        assert_eq!(traced.of_cause(&Cause::Sweep), None);
        assert_eq!(traced.of_cause(&Cause::Operator("ops".into())), None);
        assert_eq!(Traced::default().of_cause(&event("evt-1")), None);
    }
}
