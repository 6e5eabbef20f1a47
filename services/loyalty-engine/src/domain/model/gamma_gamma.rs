//! The Gamma-Gamma model of monetary value (Fader, Hardie & Lee 2005, "RFM and CLV";
//! Fader & Hardie 2013, "The Gamma-Gamma model of monetary value").
//!
//! Transaction values of a customer are i.i.d. `Gamma(p, ν)` (shape `p`, rate `ν`, mean
//! `p/ν`), and `ν ~ Gamma(q, γ)` (shape `q`, rate `γ`) across customers. The mean `m_x` of `x`
//! transactions is then `Gamma(px, νx)` given `ν`, and integrating `ν` out gives
//!
//! `f(m_x | x) = Γ(px+q) / (Γ(px) Γ(q)) · γ^q · m_x^(px−1) · x^(px) / (γ + x m_x)^(px+q)`.
//!
//! Spend is assumed independent of the purchase process (check before use: the correlation
//! between `x` and `m_x` in the data should be weak).

use super::special::ln_gamma;
use super::{ModelError, SpendSummary, positive};

/// Gamma-Gamma parameters `(p, q, γ)`; `γ` is in currency units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGammaParams {
    p: f64,
    q: f64,
    gamma: f64,
}

/// The parts of the log-density that depend only on `x`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpendXTerms {
    px: f64,
    xf: f64,
    ln_base: f64,
}

impl GammaGammaParams {
    /// # Errors
    /// [`ModelError::InvalidParameter`] unless all three are positive and finite.
    pub fn new(p: f64, q: f64, gamma: f64) -> Result<Self, ModelError> {
        Ok(Self {
            p: positive("p", p)?,
            q: positive("q", q)?,
            gamma: positive("gamma", gamma)?,
        })
    }

    /// Shape `p` of the per-transaction spend distribution.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// Shape `q` of the distribution of `ν` across customers.
    pub fn q(&self) -> f64 {
        self.q
    }

    /// Rate `γ` of the distribution of `ν` across customers (currency units).
    pub fn gamma(&self) -> f64 {
        self.gamma
    }

    /// Log-density of one customer's mean spend `m_x` given `x` (see the module docs).
    pub fn log_likelihood(&self, spend: &SpendSummary) -> f64 {
        self.log_likelihood_with(&self.x_terms(spend.x()), spend)
    }

    pub(crate) fn x_terms(&self, x: u32) -> SpendXTerms {
        let xf = f64::from(x);
        let px = self.p * xf;
        let ln_base = ln_gamma(px + self.q) - ln_gamma(px) - ln_gamma(self.q)
            + self.q * self.gamma.ln()
            + px * xf.ln();
        SpendXTerms { px, xf, ln_base }
    }

    pub(crate) fn log_likelihood_with(&self, terms: &SpendXTerms, spend: &SpendSummary) -> f64 {
        let m = spend.mean_spend();
        terms.ln_base + (terms.px - 1.0) * m.ln()
            - (terms.px + self.q) * (self.gamma + terms.xf * m).ln()
    }

    /// Mean transaction value across the population, `E[p/ν] = pγ/(q−1)`.
    ///
    /// # Errors
    /// [`ModelError::InvalidParameter`] if `q ≤ 1` (the mean is infinite).
    pub fn population_mean_spend(&self) -> Result<f64, ModelError> {
        self.expected_spend(0, 0.0)
    }

