#!/usr/bin/env python3
"""Reference values for the purchase models (issue 17), from an independent implementation.

Regenerate (writes lifetimes_models.json and cdnow_summary.csv next to this file):

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install lifetimes==0.11.3 \
        numpy==2.4.6 scipy==1.17.1 pandas==3.1.2
    /tmp/venv/bin/python services/loyalty-engine/tests/reference/lifetimes_models.py

Pinned: lifetimes 0.11.3, numpy 2.4.6, scipy 1.17.1, pandas 3.1.2 (Python 3.11).

It fits lifetimes' BetaGeoFitter, ParetoNBDFitter and ModifiedBetaGeoFitter (the same model
as BTYDplus's MBG/NBD) to lifetimes' CDNOW summary (2,357 customers, weeks), with no
penaliser, and records for each: the fitted parameters, the total log-likelihood, and, at
those parameters, P(alive) and the conditional expected purchases over 39 weeks on a grid of
(x, t_x, T), plus the unconditional expected purchases at a few horizons. The Rust tests
(src/domain/model/reference_tests.rs) evaluate their own formulas at lifetimes' parameters
and compare, and fit the same CSV with their own optimiser and compare the parameters.
"""
import json
import os

import numpy as np
import lifetimes
from lifetimes import BetaGeoFitter, ModifiedBetaGeoFitter, ParetoNBDFitter
from lifetimes.datasets import load_cdnow_summary

HERE = os.path.dirname(os.path.abspath(__file__))
GRID = [
    (0, 0.0, 38.86),
    (0, 0.0, 10.0),
    (1, 1.71, 38.86),
    (2, 30.43, 38.86),
    (3, 20.0, 30.0),
    (5, 5.0, 39.0),
    (7, 35.0, 39.0),
    (10, 37.0, 38.0),
    (20, 30.0, 39.0),
]
HORIZONS = [1.0, 10.0, 39.0, 78.0]


def log_likelihood(fitter, params, data):
    """Total log-likelihood at `params` on the unscaled data, by lifetimes' own formulas (its
    fitters rescale time and report a mean, so their stored figure is not comparable)."""
    f, r, T = (data[c].to_numpy(dtype=float) for c in ["frequency", "recency", "T"])
    if isinstance(fitter, ParetoNBDFitter):
        return float(np.sum(ParetoNBDFitter._conditional_log_likelihood(params, f, r, T)))
    nll = type(fitter)._negative_log_likelihood(np.log(params), f, r, T, np.ones_like(f), 0.0)
    return -float(nll) * len(f)


def main():
    data = load_cdnow_summary(index_col=[0])
    data[["frequency", "recency", "T"]].to_csv(
        os.path.join(HERE, "cdnow_summary.csv"), index_label="id", float_format="%.2f"
    )
    out = {"lifetimes": lifetimes.__version__, "customers": int(len(data)), "models": {}}
    for name, fitter, keys in [
        ("bgnbd", BetaGeoFitter(), ["r", "alpha", "a", "b"]),
        ("pareto-nbd", ParetoNBDFitter(), ["r", "alpha", "s", "beta"]),
        ("mbgnbd", ModifiedBetaGeoFitter(), ["r", "alpha", "a", "b"]),
    ]:
        fitter.fit(data["frequency"], data["recency"], data["T"])
        params = [float(fitter.params_[k]) for k in keys]
        ll = log_likelihood(fitter, params, data)
        grid = []
        for x, t_x, age in GRID:
            p_alive = float(np.ravel(fitter.conditional_probability_alive(x, t_x, age))[0])
            expected = float(
                np.ravel(
                    fitter.conditional_expected_number_of_purchases_up_to_time(39.0, x, t_x, age)
                )[0]
            )
            grid.append({"x": x, "t_x": t_x, "T": age, "p_alive": p_alive, "expected_39": expected})
        unconditional = [
            {"t": t, "expected": float(np.ravel(fitter.expected_number_of_purchases_up_to_time(t))[0])}
            for t in HORIZONS
        ]
        out["models"][name] = {
            "params": dict(zip(keys, params)),
            "log_likelihood": ll,
            "grid": grid,
            "unconditional": unconditional,
        }
        print(name, params, ll)
    with open(os.path.join(HERE, "lifetimes_models.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
