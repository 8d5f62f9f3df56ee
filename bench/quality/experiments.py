"""Candidate pipeline changes, measured without editing the pipeline.

Each variant changes the pipeline in this process only, for one run:
either through pipeline options, or by swapping the fast path's
condition table while the FnApiRunner runs its workers in this process.

* ``pulse_checks``: the bradycardia (below 40 bpm for 5 s) and
  tachycardia (above 140 bpm for 8 s) checks also run on the pulse rate
  from PPG (or ABP), not only on the ECG heart rate. On CinC record b560s
  the ECG beat detector counts T waves and reports about 70 bpm while
  the pulse is about 34 bpm.
* ``suppression_120s``: ``--suppression_sec=120`` in place of 600, so a
  patient with repeated short episodes is alerted more than once per
  10 minutes.
* ``model_threshold_0.49``: the same Isolation Forest promoted in a
  scratch registry with its score threshold lowered from the 98th
  percentile of the training scores (about 0.53) to 0.49. The persistent
  AF windows of CPSC record data_8_2 score 0.50 to 0.525 although their
  RMSSD-to-RR ratio is about six times the training median.
"""

import contextlib
import dataclasses
import pathlib

from models import registry
from transforms import fast_checks

_PULSE_CONDITIONS = (
    fast_checks.Condition(
        "bradycardia",
        "SEVERE",
        "pulse_rate_bpm",
        lambda x, _: x < 40,
        5_000,
        "pulse rate {value:.0f} bpm, below 40 bpm for {duration:.0f} s",
    ),
    fast_checks.Condition(
        "tachycardia",
        "SEVERE",
        "pulse_rate_bpm",
        lambda x, _: x > 140,
        8_000,
        "pulse rate {value:.0f} bpm, above 140 bpm for {duration:.0f} s",
    ),
)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One candidate change: extra pipeline options and a code patch."""

    name: str
    description: str
    pipeline_args: tuple[str, ...] = ()
    patch: object = contextlib.nullcontext
    model_threshold: float | None = None

    def registry_root(self, default_root: str, out: pathlib.Path) -> str:
        """Return the registry to run with, writing a scratch one if needed."""
        if self.model_threshold is None:
            return default_root
        bundle = registry.load_current(default_root)
        bundle = dataclasses.replace(bundle, threshold=self.model_threshold)
        root = str(out / f"registry-{self.name}")
        registry.promote(root, registry.save(root, bundle))
        return root


@contextlib.contextmanager
def _pulse_checks():
    original = fast_checks.CONDITIONS
    fast_checks.CONDITIONS = original + _PULSE_CONDITIONS
    try:
        yield
    finally:
        fast_checks.CONDITIONS = original


VARIANTS = (
    Variant(
        "pulse_checks",
        "bradycardia and tachycardia checks also on the pulse rate",
        patch=_pulse_checks,
    ),
    Variant(
        "suppression_120s",
        "repeats suppressed for 120 s instead of 600 s",
        pipeline_args=("--suppression_sec=120",),
    ),
    Variant(
        "model_threshold_0.49",
        "Isolation Forest threshold 0.49 instead of about 0.53",
        model_threshold=0.49,
    ),
)
