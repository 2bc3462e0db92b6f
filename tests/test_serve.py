"""pitr serve: the status page in a real Chromium (timelines, a gap, a mark), /metrics through the
Prometheus client's parser, /healthz against the configured limits, the
token, and the daemon serving it all with its own counters."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import postgres_ids
from tests.pgsupport import Archived
from tests.reportsupport import forget_wal, segments
from tests.servers import PITR_BIN, RedisFactory, clean_env, free_port, wait_until
from tests.servesupport import basic, chromium, serving

SOURCES = ("app", "cache", "db")


def archive_with_a_gap(archived: Archived) -> str:
    """Backups and WAL for db, one segment lost between two backups: a gap
    in its window. The lost segment's name."""
    archived.pitr("backup", "--source", "db")
    for n in (1, 2, 3):
        archived.marker(n)
        archived.switch_and_wait()
    lost = [name for name, _ in segments(archived)][-2]
    forget_wal(archived, lost)
    archived.pitr("backup", "--source", "db")
    archived.marker(4)
    archived.switch_and_wait()
    return lost


def add_redis_and_sqlite(archived: Archived, redis_url: str) -> None:
    """A Redis source with a snapshot and a SQLite source with a base copy,
    into the same repository."""
    db = archived.base / "app.db"
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, what TEXT)")
        c.execute("INSERT INTO events (what) VALUES ('hello')")
    uid, gid = postgres_ids()
    for path in archived.base.glob("app.db*"):
        os.chown(path, uid, gid)
    with archived.config.open("a") as f:
        f.write(
            f'\n[sources.cache]\nkind = "redis"\nurl = "{redis_url}"\nkeys = ["cb:*"]\n'
            f'streams = ["cb:stream:*"]\ncapture = "streams"\n'
            f'\n[sources.app]\nkind = "sqlite"\npath = "{db}"\n'
        )
    archived.pitr("backup", "--source", "cache")
    archived.pitr("backup", "--source", "app")


def test_the_page_draws_every_source_its_gap_and_backups(
    archived: Archived, redis_factory: RedisFactory
) -> None:
    server = redis_factory()
    server.client().set("cb:health:a", "ok")
    lost = archive_with_a_gap(archived)
    archived.pitr("mark", "before-change", "--source", "db")
    add_redis_and_sqlite(archived, server.url)

    with serving(archived.config, archived.base) as served, chromium() as browser:
        for path in ("/", "/?span=all"):  # the last hour, and the whole archive
            browser.get(served.url + path)
            assert browser.title.startswith("pitr"), browser.page_source[:500]
            body = browser.find_element("tag name", "body").text
            assert "Internal Server Error" not in body and "Traceback" not in body
            for name in SOURCES:
                svg = browser.find_element("css selector", f'svg.timeline[data-source="{name}"]')
                windows = svg.find_elements("css selector", "rect.window")
                assert windows, f"{name}: an empty timeline"
                assert all(float(w.get_attribute("width") or 0) > 0 for w in windows)
                assert svg.find_elements("css selector", "rect.backup"), f"{name}: no backup"
            db = browser.find_element("css selector", 'svg.timeline[data-source="db"]')
            (gap,) = db.find_elements("css selector", "rect.gap")
            title = gap.find_element("tag name", "title").get_attribute("textContent") or ""
            assert lost in title
            assert lost in browser.find_element("css selector", "#source-db ul.gaps").text
            (mark,) = db.find_elements("css selector", "rect.mark")
            title = mark.find_element("tag name", "title").get_attribute("textContent") or ""
            assert title.startswith("mark before-change ")
            assert (
                "before-change" in browser.find_element("css selector", "#source-db ul.marks").text
            )
        browser.save_screenshot(str(archived.base / "status-page.png"))
        if os.environ.get("PITR_SCREENSHOT"):  # how docs/monitoring.md's picture is made
            browser.save_screenshot(os.environ["PITR_SCREENSHOT"])

        # Another span, and a narrow screen: nothing wider than the window.
        browser.get(served.url + "/?span=7d")
        assert browser.find_elements("css selector", "svg.timeline rect.window")
        browser.set_window_size(390, 844)
        browser.get(served.url + "/")
        wide, view = browser.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert wide <= view, f"the page is {wide}px wide on a {view}px screen"

        assert served.get("/?span=1y")[0] == 400
        status, text, _ = served.get("/api/sources")
        doc = json.loads(text)
        assert status == 200 and sorted(s["name"] for s in doc["sources"]) == list(SOURCES)
        info = json.loads(archived.pitr("info", "--output", "json").stdout)
        assert [s["backups"] for s in doc["sources"]] == [s["backups"] for s in info["sources"]]
        status, text, _ = served.get("/api/sources/cache")
        assert status == 200 and json.loads(text)["kind"] == "redis"
        status, text, _ = served.get("/api/sources/nope")
        assert status == 404 and "unknown source" in json.loads(text)["error"]

        metrics = families(served.get("/metrics")[1])
        info_samples = {s.labels["source"]: s.labels["kind"] for s in metrics["pitr_source_info"]}
        assert info_samples == {"app": "sqlite", "cache": "redis", "db": "postgres"}
        assert {s.labels["source"]: s.value for s in metrics["pitr_recoverable_gaps"]}["db"] == 1


