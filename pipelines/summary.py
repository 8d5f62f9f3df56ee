"""Read the pipeline's Beam counters and format a run summary."""

from apache_beam.metrics.metric import MetricsFilter

_NAMESPACE = "vitalwatch"


def counters(result) -> dict[str, int]:
    """Return the committed (or, where unsupported, attempted) counters."""
    query = result.metrics().query(MetricsFilter().with_namespace(_NAMESPACE))
    totals: dict[str, int] = {}
    for counter in query["counters"]:
        try:
            value = counter.committed
        except (AttributeError, NotImplementedError):
            value = None
        if value is None:
            value = counter.attempted
        name = counter.key.metric.name
        totals[name] = totals.get(name, 0) + int(value or 0)
    return totals


def distributions(result) -> dict[str, object]:
    """Return the vitalwatch distributions (batch sizes, latencies)."""
    query = result.metrics().query(MetricsFilter().with_namespace(_NAMESPACE))
    found = {}
    for distribution in query["distributions"]:
        value = distribution.committed or distribution.attempted
        found[distribution.key.metric.name] = value
    return found


def format_counters(totals: dict[str, int]) -> str:
    """Format counters as an aligned block, grouped by prefix."""
    if not totals:
        return "no counters were reported"
    width = max(len(name) for name in totals)
    lines = [f"{name:<{width}}  {totals[name]:>10,}" for name in sorted(totals)]
    return "\n".join(lines)
