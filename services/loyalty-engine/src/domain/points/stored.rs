//! How a points book's movements are stored in the customer's state: one positional array per
//! movement (no field names, no nested maps), because the state is rewritten on every change
//! of the customer. The API shows movements with their field names (`Movement`'s own serde).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serializer};

use super::ledger::{Movement, MovementKind};

/// A time as seconds and nanoseconds: exact, whatever the precision of the event time.
type Time = (i64, u32);

fn time(t: DateTime<Utc>) -> Time {
    (t.timestamp(), t.timestamp_subsec_nanos())
}

fn from_time((secs, nanos): Time) -> Result<DateTime<Utc>, String> {
    DateTime::from_timestamp(secs, nanos)
        .ok_or_else(|| format!("time out of range: {secs}.{nanos}"))
}

/// `(id, at, kind, available_at, expires_at, order or redemption id, amount, reason, source event,
/// programme version)`; the kind is 0 activity, 1 earn, 2 adjust, 3 redeem, 4 cancel, 5 clawback.
type Row = (
    String,
    Time,
    u8,
    Option<Time>,
    Option<Time>,
    Option<String>,
    i64,
    String,
    String,
    String,
);

/// A [`Row`] borrowed from a movement, for writing (nothing copied).
type RowRef<'a> = (
    &'a str,
    Time,
    u8,
    Option<Time>,
    Option<Time>,
    Option<&'a str>,
    i64,
    &'a str,
    &'a str,
    &'a str,
);

fn row(m: &Movement) -> RowRef<'_> {
    let (kind, available, expires, reference) = match &m.kind {
        MovementKind::Activity => (0, None, None, None),
        MovementKind::Earn {
            available_at,
            expires_at,
            order_id,
        } => (
            1,
            Some(time(*available_at)),
            expires_at.map(time),
            order_id.as_deref(),
        ),
        MovementKind::Adjust { expires_at } => (2, None, expires_at.map(time), None),
        MovementKind::Redeem { redemption_id } => (3, None, None, Some(redemption_id.as_str())),
        MovementKind::CancelRedemption { redemption_id } => {
            (4, None, None, Some(redemption_id.as_str()))
        }
        MovementKind::Clawback { order_id } => (5, None, None, Some(order_id.as_str())),
    };
    (
        &m.id,
        time(m.at),
        kind,
        available,
        expires,
        reference,
        m.amount,
        &m.reason,
        &m.source_event,
        &m.programme_version,
    )
}

fn movement(r: Row) -> Result<Movement, String> {
    let (id, at, kind, available, expires, reference, amount, reason, source_event, version) = r;
    let expires_at = expires.map(from_time).transpose()?;
    let needs =
        |what: &str, v: Option<String>| v.ok_or_else(|| format!("movement {id}: no {what}"));
    let kind = match kind {
        0 => MovementKind::Activity,
        1 => MovementKind::Earn {
            available_at: from_time(
                available.ok_or_else(|| format!("movement {id}: no available_at"))?,
            )?,
            expires_at,
            order_id: reference,
        },
        2 => MovementKind::Adjust { expires_at },
        3 => MovementKind::Redeem {
            redemption_id: needs("redemption id", reference)?,
        },
        4 => MovementKind::CancelRedemption {
            redemption_id: needs("redemption id", reference)?,
        },
        5 => MovementKind::Clawback {
            order_id: needs("order id", reference)?,
        },
        other => return Err(format!("movement {id}: unknown kind {other}")),
    };
    Ok(Movement {
        at: from_time(at)?,
        id,
        kind,
        amount,
        reason,
        source_event,
        programme_version: version,
    })
}

pub fn serialize<S: Serializer>(movements: &[Movement], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(movements.iter().map(row))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Movement>, D::Error> {
    Vec::<Row>::deserialize(d)?
        .into_iter()
        .map(|r| movement(r).map_err(serde::de::Error::custom))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde::Serialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Book(#[serde(with = "super")] Vec<Movement>);

    #[test]
    fn every_kind_round_trips_exactly_and_smaller_than_with_names() {
        let at = Utc
            .timestamp_opt(1_700_000_000, 123_456_789)
            .single()
            .expect("time");
        let m = |id: &str, kind: MovementKind| Movement {
            id: id.to_owned(),
            at,
            kind,
            amount: 42,
            reason: "why".to_owned(),
            source_event: "e1".to_owned(),
            programme_version: "abc".to_owned(),
        };
        let book = Book(vec![
            m("a", MovementKind::Activity),
            m(
                "b",
                MovementKind::Earn {
                    available_at: at,
                    expires_at: Some(at),
                    order_id: Some("o".into()),
                },
            ),
            m(
                "c",
                MovementKind::Earn {
                    available_at: at,
                    expires_at: None,
                    order_id: None,
                },
            ),
            m("d", MovementKind::Adjust { expires_at: None }),
            m(
                "e",
                MovementKind::Redeem {
                    redemption_id: "k".into(),
                },
            ),
            m(
                "f",
                MovementKind::CancelRedemption {
                    redemption_id: "k".into(),
                },
            ),
            m(
                "g",
                MovementKind::Clawback {
                    order_id: "o".into(),
                },
            ),
        ]);
        let bytes = rmp_serde::to_vec_named(&book).expect("encode");
        let back: Book = rmp_serde::from_slice(&bytes).expect("decode");
        assert_eq!(back, book);
        let named = rmp_serde::to_vec_named(&book.0).expect("encode with names");
        assert!(
            bytes.len() * 2 < named.len(),
            "{} vs {}",
            bytes.len(),
            named.len()
        );
    }

    #[test]
    fn a_stored_row_of_an_unknown_kind_is_an_error_not_a_guess() {
        let row: Row = (
            "x".into(),
            (0, 0),
            9,
            None,
            None,
            None,
            1,
            String::new(),
            String::new(),
            String::new(),
        );
        let bytes = rmp_serde::to_vec(&vec![row]).expect("encode");
        let mut de = rmp_serde::Deserializer::new(&bytes[..]);
        let err = deserialize(&mut de).expect_err("unknown kind");
        assert!(err.to_string().contains("unknown kind 9"), "{err}");
    }
}
