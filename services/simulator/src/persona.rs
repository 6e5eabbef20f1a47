//! The personas of the seed articles, what each one does, and the mix they come in.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

use crate::catalog::{Category, Tilt};
use crate::rng::SimRng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Persona {
    /// Frequent on their rhythm, promoter (NPS 9–10), refers others, few bad tickets.
    TrulyLoyal,
    /// Big spend, passive or silent (NPS 7–8 or none), no referrals.
    HighValueNotLoyal,
    /// Most orders discounted or with a coupon; buys around sales.
    PriceDriven,
    /// Many orders paid with programme rewards (`PTS…`, `REWARD…` coupons).
    ProgrammeDriven,
    /// Promoter with low spend.
    Angel,
    /// High spend, then a streak of bad support experiences, then a detractor.
    Hostage,
    /// Low spend, detractor, bad tickets.
    Rebel,
    /// Regular on their rhythm, then stops without a word.
    QuietChurner,
}

impl Persona {
    pub const ALL: [Persona; 8] = [
        Persona::TrulyLoyal,
        Persona::HighValueNotLoyal,
        Persona::PriceDriven,
        Persona::ProgrammeDriven,
        Persona::Angel,
        Persona::Hostage,
        Persona::Rebel,
        Persona::QuietChurner,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Persona::TrulyLoyal => "truly_loyal",
            Persona::HighValueNotLoyal => "high_value_not_loyal",
            Persona::PriceDriven => "price_driven",
            Persona::ProgrammeDriven => "programme_driven",
            Persona::Angel => "angel",
            Persona::Hostage => "hostage",
            Persona::Rebel => "rebel",
            Persona::QuietChurner => "quiet_churner",
        }
    }

    pub fn profile(self) -> &'static Profile {
        &PROFILES[self as usize]
    }

    /// An NPS answer (0–10). `after_streak`: the hostage's bad-service streak is behind them.
    pub fn nps(self, after_streak: bool, rng: &mut SimRng) -> u32 {
        let weighted = |w: &[(u32, f64)], rng: &mut SimRng| pick_weighted(w, rng).unwrap_or(0);
        match self {
            Persona::TrulyLoyal => weighted(&[(9, 0.3), (10, 0.7)], rng),
            Persona::Angel => weighted(&[(9, 0.5), (10, 0.5)], rng),
            Persona::HighValueNotLoyal | Persona::QuietChurner => {
                weighted(&[(7, 0.5), (8, 0.5)], rng)
            }
            Persona::PriceDriven => weighted(&[(6, 0.15), (7, 0.45), (8, 0.4)], rng),
            Persona::ProgrammeDriven => weighted(&[(7, 0.3), (8, 0.45), (9, 0.25)], rng),
            Persona::Hostage if !after_streak => weighted(&[(7, 0.3), (8, 0.5), (9, 0.2)], rng),
            Persona::Hostage | Persona::Rebel => weighted(
                &[
                    (0, 0.12),
                    (1, 0.12),
                    (2, 0.16),
                    (3, 0.18),
                    (4, 0.16),
                    (5, 0.14),
                    (6, 0.12),
                ],
                rng,
            ),
        }
    }
}

impl fmt::Display for Persona {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Persona {
    type Err = MixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Persona::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| MixError::UnknownPersona(s.to_owned()))
    }
}

/// How a customer feels about the shop; drives CSAT, CES and conversation sentiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mood {
    Delighted,
    Content,
    Indifferent,
    Unhappy,
    /// A hostage after the streak.
    Angry,
}

impl Mood {
    /// A satisfaction answer, 1–5.
    pub fn csat(self, rng: &mut SimRng) -> u32 {
        let w: &[(u32, f64)] = match self {
            Mood::Delighted => &[(4, 0.35), (5, 0.65)],
            Mood::Content => &[(3, 0.2), (4, 0.5), (5, 0.3)],
            Mood::Indifferent => &[(3, 0.4), (4, 0.6)],
            Mood::Unhappy => &[(1, 0.3), (2, 0.4), (3, 0.3)],
            Mood::Angry => &[(1, 0.6), (2, 0.4)],
        };
        pick_weighted(w, rng).unwrap_or(3)
    }