def families(text: str) -> dict[str, list]:
    """Parsed by the Prometheus client's own parser: name -> samples."""
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_healthz_follows_the_lag_limit_and_the_daemon_counts(archived: Archived) -> None:
    port = free_port()
    with archived.config.open("a") as f:
        # The [report] limit for every source, tightened in db's own table.
        f.write(f'\n[report]\nmax_lag = "1h"\n\n[serve]\nlisten = "127.0.0.1:{port}"\n')
    text = archived.config.read_text().replace(
        "[sources.db]\n", '[sources.db]\nmax_lag = "4s"\nmax_backup_age = "1d"\n'
    )
    archived.config.write_text(text)
    archived.pitr("backup", "--source", "db")
    archived.marker(1)
    archived.switch_and_wait()

    with serving(archived.config, archived.base, command="daemon") as served:
        status, reason, _ = wait_until(
            lambda: (r := served.get("/healthz"))[0] == 503 and r, 60, "db to fall behind"
        )
        assert reason.startswith("db: last archived") and "over max_lag 4.0s" in reason
        rpo = archived.pitr("report", "rpo", check=False)
        assert rpo.returncode == 3 and "over max_lag 4.0s" in rpo.stderr
        # --max-lag on the command line wins over the config.
        assert archived.pitr("report", "rpo", "--max-lag", "1h").returncode == 0

        archived.marker(2)
        archived.switch_and_wait()  # a new segment archived: db has caught up
        status, reason, _ = served.get("/healthz")
        assert (status, reason) == (200, "ok\n")

        metrics = families(served.get("/metrics")[1])
        pushed = {s.labels["source"]: s.value for s in metrics["pitr_daemon_segments_pushed"]}
        assert pushed["db"] >= 1
        stored = {s.labels["source"]: s.value for s in metrics["pitr_daemon_bytes_stored"]}
        assert stored["db"] > 0
        limits = {s.labels["source"]: s.value for s in metrics["pitr_max_lag_seconds"]}
        assert limits == {"db": 4.0}
        (ok,) = metrics["pitr_rpo_ok"]
        assert ok.value == 1.0
    assert "serving the status page" in (archived.base / "daemon.log").read_text()


def test_tokens_methods_and_paths(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    exposed = subprocess.run(
        [str(PITR_BIN), "--config", str(archived.config), "serve", "--listen", "0.0.0.0:9"],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=False,
    )
    assert exposed.returncode == 2
    assert exposed.stderr.strip().splitlines() == [
        "pitr: listening on 0.0.0.0:9 needs a token: set [serve] token or PITR_SERVE_TOKEN, "
        "or listen on a loopback address"
    ]

    token = "s3cret-token"
    with serving(archived.config, archived.base, env={"PITR_SERVE_TOKEN": token}) as served:
        assert served.get("/")[0] == 401
        assert served.get("/metrics", {"Authorization": "Bearer wrong"})[0] == 401
        assert served.get("/", {"Authorization": f"Bearer {token}x"})[0] == 401
        assert served.get("/", {"Authorization": basic("me", "nope")})[0] == 401
        status, _, headers = served.get("/api/sources")
        assert status == 401 and "Bearer" in headers["WWW-Authenticate"]
        assert served.get("/", {"Authorization": f"Bearer {token}"})[0] == 200
        assert served.get("/api/sources", {"Authorization": basic("me", token)})[0] == 200
        # /healthz answers load balancers without a token, but tells them no more.
        assert served.get("/healthz")[0] == 200

        auth = {"Authorization": f"Bearer {token}"}
        assert served.get("/", auth, method="POST")[0] == 405
        assert served.get("/api/sources/db", auth, method="DELETE")[0] == 405
        for path in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/static/x", "/pitr.toml"):
            status, body, _ = served.get(path, auth)
            assert status == 404 and "root:" not in body, path


@pytest.mark.parametrize("listen", ["nonsense", "127.0.0.1:99999", ":80"])
def test_a_bad_listen_address_is_one_line(archived: Archived, listen: str) -> None:
    result = archived.pitr("serve", "--listen", listen, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"pitr: listen address {listen!r} must be HOST:PORT, e.g. 127.0.0.1:9580"
    ]


def test_a_taken_port_is_one_line(archived: Archived) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = archived.pitr("serve", "--listen", f"127.0.0.1:{port}", check=False)
    assert result.returncode == 2
    want = f"pitr: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert result.stderr.strip() == want