    /// Conditional expected transaction value of a customer with `x` transactions of mean
    /// `m_x` (Fader & Hardie 2013):
    /// `E[M | x, m_x] = (q−1)/(px+q−1) · pγ/(q−1) + px/(px+q−1) · m_x = p(γ + x m_x)/(px+q−1)`,
    /// a weighted average of the population mean and the customer's own mean. With `x = 0`
    /// (`m_x` ignored) this is the population mean.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] if `m_x` is negative or not finite;
    /// [`ModelError::InvalidParameter`] if `px + q ≤ 1` (the posterior mean is infinite).
    pub fn expected_spend(&self, x: u32, m_x: f64) -> Result<f64, ModelError> {
        let m_x = if x == 0 { 0.0 } else { m_x };
        if !(m_x.is_finite() && m_x >= 0.0) {
            return Err(ModelError::InvalidInput(format!(
                "mean spend m_x = {m_x} must be finite and non-negative"
            )));
        }
        let xf = f64::from(x);
        let denominator = self.p * xf + self.q - 1.0;
        if denominator <= 0.0 {
            return Err(ModelError::InvalidParameter {
                name: "q",
                value: self.q,
                reason: "p·x + q must exceed 1 for the expected spend to be finite",
            });
        }
        Ok(self.p * (self.gamma + xf * m_x) / denominator)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::assert_rel;
    use super::*;

    /// CDNOW estimates from Fader & Hardie (2013).
    fn cdnow() -> GammaGammaParams {
        GammaGammaParams::new(6.25, 3.74, 15.44).expect("valid")
    }

    #[test]
    fn expected_spend_hand_computed() {
        // x = 3, m_x = 40 at p = 6.25, q = 3.74, γ = 15.44:
        //   population mean pγ/(q−1) = 96.5 / 2.74           = 35.218978
        //   px + q − 1               = 18.75 + 2.74          = 21.49
        //   weights (q−1)/21.49 = 0.127501, px/21.49 = 0.872499
        //   0.127501 × 35.218978 + 0.872499 × 40 = 4.490414 + 34.900000 = 39.390414
        //   (equivalently p(γ + x m_x)/(px+q−1) = 6.25 × 135.44 / 21.49 = 846.5 / 21.49)
        let e = cdnow().expected_spend(3, 40.0).expect("finite");
        assert!((e - 39.390_414).abs() < 1e-6, "{e}");
        let population = cdnow().population_mean_spend().expect("q > 1");
        assert!((population - 35.218_978).abs() < 1e-6, "{population}");
        assert_eq!(
            cdnow().expected_spend(0, 123.0).expect("finite"),
            population
        );
    }

    #[test]
    fn expected_spend_shrinks_towards_population_mean() {
        let params = cdnow();
        let population = params.population_mean_spend().expect("q > 1");
        let few = params.expected_spend(1, 100.0).expect("finite");
        let many = params.expected_spend(50, 100.0).expect("finite");
        assert!(
            population < few && few < many && many < 100.0,
            "{few} {many}"
        );
    }

    #[test]
    fn population_mean_needs_q_above_one() {
        let heavy_tail = GammaGammaParams::new(2.0, 0.9, 10.0).expect("valid");
        assert!(heavy_tail.population_mean_spend().is_err());
        // With data the posterior mean exists: p x + q − 1 = 2.9 > 0.
        assert!(heavy_tail.expected_spend(1, 5.0).is_ok());
    }

    /// ∫ Gamma(m; px, νx) Gamma(ν; q, γ) dν by Simpson's rule, with ν = γ w.
    fn density_by_quadrature(params: &GammaGammaParams, x: u32, m: f64) -> f64 {
        let (p, q, gamma) = (params.p(), params.q(), params.gamma());
        let xf = f64::from(x);
        let integrand = |nu: f64| {
            if nu <= 0.0 {
                return 0.0;
            }
            let shape = p * xf;
            let rate = nu * xf;
            let ln_m = shape * rate.ln() + (shape - 1.0) * m.ln() - rate * m - libm::lgamma(shape);
            let ln_nu = q * gamma.ln() + (q - 1.0) * nu.ln() - gamma * nu - libm::lgamma(q);
            (ln_m + ln_nu).exp()
        };
        // The mixing density e^(−γν) is negligible beyond ν = 200/γ.
        let (n, hi) = (20_000, 200.0 / gamma);
        let h = hi / f64::from(n);
        let mut s = integrand(0.0) + integrand(hi);
        for i in 1..n {
            s += integrand(f64::from(i) * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0
    }

    #[test]
    fn likelihood_matches_numerical_integral_and_arbitrary_precision() {
        let params = cdnow();
        // mpmath 1.3.0 at 25 digits for the closed form.
        let cases = [
            ((1, 25.0), -3.741_155_750_019_345_4),
            ((3, 40.0), -4.333_588_655_794_565),
            ((10, 12.5), -3.991_017_948_945_053),
        ];
        for ((x, m), want) in cases {
            let spend = SpendSummary::new(x, m).expect("valid");
            let closed = params.log_likelihood(&spend);
            let numeric = density_by_quadrature(&params, x, m).ln();
            eprintln!("x={x} m={m}: closed {closed:.10} quadrature {numeric:.10}");
            assert_rel(closed, want, 1e-13);
            assert!((closed - numeric).abs() < 1e-7, "{closed} vs {numeric}");
        }
    }
}
