"""Registry metadata, loading checks and corrupt artifacts."""

import json
import pathlib

import pytest
import sklearn

from models import registry
from tests.models.conftest import synthetic_bundle
from transforms.features import FEATURE_NAMES


def _metadata(root, version) -> dict:
    path = pathlib.Path(root, f"v{version:06d}", "metadata.json")
    return json.loads(path.read_text())


def test_save_metadata_describes_features(tmp_path, trained_bundle):
    version = registry.save(str(tmp_path), trained_bundle)
    metadata = _metadata(tmp_path, version)
    assert metadata["feature_names"] == list(FEATURE_NAMES)
    assert metadata["sklearn_version"] == sklearn.__version__
    assert list(metadata["feature_statistics"]) == list(FEATURE_NAMES)
    hr = metadata["feature_statistics"]["hr_mean_bpm"]
    assert 40 < hr["median"] < 120
    assert hr["iqr"] > 0
    histogram = hr["histogram"]
    assert len(histogram["proportions"]) == len(histogram["edges"]) + 1
    total = sum(histogram["proportions"]) + histogram["missing"]
    assert total == pytest.approx(1.0)


def test_save_metadata_records_data_window(tmp_path, trained_bundle):
    version = registry.save(str(tmp_path), trained_bundle)
    window = _metadata(tmp_path, version)["data_window"]
    assert window["first_event_ms"] < window["last_event_ms"]
    assert window["patients"] == 40
    assert _metadata(tmp_path, version)["window_size_ms"] == 300_000


def test_load_round_trip(tmp_path):
    root = str(tmp_path)
    version = registry.save(root, synthetic_bundle(0))
    registry.promote(root, version)
    loaded = registry.load_current(root)
    assert loaded.version == version
    assert loaded.threshold == pytest.approx(synthetic_bundle(0).threshold)


def test_load_rejects_corrupt_pickle(tmp_path):
    root = str(tmp_path)
    version = registry.save(root, synthetic_bundle(0))
    pathlib.Path(root, f"v{version:06d}", "model.pkl").write_bytes(b"\x80junk")
    with pytest.raises(registry.ModelLoadError, match="model version 1"):
        registry.load(root, version)


def test_load_rejects_other_sklearn(tmp_path):
    bundle = synthetic_bundle(0)
    bundle.sklearn_version = "0.24.2"
    version = registry.save(str(tmp_path), bundle)
    with pytest.raises(registry.ModelLoadError, match="scikit-learn 0.24.2"):
        registry.load(str(tmp_path), version)


def test_load_rejects_other_features(tmp_path):
    bundle = synthetic_bundle(0)
    bundle.feature_names = tuple(reversed(FEATURE_NAMES))
    version = registry.save(str(tmp_path), bundle)
    with pytest.raises(registry.ModelLoadError, match="expects features"):
        registry.load(str(tmp_path), version)


def test_update_metadata_merges(tmp_path):
    root = str(tmp_path)
    version = registry.save(root, synthetic_bundle(0))
    registry.update_metadata(root, version, {"gate": {"accepted": True}})
    metadata = registry.read_metadata(root, version)
    assert metadata["gate"] == {"accepted": True}
    assert metadata["feature_names"] == list(FEATURE_NAMES)


def test_promote_rejects_older_version(tmp_path):
    root = str(tmp_path)
    registry.save(root, synthetic_bundle(0))
    registry.save(root, synthetic_bundle(0))
    registry.promote(root, 2)
    with pytest.raises(ValueError, match="never go backwards"):
        registry.promote(root, 1)
