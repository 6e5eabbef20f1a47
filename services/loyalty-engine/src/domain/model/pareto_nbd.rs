//! The Pareto/NBD model (Schmittlein, Morrison & Colombo 1987, *Management Science* 33(1)),
//! in the formulation of Fader, Hardie & Lee, "A note on deriving the Pareto/NBD model and
//! related expressions" (2005): while alive a customer buys at a Poisson rate `λ ~ Gamma(r, α)`
//! and dies after an exponential lifetime of rate `μ ~ Gamma(s, β)`, independently — unlike
//! BG/NBD, dropout can happen at any time, not only right after a purchase.
//!
//! Equation numbers refer to the note: (18)–(20) the likelihood with its `A₀` term, (21)
//! P(alive), (22) the conditional expectation; the unconditional expectation is eq. (17) of
//! Schmittlein et al.
//!
//! All durations share the caller's time unit (see the [module docs](super)).

use super::bgnbd::ln_rising_ratio;
use super::special::{hyp2f1, log_add_exp};
use super::{CustomerSummary, ModelError, duration, positive};

/// `ln D` of eqs. (19)–(20) by the Gauss series while `z = |α−β|/(max(α,β)+t_x)` is at most
/// this (≤ 60 terms), by quadrature above (see [`ParetoNbdParams::ln_d_quadrature`]).
const SERIES_UP_TO: f64 = 0.5;

/// Below this distance from `s = 1`, `[1 − (1+u)^−(s−1)]/(s−1)` is taken as its limit `ln(1+u)`.
const S_NEAR_ONE: f64 = 1e-9;

/// Pareto/NBD parameters: purchase rates `λ ~ Gamma(r, α)` and dropout rates `μ ~ Gamma(s, β)`
/// (shapes `r, s`; rates `α, β` in the caller's time unit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParetoNbdParams {
    r: f64,
    alpha: f64,
    s: f64,
    beta: f64,
}

/// `ln Γ(r+x)/(Γ(r) αˣ)`, the `x`-only part of both likelihood terms.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParetoXTerms {
    ln_rising: f64,
}

impl ParetoNbdParams {
    /// # Errors
    /// [`ModelError::InvalidParameter`] unless all four are positive and finite.
    pub fn new(r: f64, alpha: f64, s: f64, beta: f64) -> Result<Self, ModelError> {
        Ok(Self {
            r: positive("r", r)?,
            alpha: positive("alpha", alpha)?,
            s: positive("s", s)?,
            beta: positive("beta", beta)?,
        })
    }

    pub fn r(&self) -> f64 {
        self.r
    }

    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    pub fn s(&self) -> f64 {
        self.s
    }

    pub fn beta(&self) -> f64 {
        self.beta
    }

    pub(crate) fn x_terms(&self, x: u32) -> ParetoXTerms {
        ParetoXTerms {
            ln_rising: ln_rising_ratio(self.r, self.alpha, 0, x),
        }
    }

    /// Log-likelihood of one customer's `(x, t_x, T)`, eq. (18):
    /// `L = Γ(r+x) αʳ βˢ / Γ(r) · [1/((α+T)^(r+x) (β+T)ˢ) + s/(r+s+x) · A₀]`.
    /// Both terms are formed in log space.
    ///
    /// # Errors
    /// [`ModelError::Hypergeometric`] if `₂F₁` of `A₀` cannot be summed.
    pub fn log_likelihood(&self, customer: &CustomerSummary) -> Result<f64, ModelError> {
        self.log_likelihood_with(&self.x_terms(customer.x()), customer)
    }

    pub(crate) fn log_likelihood_with(
        &self,
        terms: &ParetoXTerms,
        customer: &CustomerSummary,
    ) -> Result<f64, ModelError> {
        let (alive, dead) = self.ln_terms(terms, customer)?;
        Ok(log_add_exp(alive, dead))
    }

    /// The logarithms of the two terms of eq. (18): alive at `T`, and died in `(t_x, T]`.
    ///
    /// With `m = max(α, β)` and `D = ₂F₁(r+s+x, b'; r+s+x+1; |α−β|/(m+t_x)) (1+t_x/m)^−(r+s+x)
    /// − (same at T)` (eqs. 19–20; `b' = r+x` if `α < β`, else `s+1`), the dead term is
    /// `ln Γ(r+x)/(Γ(r) αˣ) + (r+x) ln(α/m) + s ln(β/m) + ln s − ln(r+s+x) + ln D`: the powers of
    /// `α, β` and `m` are combined before taking logs so that nothing cancels.
    fn ln_terms(
        &self,
        terms: &ParetoXTerms,
        customer: &CustomerSummary,
    ) -> Result<(f64, f64), ModelError> {
        let (r, alpha, s, beta) = (self.r, self.alpha, self.s, self.beta);
        let xf = f64::from(customer.x());
        let age = customer.age();
        let alive = terms.ln_rising - (r + xf) * (age / alpha).ln_1p() - s * (age / beta).ln_1p();
        let m = alpha.max(beta);
        let ln_d = if (alpha - beta).abs() / (m + customer.t_x()) <= SERIES_UP_TO {
            self.ln_d_series(xf, customer.t_x(), age)?
        } else {
            self.ln_d_quadrature(xf, customer.t_x(), age)
        };
        let dead = terms.ln_rising + (r + xf) * (alpha / m).ln() + s * (beta / m).ln() + s.ln()
            - (r + s + xf).ln()
            + ln_d;
        Ok((alive, dead))
    }

