"""Is each source within its limits? The one assessment behind `report rpo`,
the status page, `/healthz` and `/metrics`.

A limit comes from the command line when given there, else from the
source's own table, else from the config's [report] table; a problem names
where its limit came from, so the operator knows what to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pitr.config import Config, Thresholds


@dataclass
class Rpo:
    status: Any  # recovery.status.SourceStatus
    lag: float | None
    backup_age: float | None
    limits: Thresholds = field(default_factory=Thresholds)
    problems: list[str] = field(default_factory=list)
    live: Any = None  # pitr.kinds.base.LiveReport: what the live server said (report rpo)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Limit:
    value: timedelta | None
    said: str  # how the operator set it: "--max-lag" or "max_lag"


def source_limits(config: Config, name: str, given: Thresholds) -> tuple[Limit, Limit]:
    """(lag limit, backup age limit) of a source: `given` (the command's
    options) first, then the config."""
    configured = config.thresholds(name)
    if given.max_lag is not None:
        lag = Limit(given.max_lag, "--max-lag")
    else:
        lag = Limit(configured.max_lag, "max_lag")
    if given.max_backup_age is not None:
        age = Limit(given.max_backup_age, "--max-backup-age")
    else:
        age = Limit(configured.max_backup_age, "max_backup_age")
    return lag, age


def assess_sources(app: Any, only: str | None = None, given: Thresholds | None = None) -> list[Rpo]:
    """The assessment of every known source (or the one named), now."""
    from catalog.marks import marks_by_source
    from pitr import kinds
    from recovery.status import source_status

    repo = app.repo()
    now = datetime.now(UTC)
    with repo.catalog.session() as s:
        marks = marks_by_source(s)
    rows = []
    for name, kind, configured in app.known_sources(only):
        status = source_status(repo, name, kind, kinds.get(kind).reports, configured)
        status.marks = [(m.name, _aware(m.at)) for m in marks.get(name, [])]
        lag, age = source_limits(app.config, name, given or Thresholds())
        rows.append(assess(status, now, lag, age))
    return rows


def add_live(app: Any, rows: list[Rpo]) -> None:
    """Ask each configured source's live server what its kind reports
    beside the catalog (report rpo only: the page and /healthz never wait
    for a source's server)."""
    from pitr import kinds

    for r in rows:
        src = app.config.sources.get(r.status.name)
        if src is not None:
            r.live = kinds.get(src.kind).live_report(app, src)


def _aware(at: datetime) -> datetime:
    """A catalog instant as UTC (SQLite hands them back without a zone)."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def assess(status: Any, now: datetime, lag_limit: Limit, age_limit: Limit) -> Rpo:
    last, backup = status.last_archived_at, status.last_backup_at
    r = Rpo(
        status,
        None if last is None else (now - last).total_seconds(),
        None if backup is None else (now - backup).total_seconds(),
        Thresholds(lag_limit.value, age_limit.value),
    )
    over = (
        _over(r.lag, lag_limit, "nothing archived yet", "last archived"),
        _over(r.backup_age, age_limit, "no backup yet", "newest backup finished"),
    )
    r.problems += [problem for problem in over if problem]
    return r


def _over(age: float | None, limit: Limit, none: str, what: str) -> str | None:
    """What is wrong with an age against its limit: `none` when there is
    nothing to measure; None within the limit or with no limit."""
    from pitr.output import ago

    if limit.value is None:
        return None
    if age is None:
        return none
    if age > limit.value.total_seconds():
        return f"{what} {ago(age)} ago, over {limit.said} {ago(limit.value.total_seconds())}"
    return None


def rpo_json(r: Rpo) -> dict[str, Any]:
    from pitr.output import piece_json, window_json
    from pitr.timeparse import format_utc

    st = r.status
    return {
        "source": st.name,
        "kind": st.kind,
        "last_archived_at": format_utc(st.last_archived_at),
        "lag_seconds": None if r.lag is None else round(r.lag, 3),
        **window_json(st.coverage, st.gaps),
        "lower_precision": [piece_json(p) for p in st.imprecise],
        "last_backup_at": format_utc(st.last_backup_at),
        "backup_age_seconds": None if r.backup_age is None else round(r.backup_age, 3),
        "max_lag_seconds": _seconds(r.limits.max_lag),
        "max_backup_age_seconds": _seconds(r.limits.max_backup_age),
        "ok": r.ok,
        "problems": r.problems,
        **(r.live.fields if r.live is not None else {}),
    }


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()
