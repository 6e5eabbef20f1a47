//! The BG/NBD model (Fader, Hardie & Lee 2005, *Marketing Science* 24(2), 275–284).
//!
//! Equation numbers refer to that paper: (6) the likelihood of one customer's `(x, t_x, T)`,
//! (7) the expected number of repeat purchases of a new customer, (10) the expected number of
//! purchases in the next `t` given the customer's history. `P(alive)` follows Fader, Hardie &
//! Lee, "Computing P(alive) using the BG/NBD model" (technical note).
//!
//! All durations share the caller's time unit (see the [module docs](super)).

use super::special::{hyp2f1, ln_gamma, log_add_exp};
use super::{CustomerSummary, ModelError, duration, positive};

/// Distance from `a = 1` inside which eqs. (7) and (10), whose `(a+b+x−1)/(a−1)` factor and
/// bracket both vanish at `a = 1` (a removable singularity), are interpolated linearly between
/// `a = 1 ± A_NEAR_ONE` instead of being evaluated with catastrophic cancellation.
const A_NEAR_ONE: f64 = 1e-4;

/// Step used to extrapolate across the removable pole of `₂F₁(·;c;·)` at `c = a + b − 1 = 0`.
const C_STEP: f64 = 1e-7;

/// BG/NBD parameters: purchase rates `λ ~ Gamma(r, α)` (shape `r`, rate `α` in the caller's
/// time unit) and dropout probabilities `p ~ Beta(a, b)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbdParams {
    r: f64,
    alpha: f64,
    a: f64,
    b: f64,
}

/// The parts of ln L (eq. 6) that depend only on `x`, shared by all customers with that `x`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct XTerms {
    /// `r + x`.
    r_plus_x: f64,
    /// `ln A₁ + ln A₂` with the `α` powers of `A₃, A₄` taken in (see [`BgNbdParams::x_terms`]):
    /// `ln[Γ(r+x)/(Γ(r) αˣ)] + ln[B(a, b+x)/B(a, b)]`.
    ln_base: f64,
    /// `ln(a / (b + x − 1))` when `x > 0`.
    ln_dropout: Option<f64>,
}

/// `ln[Γ(v+n)/Γ(v)]` is taken as a difference of `ln Γ` values, which loses ~`ε·v ln v`, only
/// for more than this many terms and `v` below [`RISING_SUM_BELOW`]; otherwise it is summed as
/// `Σ ln(v+j)`, accurate for any `v` (huge `v` is a fit at its concentration cap).
const RISING_SUM_TERMS: u32 = 256;
const RISING_SUM_BELOW: f64 = 64.0;

/// `Σ_{j=from}^{to−1} ln((v+j)/s)` = `ln[Γ(v+to)/Γ(v+from)] − (to−from) ln s`.
pub(crate) fn ln_rising_ratio(v: f64, s: f64, from: u32, to: u32) -> f64 {
    if to - from <= RISING_SUM_TERMS || v >= RISING_SUM_BELOW {
        (from..to).map(|j| ((v + f64::from(j)) / s).ln()).sum()
    } else {
        ln_gamma(v + f64::from(to)) - ln_gamma(v + f64::from(from)) - f64::from(to - from) * s.ln()
    }
}

impl BgNbdParams {
    /// # Errors
    /// [`ModelError::InvalidParameter`] unless all four are positive and finite.
    pub fn new(r: f64, alpha: f64, a: f64, b: f64) -> Result<Self, ModelError> {
        Ok(Self {
            r: positive("r", r)?,
            alpha: positive("alpha", alpha)?,
            a: positive("a", a)?,
            b: positive("b", b)?,
        })
    }

    /// Shape `r` of the purchase-rate distribution.
    pub fn r(&self) -> f64 {
        self.r
    }

    /// Rate `α` of the purchase-rate distribution (per time unit; a scale in time units).
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// First shape `a` of the dropout-probability distribution.
    pub fn a(&self) -> f64 {
        self.a
    }

    /// Second shape `b` of the dropout-probability distribution.
    pub fn b(&self) -> f64 {
        self.b
    }

