"""Shared data of the model tests: simulated histories and trained models.

The simulations use more and longer clinical episodes than the defaults,
so that a small evaluation set has enough anomalous windows, and no
delivery faults, which the model tests do not exercise.
"""

import dataclasses

import numpy as np
import pytest

from devices.simulator import SimulationConfig, simulate, write_simulation
from models import gate, train
from models.bundle import ModelBundle
from transforms.features import FEATURE_NAMES

WINDOW_SIZE_MS = 300_000
WINDOW_PERIOD_MS = 60_000

_SIMULATION = SimulationConfig(
    n_patients=40,
    duration_s=1500.0,
    tachycardia_probability=0.15,
    bradycardia_probability=0.15,
    desaturation_probability=0.15,
    irregular_rhythm_probability=0.1,
    sensor_off_probability=0.0,
    motion_artifact_probability=0.0,
    episode_min_s=120.0,
    episode_max_s=300.0,
    duplicate_fraction=0.0,
    out_of_order_fraction=0.0,
    late_device_fraction=0.0,
    clock_skew_device_fraction=0.0,
    invalid_fraction=0.0,
)

# Plausible centers and spreads of each feature, in FEATURE_NAMES order.
_CENTERS = np.array(
    [75, 4, 68, 84, 0, 97, 95, 0, 800, 40, 0.05, 1, 0, 0, 0, 0.98]
)
_SPREADS = np.array(
    [8, 1, 8, 8, 0.5, 1, 1, 0.1, 90, 10, 0.01, 0.5, 1, 1, 1, 0.01]
)


@dataclasses.dataclass(frozen=True)
class SimulatedHistory:
    """One simulation written to disk, with its feature table."""

    records: str
    ground_truth: str
    table: train.HistoryTable


def _simulated_history(folder, seed: int) -> SimulatedHistory:
    config = dataclasses.replace(_SIMULATION, seed=seed)
    paths = write_simulation(simulate(config), folder)
    table = train.history_table(
        [str(paths["records"])], WINDOW_SIZE_MS, WINDOW_PERIOD_MS
    )
    return SimulatedHistory(
        str(paths["records"]), str(paths["ground_truth"]), table
    )


@pytest.fixture(scope="session")
def training_history(tmp_path_factory) -> SimulatedHistory:
    return _simulated_history(tmp_path_factory.mktemp("training"), seed=3)


@pytest.fixture(scope="session")
def evaluation_history(tmp_path_factory) -> SimulatedHistory:
    return _simulated_history(tmp_path_factory.mktemp("evaluation"), seed=4)


@pytest.fixture(scope="session")
def evaluation_set(evaluation_history) -> gate.LabelledRows:
    episodes = gate.read_episodes(evaluation_history.ground_truth)
    return gate.LabelledRows.from_history(
        evaluation_history.table, WINDOW_SIZE_MS, episodes
    )


@pytest.fixture(scope="session")
def trained_bundle(training_history) -> ModelBundle:
    return train.train(
        training_history.table, WINDOW_SIZE_MS, WINDOW_PERIOD_MS, seed=0
    )


def synthetic_rows(rng, count: int, shift=None) -> np.ndarray:
    """Draw feature rows around plausible values, shifted by `shift` SDs."""
    shift = np.zeros(len(FEATURE_NAMES)) if shift is None else shift
    noise = rng.normal(size=(count, len(FEATURE_NAMES)))
    return _CENTERS + (noise + shift) * _SPREADS


def shift_of(feature: str, sds: float) -> np.ndarray:
    """Return a shift vector that moves one feature by `sds` SDs."""
    shift = np.zeros(len(FEATURE_NAMES))
    shift[FEATURE_NAMES.index(feature)] = sds
    return shift


def synthetic_bundle(
    version: int, seed: int = 0, shift=None, **fit_args
) -> ModelBundle:
    """Fit a small model on synthetic rows and stamp a version on it.

    `shift` moves the training rows as in `synthetic_rows`.
    """
    rows = synthetic_rows(np.random.default_rng(seed), 500, shift)
    bundle = train.fit(rows, n_estimators=50, seed=seed, **fit_args)
    bundle.version = version
    return bundle
