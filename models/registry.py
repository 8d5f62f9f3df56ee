"""A versioned model registry on any Beam filesystem.

Layout under the registry root (a local folder or a `gs://` prefix)::

    v000001/model.pkl       the pickled ModelBundle
    v000001/metadata.json   feature names, sklearn version, statistics,
                            data window and evaluation scores
    CURRENT                 the promoted version number, as text

Versions only increase. `CURRENT` is written last, so a reader never sees
a promoted version whose files are incomplete.
"""

import json
import logging
import pickle

from apache_beam.io.filesystems import FileSystems

from models.bundle import ModelBundle, servability_problems

_LOGGER = logging.getLogger(__name__)
_CURRENT = "CURRENT"


class ModelLoadError(ValueError):
    """A registry artifact that cannot serve: missing, corrupt or foreign."""


def _path(root: str, *parts: str) -> str:
    return FileSystems.join(root.rstrip("/"), *parts)


def _version_dir(version: int) -> str:
    return f"v{version:06d}"


def _write(path: str, data: bytes) -> None:
    with FileSystems.create(path) as out:
        out.write(data)


def _read(path: str) -> bytes:
    with FileSystems.open(path) as stream:
        return stream.read()


def versions(root: str) -> list[int]:
    """List the versions stored in the registry, ascending."""
    pattern = _path(root, "v*", "metadata.json")
    found = []
    for match in FileSystems.match([pattern])[0].metadata_list:
        folder = match.path.replace("\\", "/").rsplit("/", 2)[-2]
        if folder[1:].isdigit():
            found.append(int(folder[1:]))
    return sorted(found)


def save(root: str, bundle: ModelBundle) -> int:
    """Store a bundle as the next version, without promoting it.

    Returns:
        The version assigned.
    """
    version = (versions(root) or [0])[-1] + 1
    bundle.version = version
    folder = _version_dir(version)
    _write(_path(root, folder, "model.pkl"), pickle.dumps(bundle))
    metadata = {
        "version": version,
        "feature_names": list(bundle.feature_names),
        "sklearn_version": bundle.sklearn_version,
        "threshold": bundle.threshold,
        **bundle.metadata,
    }
    _write(
        _path(root, folder, "metadata.json"),
        json.dumps(metadata, indent=2).encode(),
    )
    _LOGGER.info("Saved model version %d to %s", version, root)
    return version


def promote(root: str, version: int) -> None:
    """Make `version` the one the pipeline loads."""
    current = current_version(root)
    if current is not None and version <= current:
        raise ValueError(
            f"cannot promote version {version}: version {current} is already "
            "current and versions never go backwards"
        )
    _write(_path(root, _CURRENT), str(version).encode())
    _LOGGER.info("Promoted model version %d in %s", version, root)


def current_version(root: str) -> int | None:
    """Return the promoted version, or None when nothing is promoted."""
    path = _path(root, _CURRENT)
    if not FileSystems.exists(path):
        return None
    return int(_read(path).decode().strip())


def load(root: str, version: int) -> ModelBundle:
    """Load and check one version.

    Raises:
        ModelLoadError: When the artifact is missing or does not unpickle,
            or when `bundle.servability_problems` finds a problem: not a
            ModelBundle, other feature names, another scikit-learn
            version, or an estimator that fails to score.
    """
    path = _path(root, _version_dir(version), "model.pkl")
    try:
        bundle = pickle.loads(_read(path))
    except (
        OSError,
        pickle.UnpicklingError,
        EOFError,
        AttributeError,
        ImportError,
        IndexError,
        KeyError,
        ValueError,
        TypeError,
    ) as error:
        raise ModelLoadError(
            f"model version {version} at {path}: {error!r}"
        ) from error
    problems = servability_problems(bundle)
    if problems:
        raise ModelLoadError(
            f"model version {version} at {path} is rejected: "
            + "; ".join(problems)
        )
    return bundle


def read_metadata(root: str, version: int) -> dict:
    """Read the metadata of one version.

    Raises:
        ModelLoadError: When the file is missing or is not JSON.
    """
    path = _path(root, _version_dir(version), "metadata.json")
    try:
        return json.loads(_read(path))
    except (OSError, ValueError) as error:
        raise ModelLoadError(
            f"metadata of version {version} at {path}: {error!r}"
        ) from error


def update_metadata(root: str, version: int, updates: dict) -> dict:
    """Merge `updates` into the metadata of one version and rewrite it.

    Returns:
        The new metadata.
    """
    metadata = {**read_metadata(root, version), **updates}
    _write(
        _path(root, _version_dir(version), "metadata.json"),
        json.dumps(metadata, indent=2).encode(),
    )
    return metadata


def load_current(root: str) -> ModelBundle | None:
    """Load the promoted version, or None when nothing is promoted."""
    version = current_version(root)
    return None if version is None else load(root, version)
