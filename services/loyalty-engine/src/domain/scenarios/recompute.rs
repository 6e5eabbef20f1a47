//! Recompute from the ledger after pruning.

use super::*;
use crate::domain::apply::recompute;

#[test]
fn recompute_keeps_what_pruned_events_left_and_rebuilds_the_rest() {
    let p = sample();
    let all: Vec<DomainEvent> = (0..4)
        .map(|i| purchase(&format!("e{i}"), "c", 20_000, day(i * 30)))
        .collect();
    let (state, m, _) = run(None, &all, &p, day(100));
    assert_eq!(m.lifetime_spend_minor, 80_000);
    // The ledger lost the two oldest events; the rest are replayed.
    let kept: Vec<&DomainEvent> = all[2..].iter().collect();
    let (rebuilt, m2, outputs) = recompute(&state, &kept, &[], &p, None, day(100));
    assert_eq!(
        m2.lifetime_spend_minor, 80_000,
        "history before the oldest kept event survives"
    );
    assert_eq!(rebuilt.facts, state.facts);
    assert!(outputs.is_empty(), "no difference, no output: {outputs:?}");
}
