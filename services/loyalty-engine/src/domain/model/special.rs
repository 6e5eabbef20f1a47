//! Special functions used by the models: `ln Γ`, log-sum-exp and the Gauss hypergeometric
//! function `₂F₁(a, b; c; z)` on `0 ≤ z < 1`.
//!
//! `ln Γ` comes from the [`libm`] crate (the Rust port of musl's `lgamma`, maintained by the
//! Rust project). No maintained, permissively licensed, pure-Rust crate offers `₂F₁`, so it is
//! implemented here: the Gauss series summed term by term with a tail bound, after Euler's
//! transformation `₂F₁(a,b;c;z) = (1-z)^(c-a-b) ₂F₁(c-a, c-b; c; z)` whenever `c - a - b < 0`,
//! which turns a series whose terms grow like `n^(a+b-c-1) zⁿ` into one whose terms shrink
//! like `n^(c-a-b-1) zⁿ`. The result is carried as `mantissa · e^ln_scale`, so values far
//! outside the `f64` range (large purchase counts make `₂F₁` huge) are still usable in log space.

use super::ModelError;

/// Most terms summed before [`hyp2f1`] gives up. The series converges like `zⁿ`, so this
/// covers `z ≤ 1 − 4·10⁻⁵` (for BG/NBD: a horizon up to ~25 000 times `α + T`).
const MAX_TERMS: u32 = 1_000_000;

/// Rescale the running sum once it exceeds this magnitude.
const RESCALE_ABOVE: f64 = 1e200;

/// `ln Γ(x)` for `x > 0`.
pub fn ln_gamma(x: f64) -> f64 {
    libm::lgamma(x)
}

/// `ln(eᵃ + eᵇ)` without overflow or needless underflow.
pub fn log_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// A real number stored as `mantissa · exp(ln_scale)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scaled {
    /// Signed mantissa; `|mantissa|` is at most about `1e200`.
    pub mantissa: f64,
    /// Natural logarithm of the scale factor.
    pub ln_scale: f64,
}

impl Scaled {
    /// The value as a plain `f64` (may overflow to infinity or underflow to zero).
    pub fn value(self) -> f64 {
        self.mantissa * self.ln_scale.exp()
    }

    /// `1 − exp(ln_factor) · self`, computed with `expm1` so that it stays accurate when the
    /// product is close to 1.
    pub fn one_minus_times(self, ln_factor: f64) -> f64 {
        let ln_abs = ln_factor + self.ln_scale + self.mantissa.abs().ln();
        if self.mantissa > 0.0 {
            -ln_abs.exp_m1()
        } else if self.mantissa < 0.0 {
            1.0 + ln_abs.exp()
        } else {
            1.0
        }
    }
}

/// The Gauss hypergeometric function `₂F₁(a, b; c; z)` for real parameters and `0 ≤ z < 1`.
///
/// Euler's transformation is used when `c − a − b < 0`, unless its series cancels (terms
/// more than [`CANCELLATION_LIMIT`] times the sum, e.g. `c − a ≪ −1` with `(c−a)·z ≪ −1`,
/// which happens for BG/NBD with a huge `r`) while the direct series has positive terms.
///
/// # Errors
/// [`ModelError::Hypergeometric`] if an argument is not finite, `z` is outside `[0, 1)`, `c` is
/// zero or a negative integer (a pole), the series has not converged after 10⁶ terms (`z` very
/// close to 1), or it overflows.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> Result<Scaled, ModelError> {
    let fail = |reason: &'static str| ModelError::Hypergeometric { a, b, c, z, reason };
    if !(a.is_finite() && b.is_finite() && c.is_finite() && z.is_finite()) {
        return Err(fail("arguments must be finite"));
    }
    if !(0.0..1.0).contains(&z) {
        return Err(fail("z must lie in [0, 1)"));
    }
    if c <= 0.0 && c.fract() == 0.0 {
        return Err(fail("c is zero or a negative integer"));
    }
    if c - a - b < 0.0 {
        let euler = gauss_series(c - a, c - b, c, z).map(|series| Series {
            value: Scaled {
                mantissa: series.value.mantissa,
                ln_scale: series.value.ln_scale + (c - a - b) * (-z).ln_1p(),
            },
            ..series
        });
        let cancels = euler
            .as_ref()
            .is_none_or(|e| e.cancellation > CANCELLATION_LIMIT);
        if cancels
            && a > 0.0
            && b > 0.0
            && c > 0.0
            && let Some(direct) = gauss_series(a, b, c, z)
        {
            return Ok(direct.value);
        }
        return euler
            .map(|e| e.value)
            .ok_or_else(|| fail("series did not converge"));
    }
    gauss_series(a, b, c, z)
        .map(|s| s.value)
        .ok_or_else(|| fail("series did not converge"))
}

