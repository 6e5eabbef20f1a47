#!/usr/bin/env python3
"""(M)BG/CNBD-k on CDNOW (issue 17): an independent Python implementation of BTYDplus's
`xbgcnbd.*` functions (Platzer and Reutterer 2016; BTYDplus R/mbg-cnbd-k.R and
src/*.cpp, read, not copied), fitted to the harness's 39/39-week split and to the time split that
`kizuna fit-model` chooses by, with the AUC and MAE of each k.

    /var/cache/kizuna/venv-models/bin/python tests/cdnow/cnbd_reference.py [--json FILE]

(~5 minutes on 2 cores.) Its figures of 2026-12-08 are in tests/cdnow/cnbd_reference.json
(`--json tests/cdnow/cnbd_reference.json` regenerates them).

Needs numpy, scipy and lifetimes (for the CDNOW sample file and its BG/NBD, MBG/NBD and
Pareto/NBD fits, printed alongside).

The summary is the harness's (tests/cdnow/cdnow.py): distinct purchase days; x = days − 1,
t_x and T in weeks to the calibration end; litt = Σ log of the inter-purchase times in weeks
(BTYDplus's `elog2cbs` also collapses same-day transactions before taking them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from pathlib import Path

import numpy as np
from scipy import optimize, special, stats

sys.path.insert(0, str(Path(__file__).parent))
import cdnow  # noqa: E402  (the harness: sample path, split dates, AUC)

MAX_PARAM = 10_000.0


# ---------------------------------------------------------------- the model (BTYDplus's formulas)


def ll(params, k, x, t_x, T, litt, mbg):
    """Per-customer log-likelihood, as `xbgcnbd.LL`."""
    r, alpha, a, b = params
    d = 1.0 if mbg else 0.0
    p1 = (k - 1) * litt - x * math.lgamma(k)  # log((k-1)!) = lgamma(k)
    p2 = special.betaln(a, b + x + d) - special.betaln(a, b)
    p3 = special.gammaln(r + k * x) - special.gammaln(r) + r * np.log(alpha)
    p4 = -(r + k * x) * np.log(alpha + T)
    s1 = np.where(mbg | (x > 0), 1.0, 0.0) * a / (b + x - 1 + d) * ((alpha + T) / (alpha + t_x)) ** (r + k * x)
    s2 = s2_sum(k, r, alpha, x, t_x, T)
    return p1 + p2 + p3 + p4 + np.log(s1 + s2)


def s2_sum(k, r, alpha, x, t_x, T):
    """1 + Σ_{j=1}^{k-1} (r+kx)_j (T−t_x)^j / (j! (α+T)^j): the chance-of-no-purchase-yet terms."""
    s2 = np.ones_like(np.asarray(x, dtype=float))
    term = np.ones_like(s2)
    for j in range(1, k):
        term = term * (r + k * x + j - 1) * (T - t_x) / (j * (alpha + T))
        s2 = s2 + term
    return s2


def p_alive(params, k, x, t_x, T, mbg):
    r, alpha, a, b = params
    d = 1.0 if mbg else 0.0
    p1 = a / (b + x - 1 + d) * ((alpha + T) / (alpha + t_x)) ** (r + k * x)
    p2 = s2_sum(k, r, alpha, x, t_x, T)
    pa = 1.0 / (1.0 + p1 / p2)
    if not mbg:
        pa = np.where(x == 0, 1.0, pa)
    return pa


def pmf(params, k, t, n, mbg):
    """P(X(t) = n) for a new customer, as `xbgcnbd_pmf_cpp`."""
    r, alpha, a, b = params
    if t == 0:
        return 0.0
    survivals = n - 1 + (1 if mbg else 0)
    p1 = math.exp(math.lgamma(b + survivals + 1) + math.lgamma(a + b) - math.lgamma(b) - math.lgamma(a + b + survivals + 1))

    def nbd(i):
        return math.exp(
            math.lgamma(r + i) + r * math.log(alpha) + i * math.log(t) - math.lgamma(i + 1) - math.lgamma(r) - (r + i) * math.log(alpha + t)
        )

    p2a = sum(nbd(i) for i in range(k * n, k * n + k))
    if not mbg and n == 0:
        p2b = 0.0
    else:
        p2b = a / (b + survivals)
        if n > 0:
            p2b *= 1.0 - sum(nbd(i) for i in range(0, k * n))
    return p1 * (p2a + p2b)


def expectation(params, k, t, mbg):
    """E[X(t)] for a new customer, as `xbgcnbd_exp_cpp` (the same truncation)."""
    r, alpha, _, _ = params
    stop = k * int(stats.nbinom.ppf(0.9999, r, alpha / (alpha + t)))
    stop = max(stop, 100)
    total = 0.0
    for i in range(1, stop):
        add = i * pmf(params, k, t, i, mbg)
        total += add
        if add < 1e-8 and i >= 100:
            break
    return total


def conditional_expected(params, k, horizon, x, t_x, T, mbg, bias_correction=True):
    """E[X(T, T + horizon) | x, t_x, T], as `xbgcnbd.ConditionalExpectedTransactions`: the
    BG/NBD expression with α scaled by k, times P(alive), and for k > 1 (and a cohort of at least
    100) scaled so that its sum is the unconditional expectation's."""
    r, alpha, a, b = params
    if round(a, 2) == 1:
        a = a + 0.01
    d = 1.0 if mbg else 0.0

    def g(r_, alpha_, a_, b_):
        return 1.0 - (alpha_ / (alpha_ + horizon)) ** r_ * special.hyp2f1(r_, b_ + 1, a_ + b_, horizon / (alpha_ + horizon))

    p1 = (a + b + x - 1 + d) / (a - 1)
    p2 = g(r + x, k * alpha + T, a, b + x - 1 + d)
    p3 = p_alive(params, k, x, t_x, T, mbg)
    expected = p1 * p2 * p3
    factor = 1.0
    if bias_correction and k > 1 and len(x) >= 100:
        cache = {}

        def e(t):
            key = round(float(t), 12)
            if key not in cache:
                cache[key] = expectation(params, k, t, mbg)
            return cache[key]

        sum_cal = sum(e(t) for t in T)
        sum_tot = sum(e(t + horizon) for t in T)
        factor = (sum_tot - sum_cal) / expected.sum()
        expected = expected * factor
    return expected, factor


