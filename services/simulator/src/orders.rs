//! Orders: what a customer pays, which discount or coupon they use, and refunds.
//!
//! Every order satisfies `sum(unit_price × quantity) − discount = amount`, with
//! `0 ≤ discount < sum`, so the amount paid is always at least ¥1. Refunds carry the lines they
//! return and the share of the order's discount those lines had, so the same holds for them.

use kizuna_proto::v1;
use rand::Rng;

use crate::calendar::{Sale, Secs, timestamp};
use crate::catalog::Item;
use crate::persona::{Channel, Profile, pick_weighted};
use crate::rng::SimRng;

/// Share of orders that are refunded (in part or in full) later.
pub const REFUND_RATE: f64 = 0.03;
/// Programme rewards: coupon codes the engine's default programme recognises by prefix.
pub const PROGRAMME_PREFIXES: [&str; 2] = ["PTS", "REWARD"];

/// Price coupons outside sales: code, percent off, weight.
const COUPONS: [(&str, i64, f64); 4] = [
    ("SALE10", 10, 0.4),
    ("FLASH15", 15, 0.25),
    ("APP5", 5, 0.2),
    ("MAIL20", 20, 0.15),
];

/// Points customers redeem, ¥1 a point.
const POINTS: [i64; 6] = [100, 300, 500, 1_000, 2_000, 3_000];

/// Perks of the loyalty programme: code, percent off.
const PERKS: [(&str, i64); 2] = [("REWARD-BDAY", 10), ("REWARD-RANKUP", 5)];

/// What an order is discounted by, and the coupon used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discount {
    pub minor: i64,
    pub coupon: String,
}

impl Discount {
    const NONE: Discount = Discount {
        minor: 0,
        coupon: String::new(),
    };
}

fn percent_off(gross: i64, percent: i64, coupon: &str) -> Discount {
    let minor = (gross.saturating_mul(percent) / 100).min(gross - 1);
    if minor <= 0 {
        return Discount::NONE;
    }
    Discount {
        minor,
        coupon: coupon.to_owned(),
    }
}

fn programme_reward(gross: i64, rng: &mut SimRng) -> Discount {
    if rng.random_bool(0.75) {
        let wanted = POINTS[rng.random_range(0..POINTS.len())];
        let points = wanted.min(gross / 2 / 100 * 100);
        if points >= 100 {
            return Discount {
                minor: points,
                coupon: format!("PTS{points}"),
            };
        }
    }
    let (code, percent) = PERKS[rng.random_range(0..PERKS.len())];
    percent_off(gross, percent, code)
}

/// The discount on an order of `gross` placed during `sale` (if any). `first_order`: a new
/// customer's first order, which may use the welcome coupon.
pub fn discount(
    profile: &Profile,
    sale: Option<&Sale>,
    first_order: bool,
    gross: i64,
    rng: &mut SimRng,
) -> Discount {
    if gross < 2 {
        return Discount::NONE;
    }
    if rng.random_bool(profile.programme_rewards) {
        return programme_reward(gross, rng);
    }
    if let Some(sale) = sale {
        if rng.random_bool(profile.sale_uptake) {
            // Some sale prices need the code, others apply by themselves.
            let code = if rng.random_bool(0.6) { sale.code } else { "" };
            return percent_off(gross, sale.percent, code);
        }
    } else if rng.random_bool(profile.coupon_off_sale) {
        let weights: Vec<_> = COUPONS.iter().map(|(c, p, w)| ((*c, *p), *w)).collect();
        if let Some((code, percent)) = pick_weighted(&weights, rng) {
            return percent_off(gross, percent, code);
        }
    }
    if first_order && rng.random_bool(0.5) {
        return percent_off(gross, 10, "WELCOME10");
    }
    Discount::NONE
}

fn line_item(item: &Item) -> v1::LineItem {
    v1::LineItem {
        sku: item.sku.clone(),
        category: item.category.name().to_owned(),
        quantity: item.quantity,
        unit_price_minor: item.unit_price,
    }
}

fn lines_gross(lines: &[v1::LineItem]) -> i64 {
    lines
        .iter()
        .map(|l| l.unit_price_minor.saturating_mul(i64::from(l.quantity)))
        .fold(0, i64::saturating_add)
}

/// Who placed the order, when, and how.
#[derive(Debug, Clone, Copy)]
pub struct OrderMeta<'a> {
    pub customer_id: &'a str,
    pub at: Secs,
    pub channel: Channel,
    /// The referrer, on a referred customer's first order.
    pub referred_by: Option<&'a str>,
}

/// A new order (`PURCHASE_KIND_PURCHASE`); the event id is filled in when it is emitted.
pub fn purchase(
    meta: OrderMeta<'_>,
    order_id: String,
    items: &[Item],
    discount: Discount,
) -> v1::Purchase {
    let line_items: Vec<_> = items.iter().map(line_item).collect();
    let gross = lines_gross(&line_items);
    v1::Purchase {
        event_id: String::new(),
        customer_id: meta.customer_id.to_owned(),
        occurred_at: Some(timestamp(meta.at)),
        order_id,
        kind: v1::PurchaseKind::Purchase as i32,
        amount_minor: gross - discount.minor,
        currency: "JPY".to_owned(),
        line_items,
        discount_minor: discount.minor,
        coupon_code: discount.coupon,
        channel: meta.channel.as_str().to_owned(),
        referred_by: meta.referred_by.unwrap_or_default().to_owned(),
    }
}

