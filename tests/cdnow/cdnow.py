#!/usr/bin/env python3
"""The CDNOW benchmark (issue 17): the field's standard 39/39-week split, through Kizuna's own
commands, next to lifetimes computed in the same run from the same calibration data.

1. The CDNOW sample shipped with lifetimes (`lifetimes/datasets/CDNOW_sample.txt`: 2,357
   customers who first bought in 1997-Q1, 6,919 transactions to 1998-06-30).
2. Calibration: 1997-01-01 .. 1997-09-30 (39 weeks; Fader and Hardie's convention: T is counted
   in days to 1997-09-30, 38.86 weeks for a customer who first bought on 1 January). Holdout:
   1997-10-01 .. 1998-06-30 (39 weeks).
3. The calibration purchases become `InputEvent` JSON lines (each at 12:00 UTC on its day; the
   amount in cents as minor units), loaded with `kizuna backfill --clock event-time
   --no-outputs` into the fresh database of KIZUNA_DATABASE__URL.
4. `kizuna fit-model --as-of 1997-09-30T12:00:00Z` (and, when the CLI has `--model`, once per
   model it accepts), then `kizuna export-scores --as-of … --horizon-days 273` after each fit.
5. Per model: AUC of expected purchases -> bought in the holdout, MAE of purchases, the
   aggregate error; lifetimes' BG/NBD and Pareto/NBD (and MBG/NBD) fitted on the same summary;
   the largest |difference| of each Kizuna model's P(alive) and expected purchases against its
   lifetimes counterpart.

Purchases are counted as Kizuna counts them: distinct purchase days (x = days - 1 in the
calibration, the number of purchase days in the holdout).

Exit status: 1 when a Kizuna model is further than TOLERANCE from its reference, or a step
fails; the issue's targets (chosen model AUC >= 0.78, MAE <= 0.75) are printed PASS/FAIL and
only fail the run with --strict-targets.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

TOLERANCE = 1e-3
TARGET_AUC = 0.78
TARGET_MAE = 0.75
START = dt.date(1997, 1, 1)
CAL_END = dt.date(1997, 9, 30)
HOLDOUT_END = dt.date(1998, 6, 30)
AS_OF = "1997-09-30T12:00:00Z"
HORIZON_DAYS = 273  # 39 weeks
HORIZON_WEEKS = HORIZON_DAYS / 7.0
# lifetimes' class for each model name `kizuna fit-model --model` may accept.
REFERENCES = {
    "bgnbd": "BetaGeoFitter",
    "pareto-nbd": "ParetoNBDFitter",
    "paretonbd": "ParetoNBDFitter",
    "mbgnbd": "ModifiedBetaGeoFitter",
}
# lifetimes' Pareto/NBD stops its Nelder-Mead at tol = 1e-4 by default, short of the optimum
# (beta moves by 2e-3 from run to run); at 1e-10 it is the same every run. BG/NBD and MBG/NBD
# (BFGS) converge with their defaults (tighter, they report a loss of precision).
FIT_OPTIONS = {"ParetoNBDFitter": {"tol": 1e-10, "maxiter": 20000}}


def sample_path() -> Path:
    import lifetimes

    return Path(lifetimes.__file__).parent / "datasets" / "CDNOW_sample.txt"


def load_transactions(path: Path) -> list[tuple[str, dt.date, float]]:
    """(customer, date, amount) of every line: `master_id sample_id yyyymmdd cds dollars`."""
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        day = dt.datetime.strptime(parts[2], "%Y%m%d").date()
        rows.append((f"cdnow-{parts[1]}", day, float(parts[4])))
    return rows


def purchase_days(rows, cal_end: dt.date, holdout_end: dt.date):
    """Each customer's distinct purchase days up to `cal_end`, and after it up to `holdout_end`."""
    cal_days = defaultdict(set)
    hold_days = defaultdict(set)
    for customer, day, _ in rows:
        if day <= cal_end:
            cal_days[customer].add(day)
        elif day <= holdout_end:
            hold_days[customer].add(day)
    return cal_days, hold_days


