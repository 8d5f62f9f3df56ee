"""Cheaper sizing of values in the Beam SDK harness's state cache.

Beam's state cache (apache-beam 2.62.0) weighs every value it stores
with `objsize.get_deep_size`. objsize 0.7.1 first collects the ids of
the globals dicts of every module in `sys.modules`, to leave them out of
the walk. With the pipeline loaded that is about 2,800 modules, and the
set is rebuilt on every call, 1.4 to 1.9 ms each time. The streaming
pipeline stores each patient's state once per bundle, so on Flink this
rebuild was a fifth of all samples of the SDK harness.

`install()` replaces Beam's sizing function with one that passes objsize
the same exclusion set, kept between calls and rebuilt only when the
number of loaded modules changes. A module's globals dict keeps its
identity while the module is loaded, so the sizes are the same as
Beam's, unless a module is replaced in `sys.modules` by another under
the same count. The size only steers the cache's eviction, so such a
miss would change which values are evicted, never what a DoFn reads.
"""

import sys

import objsize
from apache_beam.runners.worker import statecache

_beam_get_deep_size = statecache.get_deep_size
_module_count = -1
_excluded_ids: set[int] = set()


def _excluded() -> set[int]:
    """Return the ids objsize leaves out: module globals dicts and None."""
    global _module_count, _excluded_ids
    if len(sys.modules) == _module_count:
        return _excluded_ids
    modules = list(sys.modules.values())
    excluded = {id(None)}
    for module in modules:
        try:
            excluded.add(id(vars(module)))
        except TypeError:
            pass
    # The set is assigned before the count, so a thread that sees the new
    # count also sees the new set.
    _excluded_ids, _module_count = excluded, len(modules)
    return excluded


def get_deep_size(*objs) -> int:
    """Return the deep size of `objs` in bytes, as Beam's cache weighs it.

    The exclusion set is shared between calls. objsize only adds id(None)
    to it, which it already contains.
    """
    return objsize.get_deep_size(
        *objs,
        get_size_func=statecache._size_func,
        get_referents_func=statecache._get_referents_func,
        filter_func=statecache._filter_func,
        exclude_set=_excluded(),
        exclude_modules_globals=False,
    )


def install() -> None:
    """Make the state cache of this process use `get_deep_size`.

    Stateful DoFns call this from `setup`, which runs in the SDK harness
    process. Calling it again has no further effect.
    """
    statecache.get_deep_size = get_deep_size


def beam_get_deep_size(*objs) -> int:
    """Return the size by Beam's own function, for tests and benchmarks."""
    return _beam_get_deep_size(*objs)
