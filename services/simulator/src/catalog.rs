//! The product catalogue: categories with their purchase cadence and price level, and SKUs
//! whose prices never change, so the same SKU costs the same in every order.

use rand::Rng;

use crate::rng::SimRng;

/// Product categories. The name is what goes on the wire (`LineItem.category`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    DailyGoods,
    Groceries,
    Beauty,
    Fashion,
    Home,
    Electronics,
}

#[derive(Debug)]
struct Spec {
    name: &'static str,
    /// Typical days between two purchases in this category.
    cadence_days: f64,
    sku_prefix: &'static str,
    skus: u32,
    /// Median unit price, JPY.
    median_price: f64,
    /// Spread of unit prices around the median (log scale).
    price_sigma: f64,
    /// Lines per order, inclusive.
    lines: (u32, u32),
    max_quantity: u32,
}

static SPECS: [Spec; 6] = [
    Spec {
        name: "daily_goods",
        cadence_days: 7.0,
        sku_prefix: "DG",
        skus: 800,
        median_price: 480.0,
        price_sigma: 0.6,
        lines: (1, 3),
        max_quantity: 3,
    },
    Spec {
        name: "groceries",
        cadence_days: 7.0,
        sku_prefix: "GR",
        skus: 1500,
        median_price: 320.0,
        price_sigma: 0.6,
        lines: (3, 8),
        max_quantity: 3,
    },
    Spec {
        name: "beauty",
        cadence_days: 30.0,
        sku_prefix: "BT",
        skus: 600,
        median_price: 2_800.0,
        price_sigma: 0.6,
        lines: (1, 2),
        max_quantity: 2,
    },
    Spec {
        name: "fashion",
        cadence_days: 45.0,
        sku_prefix: "FA",
        skus: 1200,
        median_price: 5_900.0,
        price_sigma: 0.6,
        lines: (1, 3),
        max_quantity: 1,
    },
    Spec {
        name: "home",
        cadence_days: 90.0,
        sku_prefix: "HM",
        skus: 700,
        median_price: 4_800.0,
        price_sigma: 0.9,
        lines: (1, 2),
        max_quantity: 2,
    },
    Spec {
        name: "electronics",
        cadence_days: 365.0,
        sku_prefix: "EL",
        skus: 400,
        median_price: 24_800.0,
        price_sigma: 1.0,
        lines: (1, 2),
        max_quantity: 1,
    },
];

/// The most expensive unit the catalogue holds, JPY.
pub const MAX_UNIT_PRICE: i64 = 1_980_000;
/// Most units of one SKU in one order.
pub const MAX_QUANTITY: u32 = 10;
/// Most lines in one order.
pub const MAX_LINES: u32 = 10;

impl Category {
    pub const ALL: [Category; 6] = [
        Category::DailyGoods,
        Category::Groceries,
        Category::Beauty,
        Category::Fashion,
        Category::Home,
        Category::Electronics,
    ];