/// A refund of `order` at `at`: the whole order, or some units of one line.
pub fn refund(order: &v1::Purchase, at: Secs, rng: &mut SimRng) -> v1::Purchase {
    let gross = lines_gross(&order.line_items);
    let single_unit =
        order.line_items.len() == 1 && order.line_items.first().is_some_and(|l| l.quantity == 1);
    let (line_items, discount_minor, amount_minor) =
        if single_unit || gross <= 0 || rng.random_bool(0.5) {
            (
                order.line_items.clone(),
                order.discount_minor,
                order.amount_minor,
            )
        } else {
            let i = rng.random_range(0..order.line_items.len());
            let mut line = order.line_items[i].clone();
            if line.quantity > 1 && (order.line_items.len() == 1 || rng.random_bool(0.5)) {
                line.quantity = rng.random_range(1..line.quantity);
            }
            let returned = line
                .unit_price_minor
                .saturating_mul(i64::from(line.quantity));
            let share = i128::from(order.discount_minor) * i128::from(returned) / i128::from(gross);
            let discount = i64::try_from(share).unwrap_or(order.discount_minor);
            (vec![line], discount, returned - discount)
        };
    v1::Purchase {
        event_id: String::new(),
        customer_id: order.customer_id.clone(),
        occurred_at: Some(timestamp(at)),
        order_id: order.order_id.clone(),
        kind: v1::PurchaseKind::Refund as i32,
        amount_minor,
        currency: order.currency.clone(),
        line_items,
        discount_minor,
        coupon_code: String::new(),
        channel: order.channel.clone(),
        referred_by: String::new(),
    }
}

/// True when `coupon` is a programme reward for the engine's default programme.
pub fn is_programme_reward(coupon: &str) -> bool {
    PROGRAMME_PREFIXES.iter().any(|p| coupon.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Category, Tilt, basket};
    use crate::persona::Persona;

    fn order(rng: &mut SimRng, persona: Persona, sale: Option<&Sale>) -> v1::Purchase {
        let items = basket(Category::Groceries, Tilt::Normal, 0, rng);
        let gross = crate::catalog::gross(&items);
        let d = discount(persona.profile(), sale, false, gross, rng);
        let meta = OrderMeta {
            customer_id: "c1",
            at: 1_750_000_000,
            channel: Channel::App,
            referred_by: None,
        };
        purchase(meta, "o1".into(), &items, d)
    }

    #[test]
    fn amounts_are_gross_minus_discount_for_orders_and_refunds() {
        let mut rng = SimRng::new(2);
        let sale = Sale {
            name: "summer",
            code: "SALE20",
            percent: 20,
            start: 0,
            end: 1,
        };
        for persona in Persona::ALL {
            for i in 0..2_000 {
                let o = order(&mut rng, persona, (i % 2 == 0).then_some(&sale));
                assert!(o.discount_minor >= 0 && o.amount_minor >= 1);
                assert_eq!(
                    lines_gross(&o.line_items) - o.discount_minor,
                    o.amount_minor
                );
                let r = refund(&o, 1_750_100_000, &mut rng);
                assert_eq!(r.kind, v1::PurchaseKind::Refund as i32);
                assert_eq!(r.order_id, o.order_id);
                assert!(r.amount_minor >= 1 && r.amount_minor <= o.amount_minor);
                assert!(r.discount_minor >= 0 && r.discount_minor <= o.discount_minor);
                assert_eq!(
                    lines_gross(&r.line_items) - r.discount_minor,
                    r.amount_minor
                );
            }
        }
    }

    #[test]
    fn coupons_fit_the_persona() {
        let mut rng = SimRng::new(4);
        let share = |persona: Persona, rng: &mut SimRng, f: &dyn Fn(&v1::Purchase) -> bool| {
            (0..4_000).filter(|_| f(&order(rng, persona, None))).count() as f64 / 4_000.0
        };
        let programme = |o: &v1::Purchase| is_programme_reward(&o.coupon_code);
        let discounted = |o: &v1::Purchase| o.discount_minor > 0 || !o.coupon_code.is_empty();
        let p = share(Persona::ProgrammeDriven, &mut rng, &programme);
        assert!((0.35..0.5).contains(&p), "{p}");
        let d = share(Persona::PriceDriven, &mut rng, &discounted);
        assert!(d > 0.6, "{d}");
        let l = share(Persona::TrulyLoyal, &mut rng, &discounted);
        assert!(l < 0.25, "{l}");
        assert!(is_programme_reward("PTS500") && is_programme_reward("REWARD-BDAY"));
        assert!(!is_programme_reward("SALE20"));
    }

    #[test]
    fn tiny_orders_are_never_discounted_to_zero() {
        let mut rng = SimRng::new(1);
        for gross in [1, 2, 3, 150] {
            for _ in 0..500 {
                let d = discount(Persona::PriceDriven.profile(), None, true, gross, &mut rng);
                assert!(d.minor < gross.max(1));
                assert_eq!(d.minor == 0, d.coupon.is_empty(), "{d:?}");
            }
        }
    }
}
