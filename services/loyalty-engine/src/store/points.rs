//! Points in the store: the columns of `customers` that project a customer's points (written
//! with the row, read for the liability), and `points_redemptions`, the first answer of every
//! redemption or cancel request under its idempotency key.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;

use crate::domain::points::{Balances, PointsBook, PointsRules};

/// A customer's points as the `customers` columns hold them: folded at the moment the state
/// was evaluated (`PointsBook::as_of`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Columns {
    pub available: i64,
    pub pending: i64,
    pub debt: i64,
    /// `points_expiring`: the open lots' remaining points by due date, as JSON text, or None
    /// when no open lot has a due date.
    pub expiring: Option<String>,
}

/// One entry of `points_expiring`: `[due (Unix seconds), points]` (integers: cheaper to write
/// on every customer write than RFC 3339 dates).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Due(i64, i64);

impl Columns {
    /// The columns of `book` under `rules` (zero when the programme has no points or the book
    /// was never evaluated: nothing is folded then, so customers cost nothing extra).
    pub fn of(book: &PointsBook, rules: Option<&PointsRules>) -> Self {
        let (Some(rules), Some(now)) = (rules, book.as_of) else {
            return Self::default();
        };
        if book.movements.is_empty() {
            return Self::default();
        }
        // The time step's own fold at `as_of` when it is at hand (every evaluation leaves it);
        // folding again otherwise.
        let balances = match &book.balances {
            Some(b) => b.clone(),
            None => Balances::of(&book.fold(rules, now)),
        };
        let due: Vec<Due> = balances
            .dues
            .iter()
            .map(|(at, points)| Due(at.timestamp(), *points))
            .collect();
        Self {
            available: balances.available,
            pending: balances.pending,
            debt: balances.debt,
            expiring: if due.is_empty() {
                None
            } else {
                serde_json::to_string(&due).ok()
            },
        }
    }
}

/// What the idempotency table says about a request key.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The key is new: this transaction holds it until it commits (or rolls back).
    New,
    /// A request with this key was answered before.
    Answered {
        request: serde_json::Value,
        status: u16,
        answer: String,
    },
}

/// Claims `(customer, operation, key)` for `request`. A concurrent transaction holding the
/// same key makes this wait until it ends; if it committed, its answer is returned.
pub async fn claim(
    conn: &mut PgConnection,
    customer_id: &str,
    operation: &str,
    key: &str,
    request: &serde_json::Value,
) -> anyhow::Result<Claim> {
    let inserted = sqlx::query(
        "INSERT INTO points_redemptions (customer_id, operation, idempotency_key, request)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(customer_id)
    .bind(operation)
    .bind(key)
    .bind(request)
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Claim::New);
    }
    let row: Option<(serde_json::Value, Option<i32>, Option<String>)> = sqlx::query_as(
        "SELECT request, status, answer FROM points_redemptions
         WHERE customer_id = $1 AND operation = $2 AND idempotency_key = $3",
    )
    .bind(customer_id)
    .bind(operation)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some((request, Some(status), Some(answer))) => Ok(Claim::Answered {
            request,
            status: u16::try_from(status).unwrap_or(500),
            answer,
        }),
        _ => anyhow::bail!("idempotency key {key:?} is claimed without an answer"),
    }
}

/// Stores the answer of a claimed key (in the claiming transaction).
pub async fn store_answer(
    conn: &mut PgConnection,
    customer_id: &str,
    operation: &str,
    key: &str,
    status: u16,
    answer: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE points_redemptions SET status = $4, answer = $5
         WHERE customer_id = $1 AND operation = $2 AND idempotency_key = $3",
    )
    .bind(customer_id)
    .bind(operation)
    .bind(key)
    .bind(i32::from(status))
    .bind(answer)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Points outstanding over all customers, as last written with their rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outstanding {
    pub customers: i64,
    pub available: i64,
    pub pending: i64,
    pub debt: i64,
    /// (days, points due to expire within that many days of `now`), for each window asked.
    pub expiring: Vec<(i64, i64)>,
}

/// The liability's expiry windows, in days.
pub const EXPIRY_WINDOWS: [i64; 3] = [30, 90, 365];

