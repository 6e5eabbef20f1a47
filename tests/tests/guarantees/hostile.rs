//! Hostile and malformed input goes to the dead-letter topic with its reason; the valid
//! input around it is applied.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use anyhow::ensure;
use chrono::Utc;
use serde_json::{Value, json};

use kizuna_e2e::Broker;
use kizuna_e2e::guarantees::*;
use kizuna_e2e::process::{EngineProcess, metric_by_label};

kizuna_e2e::on_each_broker! {
    hostile_input_goes_to_the_dead_letter_topic_with_its_reason_and_valid_input_is_applied,
}

// ---------------------------------------------------------------------------------------------
// 6. Hostile and malformed input

/// A message the engine must refuse, and the `kizuna-dlq-reason` it must give.
#[derive(Debug, Clone)]
struct Hostile {
    msg: Msg,
    reason: &'static str,
    case: &'static str,
}

fn json_msg(input: Input, key: Option<&str>, v: &Value) -> Msg {
    Msg {
        input,
        key: key.map(str::to_owned),
        payload: serde_json::to_vec(v).unwrap_or_default(),
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        partitioner: Partitioner::Murmur2,
    }
}

fn raw_msg(input: Input, key: Option<&str>, payload: Vec<u8>, content_type: Option<&str>) -> Msg {
    Msg {
        input,
        key: key.map(str::to_owned),
        payload,
        headers: content_type
            .map(|ct| vec![("content-type".to_owned(), ct.as_bytes().to_vec())])
            .unwrap_or_default(),
        partitioner: Partitioner::Murmur2,
    }
}

