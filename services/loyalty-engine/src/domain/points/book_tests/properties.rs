//! Order independence and the ledger invariant, over random event streams.

use super::*;

/// An input event for the property tests, on day `d` of the scenario.
#[derive(Debug, Clone)]
enum Ev {
    Buy {
        n: u8,
        amount: i64,
        d: i64,
    },
    Refund {
        n: u8,
        order: u8,
        amount: i64,
        d: i64,
    },
    Survey {
        n: u8,
        d: i64,
    },
    Redeem {
        n: u8,
        id: u8,
        points: i64,
        d: i64,
    },
    Cancel {
        n: u8,
        id: u8,
        d: i64,
    },
    /// "newbie"'s purchase naming "c1" as referrer (order "on1", 10,000 JPY).
    Referred {
        d: i64,
    },
    /// A refund of "newbie"'s order "on1".
    ReferredRefund {
        n: u8,
        amount: i64,
        d: i64,
    },
}

impl Ev {
    fn event(&self) -> DomainEvent {
        match *self {
            Ev::Buy { n, amount, d } => bought(
                &format!("b{n}"),
                &format!("o{n}"),
                amount,
                if n % 2 == 0 { "daily_goods" } else { "books" },
                day(d),
            ),
            Ev::Refund {
                n,
                order,
                amount,
                d,
            } => refund(&format!("r{n}"), "c1", &format!("o{order}"), amount, day(d)),
            Ev::Survey { n, d } => survey(
                &format!("s{n}"),
                "c1",
                crate::domain::event::SurveyScore::Nps(8),
                day(d),
            ),
            Ev::Redeem { n, id, points, d } => {
                redemption(&format!("x{n}"), &format!("k{id}"), points, None, day(d))
            }
            Ev::Cancel { n, id, d } => cancel(&format!("c{n}"), &format!("k{id}"), day(d)),
            Ev::Referred { d } => purchase_with(
                "n1",
                "newbie",
                "on1",
                day(d),
                PurchaseSpec {
                    referred_by: Some("c1"),
                    ..Default::default()
                },
            ),
            Ev::ReferredRefund { n, amount, d } => {
                refund(&format!("nr{n}"), "newbie", "on1", amount, day(d))
            }
        }
    }

    fn day(&self) -> i64 {
        match self {
            Ev::Buy { d, .. }
            | Ev::Refund { d, .. }
            | Ev::Survey { d, .. }
            | Ev::Redeem { d, .. }
            | Ev::Cancel { d, .. }
            | Ev::Referred { d }
            | Ev::ReferredRefund { d, .. } => *d,
        }
    }
}

/// Maybe a customer "c1" referred, who buys and may return some or all of the order, inside or
/// after the bonus's pending period (never more than the order in all).
fn referral_events() -> impl Strategy<Value = Vec<Ev>> {
    prop::option::of((
        0i64..400,
        prop::collection::vec((1i64..7_000, 0i64..30), 0..3),
    ))
    .prop_map(|referral| {
        let Some((d, refunds)) = referral else {
            return Vec::new();
        };
        let mut out = vec![Ev::Referred { d }];
        let mut left = 10_000;
        for (n, (amount, after)) in refunds.into_iter().enumerate() {
            let amount = amount.min(left);
            if amount > 0 {
                left -= amount;
                out.push(Ev::ReferredRefund {
                    n: n as u8,
                    amount,
                    d: d + after,
                });
            }
        }
        out
    })
}

/// Earning inputs: purchases (each order once, with its own event id), partial refunds of them
/// (possibly before the purchase arrives), survey answers, and maybe a referred customer's
/// purchase with refunds of it.
fn earning_events() -> impl Strategy<Value = Vec<Ev>> {
    let buys = prop::collection::vec((100i64..50_000, 0i64..400), 1..6).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(n, (amount, d))| Ev::Buy {
                n: n as u8,
                amount,
                d,
            })
            .collect::<Vec<_>>()
    });
    (
        buys,
        prop::collection::vec((0u8..6, 1i64..30_000, 0i64..30), 0..6),
        prop::collection::vec(0i64..400, 0..3),
        referral_events(),
    )
        .prop_map(|(buys, refunds, surveys, referral)| {
            let mut out = buys.clone();
            for (n, (order, amount, after)) in refunds.into_iter().enumerate() {
                // A refund after its order, of at most what is left of it.
                if let Some(Ev::Buy {
                    amount: paid, d, ..
                }) = buys.get(usize::from(order) % buys.len())
                {
                    let order = (usize::from(order) % buys.len()) as u8;
                    let refunded: i64 = out
                        .iter()
                        .filter_map(|e| match e {
                            Ev::Refund {
                                order: o, amount, ..
                            } if *o == order => Some(*amount),
                            _ => None,
                        })
                        .sum();
                    let amount = amount.min(paid - refunded);
                    if amount > 0 {
                        out.push(Ev::Refund {
                            n: n as u8,
                            order,
                            amount,
                            d: d + after,
                        });
                    }
                }
            }
            out.extend(
                surveys
                    .into_iter()
                    .enumerate()
                    .map(|(n, d)| Ev::Survey { n: n as u8, d }),
            );
            out.extend(referral);
            out
        })
}