    /// Log-likelihood of one customer's `(x, t_x, T)`, eq. (6):
    /// `ln L = ln A₁ + ln A₂ + ln(A₃ + δ_{x>0} A₄)` with the two-term sum done by log-sum-exp,
    /// rearranged to stay accurate when `r, α` or `a, b` are huge (a fit at its concentration
    /// cap, see [`super::fit`]).
    pub fn log_likelihood(&self, customer: &CustomerSummary) -> f64 {
        self.log_likelihood_with(&self.x_terms(customer.x()), customer)
    }

    /// The `x`-only part of eq. (6), to be reused across customers sharing `x`.
    ///
    /// Eq. (6) is rearranged so that it stays accurate when `r, α` (or `a, b`) are huge, i.e.
    /// when the mixing distribution is nearly a point mass: `A₁A₃ = Γ(r+x)/(Γ(r) αˣ) ·
    /// (1 + T/α)^−(r+x)` and `A₂ = Π_{j<x} (b+j)/(a+b+j)`, instead of differences of `ln Γ`
    /// values of size `r ln r` that cancel.
    pub(crate) fn x_terms(&self, x: u32) -> XTerms {
        self.x_terms_from(0, x, 0.0)
    }

    /// [`Self::x_terms`] for each of the `xs` (meant to be ascending), accumulating the
    /// products of eq. (6) from one `x` to the next.
    pub(crate) fn x_terms_ascending(&self, xs: &[u32]) -> Vec<XTerms> {
        let mut previous = (0, 0.0);
        xs.iter()
            .map(|&x| {
                let (from, ln_products) = if previous.0 <= x { previous } else { (0, 0.0) };
                let terms = self.x_terms_from(from, x, ln_products);
                previous = (x, terms.ln_base);
                terms
            })
            .collect()
    }

    /// The terms for `x`, given `ln_products`, the `ln_base` of `from ≤ x`.
    fn x_terms_from(&self, from: u32, x: u32, ln_products: f64) -> XTerms {
        let (r, a, b) = (self.r, self.a, self.b);
        let ln_a1 = ln_rising_ratio(r, self.alpha, from, x);
        let ln_a2 = ln_rising_ratio(b, 1.0, from, x) - ln_rising_ratio(a + b, 1.0, from, x);
        let xf = f64::from(x);
        XTerms {
            r_plus_x: r + xf,
            ln_base: ln_products + ln_a1 + ln_a2,
            ln_dropout: (x > 0).then(|| (a / (b + xf - 1.0)).ln()),
        }
    }

    /// Eq. (6) given the precomputed `x`-only terms.
    pub(crate) fn log_likelihood_with(&self, terms: &XTerms, customer: &CustomerSummary) -> f64 {
        let ln_a3 = -terms.r_plus_x * (customer.age() / self.alpha).ln_1p();
        let tail = match terms.ln_dropout {
            None => ln_a3,
            Some(ln_drop) => {
                let ln_a4 = ln_drop - terms.r_plus_x * (customer.t_x() / self.alpha).ln_1p();
                log_add_exp(ln_a3, ln_a4)
            }
        };
        terms.ln_base + tail
    }

    /// Probability that the customer is still alive at `T`:
    /// `1 / (1 + δ_{x>0} · a/(b+x−1) · ((α+T)/(α+t_x))^(r+x))`, evaluated as a logistic function
    /// of the log-odds so that it neither overflows nor loses precision. Exactly 1 when `x = 0`.
    pub fn p_alive(&self, customer: &CustomerSummary) -> f64 {
        match self.ln_death_odds(customer) {
            None => 1.0,
            Some(l) if l > 0.0 => {
                let e = (-l).exp();
                e / (1.0 + e)
            }
            Some(l) => 1.0 / (1.0 + l.exp()),
        }
    }

    /// `ln[a/(b+x−1) · ((α+T)/(α+t_x))^(r+x)]`, the log-odds of having dropped out; `None` when
    /// `x = 0`.
    fn ln_death_odds(&self, customer: &CustomerSummary) -> Option<f64> {
        if customer.x() == 0 {
            return None;
        }
        let xf = f64::from(customer.x());
        let ln_ratio = ((customer.age() - customer.t_x()) / (self.alpha + customer.t_x())).ln_1p();
        Some((self.a / (self.b + xf - 1.0)).ln() + (self.r + xf) * ln_ratio)
    }

