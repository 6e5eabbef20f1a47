//! The MBG/NBD model (Batislam, Denizel & Filiztekin 2007, *IJRM* 24(3); the same model as
//! BTYDplus's `mbgnbd` and lifetimes' `ModifiedBetaGeoFitter`): BG/NBD in which a customer may
//! also drop out right after the first purchase, at time 0, with the same probability `p` as
//! after every repeat purchase. So, unlike BG/NBD, a customer without repeat purchases is not
//! certainly alive.
//!
//! With `λ ~ Gamma(r, α)` and `p ~ Beta(a, b)`:
//! - likelihood `L = Γ(r+x)αʳ/(Γ(r)(α+T)^(r+x)) · B(a, b+x+1)/B(a, b) · [1 + a/(b+x) ·
//!   ((α+T)/(α+t_x))^(r+x)]`;
//! - `P(alive) = 1 / (1 + a/(b+x) · ((α+T)/(α+t_x))^(r+x))`;
//! - `E[Y(t) | x, t_x, T] = (a+b+x)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) ₂F₁(r+x, b+x+1;
//!   a+b+x; t/(α+T+t))] · P(alive)` — BG/NBD's eq. (10) factor with `b + 1` for `b`, so it is
//!   computed by [`BgNbdParams`] (with its care at `a = 1`);
//! - `E[X(t)] = b/(a−1) · [1 − (α/(α+t))^r ₂F₁(r, b+1; a+b; t/(α+t))]`, i.e. `b/(a+b)` (the
//!   probability of surviving time 0) times the same factor at `x = 0, T = 0`.
//!
//! All durations share the caller's time unit (see the [module docs](super)).

use super::bgnbd::{BgNbdParams, ln_rising_ratio};
use super::special::log_add_exp;
use super::{CustomerSummary, ModelError, duration, positive};

/// MBG/NBD parameters, named as for BG/NBD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MbgNbdParams {
    r: f64,
    alpha: f64,
    a: f64,
    b: f64,
}

/// The `x`-only part of the likelihood: `ln Γ(r+x)/(Γ(r) αˣ) + ln B(a, b+x+1)/B(a, b)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MbgXTerms {
    ln_base: f64,
}

impl MbgNbdParams {
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

    pub fn r(&self) -> f64 {
        self.r
    }

    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    pub fn a(&self) -> f64 {
        self.a
    }

    pub fn b(&self) -> f64 {
        self.b
    }

    /// `B(a, b+x+1)/B(a, b) = Π_{j=0}^{x} (b+j)/(a+b+j)`, summed in logs so that huge `a + b`
    /// (a fit at its concentration cap) stays accurate.
    pub(crate) fn x_terms(&self, x: u32) -> MbgXTerms {
        let ln_beta_ratio = ln_rising_ratio(self.b, 1.0, 0, x + 1)
            - ln_rising_ratio(self.a + self.b, 1.0, 0, x + 1);
        MbgXTerms {
            ln_base: ln_rising_ratio(self.r, self.alpha, 0, x) + ln_beta_ratio,
        }
    }

    /// Log-likelihood of one customer's `(x, t_x, T)` (see the module docs).
    pub fn log_likelihood(&self, customer: &CustomerSummary) -> f64 {
        self.log_likelihood_with(&self.x_terms(customer.x()), customer)
    }

    pub(crate) fn log_likelihood_with(&self, terms: &MbgXTerms, customer: &CustomerSummary) -> f64 {
        let xf = f64::from(customer.x());
        terms.ln_base - (self.r + xf) * (customer.age() / self.alpha).ln_1p()
            + log_add_exp(0.0, self.ln_death_odds(customer))
    }

    /// `ln[a/(b+x) · ((α+T)/(α+t_x))^(r+x)]`.
    fn ln_death_odds(&self, customer: &CustomerSummary) -> f64 {
        let xf = f64::from(customer.x());
        let ln_ratio = ((customer.age() - customer.t_x()) / (self.alpha + customer.t_x())).ln_1p();
        (self.a / (self.b + xf)).ln() + (self.r + xf) * ln_ratio
    }

    /// Probability that the customer is still alive at `T`.
    pub fn p_alive(&self, customer: &CustomerSummary) -> f64 {
        let l = self.ln_death_odds(customer);
        if l > 0.0 {
            let e = (-l).exp();
            e / (1.0 + e)
        } else {
            1.0 / (1.0 + l.exp())
        }
    }

    /// BG/NBD with `b + 1`: its "purchases if alive" factor is MBG/NBD's.
    fn shifted(&self) -> Result<BgNbdParams, ModelError> {
        BgNbdParams::new(self.r, self.alpha, self.a, self.b + 1.0)
    }

