//! Shopify orders and refunds → kizuna.v1 `Purchase` (kinds PURCHASE and REFUND).

use std::collections::BTreeMap;

use kizuna::inputs::decode::WireEvent;
use kizuna_proto::v1;
use serde::Deserialize;
use serde_json::Value;

use super::{
    Draft, MapError, Mapped, currency_exponent, customer_id, first_time, lookup, minor_units, text,
    timestamp,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifyMapping {
    pub purchase_topics: Vec<String>,
    pub refund_topics: Vec<String>,
    pub customer_id: Vec<String>,
    pub customer_id_prefix: String,
    pub occurred_at: Vec<String>,
    pub money: Money,
    pub channel_field: String,
    pub referral_note_attribute: String,
    pub channels: BTreeMap<String, String>,
    pub categories: Categories,
}

/// Which of Shopify's two money sets an order is recorded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Money {
    Shop,
    Presentment,
}

impl Money {
    fn set_key(self) -> &'static str {
        match self {
            Money::Shop => "shop_money",
            Money::Presentment => "presentment_money",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Categories {
    pub default: String,
    pub by_product_type: BTreeMap<String, String>,
    pub by_product_id: BTreeMap<String, String>,
    pub by_sku_prefix: BTreeMap<String, String>,
    pub by_vendor: BTreeMap<String, String>,
}

impl Categories {
    /// The category of one line item: product_type, product_id, sku prefix (longest first),
    /// vendor, then the default.
    pub fn of(&self, line: &Value) -> String {
        let field = |name: &str| lookup(line, name).and_then(text);
        if let Some(c) =
            field("product_type").and_then(|t| super::lookup_ci(&self.by_product_type, &t))
        {
            return c.clone();
        }
        if let Some(c) = field("product_id").and_then(|id| self.by_product_id.get(&id)) {
            return c.clone();
        }
        if let Some(sku) = field("sku")
            && let Some((_, c)) = self
                .by_sku_prefix
                .iter()
                .filter(|(prefix, _)| sku.starts_with(prefix.as_str()))
                .max_by_key(|(prefix, _)| prefix.len())
        {
            return c.clone();
        }
        if let Some(c) = field("vendor").and_then(|v| super::lookup_ci(&self.by_vendor, &v)) {
            return c.clone();
        }
        self.default.clone()
    }
}

/// The header Shopify names the topic in.
pub const TOPIC_HEADER: &str = "X-Shopify-Topic";

/// Maps one Shopify delivery of `topic`.
pub fn map(topic: Option<&str>, order: &Value, m: &ShopifyMapping) -> Result<Mapped, MapError> {
    let topic = topic.ok_or_else(|| MapError::missing(TOPIC_HEADER))?;
    if m.purchase_topics.iter().any(|t| t == topic) {
        return purchase(order, m).map(|d| Mapped::Events(vec![d]));
    }
    if m.refund_topics.iter().any(|t| t == topic) {
        return refunds(order, m);
    }
    let hint = if topic == "refunds/create" {
        "; a refunds/create payload carries no customer id: subscribe to orders/updated, whose refunds[] become refunds"
    } else {
        ""
    };
    Err(MapError::new(
        TOPIC_HEADER,
        "unsupported_topic",
        format!(
            "topic {:?} is not mapped (purchase_topics: {}; refund_topics: {}){hint}",
            topic.chars().take(64).collect::<String>(),
            m.purchase_topics.join(", "),
            m.refund_topics.join(", ")
        ),
    ))
}

/// The amount and currency of `set_field` (`total_price_set`) in the chosen money, or of the
/// plain field with the order's `currency`.
fn money(
    order: &Value,
    item: &Value,
    set_field: &str,
    plain_field: &str,
    m: Money,
    item_path: &str,
) -> Result<Option<(i64, String, String)>, MapError> {
    let at = |p: &str| {
        if item_path.is_empty() {
            p.to_owned()
        } else {
            format!("{item_path}.{p}")
        }
    };
    let set = format!("{set_field}.{}", m.set_key());
    let (amount, amount_path, currency, currency_path) =
        match lookup(item, &format!("{set}.amount")) {
            Some(a) if !a.is_null() => (
                a,
                at(&format!("{set}.amount")),
                lookup(item, &format!("{set}.currency_code")).and_then(text),
                at(&format!("{set}.currency_code")),
            ),
            _ => match lookup(item, plain_field) {
                Some(a) if !a.is_null() => (
                    a,
                    at(plain_field),
                    lookup(order, "currency").and_then(text),
                    "currency".to_owned(),
                ),
                _ => return Ok(None),
            },
        };
    let currency = currency.ok_or_else(|| MapError::missing(currency_path.clone()))?;
    let minor = minor_units(amount, currency_exponent(&currency)).map_err(|e| {
        MapError::new(
            amount_path.clone(),
            "invalid_field",
            format!("{amount_path} {e}"),
        )
    })?;
    Ok(Some((minor, currency, amount_path)))
}

fn occurred_at(
    value: &Value,
    paths: &[String],
) -> Result<(kizuna_proto::Timestamp, String), MapError> {
    first_time(value, paths)?
        .map(|(t, p)| (timestamp(t), p))
        .ok_or_else(|| MapError::missing(paths.first().cloned().unwrap_or_default()))
}

fn purchase(order: &Value, m: &ShopifyMapping) -> Result<Draft, MapError> {
    let (customer, customer_path) = customer_id(order, &m.customer_id, &m.customer_id_prefix)?;
    let order_id = lookup(order, "id")
        .and_then(text)
        .ok_or_else(|| MapError::missing("id"))?;
    let (occurred, occurred_path) = occurred_at(order, &m.occurred_at)?;
    let (amount, currency, amount_path) =
        money(order, order, "total_price_set", "total_price", m.money, "")?.ok_or_else(|| {
            MapError::missing(format!("total_price_set.{}.amount", m.money.set_key()))
        })?;
    let discount = money(
        order,
        order,
        "total_discounts_set",
        "total_discounts",
        m.money,
        "",
    )?
    .map_or(0, |(d, _, _)| d);
    let mut line_items = Vec::new();
    if let Some(lines) = lookup(order, "line_items").and_then(Value::as_array) {
        for (i, line) in lines.iter().enumerate() {
            let path = format!("line_items.{i}");
            let quantity = lookup(line, "quantity")
                .and_then(Value::as_u64)
                .and_then(|q| u32::try_from(q).ok())
                .ok_or_else(|| {
                    MapError::new(
                        format!("{path}.quantity"),
                        "invalid_field",
                        format!("{path}.quantity is not a count"),
                    )
                })?;
            let unit =
                money(order, line, "price_set", "price", m.money, &path)?.map_or(0, |(p, _, _)| p);
            line_items.push(v1::LineItem {
                sku: lookup(line, "sku").and_then(text).unwrap_or_default(),
                category: m.categories.of(line),
                quantity,
                unit_price_minor: unit,
            });
        }
    }
    let channel = lookup(order, &m.channel_field)
        .and_then(text)
        .map(|c| super::lookup_ci(&m.channels, &c).cloned().unwrap_or(c))
        .unwrap_or_default();
    let referred_by = if m.referral_note_attribute.is_empty() {
        String::new()
    } else {
        lookup(order, "note_attributes")
            .and_then(Value::as_array)
            .and_then(|attrs| {
                attrs.iter().find(|a| {
                    lookup(a, "name").and_then(Value::as_str)
                        == Some(m.referral_note_attribute.as_str())
                })
            })
            .and_then(|a| lookup(a, "value").and_then(text))
            .map(|id| format!("{}{id}", m.customer_id_prefix))
            .unwrap_or_default()
    };
    let coupon_code = lookup(order, "discount_codes.0.code")
        .and_then(text)
        .unwrap_or_default();
    let event = v1::Purchase {
        event_id: String::new(),
        customer_id: customer,
        occurred_at: Some(occurred),
        order_id,
        kind: v1::PurchaseKind::Purchase as i32,
        amount_minor: amount,
        currency,
        line_items,
        discount_minor: discount,
        coupon_code,
        channel,
        referred_by,
    };
    Ok(Draft::new(WireEvent::Purchase(event), "order")
        .from("customer_id", customer_path)
        .from("order_id", "id")
        .from("occurred_at", occurred_path)
        .from("amount_minor", amount_path.clone())
        .from("currency", amount_path.replace(".amount", ".currency_code"))
        .from(
            "discount_minor",
            format!("total_discounts_set.{}.amount", m.money.set_key()),
        )
        .from("line_items", "line_items")
        .from("referred_by", "note_attributes")
        .from("coupon_code", "discount_codes.0.code")
        .from("channel", m.channel_field.clone()))
}

/// The refunded amount of one refund: its successful refund transactions in the order's
/// currency; without those, its refund line items (subtotal and tax).
fn refund_amount(
    order: &Value,
    refund: &Value,
    currency: &str,
    m: Money,
    path: &str,
) -> Result<i64, MapError> {
    let exponent = currency_exponent(currency);
    let mut from_transactions = None;
    if let Some(txs) = lookup(refund, "transactions").and_then(Value::as_array) {
        let mut sum = 0i64;
        let mut usable = true;
        for (j, tx) in txs.iter().enumerate() {
            let kind = lookup(tx, "kind").and_then(Value::as_str);
            let status = lookup(tx, "status").and_then(Value::as_str);
            if kind != Some("refund") || status != Some("success") {
                continue;
            }
            if let Some(c) = lookup(tx, "currency").and_then(text)
                && c != currency
            {
                usable = false;
                break;
            }
            let at = format!("{path}.transactions.{j}.amount");
            let a = lookup(tx, "amount").ok_or_else(|| MapError::missing(at.clone()))?;
            let minor = minor_units(a, exponent)
                .map_err(|e| MapError::new(at.clone(), "invalid_field", format!("{at} {e}")))?;
            sum = sum.saturating_add(minor);
        }
        if usable && sum > 0 {
            from_transactions = Some(sum);
        }
    }
    if let Some(sum) = from_transactions {
        return Ok(sum);
    }
    let mut sum = 0i64;
    if let Some(lines) = lookup(refund, "refund_line_items").and_then(Value::as_array) {
        for (j, line) in lines.iter().enumerate() {
            let at = format!("{path}.refund_line_items.{j}");
            for (set, plain) in [("subtotal_set", "subtotal"), ("total_tax_set", "total_tax")] {
                if let Some((minor, _, _)) = money(order, line, set, plain, m, &at)? {
                    sum = sum.saturating_add(minor);
                }
            }
        }
    }
    Ok(sum)
}

fn refunds(order: &Value, m: &ShopifyMapping) -> Result<Mapped, MapError> {
    let Some(list) = lookup(order, "refunds")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
    else {
        return Ok(Mapped::Ignored("the order carries no refunds".into()));
    };
    let (customer, customer_path) = customer_id(order, &m.customer_id, &m.customer_id_prefix)?;
    let order_id = lookup(order, "id")
        .and_then(text)
        .ok_or_else(|| MapError::missing("id"))?;
    let set = m.money.set_key();
    let (currency, currency_path) = lookup(order, &format!("total_price_set.{set}.currency_code"))
        .and_then(text)
        .map(|c| (c, format!("total_price_set.{set}.currency_code")))
        .or_else(|| {
            lookup(order, "currency")
                .and_then(text)
                .map(|c| (c, "currency".to_owned()))
        })
        .ok_or_else(|| MapError::missing("currency"))?;
    let mut drafts = Vec::new();
    for (i, refund) in list.iter().enumerate() {
        let path = format!("refunds.{i}");
        let refund_id = lookup(refund, "id")
            .and_then(text)
            .ok_or_else(|| MapError::missing(format!("{path}.id")))?;
        let amount = refund_amount(order, refund, &currency, m.money, &path)?;
        if amount <= 0 {
            // A restock without money back: nothing to reverse.
            continue;
        }
        let times = [format!("{path}.processed_at"), format!("{path}.created_at")];
        let (occurred, occurred_path) = occurred_at(order, &times)?;
        let event = v1::Purchase {
            event_id: String::new(),
            customer_id: customer.clone(),
            occurred_at: Some(occurred),
            order_id: order_id.clone(),
            kind: v1::PurchaseKind::Refund as i32,
            amount_minor: amount,
            currency: currency.clone(),
            ..Default::default()
        };
        let mut draft = Draft::new(WireEvent::Purchase(event), "refund")
            .from("customer_id", customer_path.clone())
            .from("order_id", "id")
            .from("occurred_at", occurred_path)
            .from("amount_minor", format!("{path}.transactions"))
            .from("currency", currency_path.clone());
        draft.id_key = Some(format!("refund:{refund_id}"));
        drafts.push(draft);
    }
    if drafts.is_empty() {
        return Ok(Mapped::Ignored("the order's refunds moved no money".into()));
    }
    Ok(Mapped::Events(drafts))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::mapping::Mapping;

    fn mapping() -> ShopifyMapping {
        Mapping::built_in().expect("built-in").shopify
    }

    fn one(m: Mapped) -> v1::Purchase {
        match m {
            Mapped::Events(mut d) if d.len() == 1 => match d.remove(0).event {
                WireEvent::Purchase(p) => p,
                other => panic!("not a purchase: {other:?}"),
            },
            other => panic!("not one event: {other:?}"),
        }
    }

    fn order() -> Value {
        json!({
            "id": 450789469,
            "processed_at": "2026-05-01T10:00:00+09:00",
            "currency": "JPY",
            "total_price": "12000",
            "total_discounts": "500",
            "source_name": "pos",
            "customer": {"id": 207119551},
            "discount_codes": [{"code": "SPRING"}],
            "note_attributes": [{"name": "ref", "value": "99"}],
            "line_items": [
                {"sku": "TEA-01", "quantity": 2, "price": "3000", "vendor": "Acme"},
                {"sku": "TV-55", "quantity": 1, "price": "6500", "product_type": "TV"}
            ]
        })
    }

    #[test]
    fn plain_fields_map_with_categories_channel_coupon_and_referral() {
        let m = Mapping::parse_over_built_in(
            "[shopify]\nreferral_note_attribute = \"ref\"\ncustomer_id_prefix = \"s-\"\n[shopify.categories]\nby_product_type = { \"tv\" = \"electronics\" }\nby_sku_prefix = { \"TEA\" = \"groceries\", \"TEA-\" = \"daily_goods\" }\n",
        )
        .expect("mapping")
        .shopify;
        let p = one(map(Some("orders/paid"), &order(), &m).expect("maps"));
        assert_eq!(p.customer_id, "s-207119551");
        assert_eq!(p.order_id, "450789469");
        assert_eq!((p.amount_minor, p.currency.as_str()), (12000, "JPY"));
        assert_eq!(p.discount_minor, 500);
        assert_eq!(p.coupon_code, "SPRING");
        assert_eq!(p.channel, "store");
        assert_eq!(p.referred_by, "s-99");
        assert_eq!(p.kind(), v1::PurchaseKind::Purchase);
        let cats: Vec<&str> = p.line_items.iter().map(|l| l.category.as_str()).collect();
        assert_eq!(cats, ["daily_goods", "electronics"]);
        assert_eq!(p.line_items[0].unit_price_minor, 3000);
        assert_eq!(p.occurred_at.map(|t| t.seconds), Some(1_777_597_200));
    }

    #[test]
    fn money_sets_win_over_plain_fields() {
        let mut o = order();
        o["total_price_set"] = json!({"shop_money": {"amount": "110.50", "currency_code": "USD"},
                                      "presentment_money": {"amount": "16500", "currency_code": "JPY"}});
        let p = one(map(Some("orders/create"), &o, &mapping()).expect("maps"));
        assert_eq!((p.amount_minor, p.currency.as_str()), (11050, "USD"));
        let presentment = Mapping::parse_over_built_in("[shopify]\nmoney = \"presentment\"\n")
            .expect("mapping")
            .shopify;
        let p = one(map(Some("orders/create"), &o, &presentment).expect("maps"));
        assert_eq!((p.amount_minor, p.currency.as_str()), (16500, "JPY"));
    }

    #[test]
    fn what_cannot_be_mapped_names_its_field() {
        let m = mapping();
        let mut guest = order();
        guest["customer"] = Value::Null;
        let err = map(Some("orders/paid"), &guest, &m).expect_err("no customer");
        assert_eq!(
            (err.field.as_str(), err.reason),
            ("customer.id", "missing_field")
        );
        let mut bad = order();
        bad["total_price"] = json!("12,000");
        let err = map(Some("orders/paid"), &bad, &m).expect_err("bad amount");
        assert_eq!(err.field, "total_price");
        let mut frac = order();
        frac["total_price"] = json!("12000.5");
        let err = map(Some("orders/paid"), &frac, &m).expect_err("yen have no decimals");
        assert_eq!(err.field, "total_price");
        let mut when = order();
        when["processed_at"] = json!("yesterday");
        let err = map(Some("orders/paid"), &when, &m).expect_err("bad time");
        assert_eq!(
            (err.field.as_str(), err.reason),
            ("processed_at", "invalid_timestamp")
        );
        let err = map(Some("products/create"), &order(), &m).expect_err("topic");
        assert_eq!(
            (err.field.as_str(), err.reason),
            (TOPIC_HEADER, "unsupported_topic")
        );
        let err = map(Some("refunds/create"), &order(), &m).expect_err("no customer in refunds");
        assert!(err.detail.contains("orders/updated"), "{}", err.detail);
        let err = map(None, &order(), &m).expect_err("no topic");
        assert_eq!(err.field, TOPIC_HEADER);
    }

    #[test]
    fn partial_refunds_come_from_the_order_and_are_keyed_by_refund_id() {
        let mut o = order();
        o["refunds"] = json!([
            {"id": 11, "processed_at": "2026-05-02T10:00:00+09:00",
             "transactions": [{"kind": "refund", "status": "success", "amount": "3000"},
                               {"kind": "refund", "status": "failure", "amount": "9999"}]},
            {"id": 12, "created_at": "2026-05-03T10:00:00+09:00", "transactions": [],
             "refund_line_items": [{"subtotal": 1000, "total_tax": 100}]},
            {"id": 13, "created_at": "2026-05-03T10:00:00+09:00", "transactions": [],
             "refund_line_items": []}
        ]);
        let Mapped::Events(drafts) = map(Some("orders/updated"), &o, &mapping()).expect("maps")
        else {
            panic!("events expected");
        };
        assert_eq!(drafts.len(), 2, "the restock-only refund moves no money");
        let keys: Vec<_> = drafts.iter().map(|d| d.id_key.clone()).collect();
        assert_eq!(
            keys,
            [Some("refund:11".to_owned()), Some("refund:12".to_owned())]
        );
        let amounts: Vec<i64> = drafts
            .iter()
            .map(|d| match &d.event {
                WireEvent::Purchase(p) => {
                    assert_eq!(p.kind(), v1::PurchaseKind::Refund);
                    assert_eq!(p.order_id, "450789469");
                    p.amount_minor
                }
                _ => 0,
            })
            .collect();
        assert_eq!(amounts, [3000, 1100]);
        let no_refunds = map(Some("orders/updated"), &order(), &mapping()).expect("maps");
        assert!(matches!(no_refunds, Mapped::Ignored(_)));
    }
}
