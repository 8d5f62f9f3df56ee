"""NAB series: checks of our scorer and two detectors built from our parts.

The scorer (``bench.nab``) is checked against NAB's published per-file
results, which give each detector's TP/TN/FP/FN row counts and raw score
but not its detections. So the checks are:

* row counts: for every published row, TP + FN equals our count of
  window rows after the probation period, and TP + TN + FP + FN equals
  the rows after it;
* the null detector's raw score equals ours exactly;
* on the series without windows, every raw score equals ``-fp_weight *
  FP``, the cost of a false positive before any window;
* on single-window series without false positives, the raw score is the
  reward of one detection, so inverting the scaled sigmoid must give a
  whole row inside the window. The distance from a whole row is reported.

Detectors, both causal and fixed before scoring (no threshold sweep):

* ``sustained_deviation``: the fast path's heart-rate rule on one series.
  The value must stay more than 5 robust SD from the median of the
  trailing day for several rows, and each run fires once.
* ``isolation_forest``: the model path's idea. An Isolation Forest fitted
  on the probation rows scores rolling features of each row, and a row
  above the 99.5th percentile of the training scores fires, with repeats
  suppressed for a day of rows, as ``RaiseAlerts`` suppresses repeats.
"""

import csv
import dataclasses
import json
import math
import pathlib

import numpy as np
from sklearn.ensemble import IsolationForest

from bench import nab

# Rows per day at each series' step; also the trailing baseline length.
_DAY = np.timedelta64(1, "D")
_DEVIATION_SD = 5.0
_SUSTAIN_ROWS = 3
_MIN_SCALE_FRACTION = 0.01
_IFOREST_QUANTILE = 99.5
_IFOREST_SEED = 7


