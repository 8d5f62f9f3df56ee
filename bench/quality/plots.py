"""PNG charts of the detection-quality evaluation, drawn with matplotlib."""

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

_TIER_COLOURS = {"SEVERE": "tab:red", "MINOR": "tab:orange", "INFO": "0.6"}


def recording(path, title, start_ms, lines, spans, alarms, static):
    """Plot one recording's rates, labelled episodes and alarms.

    Args:
        path: Output PNG path.
        title: Figure title.
        start_ms: Event time of second 0, to place episodes and alarms.
        lines: (label, per-second values) pairs to draw.
        spans: (start s, end s, colour, label) tuples to shade.
        alarms: The pipeline's ``Alarm`` records.
        static: The static monitor's ``Alarm`` records.
    """
    fig, ax = plt.subplots(figsize=(11, 3.6))
    for label, values in lines:
        ax.plot(np.arange(len(values)), values, lw=0.8, label=label)
    shaded = set()
    for start_s, end_s, colour, label in spans:
        ax.axvspan(
            start_s,
            end_s,
            color=colour,
            alpha=0.25,
            label=None if label in shaded else label,
        )
        shaded.add(label)
    _marks(ax, alarms, start_ms, "pipeline alert", 0.97, "v")
    _marks(ax, static, start_ms, "static alarm", 0.03, "^")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("rate (bpm)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", ncols=3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _marks(ax, alarms, start_ms, label, height, marker):
    if not alarms:
        return
    x = [(a.time_ms - start_ms) / 1000 for a in alarms]
    colours = [_TIER_COLOURS.get(a.tier, "tab:purple") for a in alarms]
    y = np.full(len(x), height)
    ax.scatter(
        x,
        y,
        c=colours,
        marker=marker,
        s=28,
        transform=ax.get_xaxis_transform(),
        label=label,
        zorder=3,
    )


def comparison(path, title, groups, metrics_shown):
    """Plot a grouped bar chart of detectors by metric.

    Args:
        path: Output PNG path.
        title: Figure title.
        groups: Detector name to {metric name: value}.
        metrics_shown: (metric name, axis label) pairs, one panel each.
    """
    fig, axes = plt.subplots(
        1, len(metrics_shown), figsize=(4.2 * len(metrics_shown), 3.4)
    )
    axes = np.atleast_1d(axes)
    names = list(groups)
    for ax, (metric, label) in zip(axes, metrics_shown, strict=True):
        values = [_number(groups[n].get(metric)) for n in names]
        bars = ax.bar(range(len(names)), values, color=_colours(names))
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_ylabel(label)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def _colours(names):
    return [
        "tab:blue" if n.startswith(("vitalwatch", "ours")) else "0.6"
        for n in names
    ]


def image_path(folder: pathlib.Path, *parts: str) -> pathlib.Path:
    """Return ``folder/quality_<parts>.png`` with the folder created."""
    folder.mkdir(parents=True, exist_ok=True)
    name = "_".join(p.replace("/", "_").replace(".csv", "") for p in parts)
    return folder / f"quality_{name}.png"