    /// Expected number of repeat purchases in `(0, t]` of a customer just acquired.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] if `t` is negative or not finite;
    /// [`ModelError::Hypergeometric`] if `₂F₁` cannot be summed.
    pub fn expected_purchases(&self, t: f64) -> Result<f64, ModelError> {
        let t = duration("t", t)?;
        let survive_start = self.b / (self.a + self.b);
        Ok(survive_start * self.shifted()?.purchases_if_alive(t, 0, 0.0)?)
    }

    /// Expected number of purchases in `(T, T+t]` given the history.
    ///
    /// # Errors
    /// As for [`Self::expected_purchases`].
    pub fn expected_purchases_conditional(
        &self,
        t: f64,
        customer: &CustomerSummary,
    ) -> Result<f64, ModelError> {
        let t = duration("t", t)?;
        let if_alive = self
            .shifted()?
            .purchases_if_alive(t, customer.x(), customer.age())?;
        Ok(if_alive * self.p_alive(customer))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::assert_rel;
    use super::*;

    fn customer(x: u32, t_x: f64, age: f64) -> CustomerSummary {
        CustomerSummary::new(x, t_x, age).expect("valid summary")
    }

    fn params() -> MbgNbdParams {
        MbgNbdParams::new(0.525, 6.183, 0.891, 1.614).expect("valid")
    }

    /// Individual level: λˣ (1−p)^(x+1) e^(−λT) + λˣ p (1−p)ˣ e^(−λ t_x) (dropout possible
    /// after each of the x + 1 purchases), mixed over λ in closed form and over p numerically.
    fn likelihood_by_quadrature(p: &MbgNbdParams, x: u32, t_x: f64, age: f64) -> f64 {
        let (r, alpha, a, b) = (p.r(), p.alpha(), p.a(), p.b());
        let xf = f64::from(x);
        let mixed = |tau: f64| {
            (libm::lgamma(r + xf) - libm::lgamma(r) + r * alpha.ln()
                - (r + xf) * (alpha + tau).ln())
            .exp()
        };
        let g =
            |q: f64| (1.0 - q).powf(xf + 1.0) * mixed(age) + q * (1.0 - q).powf(xf) * mixed(t_x);
        // ∫ g(q) Beta(q; a, b) dq, q = v^(1/a) on [0, ½], 1 − q = w^(1/b) on [½, 1].
        let ln_beta = libm::lgamma(a) + libm::lgamma(b) - libm::lgamma(a + b);
        let n = 20_000;
        let simpson = |f: &dyn Fn(f64) -> f64, hi: f64| {
            let h = hi / n as f64;
            let mut s = f(0.0) + f(hi);
            for i in 1..n {
                s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
            }
            s * h / 3.0
        };
        let left = |v: f64| {
            let q = v.powf(1.0 / a);
            g(q) * (1.0 - q).powf(b - 1.0) / a
        };
        let right = |w: f64| {
            let q = w.powf(1.0 / b);
            g(1.0 - q) * (1.0 - q).powf(a - 1.0) / b
        };
        (simpson(&left, 0.5_f64.powf(a)) + simpson(&right, 0.5_f64.powf(b))) * (-ln_beta).exp()
    }

    #[test]
    fn likelihood_matches_quadrature() {
        let p = params();
        for (x, t_x, age) in [(0, 0.0, 38.86), (2, 30.43, 38.86), (7, 35.0, 39.0)] {
            let closed = p.log_likelihood(&customer(x, t_x, age));
            let numeric = likelihood_by_quadrature(&p, x, t_x, age).ln();
            assert!((closed - numeric).abs() < 1e-5, "{closed} vs {numeric}");
        }
    }

    #[test]
    fn new_customer_expectations_agree() {
        let p = params();
        let fresh = CustomerSummary::new_customer();
        for t in [1.0, 39.0, 200.0] {
            assert_rel(
                p.expected_purchases_conditional(t, &fresh).expect("ok"),
                p.expected_purchases(t).expect("ok"),
                1e-12,
            );
        }
        // Small t: E[λ] t · b/(a+b).
        let t = 1e-5;
        assert_rel(
            p.expected_purchases(t).expect("ok"),
            0.525 / 6.183 * t * 1.614 / (0.891 + 1.614),
            1e-4,
        );
        // Without repeat purchases P(alive) < 1, unlike BG/NBD.
        assert!(p.p_alive(&customer(0, 0.0, 30.0)) < 1.0);
    }
}
