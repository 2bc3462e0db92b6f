"""The HTTP application of `pitr serve`: the status page, metrics, the JSON
of `pitr info` and a health check, all read-only.

Nothing here writes to the repository and nothing is read from disk to be
served: every answer is rendered from the catalog, and any other path is a
404. With a token configured every route wants it (as a bearer token, or as
the password of HTTP basic auth so that a browser can ask for it), except
that /healthz still answers its status code, without reasons, to a caller
without one: load balancers rarely send credentials.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

# name, help, {source: value}: counters of the process serving (the daemon)
Counters = Callable[[], Iterable[tuple[str, str, dict[str, float]]]]


def build(app: Any, token: str | None, counters: Counters | None = None) -> Starlette:
    """app: the AppContext whose repository is served."""
    from pitr.health import assess_sources

    def rows() -> list[Any]:
        return assess_sources(app)

    def status_page(request: Request) -> Response:
        from pitr.serve.page import SPANS, page

        span = request.query_params.get("span", next(iter(SPANS)))
        if span not in SPANS:
            return PlainTextResponse(f"unknown span {span!r}: one of {', '.join(SPANS)}\n", 400)
        now = datetime.now(UTC)
        return HTMLResponse(page(app.config.repository.url, rows(), span, now))

    def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        from pitr.metrics import CounterCollector, SourceCollector, exposition

        collectors: list[Any] = [SourceCollector(rows)]
        if counters is not None:
            collectors.append(CounterCollector(counters))
        return Response(exposition(*collectors), media_type=CONTENT_TYPE_LATEST)

    def sources(request: Request) -> Response:
        from pitr.commands.info import info_doc

        return JSONResponse(info_doc(app, None))

    def one_source(request: Request) -> Response:
        from pitr.commands.info import info_doc
        from pitr.config import ConfigError

        name = request.path_params["name"]
        try:
            doc = info_doc(app, name)
        except ConfigError as e:
            return JSONResponse({"error": str(e)}, 404)
        return JSONResponse(doc["sources"][0])

    def healthz(request: Request) -> Response:
        behind = [r for r in rows() if not r.ok]
        if not behind:
            return PlainTextResponse("ok\n")
        if not request.scope.get("pitr_authorized", True):
            return PlainTextResponse("unhealthy\n", 503)
        reasons = "".join(f"{r.status.name}: {'; '.join(r.problems)}\n" for r in behind)
        return PlainTextResponse(reasons, 503)

    routes = [
        Route("/", status_page),
        Route("/metrics", metrics),
        Route("/api/sources", sources),
        Route("/api/sources/{name}", one_source),
        Route("/healthz", healthz),
    ]
    return Starlette(routes=routes, middleware=[Middleware(Guard, token=token)])


class Guard:
    """ASGI middleware: the token, when there is one. (The routes answer
    only GET and HEAD: anything else is a 405.)"""

    def __init__(self, app: Any, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorized = self.token is None or self._presented(scope)
        scope["pitr_authorized"] = authorized
        if authorized or scope["path"] == "/healthz":
            await self.app(scope, receive, send)
            return
        response: Response = PlainTextResponse("a valid token is required\n", 401)
        response.headers["WWW-Authenticate"] = 'Bearer realm="pitr", Basic realm="pitr"'
        await response(scope, receive, send)

    def _presented(self, scope: dict[str, Any]) -> bool:
        """The token, as a bearer token or a basic-auth password, compared
        in constant time."""
        assert self.token is not None
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, value = header.partition(b" ")
        if scheme.lower() == b"bearer":
            given = value.strip()
        elif scheme.lower() == b"basic":
            try:
                given = base64.b64decode(value.strip(), validate=True).partition(b":")[2]
            except ValueError:
                return False
        else:
            return False
        return hmac.compare_digest(given, self.token)