    /// Conversation sentiment of a ticket that went well: never below -0.45.
    pub fn calm_sentiment(self, rng: &mut SimRng) -> f64 {
        let (lo, hi) = match self {
            Mood::Delighted => (0.3, 0.9),
            Mood::Content => (0.0, 0.7),
            Mood::Indifferent => (-0.3, 0.4),
            Mood::Unhappy | Mood::Angry => (-0.45, 0.1),
        };
        round2(rng.random_range(lo..hi))
    }
}

pub fn round2(x: f64) -> f64 {
    ((x * 100.0).round() / 100.0).clamp(-1.0, 1.0)
}

pub fn pick_weighted<T: Copy>(weights: &[(T, f64)], rng: &mut SimRng) -> Option<T> {
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for (v, w) in weights {
        if x < *w {
            return Some(*v);
        }
        x -= w;
    }
    weights.last().map(|(v, _)| *v)
}

/// Sales channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Web,
    App,
    Store,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::App => "app",
            Channel::Store => "store",
        }
    }
}

/// What a persona does: the numbers behind its behaviour.
#[derive(Debug)]
pub struct Profile {
    /// Categories the customer buys in (weights); each customer takes `category_count` of them.
    pub categories: &'static [(Category, f64)],
    pub category_count: (usize, usize),
    /// The customer's interval is the category cadence times a factor drawn from this range.
    pub cadence_factor: (f64, f64),
    /// Shape of the gamma-distributed gaps: higher is more regular.
    pub regularity: f64,
    pub tilt: Tilt,
    pub extra_lines: u32,
    pub channels: &'static [(Channel, f64)],
    /// Share of the orders placed during a sale that take the sale price.
    pub sale_uptake: f64,
    /// Chance a purchase is moved into a nearby sale.
    pub sale_seeking: f64,
    /// Share of the orders outside sales with a price coupon.
    pub coupon_off_sale: f64,
    /// Share of the orders paid in part with programme rewards (points, perks).
    pub programme_rewards: f64,
    pub tickets_per_year: f64,
    /// Share of spontaneous tickets that go badly.
    pub bad_ticket_share: f64,
    /// Chance of answering a relationship NPS wave.
    pub nps_answer_rate: f64,
    /// Gets at least one NPS answer in, whatever the waves.
    pub sure_nps: bool,
    pub mood: Mood,
    /// Chance of leaving during the simulated history (a hostage: after the streak).
    pub churn: f64,
    /// Chance of being a referrer, and how many customers a referrer brings.
    pub referrer: f64,
    pub referrals: (u32, u32),
    /// Share of customers who join during the history rather than being customers already.
    pub new_joiners: f64,
}

use Category::{Beauty, DailyGoods, Electronics, Fashion, Groceries, Home};
use Channel::{App, Store, Web};

