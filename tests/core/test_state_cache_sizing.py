"""Tests of the state cache's sizing function."""

import sys
import types

import numpy as np
import pytest
from apache_beam.runners.worker import statecache

from transforms import state_cache_sizing
from transforms.patient_state import PatientState

_VALUES = (
    {"bradycardia": ((1_700_000_000_000, "SEVERE"), 3)},
    [1.0, 2.5, None, "text", (1, 2)],
    np.arange(100, dtype=np.float64),
    PatientState(),
)


@pytest.mark.parametrize("value", _VALUES, ids=lambda v: type(v).__name__)
def test_size_equals_beams(value):
    expected = state_cache_sizing.beam_get_deep_size(value)
    assert state_cache_sizing.get_deep_size(value) == expected


def test_module_globals_not_counted():
    # A value that refers to a module's globals dict must not be charged
    # for the module, as in Beam's own sizing.
    value = {"globals": vars(np)}
    size = state_cache_sizing.get_deep_size(value)
    assert size == state_cache_sizing.beam_get_deep_size(value)
    assert size < 10_000


def test_new_module_globals_excluded(monkeypatch):
    module = types.ModuleType("vitalwatch_sizing_probe")
    module.payload = list(range(10_000))
    state_cache_sizing.get_deep_size(object())
    monkeypatch.setitem(sys.modules, module.__name__, module)
    value = {"globals": vars(module)}
    size = state_cache_sizing.get_deep_size(value)
    assert size == state_cache_sizing.beam_get_deep_size(value)
    assert size < 10_000


def test_install_replaces_beams_function(monkeypatch):
    monkeypatch.setattr(
        statecache, "get_deep_size", state_cache_sizing.beam_get_deep_size
    )
    state_cache_sizing.install()
    state_cache_sizing.install()
    assert statecache.get_deep_size is state_cache_sizing.get_deep_size