/// `n` hostile messages for the given customers, cycling through every case.
fn hostile_corpus(
    n: usize,
    customers: &[String],
    seed: u64,
    max_message_bytes: usize,
) -> Vec<Hostile> {
    type Case = fn(&mut Rng, &str, &str, usize) -> (Msg, &'static str);
    let now = Utc::now();
    let cases: Vec<(&'static str, Case)> = vec![
        ("truncated json", |_, id, c, _| {
            let p = format!("{{\"eventId\": \"{id}\", \"customerId\": \"{c}\", \"amountMinor\": ");
            (
                raw_msg(
                    Input::Purchases,
                    Some(c),
                    p.into_bytes(),
                    Some("application/json"),
                ),
                "unparseable",
            )
        }),
        ("prose", |_, _, c, _| {
            (
                raw_msg(
                    Input::Tickets,
                    Some(c),
                    b"this is not an event at all".to_vec(),
                    None,
                ),
                "unparseable",
            )
        }),
        ("binary garbage as json", |r, _, c, _| {
            let mut p = vec![0xff, 0xfe, 0x00];
            p.extend((0..64).map(|_| r.below(256) as u8));
            (
                raw_msg(Input::Surveys, Some(c), p, Some("application/json")),
                "unparseable",
            )
        }),
        ("binary garbage as protobuf", |r, _, c, _| {
            // Tag 0x0f: field 1 with wire type 7, which does not exist.
            let mut p = vec![0x0f];
            p.extend((0..64).map(|_| r.below(256) as u8));
            (
                raw_msg(Input::Purchases, Some(c), p, Some("application/x-protobuf")),
                "unparseable",
            )
        }),
        ("event id is a number", |_, _, c, _| {
            let v = json!({"eventId": 42, "customerId": c, "orderId": "o", "amountMinor": "1"});
            (json_msg(Input::Purchases, Some(c), &v), "wrong_type")
        }),
        ("amount is an object", |_, id, c, _| {
            let v = json!({"eventId": id, "customerId": c, "amountMinor": {"yen": 1200}});
            (json_msg(Input::Purchases, Some(c), &v), "wrong_type")
        }),
        ("array instead of object", |_, id, c, _| {
            (
                json_msg(Input::Surveys, Some(c), &json!([id, c, 10])),
                "wrong_type",
            )
        }),
        ("unknown purchase kind", |_, id, c, _| {
            let mut v = json!({"eventId": id, "customerId": c, "orderId": "o", "amountMinor": "1", "currency": "JPY"});
            v["kind"] = json!("PURCHASE_KIND_GIFT");
            (json_msg(Input::Purchases, Some(c), &v), "unknown_enum")
        }),
        ("unknown ticket status", |_, id, c, _| {
            let v = json!({"eventId": id, "customerId": c, "ticketId": "t", "status": "TICKET_STATUS_LOST"});
            (json_msg(Input::Tickets, Some(c), &v), "unknown_enum")
        }),
        ("unknown purchase kind in protobuf", |_, id, c, _| {
            let mut p = Vec::new();
            pb::string(&mut p, 1, id);
            pb::string(&mut p, 2, c);
            pb::message(
                &mut p,
                3,
                &pb::timestamp(Utc::now() - chrono::Duration::minutes(30)),
            );
            pb::string(&mut p, 4, "o-1");
            pb::int(&mut p, 5, 99);
            pb::int(&mut p, 6, 1200);
            pb::string(&mut p, 7, "JPY");
            (
                raw_msg(Input::Purchases, Some(c), p, Some("application/x-protobuf")),
                "unknown_enum",
            )
        }),
        ("empty event id", |_, _, c, _| {
            let mut v = json!({"customerId": c, "occurredAt": rfc3339(Utc::now()), "ticketId": "t",
                               "status": "TICKET_STATUS_OPENED"});
            v["eventId"] = json!("");
            (json_msg(Input::Tickets, Some(c), &v), "missing_field")
        }),
        ("no event id", |_, _, c, _| {
            let v = json!({"customerId": c, "occurredAt": rfc3339(Utc::now()), "kind": "SURVEY_KIND_NPS", "score": 9});
            (json_msg(Input::Surveys, Some(c), &v), "missing_field")
        }),
        ("empty customer id", |_, id, _, _| {
            let v = json!({"eventId": id, "customerId": "", "occurredAt": rfc3339(Utc::now()), "kind": "SURVEY_KIND_NPS", "score": 9});
            (json_msg(Input::Surveys, Some(""), &v), "missing_field")
        }),
        ("no occurred_at", |_, id, c, _| {
            let v = json!({"eventId": id, "customerId": c, "kind": "SURVEY_KIND_CSAT", "score": 4});
            (json_msg(Input::Surveys, Some(c), &v), "missing_field")
        }),
        ("no order id", |_, id, c, _| {
            let v = json!({"eventId": id, "customerId": c, "occurredAt": rfc3339(Utc::now()),
                           "kind": "PURCHASE_KIND_PURCHASE", "amountMinor": "100", "currency": "JPY"});
            (json_msg(Input::Purchases, Some(c), &v), "missing_field")
        }),
        ("amount i64::MAX", |_, id, c, _| {
            let v = json!({"eventId": id, "customerId": c, "occurredAt": rfc3339(Utc::now()), "orderId": "o",
                           "kind": "PURCHASE_KIND_PURCHASE", "amountMinor": i64::MAX.to_string(), "currency": "JPY"});
            (
                json_msg(Input::Purchases, Some(c), &v),
                "amount_out_of_range",
            )
        }),
        ("negative amount", |r, id, c, _| {
            let v = json!({"eventId": id, "customerId": c, "occurredAt": rfc3339(Utc::now()), "orderId": "o",
                           "kind": "PURCHASE_KIND_REFUND", "amountMinor": (-r.range(1, 1_000_000)).to_string(), "currency": "JPY"});
            (
                json_msg(Input::Purchases, Some(c), &v),
                "amount_out_of_range",
            )
        }),
        ("amount above the limit", |_, id, c, _| {
            let v = json!({"eventId": id, "customerId": c, "occurredAt": rfc3339(Utc::now()), "orderId": "o",
                           "kind": "PURCHASE_KIND_PURCHASE", "amountMinor": "1000000000001", "currency": "JPY"});
            (
                json_msg(Input::Purchases, Some(c), &v),
                "amount_out_of_range",
            )
        }),
        ("year 2999", |_, id, c, _| {
            let v = json!({"eventId": id, "customerId": c, "occurredAt": "2999-01-01T00:00:00Z",
                           "kind": "SURVEY_KIND_NPS", "score": 10});
            (json_msg(Input::Surveys, Some(c), &v), "future_timestamp")
        }),
        ("three days ahead", |_, id, c, _| {
            let v = json!({"eventId": id, "customerId": c, "occurredAt": rfc3339(Utc::now() + chrono::Duration::days(3)),
                           "ticketId": "t", "status": "TICKET_STATUS_OPENED"});
            (json_msg(Input::Tickets, Some(c), &v), "future_timestamp")
        }),
        // Before ingest.earliest_event_time (1980-01-01); 1990 is welcome history (too_old
        // live, against the ledger retention).
        ("year 1979", |_, id, c, _| {
            let v = json!({"eventId": id, "customerId": c, "occurredAt": "1979-12-31T00:00:00Z",
                           "kind": "SURVEY_KIND_CES", "score": 2});
            (json_msg(Input::Surveys, Some(c), &v), "invalid_timestamp")
        }),
        ("unknown schema version (ce_type)", |_, id, c, _| {
            let v = json!({"eventId": id, "customerId": c, "occurredAt": rfc3339(Utc::now()),
                           "kind": "SURVEY_KIND_NPS", "score": 7});
            let mut m = json_msg(Input::Surveys, Some(c), &v);
            m.headers
                .push(("ce_type".into(), b"kizuna.v2.SurveyResponse".to_vec()));
            (m, "unknown_schema_version")
        }),
        ("unknown schema version (kizuna-schema)", |_, id, c, _| {
            let v = json!({"eventId": id, "customerId": c, "occurredAt": rfc3339(Utc::now()),
                           "ticketId": "t", "status": "TICKET_STATUS_OPENED"});
            let mut m = json_msg(Input::Tickets, Some(c), &v);
            m.headers
                .push(("kizuna-schema".into(), b"kizuna.v0".to_vec()));
            (m, "unknown_schema_version")
        }),
        ("customer id of 129 bytes", |_, id, _, _| {
            let long = format!("cust-{}", "x".repeat(124));
            let v = json!({"eventId": id, "customerId": long, "occurredAt": rfc3339(Utc::now()),
                           "kind": "SURVEY_KIND_NPS", "score": 9});
            (
                json_msg(Input::Surveys, Some(&long), &v),
                "invalid_customer_id",
            )
        }),
        ("customer id with a control character", |_, id, c, _| {
            let odd = format!("{c}\u{7}");
            let v = json!({"eventId": id, "customerId": odd, "occurredAt": rfc3339(Utc::now()),
                           "kind": "SURVEY_KIND_NPS", "score": 9});
            (
                json_msg(Input::Surveys, Some(&odd), &v),
                "invalid_customer_id",
            )
        }),
        ("event id of 200 bytes", |_, _, c, _| {
            let v = json!({"eventId": "e".repeat(200), "customerId": c, "occurredAt": rfc3339(Utc::now()),
                           "kind": "SURVEY_KIND_NPS", "score": 9});
            (json_msg(Input::Surveys, Some(c), &v), "invalid_id")
        }),
        ("key is another customer", |_, id, c, _| {
            let v = json!({"eventId": id, "customerId": c, "occurredAt": rfc3339(Utc::now()),
                           "kind": "SURVEY_KIND_NPS", "score": 9});
            (
                json_msg(Input::Surveys, Some(&format!("not-{c}")), &v),
                "key_mismatch",
            )
        }),
        ("empty payload", |_, _, c, _| {
            (
                raw_msg(
                    Input::Purchases,
                    Some(c),
                    Vec::new(),
                    Some("application/json"),
                ),
                "empty_payload",
            )
        }),
        ("csv", |_, id, c, _| {
            let p = format!("{id},{c},2026-01-01,1200,JPY");
            (
                raw_msg(Input::Purchases, Some(c), p.into_bytes(), Some("text/csv")),
                "unsupported_content_type",
            )
        }),
        ("dollars", |_, id, c, _| {
            let v = json!({"eventId": id, "customerId": c, "occurredAt": rfc3339(Utc::now()), "orderId": "o",
                           "kind": "PURCHASE_KIND_PURCHASE", "amountMinor": "1200", "currency": "USD"});
            (json_msg(Input::Purchases, Some(c), &v), "currency_mismatch")
        }),
        ("currency that is no code", |_, id, c, _| {
            let v = json!({"eventId": id, "customerId": c, "occurredAt": rfc3339(Utc::now()), "orderId": "o",
                           "kind": "PURCHASE_KIND_PURCHASE", "amountMinor": "1200", "currency": "yen"});
            (json_msg(Input::Purchases, Some(c), &v), "invalid_currency")
        }),
        ("NPS 11", |_, id, c, _| {
            let v = json!({"eventId": id, "customerId": c, "occurredAt": rfc3339(Utc::now()),
                           "kind": "SURVEY_KIND_NPS", "score": 11});
            (json_msg(Input::Surveys, Some(c), &v), "score_out_of_range")
        }),
        ("ticket CSAT 9", |_, id, c, _| {
            let v = json!({"eventId": id, "customerId": c, "occurredAt": rfc3339(Utc::now()),
                           "ticketId": "t", "status": "TICKET_STATUS_RESOLVED", "csat": 9});
            (json_msg(Input::Tickets, Some(c), &v), "score_out_of_range")
        }),
        ("no ticket status", |_, id, c, _| {
            let v = json!({"eventId": id, "customerId": c, "occurredAt": rfc3339(Utc::now()), "ticketId": "t"});
            (json_msg(Input::Tickets, Some(c), &v), "missing_field")
        }),
        ("channel of 300 bytes", |_, id, c, _| {
            let v = json!({"eventId": id, "customerId": c, "occurredAt": rfc3339(Utc::now()), "orderId": "o",
                           "kind": "PURCHASE_KIND_PURCHASE", "amountMinor": "1200", "currency": "JPY",
                           "channel": "w".repeat(300)});
            (json_msg(Input::Purchases, Some(c), &v), "invalid_field")
        }),
    ];
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let c = rng.pick(customers).clone();
        let id = format!("bad-{i:05}");
        // Oversized: every 50th message, so that the corpus stays a few megabytes.
        if i % 50 == 49 {
            let v = json!({"eventId": id, "customerId": c, "occurredAt": rfc3339(now),
                           "orderId": "o", "kind": "PURCHASE_KIND_PURCHASE", "amountMinor": "1200",
                           "currency": "JPY", "channel": "web",
                           "lineItems": [{"sku": "x".repeat(max_message_bytes), "category": "home",
                                          "quantity": 1, "unitPriceMinor": "1200"}]});
            out.push(Hostile {
                msg: json_msg(Input::Purchases, Some(&c), &v),
                reason: "oversized",
                case: "oversized",
            });
            continue;
        }
        let (case, make) = cases[i % cases.len()];
        let (msg, reason) = make(&mut rng, &id, &c, max_message_bytes);
        out.push(Hostile { msg, reason, case });
    }
    out
}