/// Sums the points columns; `windows` are the expiry horizons in days.
pub async fn outstanding(
    pool: &sqlx::PgPool,
    now: DateTime<Utc>,
    windows: &[i64],
) -> anyhow::Result<Outstanding> {
    let (customers, available, pending, debt): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE points_available > 0 OR points_pending > 0 OR points_debt > 0),
                COALESCE(sum(points_available), 0)::bigint,
                COALESCE(sum(points_pending), 0)::bigint,
                COALESCE(sum(points_debt), 0)::bigint
         FROM customers",
    )
    .fetch_one(pool)
    .await?;
    let horizons: Vec<DateTime<Utc>> = windows.iter().map(|d| now + Duration::days(*d)).collect();
    let sums: Vec<(i64,)> = sqlx::query_as(
        "SELECT COALESCE(sum((e->>1)::bigint) FILTER (WHERE to_timestamp((e->>0)::bigint) <= h), 0)::bigint
         FROM unnest($1::timestamptz[]) WITH ORDINALITY AS w(h, i)
         LEFT JOIN (SELECT e FROM customers c, jsonb_array_elements(c.points_expiring) e
                    WHERE c.points_expiring IS NOT NULL) x ON true
         GROUP BY w.i ORDER BY w.i",
    )
    .bind(&horizons)
    .fetch_all(pool)
    .await?;
    Ok(Outstanding {
        customers,
        available,
        pending,
        debt,
        expiring: windows.iter().zip(sums).map(|(d, (n,))| (*d, n)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::apply::{Changes, apply};
    use crate::domain::programme::Programme;
    use crate::domain::testkit::{cid, day, purchase};

    fn with_points() -> Programme {
        let text = format!(
            "{}\n[points]\ncost_per_point_minor = 2\n[points.earn]\npending_days = 14\n[points.expiry]\nmode = \"rolling\"\nmonths = 12\n",
            include_str!("../../config/programme.toml")
        );
        Programme::parse(&text).expect("a programme with points")
    }

    /// A customer after `n` purchases of 10,000 JPY, ten days apart, evaluated at the last.
    fn customer(programme: &Programme, n: i64) -> crate::domain::state::CustomerState {
        let events: Vec<_> = (0..n)
            .map(|i| purchase(&format!("e{i}"), "c", 10_000, day(i * 10)))
            .collect();
        let changes = Changes {
            events: events.iter().collect(),
            referred: Vec::new(),
        };
        apply(
            &cid("c"),
            None,
            &changes,
            programme,
            None,
            day((n - 1) * 10),
        )
        .0
    }

    #[test]
    fn the_columns_are_the_fold_at_the_evaluation() {
        let programme = with_points();
        let rules = programme.points_rules().expect("points");
        let state = customer(&programme, 3);
        let columns = Columns::of(&state.points, Some(rules));
        let folded = state.points.fold(rules, day(20));
        assert_eq!(
            (columns.available, columns.pending, columns.debt),
            (folded.available, folded.pending, folded.debt)
        );
        // Orders at days 0 and 10 are past their 14 days of pending at day 20; day 20's is not.
        assert!(columns.available > 0 && columns.pending > 0, "{columns:?}");
        let due: Vec<Due> =
            serde_json::from_str(columns.expiring.as_deref().unwrap_or("[]")).expect("JSON");
        assert_eq!(
            due.iter().map(|d| d.1).sum::<i64>(),
            columns.available + columns.pending,
            "every open lot is due some day (rolling expiry)"
        );
        assert_eq!(Columns::of(&state.points, None), Columns::default());
    }

    /// What the columns cost per customer write, against the domain's work for one event
    /// (`cargo test --release -p kizuna-loyalty-engine --lib columns_cost -- --ignored --nocapture`).
    #[test]
    #[ignore = "a measurement"]
    fn columns_cost() {
        let programme = with_points();
        let rules = programme.points_rules().expect("points");
        for n in [5, 50, 200] {
            let state = customer(&programme, n);
            let extra = purchase("next", "c", 10_000, day(n * 10));
            let rounds = 2_000;
            let started = std::time::Instant::now();
            for _ in 0..rounds {
                let changes = Changes {
                    events: vec![&extra],
                    referred: Vec::new(),
                };
                std::hint::black_box(apply(
                    &cid("c"),
                    Some(state.clone()),
                    &changes,
                    &programme,
                    None,
                    day(n * 10),
                ));
            }
            let apply_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
            let started = std::time::Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(Columns::of(&state.points, Some(rules)));
            }
            let columns_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
            let started = std::time::Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(state.points.fold(rules, day(n * 10)));
            }
            let fold_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
            eprintln!("  of which the fold {fold_us:.1} µs");
            eprintln!(
                "{n} purchases: apply one event {apply_us:.1} µs, points columns {columns_us:.1} µs ({:.1}%)",
                100.0 * columns_us / apply_us
            );
        }
    }
}
