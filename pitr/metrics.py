"""The Prometheus metrics of pitr, through the official client library:
what `report rpo --output prometheus` prints and `/metrics` serves.

Every source metric is a gauge labelled with the source; a metric without a
value for a source (nothing archived yet) is left out for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pitr.health import Rpo


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


# name, help, value of a row (None: no sample)
SOURCE_METRICS: list[tuple[str, str, Callable[[Rpo], float | None]]] = [
    (
        "pitr_last_archived_timestamp_seconds",
        "When the source's newest fact (WAL file, stream batch, snapshot) was archived.",
        lambda r: _ts(r.status.last_archived_at),
    ),
    (
        "pitr_archive_lag_seconds",
        "Seconds since the source's newest fact was archived.",
        lambda r: r.lag,
    ),
    (
        "pitr_last_backup_timestamp_seconds",
        "When the source's newest base backup or snapshot finished.",
        lambda r: _ts(r.status.last_backup_at),
    ),
    (
        "pitr_backup_age_seconds",
        "Seconds since the source's newest base backup or snapshot finished.",
        lambda r: r.backup_age,
    ),
    (
        "pitr_recoverable_from_timestamp_seconds",
        "Earliest instant a restore of the source can reach.",
        lambda r: _ts(r.status.coverage.recoverable_from),
    ),
    (
        "pitr_recoverable_to_timestamp_seconds",
        "Latest instant a restore of the source can reach.",
        lambda r: _ts(r.status.coverage.recoverable_to),
    ),
    (
        "pitr_recoverable_gaps",
        "Holes in the recoverable window and stream entries known lost.",
        lambda r: len(r.status.gaps),
    ),
    ("pitr_backups", "Base backups or snapshots in the catalog.", lambda r: len(r.status.backups)),
    (
        "pitr_max_lag_seconds",
        "The source's lag limit (from --max-lag or the config).",
        lambda r: None if r.limits.max_lag is None else r.limits.max_lag.total_seconds(),
    ),
    (
        "pitr_max_backup_age_seconds",
        "The source's backup age limit (from --max-backup-age or the config).",
        lambda r: (
            None if r.limits.max_backup_age is None else r.limits.max_backup_age.total_seconds()
        ),
    ),
    (
        "pitr_rpo_ok",
        "1 when the source is within its lag and backup age limits, else 0.",
        lambda r: 1 if r.ok else 0,
    ),
]


class SourceCollector(Collector):
    """The per-source gauges, assessed afresh at every collection."""

    def __init__(self, rows: Callable[[], list[Rpo]]) -> None:
        self.rows = rows

    def collect(self) -> Iterator[Metric]:
        rows = self.rows()
        info = GaugeMetricFamily(
            "pitr_source_info", "A source pitr archives, with its kind.", labels=["source", "kind"]
        )
        for r in rows:
            info.add_metric([r.status.name, r.status.kind], 1)
        yield info
        for name, help_text, value in SOURCE_METRICS:
            family = GaugeMetricFamily(name, help_text, labels=["source"])
            for r in rows:
                v = value(r)
                if v is not None:
                    family.add_metric([r.status.name], v)
            yield family
        yield GaugeMetricFamily(
            "pitr_report_timestamp_seconds", "When this report was made.", value=time.time()
        )


class CounterCollector(Collector):
    """Counters a running process keeps, as (name, help, {labels: value})."""

    def __init__(self, read: Callable[[], Iterable[tuple[str, str, dict[str, float]]]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        for name, help_text, by_source in self.read():
            family = CounterMetricFamily(name, help_text, labels=["source"])
            for source, value in sorted(by_source.items()):
                family.add_metric([source], value)
            yield family


def exposition(*collectors: Any) -> bytes:
    """The text exposition format of the given collectors."""
    registry = CollectorRegistry(auto_describe=False)
    for c in collectors:
        registry.register(c)
    return generate_latest(registry)