    /// Expected number of repeat purchases in `(0, t]` of a customer just acquired, eq. (7):
    /// `E[X(t)] = (a+b−1)/(a−1) · [1 − (α/(α+t))^r ₂F₁(r, b; a+b−1; t/(α+t))]`.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] if `t` is negative or not finite;
    /// [`ModelError::Hypergeometric`] if `t` is so large relative to `α` that `₂F₁` cannot be
    /// summed (`t/(α+t)` within ~4·10⁻⁵ of 1).
    pub fn expected_purchases(&self, t: f64) -> Result<f64, ModelError> {
        let t = duration("t", t)?;
        self.purchases_if_alive(t, 0, 0.0)
    }

    /// Expected number of purchases in `(T, T+t]` given the customer's history, eq. (10):
    /// `E[Y(t) | x, t_x, T] = (a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x)
    /// ₂F₁(r+x, b+x; a+b+x−1; t/(α+T+t))] · P(alive)`.
    ///
    /// # Errors
    /// As for [`Self::expected_purchases`].
    pub fn expected_purchases_conditional(
        &self,
        t: f64,
        customer: &CustomerSummary,
    ) -> Result<f64, ModelError> {
        let t = duration("t", t)?;
        let if_alive = self.purchases_if_alive(t, customer.x(), customer.age())?;
        Ok(if_alive * self.p_alive(customer))
    }

    /// The first two factors of eq. (10) (eq. (7) when `x = 0`, `T = 0`), with the removable
    /// singularities at `a = 1` and `a + b + x − 1 = 0` handled by interpolation.
    pub(crate) fn purchases_if_alive(&self, t: f64, x: u32, age: f64) -> Result<f64, ModelError> {
        if (self.a - 1.0).abs() < A_NEAR_ONE {
            let below = Self {
                a: 1.0 - A_NEAR_ONE,
                ..*self
            };
            let above = Self {
                a: 1.0 + A_NEAR_ONE,
                ..*self
            };
            let lo = below.purchases_if_alive_raw(t, x, age)?;
            let hi = above.purchases_if_alive_raw(t, x, age)?;
            let w = (self.a - below.a) / (above.a - below.a);
            return Ok(lo + w * (hi - lo));
        }
        if x == 0 && (self.a + self.b - 1.0).abs() < C_STEP {
            let step = |k: f64| Self {
                b: self.b + k * C_STEP,
                ..*self
            };
            let one = step(1.0).purchases_if_alive_raw(t, x, age)?;
            let two = step(2.0).purchases_if_alive_raw(t, x, age)?;
            return Ok(2.0 * one - two);
        }
        self.purchases_if_alive_raw(t, x, age)
    }

