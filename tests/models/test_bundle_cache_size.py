"""How Beam's state cache measures a ModelBundle kept in keyed state."""

import objsize
from apache_beam.runners.worker import statecache

from models.bundle import _tree_nbytes
from tests.models.conftest import synthetic_bundle


def _traversed(value) -> list:
    return list(
        objsize.traverse_bfs(
            value,
            get_referents_func=statecache._get_referents_func,
            filter_func=statecache._filter_func,
        )
    )


def test_cache_size_counts_tree_arrays():
    bundle = synthetic_bundle(version=1)
    tree_bytes = _tree_nbytes(bundle.estimator)
    nodes = sum(t.tree_.node_count for t in bundle.estimator.estimators_)
    assert tree_bytes is not None
    assert tree_bytes > nodes * 8
    assert statecache.get_deep_size([bundle]) > tree_bytes


def test_cache_walk_skips_estimator_objects():
    bundle = synthetic_bundle(version=1)
    kinds = {type(o).__name__ for o in _traversed([bundle])}
    assert "IsolationForest" not in kinds
    assert "ExtraTreeRegressor" not in kinds
    assert "Tree" not in kinds


def test_cache_walk_falls_back_without_trees():
    bundle = synthetic_bundle(version=1)
    bundle.estimator = {"not": "a forest"}
    assert _tree_nbytes(bundle.estimator) is None
    referents = bundle.get_referents_for_cache()
    assert any(r is bundle.estimator for r in referents)