    /// `ln D` by eqs. (19)–(20): the difference of two Gauss series, each converging like
    /// `zⁿ` with `z = |α−β|/(m+t)`.
    fn ln_d_series(&self, xf: f64, t_x: f64, age: f64) -> Result<f64, ModelError> {
        let (r, alpha, s, beta) = (self.r, self.alpha, self.s, self.beta);
        let rsx = r + s + xf;
        let (m, b2) = if alpha < beta {
            (beta, r + xf)
        } else {
            (alpha, s + 1.0)
        };
        let gap = (alpha - beta).abs();
        let ln_at = |t: f64| -> Result<f64, ModelError> {
            let f = hyp2f1(rsx, b2, rsx + 1.0, gap / (m + t))?;
            Ok(f.ln_scale + f.mantissa.ln() - rsx * (t / m).ln_1p())
        };
        let at_tx = ln_at(t_x)?;
        let at_age = ln_at(age)?;
        Ok(if at_age < at_tx {
            at_tx + (-(at_age - at_tx).exp_m1()).ln()
        } else {
            f64::NEG_INFINITY
        })
    }

    /// `ln D` as the integral it is: `D = (r+s+x) ∫_{t_x/m}^{T/m} (α/m+τ)^−(r+x)
    /// (β/m+τ)^−(s+1) dτ` (death at `τ` after `x` purchases), by 8-point Gauss-Legendre panels
    /// in `u = ln(1+τ)`. The log-integrand is decreasing and its slope is steepest at each
    /// panel's left end, so a panel spans at most 2 nats of decay and at most the relative
    /// scale of `min(α,β)/m + τ`; panels stop once the
    /// integrand has fallen 60 nats below its start. Used when `z` is close to 1, where the
    /// series would need ~36·max(α,β)/min(α,β) terms.
    fn ln_d_quadrature(&self, xf: f64, t_x: f64, age: f64) -> f64 {
        const NODES: [(f64, f64); 4] = [
            (0.183_434_642_495_649_8, 0.362_683_783_378_362),
            (0.525_532_409_916_329, 0.313_706_645_877_887_3),
            (0.796_666_477_413_626_7, 0.222_381_034_453_374_5),
            (0.960_289_856_497_536_3, 0.101_228_536_290_376_3),
        ];
        let m = self.alpha.max(self.beta);
        let (a, b) = (self.alpha / m, self.beta / m);
        let (rx, s1) = (self.r + xf, self.s + 1.0);
        let (u0, u1) = ((t_x / m).ln_1p(), (age / m).ln_1p());
        if u1 <= u0 {
            return f64::NEG_INFINITY;
        }
        let ln_h = |u: f64| {
            let e = u.exp_m1();
            u - rx * (a + e).ln() - s1 * (b + e).ln()
        };
        let slope = |u: f64| {
            let (e, g) = (u.exp_m1(), u.exp());
            rx * g / (a + e) + s1 * g / (b + e) - 1.0
        };
        let reference = ln_h(u0);
        let (mut u, mut sum) = (u0, 0.0);
        for _ in 0..10_000 {
            if u >= u1 || ln_h(u) - reference < -60.0 {
                break;
            }
            // The integrand's own scale: where min(α,β)/m + τ changes by its size.
            let scale = (a.min(b) + u.exp_m1()) / u.exp();
            let width = (u1 - u).min(2.0 / slope(u).max(1e-3)).min(scale);
            let (mid, half) = (u + width / 2.0, width / 2.0);
            for (x, w) in NODES {
                sum += w
                    * half
                    * ((ln_h(mid - half * x) - reference).exp()
                        + (ln_h(mid + half * x) - reference).exp());
            }
            u += width;
        }
        reference + sum.ln() + (self.r + self.s + xf).ln()
    }

    /// Probability that the customer is still alive at `T`, eq. (21): the alive term's share of
    /// the likelihood.
    ///
    /// # Errors
    /// As for [`Self::log_likelihood`].
    pub fn p_alive(&self, customer: &CustomerSummary) -> Result<f64, ModelError> {
        let (alive, dead) = self.ln_terms(&self.x_terms(customer.x()), customer)?;
        let l = dead - alive;
        Ok(if l > 0.0 {
            let e = (-l).exp();
            e / (1.0 + e)
        } else {
            1.0 / (1.0 + l.exp())
        })
    }