/// Largest term of a series, relative to its sum, accepted before trying another series:
/// about four of the sixteen significant digits lost to cancellation.
const CANCELLATION_LIMIT: f64 = 1e4;

/// A summed Gauss series.
#[derive(Debug, Clone, Copy)]
struct Series {
    value: Scaled,
    /// Largest `|term|` over `|sum|`: 1 for a series of positive terms, large when terms
    /// cancel.
    cancellation: f64,
}

/// `Σ (a)ₙ (b)ₙ / ((c)ₙ n!) zⁿ`, stopping once a bound on the remaining tail is below one ulp
/// of the sum. `None` if it does not converge or overflows.
fn gauss_series(a: f64, b: f64, c: f64, z: f64) -> Option<Series> {
    let mut sum = 1.0_f64;
    let mut term = 1.0_f64;
    let mut peak = 1.0_f64;
    let mut ln_scale = 0.0_f64;
    let done = |sum: f64, peak: f64, ln_scale: f64| {
        Some(Series {
            value: Scaled {
                mantissa: sum,
                ln_scale,
            },
            cancellation: peak / sum.abs(),
        })
    };
    // From this index on every factor (a+m), (b+m), (c+m), (m+1) of the term ratios is
    // positive, so (a+m)/(m+1) and (b+m)/(c+m) are monotone in m and tend to 1.
    let settled = (-a).max(-b).max(-c);
    for n in 0..MAX_TERMS {
        let nf = f64::from(n);
        term *= term_ratio(a, b, c, z, nf);
        sum += term;
        peak = peak.max(term.abs());
        if !sum.is_finite() || !term.is_finite() {
            return None;
        }
        if term == 0.0 {
            return done(sum, peak, ln_scale);
        }
        if sum.abs() > RESCALE_ABOVE {
            let s = sum.abs();
            sum /= s;
            term /= s;
            peak /= s;
            ln_scale += s.ln();
        }
        // The terms still to come are the current one times products of the ratios at
        // m = n+1, n+2, …, each at most z·max(1, (a+m)/(m+1))·max(1, (b+m)/(c+m)) at
        // m = n+1 (a and b may be swapped): a geometric bound on the tail.
        let m = nf + 1.0;
        if m > settled {
            let bound =
                |p: f64, q: f64| z * ((p + m) / (m + 1.0)).max(1.0) * ((q + m) / (c + m)).max(1.0);
            let rho = bound(a, b).min(bound(b, a));
            if rho < 1.0 && term.abs() * rho / (1.0 - rho) <= f64::EPSILON * sum.abs() {
                return done(sum, peak, ln_scale);
            }
        }
    }
    None
}

/// Ratio of term `n+1` to term `n` of the Gauss series.
fn term_ratio(a: f64, b: f64, c: f64, z: f64, n: f64) -> f64 {
    (a + n) * (b + n) / ((c + n) * (n + 1.0)) * z
}

#[cfg(test)]
mod tests {
    use super::super::testkit::assert_rel;
    use super::*;

    fn f21(a: f64, b: f64, c: f64, z: f64) -> f64 {
        hyp2f1(a, b, c, z).expect("2F1 converges").value()
    }

    #[test]
    fn elementary_closed_form_log() {
        // ₂F₁(1,1;2;z) = −ln(1−z)/z.
        for z in [1e-6_f64, 0.1, 0.5, 0.9, 0.99, 0.999] {
            let want = -(-z).ln_1p() / z;
            assert_rel(f21(1.0, 1.0, 2.0, z), want, 1e-13);
        }
    }

    #[test]
    fn elementary_closed_form_power() {
        // ₂F₁(a,b;b;z) = (1−z)^(−a); a > 0 goes through Euler's transformation, a < 0 does not.
        for (a, b) in [(0.7, 1.3), (2.5, 0.4), (-0.5, 1.7), (-1.3, 3.0)] {
            for z in [0.05, 0.5, 0.9, 0.99] {
                assert_rel(f21(a, b, b, z), (1.0 - z).powf(-a), 1e-13);
            }
        }
    }

    #[test]
    fn arcsine_closed_form() {
        // ₂F₁(½,½;3/2;x²) = arcsin(x)/x.
        for x in [0.1_f64, 0.5, 0.9, 0.99] {
            assert_rel(f21(0.5, 0.5, 1.5, x * x), x.asin() / x, 1e-13);
        }
    }