static PROFILES: [Profile; 8] = [
    // truly_loyal
    Profile {
        categories: &[
            (DailyGoods, 3.0),
            (Groceries, 3.0),
            (Beauty, 2.0),
            (Fashion, 1.5),
            (Home, 1.0),
        ],
        category_count: (2, 3),
        cadence_factor: (0.75, 1.0),
        regularity: 6.0,
        tilt: Tilt::Normal,
        extra_lines: 1,
        channels: &[(App, 0.6), (Web, 0.3), (Store, 0.1)],
        sale_uptake: 0.3,
        sale_seeking: 0.0,
        coupon_off_sale: 0.03,
        programme_rewards: 0.08,
        tickets_per_year: 1.5,
        bad_ticket_share: 0.05,
        nps_answer_rate: 0.6,
        sure_nps: true,
        mood: Mood::Delighted,
        churn: 0.0,
        referrer: 1.0,
        referrals: (1, 3),
        new_joiners: 0.0,
    },
    // high_value_not_loyal
    Profile {
        categories: &[
            (Fashion, 3.0),
            (Beauty, 2.0),
            (Electronics, 2.0),
            (Home, 2.0),
        ],
        category_count: (2, 3),
        cadence_factor: (0.6, 0.9),
        regularity: 3.0,
        tilt: Tilt::Premium,
        extra_lines: 1,
        channels: &[(Web, 0.5), (Store, 0.3), (App, 0.2)],
        sale_uptake: 0.4,
        sale_seeking: 0.0,
        coupon_off_sale: 0.05,
        programme_rewards: 0.0,
        tickets_per_year: 2.0,
        bad_ticket_share: 0.05,
        nps_answer_rate: 0.25,
        sure_nps: false,
        mood: Mood::Indifferent,
        churn: 0.25,
        referrer: 0.0,
        referrals: (0, 0),
        new_joiners: 0.35,
    },
    // price_driven
    Profile {
        categories: &[
            (DailyGoods, 3.0),
            (Groceries, 2.0),
            (Fashion, 2.0),
            (Beauty, 2.0),
        ],
        category_count: (1, 3),
        cadence_factor: (0.9, 1.3),
        regularity: 2.5,
        tilt: Tilt::Normal,
        extra_lines: 0,
        channels: &[(Web, 0.5), (App, 0.5)],
        sale_uptake: 1.0,
        sale_seeking: 0.6,
        coupon_off_sale: 0.6,
        programme_rewards: 0.0,
        tickets_per_year: 1.5,
        bad_ticket_share: 0.1,
        nps_answer_rate: 0.3,
        sure_nps: false,
        mood: Mood::Content,
        churn: 0.2,
        referrer: 0.0,
        referrals: (0, 0),
        new_joiners: 0.35,
    },
    // programme_driven: rewards on 40% of the orders, no other discounts, so the spend share
    // with a discount stays under one half and the engine does not see a price-driven customer.
    Profile {
        categories: &[
            (DailyGoods, 3.0),
            (Groceries, 3.0),
            (Beauty, 2.0),
            (Fashion, 1.0),
        ],
        category_count: (1, 3),
        cadence_factor: (0.8, 1.1),
        regularity: 4.0,
        tilt: Tilt::Normal,
        extra_lines: 0,
        channels: &[(App, 0.8), (Web, 0.2)],
        sale_uptake: 0.0,
        sale_seeking: 0.0,
        coupon_off_sale: 0.0,
        programme_rewards: 0.4,
        tickets_per_year: 1.5,
        bad_ticket_share: 0.05,
        nps_answer_rate: 0.35,
        sure_nps: false,
        mood: Mood::Content,
        churn: 0.1,
        referrer: 0.0,
        referrals: (0, 0),
        new_joiners: 0.35,
    },
    // angel
    Profile {
        categories: &[(DailyGoods, 3.0), (Beauty, 2.0), (Groceries, 1.0)],
        category_count: (1, 2),
        cadence_factor: (1.8, 2.6),
        regularity: 3.0,
        tilt: Tilt::Cheap,
        extra_lines: 0,
        channels: &[(Store, 0.5), (App, 0.3), (Web, 0.2)],
        sale_uptake: 0.2,
        sale_seeking: 0.0,
        coupon_off_sale: 0.02,
        programme_rewards: 0.05,
        tickets_per_year: 1.0,
        bad_ticket_share: 0.0,
        nps_answer_rate: 0.7,
        sure_nps: true,
        mood: Mood::Delighted,
        churn: 0.05,
        referrer: 0.3,
        referrals: (1, 1),
        new_joiners: 0.35,
    },
    // hostage
    Profile {
        categories: &[
            (Fashion, 3.0),
            (Electronics, 2.0),
            (Home, 2.0),
            (Beauty, 2.0),
            (DailyGoods, 1.0),
        ],
        category_count: (2, 3),
        cadence_factor: (0.6, 0.9),
        regularity: 4.0,
        tilt: Tilt::Premium,
        extra_lines: 1,
        channels: &[(Web, 0.5), (App, 0.3), (Store, 0.2)],
        sale_uptake: 0.3,
        sale_seeking: 0.0,
        coupon_off_sale: 0.03,
        programme_rewards: 0.05,
        tickets_per_year: 1.5,
        bad_ticket_share: 0.0,
        nps_answer_rate: 0.4,
        sure_nps: true,
        mood: Mood::Content,
        churn: 0.5,
        referrer: 0.0,
        referrals: (0, 0),
        new_joiners: 0.0,
    },
    // rebel
    Profile {
        categories: &[
            (DailyGoods, 3.0),
            (Groceries, 1.0),
            (Beauty, 1.0),
            (Fashion, 1.0),
        ],
        category_count: (1, 2),
        cadence_factor: (1.8, 3.0),
        regularity: 2.0,
        tilt: Tilt::Cheap,
        extra_lines: 0,
        channels: &[(Web, 0.5), (App, 0.3), (Store, 0.2)],
        sale_uptake: 0.5,
        sale_seeking: 0.0,
        coupon_off_sale: 0.15,
        programme_rewards: 0.0,
        tickets_per_year: 3.0,
        bad_ticket_share: 0.6,
        nps_answer_rate: 0.5,
        sure_nps: true,
        mood: Mood::Unhappy,
        churn: 0.3,
        referrer: 0.0,
        referrals: (0, 0),
        new_joiners: 0.35,
    },
    // quiet_churner
    Profile {
        categories: &[(DailyGoods, 3.0), (Groceries, 3.0), (Beauty, 2.0)],
        category_count: (1, 2),
        cadence_factor: (0.9, 1.1),
        regularity: 8.0,
        tilt: Tilt::Normal,
        extra_lines: 0,
        channels: &[(App, 0.4), (Web, 0.4), (Store, 0.2)],
        sale_uptake: 0.2,
        sale_seeking: 0.0,
        coupon_off_sale: 0.03,
        programme_rewards: 0.05,
        tickets_per_year: 0.5,
        bad_ticket_share: 0.0,
        nps_answer_rate: 0.15,
        sure_nps: false,
        mood: Mood::Content,
        churn: 1.0,
        referrer: 0.0,
        referrals: (0, 0),
        new_joiners: 0.0,
    },
];