    /// `[1 − (1 + t/h)^−(s−1)] / (s−1)`, and its limit `ln(1 + t/h)` at `s = 1`.
    fn horizon_factor(&self, t: f64, h: f64) -> f64 {
        let u = (t / h).ln_1p();
        let k = self.s - 1.0;
        if k.abs() < S_NEAR_ONE {
            u
        } else {
            -(-k * u).exp_m1() / k
        }
    }

    /// Expected number of repeat purchases in `(0, t]` of a customer just acquired:
    /// `E[X(t)] = rβ/(α(s−1)) · [1 − (β/(β+t))^(s−1)]`.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] if `t` is negative or not finite.
    pub fn expected_purchases(&self, t: f64) -> Result<f64, ModelError> {
        let t = duration("t", t)?;
        Ok(self.r * self.beta / self.alpha * self.horizon_factor(t, self.beta))
    }

    /// Expected number of purchases in `(T, T+t]` given the history, eq. (22):
    /// `(r+x)(β+T)/((α+T)(s−1)) · [1 − ((β+T)/(β+T+t))^(s−1)] · P(alive)`.
    ///
    /// # Errors
    /// As for [`Self::expected_purchases`] and [`Self::p_alive`].
    pub fn expected_purchases_conditional(
        &self,
        t: f64,
        customer: &CustomerSummary,
    ) -> Result<f64, ModelError> {
        let t = duration("t", t)?;
        let age = customer.age();
        let xf = f64::from(customer.x());
        let if_alive = (self.r + xf) * (self.beta + age) / (self.alpha + age)
            * self.horizon_factor(t, self.beta + age);
        Ok(if_alive * self.p_alive(customer)?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::assert_rel;
    use super::*;

    fn customer(x: u32, t_x: f64, age: f64) -> CustomerSummary {
        CustomerSummary::new(x, t_x, age).expect("valid summary")
    }

    /// Fader, Hardie & Lee's CDNOW estimates (weeks): r = 0.553, α = 10.578, s = 0.606,
    /// β = 11.669 ("RFM and CLV", 2005, and the Pareto/NBD note's spreadsheet).
    fn cdnow() -> ParetoNbdParams {
        ParetoNbdParams::new(0.553, 10.578, 0.606, 11.669).expect("valid")
    }

    /// ∫∫ L(λ, μ) Gamma(λ; r, α) Gamma(μ; s, β) dλ dμ, L(λ, μ) = λˣ e^(−(λ+μ)T) +
    /// λˣ μ/(λ+μ) (e^(−(λ+μ)t_x) − e^(−(λ+μ)T)) (note, eq. 3), λ integrated in closed form for
    /// each μ is not possible for the second term, so both are integrated numerically.
    fn likelihood_by_quadrature(p: &ParetoNbdParams, x: u32, t_x: f64, age: f64) -> f64 {
        let gamma_pdf_u = |shape: f64, rate: f64| {
            // λ = u^(1/shape): Gamma(λ) dλ = rate^shape e^(−rate λ)/(shape Γ(shape)) du.
            let norm = rate.powf(shape) / (shape * libm::tgamma(shape));
            let u_max = (80.0 / rate).powf(shape);
            (norm, u_max)
        };
        let (nl, ul) = gamma_pdf_u(p.r(), p.alpha());
        let (nm, um) = gamma_pdf_u(p.s(), p.beta());
        let xf = f64::from(x);
        let n = 1500;
        let inner = |mu: f64| {
            simpson(
                |u: f64| {
                    let lambda = u.powf(1.0 / p.r());
                    let k = lambda + mu;
                    let died = if k > 0.0 {
                        mu / k * ((-k * t_x).exp() - (-k * age).exp())
                    } else {
                        0.0
                    };
                    let l = lambda.powf(xf) * ((-k * age).exp() + died);
                    nl * (-p.alpha() * lambda).exp() * l
                },
                0.0,
                ul,
                n,
            )
        };
        simpson(
            |v: f64| {
                let mu = v.powf(1.0 / p.s());
                nm * (-p.beta() * mu).exp() * inner(mu)
            },
            0.0,
            um,
            n,
        )
    }

    fn simpson(f: impl Fn(f64) -> f64, lo: f64, hi: f64, n: usize) -> f64 {
        let h = (hi - lo) / n as f64;
        let mut s = f(lo) + f(hi);
        for i in 1..n {
            s += f(lo + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0
    }

    const HISTORIES: [(u32, f64, f64); 4] = [
        (0, 0.0, 38.86),
        (2, 30.43, 38.86),
        (1, 5.0, 20.0),
        (7, 35.0, 39.0),
    ];

    #[test]
    fn likelihood_matches_numerical_double_integral() {
        // CDNOW parameters: α < β, the first hypergeometric branch.
        let params = cdnow();
        for (x, t_x, age) in HISTORIES {
            let closed = params
                .log_likelihood(&customer(x, t_x, age))
                .expect("finite");
            let numeric = likelihood_by_quadrature(&params, x, t_x, age).ln();
            eprintln!("x={x} t_x={t_x} T={age}: {closed:.9} vs {numeric:.9}");
            assert!((closed - numeric).abs() < 1e-5, "{closed} vs {numeric}");
        }
    }

    #[test]
    fn likelihood_matches_lifetimes_when_alpha_exceeds_beta() {
        // α > β takes the other branch of eqs. (19)–(20). Reference: lifetimes 0.11.3,
        // `ParetoNBDFitter._conditional_log_likelihood([0.8, 12.0, 1.3, 5.0], x, t_x, T)`.
        let params = ParetoNbdParams::new(0.8, 12.0, 1.3, 5.0).expect("valid");
        let want = [
            -0.280_855_402_982_165_7,
            -11.119_795_654_093_673,
            -4.797_352_776_206_712,
            -23.364_405_136_445_63,
        ];
        for ((x, t_x, age), want) in HISTORIES.into_iter().zip(want) {
            let got = params
                .log_likelihood(&customer(x, t_x, age))
                .expect("finite");
            assert_rel(got, want, 1e-10);
        }
    }

    #[test]
    fn series_and_quadrature_agree() {
        for (r, alpha, s, beta) in [
            (0.553, 10.578, 0.606, 11.669),
            (0.8, 12.0, 1.3, 5.0),
            (0.3, 1.0, 0.7, 3.0),
            (2.0, 40.0, 0.4, 2.0),
        ] {
            let p = ParetoNbdParams::new(r, alpha, s, beta).expect("valid");
            for (x, t_x, age) in [
                (0, 0.0, 38.86),
                (2, 30.43, 38.86),
                (7, 35.0, 39.0),
                (40, 10.0, 300.0),
            ] {
                let xf = f64::from(x);
                let series = p.ln_d_series(xf, t_x, age).expect("series");
                let quadrature = p.ln_d_quadrature(xf, t_x, age);
                assert!(
                    (series - quadrature).abs() < 1e-10,
                    "{p:?} x={x}: {series} vs {quadrature}"
                );
            }
        }
    }

    #[test]
    fn extreme_rate_ratios_stay_finite() {
        // z → 1: the quadrature keeps the cost bounded and the result finite.
        let p = ParetoNbdParams::new(0.5, 1e4, 0.6, 0.01).expect("valid");
        let c = customer(3, 10.0, 52.0);
        let ll = p.log_likelihood(&c).expect("finite");
        let alive = p.p_alive(&c).expect("finite");
        assert!(
            ll.is_finite() && (0.0..=1.0).contains(&alive),
            "{ll} {alive}"
        );
    }

    #[test]
    fn p_alive_is_one_right_after_a_purchase_and_falls_with_silence() {
        let params = cdnow();
        assert_rel(
            params.p_alive(&customer(3, 20.0, 20.0)).expect("ok"),
            1.0,
            1e-12,
        );
        let mut previous = 1.0;
        for age in [25.0, 40.0, 80.0, 400.0] {
            let p = params.p_alive(&customer(3, 20.0, age)).expect("ok");
            assert!(p < previous, "T={age}: {p}");
            previous = p;
        }
        // Unlike BG/NBD, a customer without repeat purchases may have died.
        assert!(params.p_alive(&customer(0, 0.0, 52.0)).expect("ok") < 1.0);
    }

    #[test]
    fn expectations_are_consistent() {
        let params = cdnow();
        // A customer just acquired: the conditional expectation is the unconditional one.
        let fresh = CustomerSummary::new_customer();
        for t in [1.0, 39.0, 200.0] {
            assert_rel(
                params
                    .expected_purchases_conditional(t, &fresh)
                    .expect("ok"),
                params.expected_purchases(t).expect("ok"),
                1e-12,
            );
        }
        // Small horizon: E[λ] t.
        let t = 1e-5;
        assert_rel(
            params.expected_purchases(t).expect("ok"),
            0.553 / 10.578 * t,
            1e-4,
        );
        // s = 1: the ln(1 + t/β) limit is continuous.
        let at_one = ParetoNbdParams::new(0.5, 10.0, 1.0, 12.0).expect("valid");
        let near = ParetoNbdParams::new(0.5, 10.0, 1.0 + 1e-6, 12.0).expect("valid");
        assert_rel(
            at_one.expected_purchases(39.0).expect("ok"),
            near.expected_purchases(39.0).expect("ok"),
            1e-5,
        );
    }
}