/// Feeds `events` in batches of `sizes` (cycled), each applied at the latest event time so far.
/// As in the engine, "newbie"'s purchase credits "c1", and a batch with any of newbie's events
/// comes with all of newbie's events recorded so far (the ledger, this batch's included).
fn feed(programme: &Programme, events: &[Ev], sizes: &[usize]) -> Run {
    let mut run = Run::new(programme.clone());
    let mut rest = events;
    let mut i = 0;
    let mut now = t0();
    let mut ledger: Vec<DomainEvent> = Vec::new();
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        i += 1;
        let (batch, tail) = rest.split_at(n);
        rest = tail;
        let built: Vec<DomainEvent> = batch.iter().map(Ev::event).collect();
        // The engine's clock never goes back.
        now = built
            .iter()
            .map(|e| e.meta.occurred_at)
            .fold(now, DateTime::max);
        let (theirs, own): (Vec<&DomainEvent>, Vec<&DomainEvent>) = built
            .iter()
            .partition(|e| e.meta.customer_id.as_str() == "newbie");
        ledger.extend(theirs.iter().map(|e| (*e).clone()));
        let changes = Batch {
            events: own,
            referred: theirs
                .iter()
                .filter(|e| matches!(e.body, EventBody::Purchase(_)))
                .map(|e| (cid("newbie"), *e))
                .collect(),
        };
        let seen: Vec<&DomainEvent> = if theirs.is_empty() {
            Vec::new()
        } else {
            ledger.iter().collect()
        };
        run.apply_referred(&changes, &seen, now);
        assert_invariant(run.movements(), &run.fold(now));
    }
    run
}

/// A lot as compared: (id, amount, remaining, expired_at).
type LotKey = (String, i64, i64, Option<DateTime<Utc>>);

/// (available, pending, debt, lots, Σ amount by movement kind).
type BookSummary = (i64, i64, i64, Vec<LotKey>, Vec<(String, i64)>);

/// What must not depend on the arrival order: the balances, the lots and the totals by kind.
fn summary_of(run: &Run, now: DateTime<Utc>) -> BookSummary {
    let f = run.fold(now);
    let lots = f
        .lots
        .iter()
        .map(|l| (l.id.clone(), l.amount, l.remaining, l.expired_at))
        .collect();
    let mut by_kind: std::collections::BTreeMap<String, i64> = Default::default();
    for m in run.movements() {
        let kind = serde_json::to_value(&m.kind)
            .ok()
            .and_then(|v| v["kind"].as_str().map(str::to_owned))
            .unwrap_or_default();
        *by_kind.entry(kind).or_default() += m.amount;
    }
    (
        f.available,
        f.pending,
        f.debt,
        lots,
        by_kind.into_iter().collect(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Earning inputs in any order, in any batches, with duplicates, give the same book as the
    /// same inputs in event-time order.
    #[test]
    fn earning_inputs_in_any_order_with_duplicates_give_the_same_book(
        events in earning_events(),
        order in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
        dups in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        sizes in prop::collection::vec(1usize..5, 1..4),
    ) {
        let p = rolling("pending_days = 14\nsurvey_bonus = 50\nreferral_bonus = 300\nnegative_balance = \"debt\"\n[earn.category_multipliers]\ndaily_goods = 1.5\n");
        let mut sorted = events.clone();
        sorted.sort_by_key(Ev::day);
        let mut shuffled = events.clone();
        for (i, j) in order.iter().enumerate() {
            let n = shuffled.len();
            shuffled.swap(i % n, j.index(n));
        }
        for d in &dups {
            let e = shuffled[d.index(shuffled.len())].clone();
            shuffled.insert(d.index(shuffled.len() + 1), e);
        }
        let end = day(500);
        let a = feed(&p, &sorted, &[usize::MAX]);
        let b = feed(&p, &shuffled, &sizes);
        prop_assert_eq!(summary_of(&a, end), summary_of(&b, end));
        assert_invariant(b.movements(), &b.fold(end));
    }

    /// With redemptions and cancels mixed in (whose outcome depends on the balance when they
    /// arrive), the ledger invariant holds after every batch and at the end.
    #[test]
    fn the_ledger_invariant_holds_over_random_streams_with_redemptions(
        events in earning_events(),
        spends in prop::collection::vec((0u8..4, 1i64..300, 0i64..450, any::<bool>()), 0..8),
        order in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
        sizes in prop::collection::vec(1usize..5, 1..4),
        negative in any::<bool>(),
    ) {
        let mode = if negative { "negative" } else { "debt" };
        let p = rolling(&format!("pending_days = 14\nsurvey_bonus = 50\nfirst_order_bonus = 100\nreferral_bonus = 300\nnegative_balance = \"{mode}\""));
        let mut all = events;
        for (n, (id, points, d, is_cancel)) in spends.into_iter().enumerate() {
            let n = n as u8;
            all.push(if is_cancel {
                Ev::Cancel { n, id, d }
            } else {
                Ev::Redeem { n, id, points, d }
            });
        }
        for (i, j) in order.iter().enumerate() {
            let n = all.len();
            all.swap(i % n, j.index(n));
        }
        let run = feed(&p, &all, &sizes);
        for now in [day(0), day(100), day(400), day(800)] {
            assert_invariant(run.movements(), &run.fold(now));
        }
    }
}