    fn spec(self) -> &'static Spec {
        &SPECS[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// Typical days between two purchases in this category (daily goods weekly, electronics
    /// once a year).
    pub fn cadence_days(self) -> f64 {
        self.spec().cadence_days
    }

    pub fn from_name(name: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// How a customer picks among the SKUs of a category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tilt {
    /// The cheaper of two candidates.
    Cheap,
    Normal,
    /// The dearest of three candidates.
    Premium,
}

/// One order line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub sku: String,
    pub category: Category,
    pub quantity: u32,
    pub unit_price: i64,
}

impl Item {
    pub fn gross(&self) -> i64 {
        self.unit_price.saturating_mul(i64::from(self.quantity))
    }
}

/// Prices as shops print them: ¥198, ¥2,980, ¥12,800.
fn shelf_price(raw: f64) -> i64 {
    let raw = raw.clamp(50.0, MAX_UNIT_PRICE as f64);
    if raw < 1_000.0 {
        ((raw / 10.0).round() as i64 * 10 - 2).max(48)
    } else {
        ((raw / 100.0).ceil() as i64 * 100 - 20).min(MAX_UNIT_PRICE)
    }
}

/// The fixed unit price of SKU number `index` of `category`.
pub fn unit_price(category: Category, index: u32) -> i64 {
    let spec = category.spec();
    let mut rng = SimRng::derive(0x00C4_7A10_6000 + category as u64, u64::from(index));
    // Irwin–Hall: the sum of four uniforms is close enough to a normal for prices.
    let sum: f64 = (0..4).map(|_| rng.random::<f64>()).sum();
    let z = (sum - 2.0) * 3f64.sqrt();
    shelf_price(spec.median_price * (spec.price_sigma * z).exp())
}

fn sku(category: Category, index: u32) -> String {
    format!("{}-{:05}", category.spec().sku_prefix, index)
}

/// A popular SKU is picked more often than an obscure one.
fn pick_index(spec: &Spec, rng: &mut SimRng) -> u32 {
    let u: f64 = rng.random();
    ((f64::from(spec.skus) * u * u) as u32).min(spec.skus - 1)
}

fn pick(category: Category, tilt: Tilt, rng: &mut SimRng) -> (u32, i64) {
    let spec = category.spec();
    let candidates = match tilt {
        Tilt::Cheap => 2,
        Tilt::Normal => 1,
        Tilt::Premium => 3,
    };
    let mut best: Option<(u32, i64)> = None;
    for _ in 0..candidates {
        let index = pick_index(spec, rng);
        let price = unit_price(category, index);
        best = match best {
            Some(b) if (tilt == Tilt::Cheap) == (price >= b.1) => Some(b),
            _ => Some((index, price)),
        };
    }
    best.unwrap_or((0, unit_price(category, 0)))
}

/// A basket in one category: `extra_lines` above the category's usual number of lines.
pub fn basket(category: Category, tilt: Tilt, extra_lines: u32, rng: &mut SimRng) -> Vec<Item> {
    let spec = category.spec();
    let lines = (rng.random_range(spec.lines.0..=spec.lines.1) + extra_lines).min(MAX_LINES);
    let mut items: Vec<Item> = Vec::with_capacity(lines as usize);
    for _ in 0..lines {
        let (index, unit_price) = pick(category, tilt, rng);
        let quantity = if spec.max_quantity > 1 && rng.random_bool(0.3) {
            rng.random_range(2..=spec.max_quantity)
        } else {
            1
        };
        let sku = sku(category, index);
        match items.iter_mut().find(|i| i.sku == sku) {
            Some(same) => same.quantity = (same.quantity + quantity).min(MAX_QUANTITY),
            None => items.push(Item {
                sku,
                category,
                quantity,
                unit_price,
            }),
        }
    }
    items
}

/// Sum of unit price × quantity.
pub fn gross(items: &[Item]) -> i64 {
    items.iter().map(Item::gross).fold(0, i64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cadences_follow_the_category() {
        let days: Vec<_> = Category::ALL.iter().map(|c| c.cadence_days()).collect();
        assert_eq!(days, [7.0, 7.0, 30.0, 45.0, 90.0, 365.0]);
        for c in Category::ALL {
            assert_eq!(Category::from_name(c.name()), Some(c));
        }
    }

    #[test]
    fn a_sku_always_costs_the_same_and_looks_like_a_shelf_price() {
        for c in Category::ALL {
            for i in [0, 1, 17, 399] {
                let p = unit_price(c, i);
                assert_eq!(p, unit_price(c, i));
                assert!((48..=MAX_UNIT_PRICE).contains(&p), "{p}");
                assert!(p % 10 == 8 || p % 100 == 80, "{p}");
            }
        }
        assert_eq!(shelf_price(200.0), 198);
        assert_eq!(shelf_price(2_950.0), 2_980);
        assert_eq!(shelf_price(1e12), 1_979_980);
    }

    #[test]
    fn premium_baskets_cost_more_than_cheap_ones() {
        let mut rng = SimRng::new(5);
        let mean = |tilt, rng: &mut SimRng| {
            (0..2_000)
                .map(|_| gross(&basket(Category::Fashion, tilt, 0, rng)))
                .sum::<i64>()
                / 2_000
        };
        let cheap = mean(Tilt::Cheap, &mut rng);
        let normal = mean(Tilt::Normal, &mut rng);
        let premium = mean(Tilt::Premium, &mut rng);
        assert!(
            cheap < normal && normal < premium,
            "{cheap} {normal} {premium}"
        );
    }

    #[test]
    fn baskets_respect_the_bounds() {
        let mut rng = SimRng::new(9);
        for c in Category::ALL {
            for _ in 0..500 {
                let items = basket(c, Tilt::Premium, 3, &mut rng);
                assert!(!items.is_empty() && items.len() <= MAX_LINES as usize);
                for i in &items {
                    assert_eq!(i.category, c);
                    assert!((1..=MAX_QUANTITY).contains(&i.quantity));
                }
                let mut skus: Vec<_> = items.iter().map(|i| &i.sku).collect();
                skus.sort();
                skus.dedup();
                assert_eq!(skus.len(), items.len(), "one line per SKU");
            }
        }
    }
}
