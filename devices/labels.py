"""Load ground-truth episodes of the labelled recordings in one shape.

Three public data sets sit outside the repository, in ``../shared/data``
relative to the repository root unless ``VITALWATCH_DATA`` or a caller's
``data_dir`` says otherwise:

* ``mitbih_arrhythmia``: MIT-BIH records 100 and 208 with rhythm episodes
  (for example 208's ventricular trigeminy) from ``rhythm_episodes.csv``.
* ``cpsc2021_paf``: CPSC 2021 records with atrial fibrillation episodes
  from ``rhythm_episodes.csv``.
* ``cinc2015_false_alarms``: PhysioNet/CinC 2015 bedside-monitor alarms
  from ``ALARMS``. Each alarm sounds at 300 s and its triggering event
  starts between 290 s and 300 s, so each becomes one episode over that
  window, marked present for a true alarm and absent for a false one.

Both rhythm tables list every segment from one rhythm change to the next.
Normal sinus rhythm segments are left out unless requested, and
zero-length segments (the closing ``(N`` marks of CPSC records) are
always left out.

Example::

    for episode in load_episodes():
        print(episode.record, episode.kind, episode.start_s, episode.end_s)
"""

import csv
import dataclasses
import os
import pathlib
from collections.abc import Iterator

__all__ = [
    "CINC2015",
    "CPSC2021",
    "DATASETS",
    "MITBIH",
    "Episode",
    "Recording",
    "list_recordings",
    "load_episodes",
    "resolve_data_dir",
]

DATA_DIR_ENV = "VITALWATCH_DATA"
_REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
_DEFAULT_DATA_DIR = _REPO_ROOT.parent / "shared" / "data"

MITBIH = "mitdb"
CINC2015 = "cinc2015"
CPSC2021 = "cpsc2021"

# Short data-set tag (used in pseudonymous ids) to folder name.
DATASETS = {
    MITBIH: "mitbih_arrhythmia",
    CINC2015: "cinc2015_false_alarms",
    CPSC2021: "cpsc2021_paf",
}

# Rhythm codes of the WFDB "+" annotation (without the leading parenthesis)
# mapped to episode kinds. Codes missing here keep a "rhythm_" prefix.
_RHYTHM_KINDS = {
    "N": "normal_sinus_rhythm",
    "AB": "atrial_bigeminy",
    "AFIB": "atrial_fibrillation",
    "AFL": "atrial_flutter",
    "B": "ventricular_bigeminy",
    "BII": "second_degree_heart_block",
    "IVR": "idioventricular_rhythm",
    "NOD": "nodal_rhythm",
    "P": "paced_rhythm",
    "PREX": "pre_excitation",
    "SBR": "sinus_bradycardia",
    "SVTA": "supraventricular_tachyarrhythmia",
    "T": "ventricular_trigeminy",
    "VFL": "ventricular_flutter",
    "VT": "ventricular_tachycardia",
}

_ALARM_KINDS = {
    "Asystole": "asystole",
    "Bradycardia": "extreme_bradycardia",
    "Tachycardia": "extreme_tachycardia",
    "Ventricular_Tachycardia": "ventricular_tachycardia",
    "Ventricular_Flutter_Fib": "ventricular_flutter_fibrillation",
}

# The CinC 2015 monitor alarm sounds at 300 s and the event that triggered
# it starts between 290 s and 300 s.
_ALARM_WINDOW_START_S = 290.0
_ALARM_TIME_S = 300.0


@dataclasses.dataclass(frozen=True)
class Episode:
    """A labelled stretch of one recording or one simulated patient.

    Attributes:
        record: Record name (``"208"``, ``"a185l"``, ``"data_101_6"``) or a
            simulated patient id.
        kind: Episode kind in snake_case, for example
            ``"ventricular_trigeminy"`` or ``"asystole"``.
        start_s: Start in seconds from the start of the recording.
        end_s: End in seconds from the start of the recording.
        label_source: Where the label comes from: ``"mitdb_atr"``,
            ``"cpsc2021_atr"``, ``"cinc2015_alarm"`` or ``"simulator"``.
        present: False for a labelled absence: a CinC 2015 false alarm,
            where experts found that the alarmed event did not happen.
    """

    record: str
    kind: str
    start_s: float
    end_s: float
    label_source: str
    present: bool = True

    def event_time_ms(self, start_epoch_ms: int) -> tuple[int, int]:
        """Return (start, end) as UTC epoch milliseconds of a replay.

        Args:
            start_epoch_ms: Event time of the recording's second 0, as
                passed to the edge replay.
        """
        start = start_epoch_ms + round(self.start_s * 1000)
        end = start_epoch_ms + round(self.end_s * 1000)
        return start, end