async fn hostile_input_goes_to_the_dead_letter_topic_with_its_reason_and_valid_input_is_applied(
    broker: Broker,
) -> anyhow::Result<()> {
    let Begun { seed, env, logs } = begin(broker, "hostile", 0x6b69_7a75_6e61_0006).await?;
    let plan = Plan {
        binary_share: 0.1,
        ..Plan::recent(seed, 6_000)
    };
    let work = generate(&plan);
    eprintln!(
        "[hostile] valid: {}, {} as binary protobuf",
        work.summary(),
        work.binary
    );
    let customers_sent: Vec<String> = work.expect.keys().cloned().collect();
    let corpus = hostile_corpus(
        1_200,
        &customers_sent,
        seed ^ 0xbad,
        env.settings.ingest.max_message_bytes,
    );

    // Mix: each hostile message at a random place among the valid ones.
    let mut rng = Rng::new(seed ^ 0x31);
    let valid = work.messages(&plan);
    let mut slots: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for h in 0..corpus.len() {
        slots
            .entry(rng.below(valid.len() as u64) as usize)
            .or_default()
            .push(h);
    }
    let mut msgs = Vec::new();
    let mut hostile_at = Vec::new(); // (index in msgs, index in corpus)
    for (i, m) in valid.into_iter().enumerate() {
        for h in slots.remove(&i).unwrap_or_default() {
            hostile_at.push((msgs.len(), h));
            msgs.push(corpus[h].msg.clone());
        }
        msgs.push(m);
    }

    let mut engine = EngineProcess::spawn("engine", &env.settings, &logs)?;
    engine.wait_ready(READY).await?;
    let feeder = Arc::new(Feeder::new(&env.settings)?);
    let msgs = Arc::new(msgs);
    let landed = stream(
        feeder,
        msgs.clone(),
        500,
        Duration::from_millis(50),
        Arc::new(AtomicUsize::new(0)),
    )
    .await??;
    // Where each hostile message landed: its dead letter names that place.
    let topics = env.settings.kafka.topics.clone();
    let mut expected: HashMap<(String, i32, i64), &Hostile> = HashMap::new();
    for (i, h) in &hostile_at {
        let (partition, offset) = landed[*i];
        let hostile = &corpus[*h];
        expected.insert(
            (
                hostile.msg.input.topic(&topics).to_owned(),
                partition,
                offset,
            ),
            hostile,
        );
    }

    let Settled {
        rows,
        ledger,
        metrics,
        ..
    } = settle(&env, &mut [&mut engine]).await?;
    let text = metrics.concat();

    let letters = env.reader(&topics.dead_letter)?.read_to_end(READ).await?;
    let mut problems = Vec::new();
    let mut matched: HashMap<(String, i32, i64), usize> = HashMap::new();
    let mut by_reason: BTreeMap<String, (usize, usize)> = BTreeMap::new(); // (sent, quarantined)
    for h in &corpus {
        by_reason.entry(h.reason.to_owned()).or_default().0 += 1;
    }
    for l in &letters {
        let place = (
            l.header("kizuna-dlq-topic").unwrap_or_default().to_owned(),
            l.header("kizuna-dlq-partition")
                .and_then(|p| p.parse().ok())
                .unwrap_or(-1),
            l.header("kizuna-dlq-offset")
                .and_then(|o| o.parse().ok())
                .unwrap_or(-1),
        );
        let reason = l.header("kizuna-dlq-reason").unwrap_or("<none>").to_owned();
        by_reason.entry(reason.clone()).or_default().1 += 1;
        *matched.entry(place.clone()).or_default() += 1;
        match expected.get(&place) {
            None => problems.push(format!(
                "dead letter for {place:?} ({reason}) was not a hostile message"
            )),
            Some(h) => {
                if reason != h.reason {
                    problems.push(format!(
                        "{}: reason {reason} (expected {}); detail {:?}",
                        h.case,
                        h.reason,
                        l.header("kizuna-dlq-detail")
                    ));
                }
                if l.payload != h.msg.payload {
                    problems.push(format!(
                        "{}: the dead letter's bytes differ from the sent ones",
                        h.case
                    ));
                }
                if l.key != h.msg.key {
                    problems.push(format!(
                        "{}: key {:?} != sent {:?}",
                        h.case, l.key, h.msg.key
                    ));
                }
            }
        }
    }
    for (place, h) in &expected {
        match matched.get(place) {
            None => problems.push(format!("{} at {place:?}: no dead letter", h.case)),
            Some(n) if *n > 1 => {
                problems.push(format!("{} at {place:?}: {n} dead letters", h.case))
            }
            Some(_) => {}
        }
    }
    ensure_no_diff("dead letters", &problems)?;
    let counted = metric_by_label(&text, "kizuna_dead_letters_total", "reason");
    for (reason, (sent, _)) in &by_reason {
        let metric = counted
            .iter()
            .find(|(r, _)| r == reason)
            .map_or(0.0, |(_, v)| *v);
        ensure!(
            metric as usize == *sent,
            "kizuna_dead_letters_total{{reason=\"{reason}\"}} is {metric}, {sent} sent"
        );
    }
    let (reference, published) = ensure_complete(&env, &logs, &rows, ledger, &work).await?;
    let table: Vec<String> = by_reason
        .iter()
        .map(|(r, (s, q))| format!("{r} {q}/{s}"))
        .collect();
    eprintln!(
        "[hostile] figures: messages streamed {} ({} valid events, {} hostile in {} cases), \
         bad messages quarantined {} with the expected reason, bytes and key; by reason (quarantined/sent): {}; \
         valid events applied {ledger}, outputs published {}, lost 0",
        msgs.len(),
        work.events.len(),
        corpus.len(),
        corpus
            .iter()
            .map(|h| h.case)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        letters.len(),
        table.join(", "),
        published.total
    );
    cleanup(reference).await?;
    cleanup(env).await
}