def summaries(rows):
    """Calibration (x, t_x, T) in weeks and holdout purchase days, per customer."""
    cal_days, hold_days = purchase_days(rows, CAL_END, HOLDOUT_END)
    customers = sorted(cal_days)
    x = np.array([len(cal_days[c]) - 1 for c in customers], dtype=float)
    t_x = np.array([(max(cal_days[c]) - min(cal_days[c])).days / 7.0 for c in customers])
    age = np.array([(CAL_END - min(cal_days[c])).days / 7.0 for c in customers])
    holdout = np.array([len(hold_days.get(c, ())) for c in customers], dtype=float)
    return customers, x, t_x, age, holdout


def check_against_published(customers, x, t_x, age) -> None:
    """The calibration summary must be Fader and Hardie's, as lifetimes ships it
    (`cdnow_customers_summary.csv`: x, t_x and T in weeks, rounded to 0.01)."""
    import pandas as pd

    published = pd.read_csv(sample_path().parent / "cdnow_customers_summary.csv").set_index("ID")
    ids = [int(c.removeprefix("cdnow-")) for c in customers]
    p = published.loc[ids]
    off = (
        int((p["frequency"].to_numpy() != x).sum()),
        float(np.max(np.abs(p["recency"].to_numpy() - t_x))),
        float(np.max(np.abs(p["T"].to_numpy() - age))),
    )
    if len(published) != len(customers) or off[0] or off[1] > 0.005 or off[2] > 0.005:
        raise SystemExit(f"the calibration summary is not Fader and Hardie's: {off}")
    print(
        "  the calibration summary is Fader and Hardie's (lifetimes' cdnow_customers_summary.csv): "
        f"same x for all, t_x and T within {max(off[1], off[2]):.4f} weeks (its rounding)"
    )


def events(rows, currency: str) -> str:
    lines = []
    for n, (customer, day, amount) in enumerate(rows, start=1):
        if day > CAL_END:
            continue
        purchase = {
            "eventId": f"cdnow-{n}",
            "customerId": customer,
            "occurredAt": f"{day.isoformat()}T12:00:00Z",
            "orderId": f"cdnow-order-{n}",
            "kind": "PURCHASE_KIND_PURCHASE",
            "amountMinor": str(round(amount * 100)),
            "currency": currency,
        }
        lines.append(json.dumps({"purchase": purchase}))
    return "\n".join(lines) + "\n"


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney, ties counted half)."""
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    s = score[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    pos = label.astype(bool)
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def quality(expected: np.ndarray, holdout: np.ndarray) -> dict:
    return {
        "auc": auc(expected, holdout > 0),
        "mae": float(np.mean(np.abs(expected - holdout))),
        "predicted": float(expected.sum()),
        "actual": float(holdout.sum()),
    }


def kizuna(binary: str, args: list[str], stdin: str | None = None) -> tuple[str, str]:
    """Runs a kizuna command; returns (stdout, stderr), or stops the run when it fails."""
    started = time.monotonic()
    done = subprocess.run(
        [binary, *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.monotonic() - started
    print(f"  $ kizuna {' '.join(args)}   ({took:.1f} s)", flush=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"kizuna {' '.join(args)} failed with status {done.returncode}")
    return done.stdout, done.stderr


def cli_models(binary: str) -> list[str] | None:
    """The values `kizuna fit-model --model` accepts, or None when it has no such flag."""
    help_text = subprocess.run(
        [binary, "fit-model", "-h"], capture_output=True, text=True, check=True
    ).stdout
    return model_values(help_text)


def model_values(help_text: str) -> list[str] | None:
    """The possible values of `--model` in clap's short help, up to the next option."""
    m = re.search(r"--model\b", help_text)
    if not m:
        return None
    rest = help_text[m.end() :]
    entry = re.split(r"\n\s*-{1,2}[a-zA-Z]", rest, maxsplit=1)[0]
    values = re.search(r"\[possible values: ([^\]]+)\]", entry)
    if not values:
        raise SystemExit(f"fit-model has --model but its help lists no values:\n{help_text}")
    return [v.strip() for v in values.group(1).split(",")]


def programme_currency(binary: str) -> str:
    out, _ = kizuna(binary, ["check-programme"])
    m = re.search(r'^currency = "([A-Z]{3})"', out, flags=re.M)
    return m.group(1) if m else "JPY"


