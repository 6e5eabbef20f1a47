//! Expiry: rolling, inactivity and calendar, each with its warning.

use super::*;

/// Sweeps at each moment and returns the warnings and the expired points seen at each.
fn sweep_through(run: &mut Run, moments: &[DateTime<Utc>]) -> Vec<(Vec<Warning>, i64)> {
    moments
        .iter()
        .map(|now| {
            let out = run.sweep(*now);
            let expired = changed(&out).iter().map(|c| c.0.expired).sum();
            (warnings(&out), expired)
        })
        .collect()
}

#[test]
fn rolling_expiry_takes_each_lot_months_after_earning_and_warns_once_before() {
    let mut run = Run::new(rolling("pending_days = 0"));
    run.apply(&[purchase("a", "c1", 10_000, day(0))], day(0));
    run.apply(&[purchase("b", "c1", 5_000, day(100))], day(100));
    let due_a = t0() + chrono::Months::new(12);
    let seen = sweep_through(
        &mut run,
        &[
            due_a - Duration::days(30) - Duration::seconds(1),
            due_a - Duration::days(30),
            due_a - Duration::days(29),
            due_a,
        ],
    );
    assert_eq!(seen[0], (vec![], 0), "not yet inside warn_days");
    assert_eq!(
        seen[1],
        (vec![("a:earn".to_owned(), 100, due_a)], 0),
        "warned 30 days before"
    );
    assert_eq!(seen[2], (vec![], 0), "warned once");
    assert_eq!(seen[3], (vec![], 100), "lot a expires, lot b stays");
    let f = run.fold(due_a);
    assert_eq!(f.available, 50);
    assert_invariant(run.movements(), &f);
}

#[test]
fn inactivity_expiry_takes_everything_months_after_the_last_purchase() {
    let mut run = Run::new(programme(
        "pending_days = 0",
        "mode = \"inactivity\"\nmonths = 6\nwarn_days = 10",
    ));
    run.apply(&[purchase("a", "c1", 10_000, day(0))], day(0));
    run.apply(&[purchase("b", "c1", 5_000, day(100))], day(100));
    let due = day(100) + chrono::Months::new(6);
    let before = due - Duration::days(10);
    // Lot a would have been due six months after day 0: the purchase on day 100 kept it alive.
    let seen = sweep_through(&mut run, &[day(0) + chrono::Months::new(6), before, due]);
    assert_eq!(
        seen[0],
        (vec![], 0),
        "a later purchase keeps the points alive"
    );
    let mut warned = seen[1].0.clone();
    warned.sort();
    assert_eq!(
        warned,
        vec![
            ("a:earn".to_owned(), 100, due),
            ("b:earn".to_owned(), 50, due)
        ],
        "every lot is announced with the idle deadline"
    );
    assert_eq!(seen[2], (vec![], 150), "all points expire together");
    assert_invariant(run.movements(), &run.fold(due));
}

#[test]
fn inactivity_warning_is_raised_again_when_a_purchase_moves_the_deadline() {
    let mut run = Run::new(programme(
        "pending_days = 0",
        "mode = \"inactivity\"\nmonths = 6\nwarn_days = 10",
    ));
    run.apply(&[purchase("a", "c1", 10_000, day(0))], day(0));
    let due = day(0) + chrono::Months::new(6);
    let out = run.sweep(due - Duration::days(5));
    assert_eq!(warnings(&out), vec![("a:earn".to_owned(), 100, due)]);
    // A small purchase that earns nothing still counts as activity.
    run.apply(
        &[purchase("b", "c1", 50, due - Duration::days(4))],
        due - Duration::days(4),
    );
    let later = due - Duration::days(4) + chrono::Months::new(6);
    let out = run.sweep(later - Duration::days(1));
    assert_eq!(warnings(&out), vec![("a:earn".to_owned(), 100, later)]);
    assert_eq!(run.fold(later - Duration::days(1)).available, 100);
}

#[test]
fn calendar_expiry_takes_each_lot_at_the_end_of_its_quarter() {
    let mut run = Run::new(programme(
        "pending_days = 0",
        "mode = \"calendar\"\nperiod = \"quarter\"\nwarn_days = 7",
    ));
    let feb = at(2026, 2, 10);
    let apr = at(2026, 4, 5);
    run.apply(&[purchase("q1", "c1", 10_000, feb)], feb);
    run.apply(
        &[purchase("q2", "c1", 3_000, apr - Duration::days(6))],
        apr - Duration::days(6),
    );
    // Both in Q1 (the second on 30 March): both due 1 April.
    run.apply(&[purchase("q3", "c1", 2_000, apr)], apr);
    let f = run.fold(apr);
    assert_eq!(
        f.available, 20,
        "Q1 lots expired on 1 April; the Q2 lot remains"
    );
    let q3 = f.lots.iter().find(|l| l.id == "q3:earn").expect("lot");
    assert_eq!(q3.due_at, Some(at(2026, 7, 1)));
    let expired: Vec<_> = f
        .expiries()
        .map(|p| (p.lot.clone(), p.at, p.amount))
        .collect();
    assert_eq!(
        expired,
        vec![
            (Some("q1:earn".to_owned()), at(2026, 4, 1), -100),
            (Some("q2:earn".to_owned()), at(2026, 4, 1), -30)
        ]
    );
    let seen = sweep_through(
        &mut run,
        &[at(2026, 6, 23), at(2026, 6, 24), at(2026, 7, 1)],
    );
    assert_eq!(seen[0], (vec![], 0));
    assert_eq!(
        seen[1],
        (vec![("q3:earn".to_owned(), 20, at(2026, 7, 1))], 0)
    );
    assert_eq!(seen[2], (vec![], 20));
    assert_invariant(run.movements(), &run.fold(at(2026, 7, 1)));
}