@dataclasses.dataclass(frozen=True)
class Recording:
    """One WFDB record on disk.

    Attributes:
        dataset: Short data-set tag, a key of ``DATASETS``.
        name: WFDB record name, for example ``"208"``.
        path: Record path without extension, as ``wfdb.rdrecord`` takes it.
    """

    dataset: str
    name: str
    path: pathlib.Path


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Return the folder that contains the data-set folders.

    Args:
        data_dir: Explicit folder. When None, ``VITALWATCH_DATA`` is used if
            set, else ``../shared/data`` relative to the repository root.

    Raises:
        FileNotFoundError: When the folder does not exist.
    """
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or _DEFAULT_DATA_DIR
    path = pathlib.Path(data_dir)
    if not path.is_dir():
        raise FileNotFoundError(
            f"data folder {path} not found: pass data_dir (--data) or set "
            f"{DATA_DIR_ENV} to the folder that contains "
            f"{', '.join(sorted(DATASETS.values()))}"
        )
    return path


def list_recordings(
    data_dir: str | os.PathLike | None = None,
    datasets: tuple[str, ...] = (MITBIH, CINC2015, CPSC2021),
) -> list[Recording]:
    """List the WFDB records of the given data sets, sorted by name.

    A record is any ``.hea`` header in the data set's folder.

    Raises:
        ValueError: When a data-set tag is not a key of ``DATASETS``.
    """
    root = resolve_data_dir(data_dir)
    recordings = []
    for dataset in datasets:
        if dataset not in DATASETS:
            raise ValueError(
                f"unknown data set {dataset!r}; expected one of "
                f"{sorted(DATASETS)}"
            )
        folder = root / DATASETS[dataset]
        for header in sorted(folder.glob("*.hea")):
            path = header.with_suffix("")
            recordings.append(Recording(dataset, header.stem, path))
    return recordings


def load_episodes(
    data_dir: str | os.PathLike | None = None,
    include_normal: bool = False,
) -> list[Episode]:
    """Load the ground-truth episodes of all three data sets.

    Args:
        data_dir: Folder of the data sets, see ``resolve_data_dir``.
        include_normal: Also return normal sinus rhythm segments.

    Returns:
        Episodes sorted by record and start time.
    """
    root = resolve_data_dir(data_dir)
    episodes = [
        *_read_rhythm_episodes(root, MITBIH, "mitdb_atr"),
        *_read_rhythm_episodes(root, CPSC2021, "cpsc2021_atr"),
        *_read_alarm_episodes(root),
    ]
    if not include_normal:
        episodes = [e for e in episodes if e.kind != "normal_sinus_rhythm"]
    return sorted(episodes, key=lambda e: (e.record, e.start_s, e.kind))


def _rhythm_kind(code: str) -> str:
    code = code.lstrip("(")
    return _RHYTHM_KINDS.get(code, "rhythm_" + code.lower())


def _read_rhythm_episodes(
    root: pathlib.Path, dataset: str, label_source: str
) -> Iterator[Episode]:
    path = root / DATASETS[dataset] / "rhythm_episodes.csv"
    with open(path, newline="") as table:
        for row in csv.DictReader(table):
            start_s = float(row["start_s"])
            end_s = float(row["end_s"])
            if end_s <= start_s:
                continue
            kind = _rhythm_kind(row["rhythm"])
            yield Episode(row["record"], kind, start_s, end_s, label_source)


def _read_alarm_episodes(root: pathlib.Path) -> Iterator[Episode]:
    path = root / DATASETS[CINC2015] / "ALARMS"
    with open(path, newline="") as table:
        for record, alarm_type, label in csv.reader(table):
            if alarm_type not in _ALARM_KINDS:
                raise ValueError(
                    f"{path}: record {record} has unknown alarm type "
                    f"{alarm_type!r}; expected one of {sorted(_ALARM_KINDS)}"
                )
            yield Episode(
                record=record,
                kind=_ALARM_KINDS[alarm_type],
                start_s=_ALARM_WINDOW_START_S,
                end_s=_ALARM_TIME_S,
                label_source="cinc2015_alarm",
                present=label.strip() == "1",
            )
