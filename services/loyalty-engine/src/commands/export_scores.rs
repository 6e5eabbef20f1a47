//! `kizuna export-scores --as-of TIME [--horizon-days N]`: one CSV row per customer with
//! P(alive), expected purchases and CLV over the horizon, churn risk and level, tier and
//! segment, and the points (available, pending, debt and the balance; empty when the programme
//! has no points), and the purchase model that scored (`bgnbd`, `pareto-nbd`, `mbgnbd`; empty
//! without a fitted model), computed as of the time given.

use std::io::Write;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::domain::churn::{self, Model};
use crate::domain::metrics::Metrics;
use crate::domain::programme::Programme;
use crate::domain::segment::segment;
use crate::store::customers;

pub const HEADER: [&str; 13] = [
    "customer_id",
    "p_alive",
    "expected_purchases",
    "clv",
    "churn_risk",
    "churn_level",
    "tier",
    "segment",
    "points_available",
    "points_pending",
    "points_debt",
    "points_balance",
    "model",
];

fn num(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.6}")).unwrap_or_default()
}

/// Writes the CSV to `out`; returns the number of rows.
pub async fn run(
    pool: &PgPool,
    programme: &Programme,
    model: Option<&Model>,
    as_of: DateTime<Utc>,
    horizon_days: Option<u32>,
    out: impl Write,
) -> anyhow::Result<u64> {
    let mut rules = programme.churn.clone();
    if let Some(h) = horizon_days {
        rules.horizon_days = h;
    }
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(HEADER)?;
    let total = customers::count(pool).await?;
    let bar = super::progress(u64::try_from(total).unwrap_or(0), "scoring");
    let mut rows = 0;
    customers::for_each_page(pool, 5_000, async |page| {
        for (state, _) in page {
            let m = Metrics::derive(&state.facts, programme, as_of);
            let a = churn::assess(&m, &rules, model);
            let level = churn::level(a.score, None, &rules);
            let (seg, _) = segment(&m, &programme.segments);
            let points = programme.points_rules().map(|rules| {
                let f = state.points.fold(rules, as_of);
                [
                    f.available,
                    f.pending,
                    f.debt,
                    f.balance(rules.earn.negative_balance),
                ]
                .map(|n| n.to_string())
            });
            let [available, pending, debt, balance] = points.unwrap_or_default();
            csv.write_record([
                state.customer_id.as_str(),
                &num(a.p_alive),
                &num(a.expected_purchases),
                &num(a.clv_minor),
                &format!("{:.6}", a.score),
                level.as_str(),
                state.tier(),
                seg.as_str(),
                &available,
                &pending,
                &debt,
                &balance,
                a.model.as_deref().unwrap_or_default(),
            ])?;
            rows += 1;
        }
        bar.inc(page.len() as u64);
        Ok(())
    })
    .await?;
    bar.finish_and_clear();
    csv.flush()?;
    Ok(rows)
}
