"""Shared fixtures for the device tests."""

import pytest

from devices import labels


@pytest.fixture(scope="session")
def data_dir():
    """Return the labelled-recordings folder, or skip when it is missing."""
    try:
        return labels.resolve_data_dir()
    except FileNotFoundError as error:
        pytest.skip(f"labelled recordings not available: {error}")