def fit(k, x, t_x, T, litt, mbg, start=(1.0, 3.0, 1.0, 3.0)):
    """Maximum likelihood as `xbgcnbd.EstimateParameters`: L-BFGS-B on log-parameters from
    (1, 3, 1, 3), parameters capped at 10,000. Then polished with a tighter BFGS so that the
    optimum, not R's stopping point, is the reference."""

    def nll(logp):
        p = np.minimum(np.exp(logp), MAX_PARAM)
        v = -np.sum(ll(p, k, x, t_x, T, litt, mbg))
        return v if np.isfinite(v) else 1e300

    res = optimize.minimize(nll, np.log(start), method="L-BFGS-B")
    res2 = optimize.minimize(nll, res.x, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 40_000, "maxfev": 80_000})
    best = res2 if res2.fun <= res.fun else res
    params = np.minimum(np.exp(best.x), MAX_PARAM)
    return params, -best.fun


# ---------------------------------------------------------------- CDNOW summaries with litt


def summaries(rows, cal_end, hold_end):
    """(customers, x, t_x, T, litt, holdout) with times in weeks to `cal_end`."""
    cal_days, hold_days = cdnow.purchase_days(rows, cal_end, hold_end)
    customers = sorted(cal_days)
    x, t_x, T, litt, holdout = [], [], [], [], []
    for c in customers:
        days = sorted(cal_days[c])
        x.append(len(days) - 1)
        t_x.append((days[-1] - days[0]).days / 7.0)
        T.append((cal_end - days[0]).days / 7.0)
        litt.append(sum(math.log((b - a).days / 7.0) for a, b in zip(days, days[1:])))
        holdout.append(len(hold_days.get(c, ())))
    return customers, *(np.array(v, dtype=float) for v in (x, t_x, T, litt, holdout))


def lifetimes_models(x, t_x, T, horizon):
    import lifetimes

    out = {}
    for name, cls, opts in (
        ("bgnbd", lifetimes.BetaGeoFitter, {}),
        ("mbgnbd", lifetimes.ModifiedBetaGeoFitter, {}),
        ("pareto-nbd", lifetimes.ParetoNBDFitter, {"tol": 1e-10, "maxiter": 20000}),
    ):
        f = cls(penalizer_coef=0.0)
        f.fit(x, t_x, T, **opts)
        out[name] = np.asarray(f.conditional_expected_number_of_purchases_up_to_time(horizon, x, t_x, T), dtype=float)
    return out