    #[test]
    fn quadratic_closed_form_through_euler_transformation() {
        // ₂F₁(a, a+½; ½; x²) = ((1+x)^(−2a) + (1−x)^(−2a))/2 (Abramowitz & Stegun 15.1.9);
        // with a = 0.7, c − a − b = −1.4 < 0 so the Euler branch is used (non-terminating).
        for x in [0.3_f64, 0.9, 0.97] {
            let want = ((1.0 + x).powf(-1.4) + (1.0 - x).powf(-1.4)) / 2.0;
            assert_rel(f21(0.7, 1.2, 0.5, x * x), want, 1e-12);
        }
    }

    #[test]
    fn matches_arbitrary_precision_reference_values() {
        // Reference values from mpmath 1.3.0 `hyp2f1` at 30 significant digits.
        let cases = [
            ((1.0, 1.0, 2.0, 0.9), 2.558_427_881_104_495_6),
            ((0.7, 1.2, 0.5, 0.81), 12.763_002_713_641_216),
            // The BG/NBD eq. 7 call at the CDNOW estimates, t = 39 weeks: z = 39/43.414.
            ((0.243, 2.426, 2.219, 0.9), 1.947_631_169_818_602),
            // The eq. 10 call for x = 2, T = 38.86, t = 39: z = 39/82.274.
            ((2.243, 4.426, 4.219, 39.0 / 82.274), 4.575_315_897_643_689),
            ((1.5, 2.5, 0.7, 0.99), 11_696_993.313_358_42),
            ((50.2, 52.4, 52.2, 0.7), 2.242_408_651_288_095_5e26),
            // c in (−1, 0): the value is negative.
            ((0.3, 1.7, -0.4, 0.6), -7.646_315_949_040_388),
        ];
        for ((a, b, c, z), want) in cases {
            assert_rel(f21(a, b, c, z), want, 1e-12);
        }
    }

    #[test]
    fn huge_values_stay_finite_in_log_space() {
        // ₂F₁(a,b;b;z) = (1−z)^(−a) with a = 900, z = 0.9: about 10⁹⁰⁰, beyond f64.
        let v = hyp2f1(900.0, 3.0, 3.0, 0.9).expect("converges");
        let ln_value = v.ln_scale + v.mantissa.ln();
        assert_rel(ln_value, -900.0 * 0.1_f64.ln(), 1e-13);
        // The direct series (c − a − b ≥ 0) rescales its running sum instead; reference value
        // ln ₂F₁(2000, 2000; 4000.5; 0.99) = 2391.049112646751763 from mpmath.
        let direct = hyp2f1(2000.0, 2000.0, 4000.5, 0.99).expect("converges");
        assert_rel(
            direct.ln_scale + direct.mantissa.ln(),
            2_391.049_112_646_752,
            1e-13,
        );
    }

    #[test]
    fn rejects_poles_and_out_of_range_arguments() {
        assert!(hyp2f1(1.0, 1.0, 0.0, 0.5).is_err());
        assert!(hyp2f1(1.0, 1.0, -2.0, 0.5).is_err());
        assert!(hyp2f1(1.0, 1.0, 2.0, 1.0).is_err());
        assert!(hyp2f1(1.0, 1.0, 2.0, -0.1).is_err());
        assert!(hyp2f1(f64::NAN, 1.0, 2.0, 0.5).is_err());
        // z so close to 1 that 10⁶ terms are not enough.
        assert!(hyp2f1(0.5, 0.5, 2.0, 1.0 - 1e-9).is_err());
    }

    #[test]
    fn one_minus_times_is_accurate_near_one() {
        let v = Scaled {
            mantissa: 1.0,
            ln_scale: 0.0,
        };
        // 1 − e^(−1e−12) ≈ 1e−12.
        assert_rel(v.one_minus_times(-1e-12), 1e-12, 1e-9);
        let neg = Scaled {
            mantissa: -2.0,
            ln_scale: 0.0,
        };
        assert_rel(neg.one_minus_times(0.0), 3.0, 1e-15);
    }

    #[test]
    fn log_add_exp_handles_extremes() {
        assert_rel(log_add_exp(0.0, 0.0), 2.0_f64.ln(), 1e-15);
        assert_rel(log_add_exp(-1000.0, -1000.0), -1000.0 + 2.0_f64.ln(), 1e-15);
        assert_eq!(log_add_exp(5.0, f64::NEG_INFINITY), 5.0);
    }
}