    /// `(a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) ₂F₁(r+x, b+x; a+b+x−1; t/(α+T+t))]`.
    fn purchases_if_alive_raw(&self, t: f64, x: u32, age: f64) -> Result<f64, ModelError> {
        let xf = f64::from(x);
        let c = self.a + self.b + xf - 1.0;
        let horizon = self.alpha + age;
        let z = t / (horizon + t);
        let f = hyp2f1(self.r + xf, self.b + xf, c, z)?;
        let ln_factor = -(self.r + xf) * (t / horizon).ln_1p();
        Ok(c / (self.a - 1.0) * f.one_minus_times(ln_factor))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{assert_rel, simulate_bgnbd_purchases};
    use super::*;

    /// CDNOW estimates, time in weeks (paper, section 4).
    fn cdnow() -> BgNbdParams {
        BgNbdParams::new(0.243, 4.414, 0.793, 2.426).expect("valid")
    }

    fn customer(x: u32, t_x: f64, age: f64) -> CustomerSummary {
        CustomerSummary::new(x, t_x, age).expect("valid summary")
    }

    #[test]
    fn conditional_expectation_matches_published_cdnow_example() {
        // Fader & Hardie: a CDNOW customer with x = 2, t_x = 30.43, T = 38.86 (weeks) is
        // expected to make 1.226 purchases in the next 39 weeks.
        let e = cdnow()
            .expected_purchases_conditional(39.0, &customer(2, 30.43, 38.86))
            .expect("finite");
        eprintln!("E[Y(39) | 2, 30.43, 38.86] = {e}");
        assert!((e - 1.226).abs() < 1e-3, "{e}");
        // Same formula evaluated in 30-digit arithmetic with mpmath 1.3.0: 1.22602817476714444.
        assert_rel(e, 1.226_028_174_767_144_4, 1e-12);
    }

    /// Individual-level likelihood of (x, t_x, T) given λ and p (paper, eq. 3).
    fn individual_likelihood(lambda: f64, p: f64, x: u32, t_x: f64, age: f64) -> f64 {
        let xf = f64::from(x);
        let alive = (1.0 - p).powf(xf) * lambda.powf(xf) * (-lambda * age).exp();
        let dead = if x > 0 {
            p * (1.0 - p).powf(xf - 1.0) * lambda.powf(xf) * (-lambda * t_x).exp()
        } else {
            0.0
        };
        alive + dead
    }

    /// ∫∫ L(λ, p) Gamma(λ; r, α) Beta(p; a, b) dλ dp by composite Simpson rules. The
    /// substitution λ = u^(1/r) removes the gamma density's singularity at 0:
    /// Gamma(λ) dλ = α^r e^(−αλ)/(r Γ(r)) du.
    fn likelihood_by_quadrature(params: &BgNbdParams, x: u32, t_x: f64, age: f64) -> f64 {
        let (r, alpha) = (params.r(), params.alpha());
        // Beyond λ = 80/α the gamma density factor e^(−αλ) is below e^(−80).
        let u_max = (80.0 / alpha).powf(r);
        let gamma_norm = alpha.powf(r) / (r * libm::tgamma(r));
        let given_p = |p: f64| {
            let integrand = |u: f64| {
                let lambda = u.powf(1.0 / r);
                gamma_norm * (-alpha * lambda).exp() * individual_likelihood(lambda, p, x, t_x, age)
            };
            simpson(integrand, 0.0, u_max, 1200)
        };
        beta_expectation(given_p, params.a(), params.b(), 2000)
    }

    /// ∫ g(p) Beta(p; a, b) dp by Simpson's rule on [0, ½] with p = v^(1/a) and on [½, 1] with
    /// 1 − p = w^(1/b), which remove the density's end-point singularities:
    /// p^(a−1) dp = dv/a and (1−p)^(b−1) dp = −dw/b.
    fn beta_expectation(g: impl Fn(f64) -> f64, a: f64, b: f64, n: usize) -> f64 {
        let ln_beta = libm::lgamma(a) + libm::lgamma(b) - libm::lgamma(a + b);
        let left = |v: f64| {
            let p = v.powf(1.0 / a);
            g(p) * (1.0 - p).powf(b - 1.0) / a
        };
        let right = |w: f64| {
            let q = w.powf(1.0 / b);
            g(1.0 - q) * (1.0 - q).powf(a - 1.0) / b
        };
        let sum = simpson(left, 0.0, 0.5_f64.powf(a), n) + simpson(right, 0.0, 0.5_f64.powf(b), n);
        sum * (-ln_beta).exp()
    }

    fn simpson(f: impl Fn(f64) -> f64, lo: f64, hi: f64, n: usize) -> f64 {
        let h = (hi - lo) / n as f64;
        let mut s = f(lo) + f(hi);
        for i in 1..n {
            s += f(lo + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0
    }

    #[test]
    fn likelihood_matches_numerical_double_integral() {
        let params = cdnow();
        for (x, t_x, age) in [
            (0, 0.0, 38.86),
            (2, 30.43, 38.86),
            (1, 5.0, 20.0),
            (7, 35.0, 39.0),
        ] {
            let closed = params.log_likelihood(&customer(x, t_x, age));
            let numeric = likelihood_by_quadrature(&params, x, t_x, age).ln();
            eprintln!("x={x} t_x={t_x} T={age}: closed {closed:.10} quadrature {numeric:.10}");
            assert!((closed - numeric).abs() < 1e-5, "{closed} vs {numeric}");
        }
    }

    #[test]
    fn likelihood_matches_arbitrary_precision_evaluation() {
        // Eq. (6) evaluated with mpmath 1.3.0 at 30 digits, CDNOW parameters.
        let params = cdnow();
        let cases = [
            ((0, 0.0, 38.86), -0.554_713_276_438_158_5),
            ((2, 30.43, 38.86), -9.458_606_307_066_27),
            ((1, 5.0, 20.0), -4.581_425_386_239_171),
            ((7, 35.0, 39.0), -22.156_648_373_962_285),
        ];
        for ((x, t_x, age), want) in cases {
            assert_rel(params.log_likelihood(&customer(x, t_x, age)), want, 1e-13);
        }
    }

    #[test]
    fn p_alive_is_one_without_repeat_purchases() {
        for age in [0.0, 10.0, 1e6] {
            assert_eq!(cdnow().p_alive(&customer(0, 0.0, age)), 1.0);
        }
    }

    #[test]
    fn p_alive_decreases_with_age() {
        let params = cdnow();
        let mut previous = 1.0;
        for age in [30.43, 35.0, 40.0, 52.0, 78.0, 200.0, 1e4] {
            let p = params.p_alive(&customer(2, 30.43, age));
            assert!(
                p < previous || (age == 30.43 && p <= previous),
                "T={age}: {p}"
            );
            previous = p;
        }
        assert!(previous > 0.0 && previous < 1e-3, "{previous}");
    }

    #[test]
    fn p_alive_hand_computed() {
        // CDNOW parameters, x = 2, t_x = 30.43, T = 38.86:
        //   a/(b+x−1)            = 0.793 / 3.426                 = 0.231465266
        //   (α+T)/(α+t_x)        = 43.274 / 34.844               = 1.241935484
        //   ln of that           = 0.216671037; × (r+x) = 2.243 → 0.485993136
        //   ((α+T)/(α+t_x))^2.243 = e^0.485993136                = 1.625788836
        //   odds                 = 0.231465266 × 1.625788836     = 0.376313645
        //   P(alive)             = 1 / 1.376313645               = 0.726578570
        let p = cdnow().p_alive(&customer(2, 30.43, 38.86));
        assert!((p - 0.726_578_570).abs() < 1e-9, "{p}");
    }

    #[test]
    fn p_alive_is_stable_for_extreme_histories() {
        let params = cdnow();
        let long_gone = params.p_alive(&customer(500, 1.0, 1e5));
        assert!((0.0..1e-300).contains(&long_gone), "{long_gone}");
        let just_bought = params.p_alive(&customer(500, 100.0, 100.0));
        // odds = a/(b+499) = 0.793/501.426
        assert_rel(just_bought, 1.0 / (1.0 + 0.793 / 501.426), 1e-14);
    }

    #[test]
    fn new_customer_expectation_matches_monte_carlo() {
        // 200 000 simulated CDNOW-like customers, λ ~ Gamma(r, α), p ~ Beta(a, b), Poisson
        // purchases, dropout with probability p after each repeat purchase.
        let params = cdnow();
        for t in [39.0, 78.0] {
            let simulated = simulate_bgnbd_purchases(&params, t, 200_000, 7);
            let closed = params.expected_purchases(t).expect("finite");
            eprintln!("E[X({t})]: closed form {closed:.5}, Monte Carlo {simulated:.5}");
            assert_rel(closed, simulated, 0.03);
        }
        // mpmath 1.3.0, eq. (7) at 30 digits: E[X(39)] = 1.19672319332081684.
        assert_rel(
            params.expected_purchases(39.0).expect("finite"),
            1.196_723_193_320_817,
            1e-12,
        );
    }

    /// E[X(t)] = ∫ (1/p)(1 − (α/(α+pt))^r) Beta(p; a, b) dp: integrate out λ first given p
    /// (E[X(t) | λ, p] = (1 − e^(−λpt))/p), then p numerically.
    fn expected_purchases_by_quadrature(params: &BgNbdParams, t: f64) -> f64 {
        let (r, alpha) = (params.r(), params.alpha());
        let given_p = |p: f64| {
            if p > 0.0 {
                -(-r * (p * t / alpha).ln_1p()).exp_m1() / p
            } else {
                r * t / alpha
            }
        };
        beta_expectation(given_p, params.a(), params.b(), 20_000)
    }

    #[test]
    fn new_customer_expectation_matches_quadrature_including_a_equal_one() {
        for a in [0.793, 1.0, 1.0 + 3e-5, 1.7, 0.3] {
            for b in [2.426, 0.7] {
                let params = BgNbdParams::new(0.243, 4.414, a, b).expect("valid");
                let closed = params.expected_purchases(39.0).expect("finite");
                let numeric = expected_purchases_by_quadrature(&params, 39.0);
                eprintln!("a={a} b={b}: closed {closed:.10} quadrature {numeric:.10}");
                assert_rel(closed, numeric, 1e-6);
            }
        }
    }

    #[test]
    fn removable_pole_at_a_plus_b_equal_one() {
        let at_pole = BgNbdParams::new(0.5, 3.0, 0.6, 0.4).expect("valid");
        let numeric = expected_purchases_by_quadrature(&at_pole, 20.0);
        assert_rel(
            at_pole.expected_purchases(20.0).expect("finite"),
            numeric,
            1e-6,
        );
    }

    #[test]
    fn new_customer_expectation_is_linear_at_small_t() {
        // E[X(t)] = E[λ] t + O(t²) = (r/α) t.
        let params = cdnow();
        let t = 1e-4;
        assert_rel(
            params.expected_purchases(t).expect("finite"),
            0.243 / 4.414 * t,
            1e-4,
        );
        assert_eq!(params.expected_purchases(0.0).expect("finite"), 0.0);
    }

    #[test]
    fn conditional_expectation_of_a_fresh_customer_is_eq_7() {
        let params = cdnow();
        let fresh = CustomerSummary::new_customer();
        for t in [1.0, 39.0, 500.0] {
            assert_rel(
                params
                    .expected_purchases_conditional(t, &fresh)
                    .expect("finite"),
                params.expected_purchases(t).expect("finite"),
                1e-14,
            );
        }
    }

    #[test]
    fn conditional_expectation_handles_heavy_buyers() {
        // x = 400 makes ₂F₁ ≈ 10^100+; the result must stay finite, positive and below the
        // posterior mean rate × t bound (r+x)/(α+T) · t.
        let params = cdnow();
        let heavy = customer(400, 77.0, 78.0);
        let e = params
            .expected_purchases_conditional(39.0, &heavy)
            .expect("finite");
        let bound = (0.243 + 400.0) / (4.414 + 78.0) * 39.0;
        assert!(e > 0.5 * bound && e < bound, "{e} vs bound {bound}");
    }

    /// `ln ∫ L(λ, p) Gamma(λ; r, α) dλ` at a fixed `p` (a point-mass dropout distribution):
    /// `∫ λˣ e^(−λτ) Gamma(λ; r, α) dλ = Γ(r+x)/Γ(r) · α^r/(α+τ)^(r+x)` (paper, eq. 3 mixed).
    fn ln_likelihood_fixed_p(r: f64, alpha: f64, p: f64, x: u32, t_x: f64, age: f64) -> f64 {
        let xf = f64::from(x);
        let mixed = |tau: f64| {
            libm::lgamma(r + xf) - libm::lgamma(r) + r * alpha.ln() - (r + xf) * (alpha + tau).ln()
        };
        let alive = xf * (1.0 - p).ln() + mixed(age);
        if x == 0 {
            return alive;
        }
        let dead = p.ln() + (xf - 1.0) * (1.0 - p).ln() + mixed(t_x);
        log_add_exp(alive, dead)
    }

    /// Customers for the point-mass checks.
    const HISTORIES: [(u32, f64, f64); 4] = [
        (0, 0.0, 60.0),
        (1, 3.0, 60.0),
        (4, 50.0, 80.0),
        (30, 70.0, 100.0),
    ];

    // What a fit at the boundary stores: a + b or r at a cap (10⁸ by default, 10⁶ checked
    // too). Every function must match the point-mass limit, derived here from the
    // individual-level model and not from eqs. (6)–(10), up to the spread the capped
    // distribution still has (a relative standard deviation of 1/√(cap) ≤ 10⁻³; it moves
    // ln E[e^(−λT)] by about (E[λ]T)²/(2r) ≤ 10⁻³ here). Horizons up to 520 weeks: ₂F₁ used to
    // fail to converge with a + b = 10⁶, and to cancel catastrophically with r = 10⁶ once
    // r/α·t ≳ 30.

    #[test]
    fn same_dropout_probability_for_everyone_is_the_point_mass_limit() {
        for cap in [1e6, 1e8] {
            same_dropout_probability(cap);
        }
    }

    fn same_dropout_probability(cap: f64) {
        let (r, alpha, m) = (0.8, 6.0, 0.1);
        let params = BgNbdParams::new(r, alpha, m * cap, (1.0 - m) * cap).expect("valid");
        for t in [52.0, 520.0] {
            // Given p, E[purchases in (0, t] | λ] = (1 − e^(−λpt))/p; λ ~ Gamma(r, α).
            let new = (1.0 - (alpha / (alpha + m * t)).powf(r)) / m;
            assert_rel(params.expected_purchases(t).expect("finite"), new, 1e-3);
        }
        for (x, t_x, age) in HISTORIES {
            let c = customer(x, t_x, age);
            let xf = f64::from(x);
            let want = ln_likelihood_fixed_p(r, alpha, m, x, t_x, age);
            assert_rel(params.log_likelihood(&c), want, 1e-4);
            let odds = m / (1.0 - m) * ((alpha + age) / (alpha + t_x)).powf(r + xf);
            let alive = if x == 0 { 1.0 } else { 1.0 / (1.0 + odds) };
            assert!((params.p_alive(&c) - alive).abs() < 1e-3, "x={x}");
            for t in [52.0, 520.0] {
                // λ | history, alive ~ Gamma(r+x, α+T).
                let h = alpha + age;
                let future = (1.0 - (h / (h + m * t)).powf(r + xf)) / m;
                let got = params
                    .expected_purchases_conditional(t, &c)
                    .expect("finite");
                assert_rel(got, alive * future, 1e-3);
            }
        }
    }

    #[test]
    fn same_purchase_rate_for_everyone_is_the_point_mass_limit() {
        for cap in [1e6, 1e8] {
            same_purchase_rate(cap);
        }
    }

    fn same_purchase_rate(cap: f64) {
        let (mu, a, b) = (0.5, 0.8, 2.5);
        let params = BgNbdParams::new(cap, cap / mu, a, b).expect("valid");
        // Given λ = μ, E[purchases in t | p] = (1 − e^(−μpt))/p, averaged over p.
        let given_p = |t: f64| {
            move |p: f64| {
                if p > 0.0 {
                    -(-mu * p * t).exp_m1() / p
                } else {
                    mu * t
                }
            }
        };
        for t in [52.0, 520.0] {
            let new = beta_expectation(given_p(t), a, b, 4_000);
            assert_rel(params.expected_purchases(t).expect("finite"), new, 1e-3);
        }
        let ln_beta = |a: f64, b: f64| libm::lgamma(a) + libm::lgamma(b) - libm::lgamma(a + b);
        for (x, t_x, age) in HISTORIES {
            let c = customer(x, t_x, age);
            let xf = f64::from(x);
            // L = μˣ [e^(−μT) B(a, b+x) + δ e^(−μ t_x) B(a+1, b+x−1)] / B(a, b).
            let base = xf * mu.ln() - ln_beta(a, b);
            let alive_term = base - mu * age + ln_beta(a, b + xf);
            let want = if x == 0 {
                alive_term
            } else {
                log_add_exp(alive_term, base - mu * t_x + ln_beta(a + 1.0, b + xf - 1.0))
            };
            assert_rel(params.log_likelihood(&c), want, 1e-4);
            let alive = if x == 0 {
                1.0
            } else {
                1.0 / (1.0 + a / (b + xf - 1.0) * (mu * (age - t_x)).exp())
            };
            assert!((params.p_alive(&c) - alive).abs() < 1e-3, "x={x}");
            for t in [52.0, 520.0] {
                // p | history, alive ~ Beta(a, b+x).
                let future = beta_expectation(given_p(t), a, b + xf, 4_000);
                let got = params
                    .expected_purchases_conditional(t, &c)
                    .expect("finite");
                assert_rel(got, alive * future, 1e-3);
            }
        }
    }

    #[test]
    fn rejects_invalid_parameters_and_inputs() {
        assert!(BgNbdParams::new(0.0, 1.0, 1.0, 1.0).is_err());
        assert!(BgNbdParams::new(1.0, f64::NAN, 1.0, 1.0).is_err());
        assert!(CustomerSummary::new(1, 5.0, 4.0).is_err());
        assert!(CustomerSummary::new(1, -1.0, 4.0).is_err());
        assert!(cdnow().expected_purchases(-1.0).is_err());
    }
}
