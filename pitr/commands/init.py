"""pitr init: create the repository and the catalog (idempotent)."""

from __future__ import annotations

import click

from pitr.context import AppContext


@click.command(name="init")
@click.pass_obj
def command(app: AppContext) -> None:
    """Create the repository and catalog named in the config (idempotent)."""
    from catalog.repository import Repository

    rc = app.config.repository
    repo, created = Repository.init(
        rc.url,
        rc.catalog,
        endpoint_url=rc.endpoint_url,
        compression_level=rc.compression_level,
        key=app.repository_key(),
    )
    from catalog.queries import ensure_source

    with repo.catalog.session() as s:
        for src in app.config.sources.values():
            ensure_source(s, src.name, src.kind)
    state = "created" if created else "already initialised"
    click.echo(f"repository {rc.url}: {state}; catalog {repo.catalog.safe_url}: ready")
    repo.close()