def evaluate(label, x, t_x, T, litt, holdout, horizon, ks, out):
    print(f"\n{label}: {len(x)} customers, horizon {horizon:.2f} weeks, {int(holdout.sum())} holdout purchase days, {int((holdout > 0).sum())} buyers")
    print(f"{'model':<16} {'k':>2} {'r':>9} {'alpha':>9} {'a':>9} {'b':>9} {'log-lik':>11} {'AUC':>7} {'MAE':>7} {'MAE raw':>8} {'bias x':>7} {'pred':>8}")
    rows = {}
    for mbg in (False, True):
        for k in ks:
            name = f"{'mbg' if mbg else 'bg'}cnbd-k{k}"
            params, loglik = fit(k, x, t_x, T, litt, mbg)
            expected, factor = conditional_expected(params, k, horizon, x, t_x, T, mbg)
            raw = expected / factor
            q = {
                "k": k,
                "params": params.tolist(),
                "log_likelihood": float(loglik),
                "auc": cdnow.auc(expected, holdout > 0),
                "mae": float(np.mean(np.abs(expected - holdout))),
                "mae_without_bias_correction": float(np.mean(np.abs(raw - holdout))),
                "auc_without_bias_correction": cdnow.auc(raw, holdout > 0),
                "bias_factor": float(factor),
                "predicted": float(expected.sum()),
                "actual": float(holdout.sum()),
            }
            rows[name] = q
            print(
                f"{name:<16} {k:>2} {params[0]:>9.4f} {params[1]:>9.4f} {params[2]:>9.4f} {params[3]:>9.4f} {loglik:>11.2f} "
                f"{q['auc']:>7.4f} {q['mae']:>7.4f} {q['mae_without_bias_correction']:>8.4f} {factor:>7.4f} {q['predicted']:>8.1f}"
            )
    for name, expected in lifetimes_models(x, t_x, T, horizon).items():
        q = {"auc": cdnow.auc(expected, holdout > 0), "mae": float(np.mean(np.abs(expected - holdout))), "predicted": float(expected.sum())}
        rows[f"lifetimes {name}"] = q
        print(f"{'lifetimes ' + name:<16} {'':>2} {'':>9} {'':>9} {'':>9} {'':>9} {'':>11} {q['auc']:>7.4f} {q['mae']:>7.4f} {'':>8} {'':>7} {q['predicted']:>8.1f}")
    out[label] = rows


def self_check() -> None:
    """BTYDplus's own unit values (src/*.cpp, after `xbgcnbd_exp_cpp`): k = 3, r = 0.5,
    α = 2, a = 0.3, b = 0.6; BG/CNBD-3 log-likelihood of (x, t_x, T, litt) = (3, 12, 14, 3) and
    (4, 12, 14, 3), P(X(10) = 2) for BG and MBG, Σ P = 1 and E[X(10)] = Σ i P(X(10) = i)."""
    p, k = (0.5, 2.0, 0.3, 0.6), 3
    got = ll(p, k, np.array([3.0, 4.0]), np.array([12.0, 12.0]), np.array([14.0, 14.0]), np.array([3.0, 3.0]), False)
    assert np.allclose(got, [-10.42500, -12.22396], atol=5e-6), got
    assert abs(pmf(p, k, 10, 2, False) - 0.05669) < 5e-6
    assert abs(pmf(p, k, 10, 2, True) - 0.04548) < 5e-6
    assert abs(sum(pmf(p, k, 10, i, False) for i in range(1001)) - 1.0) < 1e-9
    assert abs(sum(i * pmf(p, k, 10, i, False) for i in range(1, 1001)) - expectation(p, k, 10, False)) < 5e-6
    print("self-check: BTYDplus's unit values reproduced (LL -10.42500/-12.22396, pmf 0.05669/0.04548)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json")
    parser.add_argument("--k-max", type=int, default=4)
    args = parser.parse_args()
    self_check()
    rows = cdnow.load_transactions(cdnow.sample_path())
    ks = range(1, args.k_max + 1)
    out = {}
    # 1. The harness: calibrate on 39 weeks, predict the next 39.
    _, x, t_x, T, litt, holdout = summaries(rows, cdnow.CAL_END, cdnow.HOLDOUT_END)
    evaluate("harness 39/39", x, t_x, T, litt, holdout, cdnow.HORIZON_WEEKS, ks, out)
    # 2. fit-model's choice: as of 1997-09-30, holdout = the last 91 days of the history.
    split_end = cdnow.CAL_END - dt.timedelta(days=91)
    _, x, t_x, T, litt, holdout = summaries(rows, split_end, cdnow.CAL_END)
    evaluate(f"choice split (calibration ..{split_end}, holdout ..{cdnow.CAL_END})", x, t_x, T, litt, holdout, 13.0, ks, out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
