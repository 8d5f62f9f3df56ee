"""Run Beam's AnomalyDetection with default settings over heart rate and SpO2.

Beam 2.62 (the project's pin) has no ``apache_beam.ml.anomaly``, so this
script runs in another virtual environment with a newer Beam and imports
nothing from vitalwatch. It reads a JSON file of per-patient series and
writes, per patient, the times at which an alarm starts:

    python bench/quality/beam_anomaly.py IN.json OUT.json

Input: ``{patient_id: {"time_ms": [...], "heart_rate_bpm": [...],
"spo2_pct": [...]}}`` with null for a missing value. Each channel gets
its own ``AnomalyDetection(ZScore(features=[channel]))`` with ZScore's
defaults: sliding mean and standard deviation over the last 1,000
values, and a fixed threshold of 3. Like the static monitor, an alarm is
the first outlier after a non-outlier, per channel.
"""

import json
import sys
import tempfile

import apache_beam as beam
from apache_beam.ml.anomaly.detectors.zscore import ZScore
from apache_beam.ml.anomaly.transforms import AnomalyDetection
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

_CHANNELS = ("heart_rate_bpm", "spo2_pct")
_OUTLIER = 1


def _readings(series: dict, channel: str):
    for patient, columns in series.items():
        for time_ms, value in zip(
            columns["time_ms"], columns[channel], strict=True
        ):
            if value is not None:
                yield patient, beam.Row(time_ms=time_ms, **{channel: value})


def _label(element):
    patient, result = element
    prediction = next(iter(result.predictions))
    return patient, (result.example.time_ms, prediction.label == _OUTLIER)


def _onsets(element):
    patient, labelled = element
    onsets, previous = [], False
    for time_ms, outlier in sorted(labelled):
        if outlier and not previous:
            onsets.append(time_ms)
        previous = outlier
    return patient, onsets


def run(series: dict, scratch: str) -> dict:
    """Return {channel: {patient: [alarm onset time ms]}}.

    Results go through JSON-lines files under ``scratch``, because the
    runner pickles every function it runs.
    """
    found = {}
    for channel in _CHANNELS:
        prefix = f"{scratch}/{channel}"
        pipeline = beam.Pipeline(runner=FnApiRunner())
        _ = (
            pipeline
            | "CreateReadings" >> beam.Create(list(_readings(series, channel)))
            | "DetectAnomalies" >> AnomalyDetection(ZScore(features=[channel]))
            | "LabelReadings" >> beam.Map(_label)
            | "GroupByPatient" >> beam.GroupByKey()
            | "FindOnsets" >> beam.Map(_onsets)
            | "ToJson" >> beam.Map(json.dumps)
            | "WriteOnsets"
            >> beam.io.WriteToText(prefix, shard_name_template="")
        )
        pipeline.run().wait_until_finish()
        with open(prefix) as lines:
            found[channel] = dict(json.loads(line) for line in lines)
    return found


def main(argv) -> int:
    """Read the series, run the detectors and write the alarm onsets."""
    if len(argv) != 3:
        print(__doc__.split("\n\n")[2], file=sys.stderr)
        return 2
    with open(argv[1]) as source:
        series = json.load(source)
    with tempfile.TemporaryDirectory() as scratch:
        found = run(series, scratch)
    with open(argv[2], "w") as sink:
        json.dump(found, sink)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
