"""What a restore of a Redis source runs: a snapshot with its streams
(recovery/redis/restore.py), or a replication capture replayed to the
instant (recovery/redis/replay.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from pitr.context import AppContext
    from pitr.kinds.redis import RedisConfig
    from recovery.redis.plan import RedisRestorePlan


@dataclass
class RedisRestoreJob:
    src: RedisConfig
    plan: RedisRestorePlan
    url: str
    force: bool

    def describe(self) -> list[str]:
        return [f"{self.src.name} (redis): {line}" for line in self.plan.describe()]

    def check_target(self) -> None:
        """TargetNotEmpty (exit 3) when the target holds keys of the source's
        patterns and force is not given."""
        check_redis_target(self.src, self.url, self.force)

    def execute(self, app: AppContext) -> None:
        from catalog.redisformat import safe_url
        from recovery.redis.restore import restore_redis

        src = self.src
        r = restore_redis(app.repo(), self.plan, self.url, src.patterns, force=self.force)
        parts = [f"{src.name}: restored {r.keys} keys into {safe_url(self.url)}"]
        if r.expired:
            parts.append(f"left out {r.expired} keys already expired at the target")
        parts.append(f"replayed {r.entries} stream entries into {r.streams} streams")
        if r.cut:
            parts.append(f"removed {r.cut} snapshot entries newer than the target")
        if r.replaced:
            parts.append(f"replaced {r.replaced} existing keys")
        click.echo(", ".join(parts) + f" ({r.seconds:.1f}s)")


@dataclass
class ReplayJob:
    """A restore of a replication capture: base, writes up to T, keys moved in."""

    src: RedisConfig
    epoch: str
    target_ms: int
    url: str
    force: bool

    def describe(self) -> list[str]:
        return [
            f"{self.src.name} (redis): epoch {self.epoch}, every write that arrived "
            f"at or before {self.target_ms} ms, into {', '.join(self.src.patterns)}"
        ]

    def check_target(self) -> None:
        check_redis_target(self.src, self.url, self.force)

    def execute(self, app: AppContext) -> None:
        from catalog.redisformat import safe_url
        from recovery.redis.replay import ReplayResult, copy_keys, replay_to
        from recovery.redis.restore import check_target, connect_target, matching_keys

        src = self.src
        client = connect_target(self.url, f"restore {src.name}")
        result = ReplayResult()
        try:
            check_target(client, src.name, self.url, src.patterns, self.force)
            for key in set(matching_keys(client, src.patterns)):
                client.unlink(key)
            scratch, result = replay_to(app.repo(), src.name, self.target_ms)
            try:
                copy_keys(scratch, client, src.patterns, result)
            finally:
                scratch.close()
        finally:
            client.close()
        click.echo(
            f"{src.name}: restored {result.keys} keys into {safe_url(self.url)} after "
            f"replaying {result.commands} writes ({result.transactions} transactions); "
            f"left out {result.expired} keys expired at the target"
        )


def check_redis_target(src: RedisConfig, url: str, force: bool) -> None:
    from recovery.redis.restore import check_target, connect_target

    client = connect_target(url, f"restore {src.name}")
    try:
        check_target(client, src.name, url, src.patterns, force)
    finally:
        client.close()