/// Why a persona mix was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum MixError {
    UnknownPersona(String),
    BadEntry(String),
    BadWeight(String),
    NothingToDraw,
}

impl fmt::Display for MixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = Persona::ALL.iter().map(|p| p.as_str()).collect();
        match self {
            MixError::UnknownPersona(p) => {
                write!(f, "unknown persona {p:?}; known: {}", names.join(", "))
            }
            MixError::BadEntry(e) => write!(f, "{e:?} is not NAME=WEIGHT"),
            MixError::BadWeight(w) => write!(f, "weight {w:?} is not a finite number >= 0"),
            MixError::NothingToDraw => write!(f, "the persona weights add up to zero"),
        }
    }
}

impl std::error::Error for MixError {}

/// Relative weights of the personas.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    weights: [f64; 8],
}

impl Default for Mix {
    /// Price- and programme-driven customers and quiet churners are the many; hostages the few.
    fn default() -> Self {
        Self {
            weights: [12.0, 12.0, 18.0, 12.0, 10.0, 6.0, 12.0, 18.0],
        }
    }
}

impl FromStr for Mix {
    type Err = MixError;

    /// `hostage=1,truly_loyal=2`: only the personas named, in these proportions.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut weights = [0.0; 8];
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, weight) = entry
                .split_once('=')
                .ok_or_else(|| MixError::BadEntry(entry.to_owned()))?;
            let persona: Persona = name.trim().parse()?;
            let weight: f64 = weight
                .trim()
                .parse()
                .ok()
                .filter(|w: &f64| w.is_finite() && *w >= 0.0)
                .ok_or_else(|| MixError::BadWeight(weight.trim().to_owned()))?;
            weights[persona as usize] = weight;
        }
        if weights.iter().sum::<f64>() <= 0.0 {
            return Err(MixError::NothingToDraw);
        }
        Ok(Self { weights })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<_> = Persona::ALL
            .iter()
            .filter(|p| self.weights[**p as usize] > 0.0)
            .map(|p| format!("{}={}", p, self.weights[*p as usize]))
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl Mix {
    pub fn weight(&self, persona: Persona) -> f64 {
        self.weights[persona as usize]
    }

    /// The personas of `n` customers: counts proportional to the weights (largest remainder),
    /// in a shuffled order.
    pub fn allocate(&self, n: usize, rng: &mut SimRng) -> Vec<Persona> {
        let total: f64 = self.weights.iter().sum();
        let exact: Vec<f64> = self.weights.iter().map(|w| w / total * n as f64).collect();
        let mut counts: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
        let mut order: Vec<usize> = (0..exact.len()).collect();
        order.sort_by(|a, b| {
            let fa = exact[*a] - exact[*a].floor();
            let fb = exact[*b] - exact[*b].floor();
            fb.total_cmp(&fa).then(a.cmp(b))
        });
        let missing = n.saturating_sub(counts.iter().sum());
        for i in order
            .into_iter()
            .filter(|i| self.weights[*i] > 0.0)
            .cycle()
            .take(missing)
        {
            counts[i] += 1;
        }
        let mut personas: Vec<Persona> = Persona::ALL
            .iter()
            .zip(&counts)
            .flat_map(|(p, c)| std::iter::repeat_n(*p, *c))
            .collect();
        for i in (1..personas.len()).rev() {
            personas.swap(i, rng.random_range(0..=i));
        }
        personas
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Persona::ALL {
            assert_eq!(p.as_str().parse::<Persona>(), Ok(p));
            assert!(std::ptr::eq(p.profile(), &PROFILES[p as usize]));
        }
    }

    #[test]
    fn a_mix_overrides_the_default() {
        let mix: Mix = "hostage=1, truly_loyal=2".parse().expect("mix");
        assert_eq!(mix.weight(Persona::Hostage), 1.0);
        assert_eq!(mix.weight(Persona::TrulyLoyal), 2.0);
        assert_eq!(mix.weight(Persona::Rebel), 0.0);
        assert_eq!(mix.to_string(), "truly_loyal=2,hostage=1");
        let personas = mix.allocate(30, &mut SimRng::new(1));
        assert_eq!(personas.len(), 30);
        assert_eq!(
            personas.iter().filter(|p| **p == Persona::Hostage).count(),
            10
        );
        assert_eq!(
            personas
                .iter()
                .filter(|p| **p == Persona::TrulyLoyal)
                .count(),
            20
        );
    }

    #[test]
    fn bad_mixes_are_refused_with_a_reason() {
        assert_eq!(
            "vip=1".parse::<Mix>(),
            Err(MixError::UnknownPersona("vip".into()))
        );
        assert_eq!(
            "angel".parse::<Mix>(),
            Err(MixError::BadEntry("angel".into()))
        );
        assert_eq!(
            "angel=-1".parse::<Mix>(),
            Err(MixError::BadWeight("-1".into()))
        );
        assert!("angel=NaN".parse::<Mix>().is_err());
        assert_eq!("angel=0".parse::<Mix>(), Err(MixError::NothingToDraw));
        assert!(
            MixError::UnknownPersona("x".into())
                .to_string()
                .contains("quiet_churner")
        );
    }

    #[test]
    fn the_default_mix_gives_every_persona_to_a_small_crowd() {
        let personas = Mix::default().allocate(12, &mut SimRng::new(3));
        assert_eq!(personas.len(), 12);
        let distinct: std::collections::BTreeSet<_> = personas.iter().collect();
        assert!(distinct.len() >= 7, "{personas:?}");
        let many = Mix::default().allocate(1_000, &mut SimRng::new(3));
        let hostages = many.iter().filter(|p| **p == Persona::Hostage).count();
        assert_eq!(hostages, 60);
    }

    #[test]
    fn scores_stay_in_range_and_fit_the_persona() {
        let mut rng = SimRng::new(11);
        for _ in 0..2_000 {
            for p in Persona::ALL {
                for after in [false, true] {
                    assert!(p.nps(after, &mut rng) <= 10);
                }
            }
            assert!(Persona::TrulyLoyal.nps(false, &mut rng) >= 9);
            assert!(Persona::Rebel.nps(false, &mut rng) <= 6);
            assert!(Persona::Hostage.nps(true, &mut rng) <= 6);
            assert!(Persona::Hostage.nps(false, &mut rng) >= 7);
            for m in [
                Mood::Delighted,
                Mood::Content,
                Mood::Indifferent,
                Mood::Unhappy,
                Mood::Angry,
            ] {
                assert!((1..=5).contains(&m.csat(&mut rng)));
                let s = m.calm_sentiment(&mut rng);
                assert!((-0.45..=1.0).contains(&s), "{s}");
            }
        }
    }
}