def export(binary: str, customers: list[str]):
    text, _ = kizuna(
        binary,
        ["export-scores", "--as-of", AS_OF, "--horizon-days", str(HORIZON_DAYS)],
    )
    rows = {r["customer_id"]: r for r in csv.DictReader(io.StringIO(text))}
    missing = [c for c in customers if c not in rows]
    if missing:
        raise SystemExit(f"export-scores has no row for {len(missing)} customers, e.g. {missing[:3]}")
    p_alive = np.array([float(rows[c]["p_alive"]) if rows[c]["p_alive"] else np.nan for c in customers])
    expected = np.array([float(rows[c]["expected_purchases"] or "nan") for c in customers])
    if np.isnan(expected).any():
        raise SystemExit("export-scores left expected_purchases empty: no model fitted?")
    scored_by = {r.get("model", "") for r in rows.values()} - {""}
    return p_alive, expected, scored_by


def same_name(model: str) -> str:
    """A model's name without case or separators: `pareto-nbd`, `pareto_nbd`, `Pareto/NBD`."""
    return re.sub(r"[-_/ ]", "", model.lower())


def fitted_line(out: str) -> str:
    """The chosen purchase model's row of fit-model's table (marked `*`), else the first line
    with a log-likelihood (a fit-model without the table)."""
    lines = out.splitlines()
    for line in lines:
        if re.match(r"^[a-z-]+\s+\*\s", line):
            return re.sub(r"\s+", " ", line.strip())
    for line in lines:
        if "log-likelihood" in line:
            return line.strip()
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kizuna", default=os.environ.get("KIZUNA_BIN", "kizuna"))
    parser.add_argument("--strict-targets", action="store_true",
                        help="also exit 1 when the chosen model misses the issue's AUC/MAE targets")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help="largest |difference| allowed against lifetimes (default %(default)g)")
    args = parser.parse_args()
    started = time.monotonic()
    import lifetimes

    rows = load_transactions(sample_path())
    customers, x, t_x, age, holdout = summaries(rows)
    print(
        f"CDNOW sample (lifetimes {lifetimes.__version__}): {len(customers)} customers, {len(rows)} transactions; "
        f"calibration {START}..{CAL_END}: {int(x.sum() + len(customers))} purchase days; "
        f"holdout ..{HOLDOUT_END}: {int(holdout.sum())} purchase days, {int((holdout > 0).sum())} buyers"
    )
    if len(customers) != 2357:
        raise SystemExit(f"expected the 2,357 customers of the CDNOW sample, found {len(customers)}")
    check_against_published(customers, x, t_x, age)

    # Kizuna: backfill, then one fit and one export per model.
    currency = programme_currency(args.kizuna)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", prefix="cdnow-", delete=False) as f:
        f.write(events(rows, currency))
        jsonl = f.name
    try:
        _, out = kizuna(args.kizuna, ["backfill", jsonl, "--clock", "event-time", "--no-outputs", "--source", "cdnow"])
    finally:
        os.unlink(jsonl)
    m = re.search(r"(\d+) events applied, \d+ duplicates, \d+ already applied by an earlier run, (\d+) bad lines", out)
    if not m or int(m.group(2)) != 0:
        raise SystemExit(f"the backfill refused lines:\n{out}")
    print(f"  backfilled {m.group(1)} calibration purchases")

    models = cli_models(args.kizuna)
    runs = [("chosen", [])]
    if models:
        runs += [(name, ["--model", name]) for name in models if name != "auto"]
    kizuna_results = {}
    for label, extra in runs:
        _, out = kizuna(args.kizuna, ["fit-model", "--as-of", AS_OF, *extra])
        p_alive, expected, scored_by = export(args.kizuna, customers)
        # Without a `model` column (fit-model fits BG/NBD only), the model is BG/NBD.
        name = label if label != "chosen" else (",".join(sorted(scored_by)) or "bgnbd")
        if scored_by and extra and label in REFERENCES and {same_name(v) for v in scored_by} != {same_name(label)}:
            raise SystemExit(f"fit-model --model {label}, but export-scores says {sorted(scored_by)} scored")
        kizuna_results[label] = {
            "model": name,
            "p_alive": p_alive,
            "expected": expected,
            "fit": fitted_line(out),
        }
    if not models:
        # Today's CLI fits BG/NBD only: the chosen model is the model.
        kizuna_results["bgnbd"] = kizuna_results["chosen"]

    # lifetimes on the same calibration summary.
    fitters = {}
    wanted = {"bgnbd", "pareto-nbd"} | {m for m in (models or []) if m in REFERENCES}
    for name in sorted(wanted):
        cls = getattr(lifetimes, REFERENCES[name])
        fitter = cls(penalizer_coef=0.0)
        fitter.fit(x, t_x, age, **FIT_OPTIONS.get(REFERENCES[name], {}))
        fitters[name] = {
            "params": {k: float(v) for k, v in fitter.params_.items()},
            "p_alive": np.asarray(fitter.conditional_probability_alive(x, t_x, age), dtype=float),
            "expected": np.asarray(
                fitter.conditional_expected_number_of_purchases_up_to_time(HORIZON_WEEKS, x, t_x, age),
                dtype=float,
            ),
        }

    print()
    print(f"CDNOW 39/39 weeks, as of {AS_OF}, horizon {HORIZON_DAYS} days, {len(customers)} customers")
    header = f"{'model':<30} {'AUC':>7} {'MAE':>7} {'predicted':>10} {'actual':>8} {'aggregate':>10}"
    print(header)
    print("-" * len(header))
    figures = {"kizuna": {}, "lifetimes": {}, "comparisons": {}, "targets": {}}

    def row(label, expected):
        q = quality(expected, holdout)
        agg = (q["predicted"] - q["actual"]) / q["actual"]
        q["aggregate_error"] = agg
        print(f"{label:<30} {q['auc']:>7.4f} {q['mae']:>7.4f} {q['predicted']:>10.1f} {q['actual']:>8.0f} {agg:>+10.2%}")
        return q

    for label, r in kizuna_results.items():
        if label == "bgnbd" and not models:
            continue
        title = f"kizuna {r['model']}" + (" (chosen)" if label == "chosen" else "")
        figures["kizuna"][label] = row(title, r["expected"]) | {"model": r["model"], "fit": r["fit"]}
    for name, f in fitters.items():
        figures["lifetimes"][name] = row(f"lifetimes {name}", f["expected"]) | {"params": f["params"]}
    print()
    for label, r in kizuna_results.items():
        if label == "bgnbd" and not models:
            continue
        print(f"kizuna {label} fit: {r['fit']}")
    for name, f in fitters.items():
        params = ", ".join(f"{k} = {v:.4f}" for k, v in f["params"].items())
        print(f"lifetimes {name} fit: {params}")
    print()

    failures = []
    for label, r in kizuna_results.items():
        if label == "chosen":
            continue
        ref = fitters.get(label)
        if ref is None:
            print(f"kizuna {label}: no reference implementation in lifetimes, not compared")
            continue
        has = ~np.isnan(r["p_alive"])
        d_alive = float(np.max(np.abs(r["p_alive"][has] - ref["p_alive"][has]))) if has.any() else float("nan")
        d_expected = float(np.max(np.abs(r["expected"] - ref["expected"])))
        ok = bool(has.any()) and d_alive <= args.tolerance and d_expected <= args.tolerance
        figures["comparisons"][label] = {
            "max_abs_p_alive": d_alive,
            "p_alive_compared": int(has.sum()),
            "max_abs_expected": d_expected,
            "pass": bool(ok),
        }
        print(
            f"{'PASS' if ok else 'FAIL'}  kizuna {label} vs lifetimes {REFERENCES[label]}: "
            f"max |Δ P(alive)| = {d_alive:.2e} over {int(has.sum())} customers with a P(alive), "
            f"max |Δ expected purchases| = {d_expected:.2e} (tolerance {args.tolerance:g})"
        )
        if not ok:
            failures.append(label)

    chosen = figures["kizuna"]["chosen"]
    auc_ok = chosen["auc"] >= TARGET_AUC
    mae_ok = chosen["mae"] <= TARGET_MAE
    figures["targets"] = {"auc": auc_ok, "mae": mae_ok}
    print(f"{'PASS' if auc_ok else 'FAIL'}  chosen model ({chosen['model']}) AUC {chosen['auc']:.4f} >= {TARGET_AUC}")
    print(f"{'PASS' if mae_ok else 'FAIL'}  chosen model ({chosen['model']}) MAE {chosen['mae']:.4f} <= {TARGET_MAE}")
    took = time.monotonic() - started
    print(f"\ndone in {took:.0f} s on {dt.date.today()}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    if failures:
        print(f"reference comparison off for: {', '.join(failures)}", file=sys.stderr)
        return 1
    if args.strict_targets and not (auc_ok and mae_ok):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