@dataclasses.dataclass(frozen=True)
class Series:
    """One NAB series with its anomaly windows as row spans."""

    name: str
    timestamps: np.ndarray
    values: np.ndarray
    windows: list[tuple[int, int]]

    @property
    def rows_per_day(self) -> int:
        step = self.timestamps[1] - self.timestamps[0]
        return max(int(_DAY // step), 1)


def load_corpus(nab_dir: pathlib.Path) -> list[Series]:
    """Read every series named in ``labels/combined_windows.json``."""
    with open(nab_dir / "labels" / "combined_windows.json") as source:
        windows = json.load(source)
    corpus = []
    for name in sorted(windows):
        with open(nab_dir / "data" / name, newline="") as table:
            rows = list(csv.DictReader(table))
        timestamps = np.array(
            [np.datetime64(r["timestamp"]) for r in rows], dtype="M8[s]"
        )
        values = np.array([float(r["value"]) for r in rows])
        spans = nab.window_rows(timestamps, windows[name])
        corpus.append(Series(name, timestamps, values, spans))
    return corpus


def read_published(nab_dir: pathlib.Path) -> list[dict]:
    """Read ``published_scores_per_file.csv`` with numeric columns."""
    with open(nab_dir / "published_scores_per_file.csv", newline="") as table:
        rows = list(csv.DictReader(table))
    for row in rows:
        row["Score"] = float(row["Score"])
        for key in ("TP", "TN", "FP", "FN", "Total_Count"):
            row[key] = int(row[key])
    return rows


def check_scorer(corpus, profiles, published) -> dict:
    """Compare our scorer with the published per-file results."""
    by_name = {series.name: series for series in corpus}
    count_errors, null_diffs, no_window_diffs, row_offsets = [], [], [], []
    for row in published:
        series = by_name[row["File"]]
        profile = profiles[row["Profile"]]
        null = nab.score_file(
            np.zeros(len(series.values), bool), series.windows, profile
        )
        window_rows = null.fn
        live_rows = null.tn + null.fn
        if row["TP"] + row["FN"] != window_rows:
            count_errors.append((row["Detector"], row["File"], "TP+FN"))
        if row["TP"] + row["TN"] + row["FP"] + row["FN"] != live_rows:
            count_errors.append((row["Detector"], row["File"], "total"))
        if row["Detector"] == "null":
            null_diffs.append(abs(row["Score"] - null.raw))
        if not series.windows:
            expected = -profile.fp_weight * row["FP"]
            no_window_diffs.append(abs(row["Score"] - expected))
        offset = _implied_row_offset(row, series, profile)
        if offset is not None:
            row_offsets.append(offset)
    return {
        "published_rows": len(published),
        "count_mismatches": count_errors,
        "null_rows": len(null_diffs),
        "null_max_diff": max(null_diffs, default=float("nan")),
        "no_window_rows": len(no_window_diffs),
        "no_window_max_diff": max(no_window_diffs, default=float("nan")),
        "single_detection_rows": len(row_offsets),
        "single_detection_max_row_offset": max(
            row_offsets, default=float("nan")
        ),
    }


def _implied_row_offset(row, series, profile) -> float | None:
    """Distance of the sigmoid-implied detection row from a whole row."""
    if len(series.windows) != 1 or row["FP"] or not row["TP"]:
        return None
    # NAB divides the reward by the sigmoid at the window's first row.
    reward = row["Score"] / profile.tp_weight * nab.scaled_sigmoid(-1.0)
    if not -1.0 < reward < 1.0:
        return None
    # Invert reward = 2 / (1 + exp(5 p)) - 1 for the position p.
    position = math.log(2.0 / (reward + 1.0) - 1.0) / 5.0
    first, last = series.windows[0]
    width = last - first + 1
    implied_row = last + 1 + position * width
    if not first - 0.5 <= implied_row <= last + 0.5:
        return float("inf")
    return abs(implied_row - round(implied_row))


def sustained_deviation(series: Series) -> np.ndarray:
    """Fire once per run of values far from the trailing day's median."""
    window = series.rows_per_day
    values = series.values
    median, scale = _trailing_median_scale(values, window)
    with np.errstate(invalid="ignore"):
        far = np.abs(values - median) > _DEVIATION_SD * scale
    return _fire_once_per_run(far, _SUSTAIN_ROWS)


def _trailing_median_scale(values, window):
    """Median and robust SD of the previous ``window`` rows, per row."""
    n = len(values)
    median = np.full(n, np.nan)
    scale = np.full(n, np.nan)
    floor = _MIN_SCALE_FRACTION * (np.nanmax(np.abs(values)) or 1.0)
    for i in range(window, n):
        past = values[i - window : i]
        center = np.median(past)
        median[i] = center
        mad = 1.4826 * np.median(np.abs(past - center))
        scale[i] = max(mad, floor)
    return median, scale


def _fire_once_per_run(active: np.ndarray, sustain: int) -> np.ndarray:
    fired = np.zeros(len(active), dtype=bool)
    run = 0
    for i, on in enumerate(active.tolist()):
        run = run + 1 if on else 0
        fired[i] = run == sustain
    return fired


def isolation_forest(series: Series) -> np.ndarray:
    """Fire where an Isolation Forest on rolling features finds an outlier."""
    table = _rolling_features(series.values, series.rows_per_day)
    probation = nab.probation_rows(len(series.values))
    usable = ~np.isnan(table).any(axis=1)
    train_rows = table[:probation][usable[:probation]]
    model = IsolationForest(n_estimators=100, random_state=_IFOREST_SEED)
    model.fit(train_rows)
    threshold = np.percentile(
        -model.score_samples(train_rows), _IFOREST_QUANTILE
    )
    scores = np.full(len(table), -np.inf)
    scores[usable] = -model.score_samples(table[usable])
    return _suppress_repeats(scores > threshold, series.rows_per_day)


def _rolling_features(values, window) -> np.ndarray:
    """Per row: z from the trailing median, its change, and spread ratio."""
    median, scale = _trailing_median_scale(values, window)
    z = (values - median) / scale
    step = np.concatenate([[np.nan], np.diff(values)]) / scale
    short = max(window // 12, 3)
    spread = np.full(len(values), np.nan)
    for i in range(short, len(values)):
        spread[i] = np.std(values[i - short : i + 1]) / scale[i]
    return np.column_stack([z, step, spread])


def _suppress_repeats(active: np.ndarray, period: int) -> np.ndarray:
    fired = np.zeros(len(active), dtype=bool)
    last = -period
    for i in np.flatnonzero(active):
        if i - last >= period:
            fired[i] = True
            last = i
    return fired


DETECTORS = {
    "sustained_deviation": sustained_deviation,
    "isolation_forest": isolation_forest,
}


def score_detectors(corpus, profile) -> dict:
    """Score our detectors and return per-detector file and corpus scores."""
    n_windows = sum(len(series.windows) for series in corpus)
    results = {}
    for name, detect in DETECTORS.items():
        files = {
            s.name: nab.score_file(detect(s), s.windows, profile)
            for s in corpus
        }
        raw = sum(score.raw for score in files.values())
        results[name] = {
            "files": files,
            "raw": raw,
            "normalised": nab.normalised_score(raw, n_windows, profile),
        }
    return results


def published_subset_scores(published, profile_name, profile, corpus):
    """Normalise each published detector's raw scores over these series."""
    n_windows = sum(len(series.windows) for series in corpus)
    totals: dict[str, float] = {}
    for row in published:
        if row["Profile"] == profile_name:
            totals[row["Detector"]] = (
                totals.get(row["Detector"], 0.0) + row["Score"]
            )
    return {
        detector: nab.normalised_score(raw, n_windows, profile)
        for detector, raw in totals.items()
    }
