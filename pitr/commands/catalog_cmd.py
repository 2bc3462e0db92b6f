"""pitr catalog rebuild: recreate the catalog database from the store."""

from __future__ import annotations

import click

from pitr.context import AppContext


@click.group(name="catalog")
def command() -> None:
    """Catalog maintenance."""


@command.command(name="rebuild")
@click.option("--force", is_flag=True, help="Replace a catalog that still holds rows.")
@click.pass_obj
def rebuild(app: AppContext, force: bool) -> None:
    """Recreate the catalog database from the object store alone."""
    from catalog.db.engine import Catalog
    from catalog.rebuild import catalog_is_empty, rebuild_catalog, reset_catalog
    from catalog.repository import Repository
    from pitr.config import ConfigError

    rc = app.config.repository
    key = app.repository_key()  # a wrong passphrase stops here, before a catalog is made
    Catalog(rc.catalog).upgrade()  # a lost catalog comes back as an empty schema first
    repo = Repository.open(rc.url, rc.catalog, check_projection=False, **app.open_options(key))
    if not catalog_is_empty(repo):
        if not force:
            raise ConfigError(
                f"catalog {repo.catalog.safe_url} still holds rows; pass --force to replace it"
            )
        reset_catalog(repo)
    result = rebuild_catalog(repo)
    facts = ", ".join(f"{n} {t}" for t, n in sorted(result.records.items())) or "no records"
    click.echo(f"catalog rebuilt from {rc.url}: {facts}; {result.objects} objects")
    for record in result.skipped:
        click.echo(f"skipped record of unknown type: {record}", err=True)
