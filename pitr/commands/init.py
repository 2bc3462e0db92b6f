"""pitr init: create the repository and the catalog (idempotent)."""

from __future__ import annotations

from typing import Any

import click

from pitr.context import AppContext


@click.command(name="init")
@click.option(
    "--encrypt",
    is_flag=True,
    help="Encrypt a new repository with a key derived from $PITR_PASSPHRASE or key_file.",
)
@click.pass_obj
def command(app: AppContext, encrypt: bool) -> None:
    """Create the repository and catalog named in the config (idempotent)."""
    from catalog.errors import KeyError_
    from catalog.repository import Repository

    rc = app.config.repository
    for attempt in (1, 2):
        key, encryption = _key_and_encryption(app, encrypt)
        try:
            repo, created = Repository.init(
                rc.url, rc.catalog, encryption=encryption, **app.open_options(key)
            )
            break
        except KeyError_:
            # A concurrent init won with its own salt: derive from what it stored.
            if encryption is None or attempt == 2:
                raise
    from catalog.queries import ensure_source

    if not created and not repo.catalog.knows_a_source() and repo.holds_records():
        # The catalog was lost (or a new one named): fill it from the store
        # before anything is added to it, so that it is whole again.
        from catalog.rebuild import rebuild_catalog

        result = rebuild_catalog(repo)
        click.echo(
            f"catalog was empty: rebuilt from the store ({sum(result.records.values())} "
            f"records, {result.objects} objects)"
        )
    else:
        from catalog.catchup import catch_up

        catch_up(repo)  # a new catalog starts reading the journal from now
    with repo.catalog.session() as s:
        for src in app.config.sources.values():
            ensure_source(s, src.name, src.kind)
    state = "created" if created else "already initialised"
    if repo.encrypted:
        state += " (encrypted)"
    click.echo(f"repository {rc.url}: {state}; catalog {repo.catalog.safe_url}: ready")
    repo.close()
    from pitr import kinds

    for src in app.config.sources.values():
        for line in kinds.get(src.kind).setup(app, src):
            click.echo(line)


def _key_and_encryption(app: AppContext, encrypt: bool) -> tuple[bytes | None, Any]:
    """The key to open with, and the encryption entry if a new repository gets one.

    An existing repository stays as it is: encrypted ones need their key,
    and --encrypt never turns a plain one into a half-encrypted one."""
    from catalog.errors import KeyError_
    from catalog.keys import is_encrypted, new_encryption
    from catalog.repository import read_meta

    rc = app.config.repository
    existing = read_meta(rc.url, rc.store_options)
    if existing is not None:
        if encrypt and not is_encrypted(existing):
            raise KeyError_(
                f"repository {rc.url} exists and is not encrypted: "
                "--encrypt cannot encrypt it in place (start a new repository)"
            )
        return app.repository_key(), None
    passphrase = app.passphrase()
    if not encrypt:
        if passphrase is not None:
            raise KeyError_(
                f"a passphrase is set but repository {rc.url} would not be encrypted: "
                "pass --encrypt, or unset PITR_PASSPHRASE and key_file"
            )
        return None, None
    if passphrase is None:
        raise KeyError_("pitr init --encrypt needs a passphrase: set PITR_PASSPHRASE or key_file")
    encryption, key = new_encryption(passphrase)
    return key, encryption
