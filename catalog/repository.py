"""The repository: an object store, its codec and the catalog database together.

Layout of keys in the store:
  pitr-repository.json             format version and encryption parameters (plain JSON)
  objects/ab/abcdef…               content-addressed chunks (sealed)
  records/<source>/<kind>/<name>   self-describing facts (sealed JSON): what the
                                   catalog database holds, so it can be rebuilt
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from catalog.codec import Codec
from catalog.errors import FormatError, IntegrityError, ObjectNotFound
from catalog.keys import check_key
from catalog.store import ObjectStore, StoreOptions, open_store

if TYPE_CHECKING:
    from catalog.db.engine import Catalog
    from catalog.records import Record

FORMAT_VERSION = 1
REPO_CONFIG_KEY = "pitr-repository.json"
DEFAULT_CHUNK_SIZE = 1 << 20
CONFIRM_BY_READING_BELOW = 1 << 20  # existing objects up to this size are hashed before trusted


@dataclass(frozen=True)
class Chunk:
    oid: str
    size: int  # plaintext bytes
    stored_size: int  # bytes this write added to the store (0 if it was there)
    in_store: int = 0  # bytes of the object in the store, written now or before (0: unknown)


def object_key(oid: str) -> str:
    return f"objects/{oid[:2]}/{oid}"


class OpenOptions(TypedDict, total=False):
    """How a repository is reached and read, the same for opening and
    creating one: its store's options, the zstd level of new objects, and
    the key of an encrypted repository."""

    store: StoreOptions
    compression_level: int
    key: bytes | None


def read_meta(url: str, store: StoreOptions | None = None) -> dict[str, Any] | None:
    """The repository file of the store at url, None if there is none yet:
    what a caller needs to derive the key before opening the repository."""
    opened = open_store(url, store)
    try:
        return _read_meta(opened, url)
    finally:
        opened.close()


def _read_meta(store: ObjectStore, url: str) -> dict[str, Any] | None:
    try:
        meta = json.loads(store.get(REPO_CONFIG_KEY))
    except ObjectNotFound:
        return None
    except ValueError as e:
        raise FormatError(f"{url}: {REPO_CONFIG_KEY} is not valid JSON") from e
    if not isinstance(meta, dict):
        raise FormatError(f"{url}: {REPO_CONFIG_KEY} is not a JSON object")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise FormatError(
            f"{url}: repository format version {version} is not supported by this pitr "
            f"(it reads version {FORMAT_VERSION})"
        )
    return meta


class Repository:
    """The catalog may be given as a URL: it is then opened on first use, so
    that paths which only read the store (a spooled WAL fetch) never import
    SQLAlchemy."""

    def __init__(self, store: ObjectStore, catalog: Catalog | str, codec: Codec) -> None:
        self.store = store
        self.codec = codec
        self._catalog = None if isinstance(catalog, str) else catalog
        self._catalog_url = catalog if isinstance(catalog, str) else catalog.url
        self._writer: str | None = None

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            from catalog.db.engine import Catalog

            catalog = Catalog(self._catalog_url)
            if self.check_projection and catalog.revision() is None:
                catalog.upgrade()  # lost: made again from the records below
            catalog.check_schema()
            self._catalog = catalog
            if self.check_projection:
                from catalog.catchup import catch_up

                catch_up(self)
        return self._catalog

    # init and catalog rebuild turn it off: they fill the catalog themselves.
    # Otherwise the catalog is brought up to date with the store's records
    # when it is opened.
    check_projection = True

    def holds_records(self) -> bool:
        return next(iter(self.store.list("records/")), None) is not None

    # -- opening -----------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str,
        catalog_url: str,
        *,
        lazy_catalog: bool = False,
        check_projection: bool = True,
        **options: Unpack[OpenOptions],
    ) -> Repository:
        """Open an existing repository; FormatError if there is none or it is newer.
        With lazy_catalog, the catalog is opened (and its schema checked) on first use."""
        store = open_store(url, options.get("store"))
        try:
            meta = _read_meta(store, url)
            if meta is None:
                raise FormatError(f"{url}: is not a pitr repository (run pitr init)")
            repo = cls._checked(store, meta, url, catalog_url, options)
            repo.check_projection = check_projection
            if not lazy_catalog:
                repo.catalog  # noqa: B018 - opens it and checks the schema now
        except BaseException:
            store.close()
            raise
        return repo

    @classmethod
    def init(
        cls,
        url: str,
        catalog_url: str,
        *,
        extra_meta: dict[str, Any] | None = None,
        encryption: dict[str, Any] | None = None,
        **options: Unpack[OpenOptions],
    ) -> tuple[Repository, bool]:
        """Create the repository and catalog if needed; (repo, created).

        encryption (from catalog.keys.new_encryption) makes a new repository
        encrypted, and options' key must be its key. An existing repository
        stays what it is; the key must fit it, checked before the catalog is
        touched."""
        store = open_store(url, options.get("store"))
        meta = {
            "format_version": FORMAT_VERSION,
            "created_at": datetime.now(UTC).isoformat(),
            **(extra_meta or {}),
        }
        if encryption is not None:
            meta["encryption"] = encryption
        try:
            created = store.put_if_absent(REPO_CONFIG_KEY, json.dumps(meta, indent=2).encode())
            repo = cls._checked(store, _read_meta(store, url) or meta, url, catalog_url, options)
            repo.check_projection = False  # the caller rebuilds a lost catalog
            from catalog.db.engine import Catalog

            Catalog(catalog_url).upgrade()
            repo.catalog  # noqa: B018 - opens it and checks the schema now
        except BaseException:
            store.close()
            raise
        return repo, created

    @classmethod
    def _checked(
        cls,
        store: ObjectStore,
        meta: dict[str, Any],
        url: str,
        catalog_url: str,
        options: OpenOptions,
    ) -> Repository:
        """The repository on an opened store whose file says meta, once the
        key is known to fit it (KeyError_ otherwise)."""
        key = options.get("key")
        check_key(meta, key, url)
        return cls(store, catalog_url, Codec(options.get("compression_level", 3), key))

    @property
    def encrypted(self) -> bool:
        return self.codec.encrypted

    def meta(self) -> dict[str, Any]:
        return dict(json.loads(self.store.get(REPO_CONFIG_KEY)))

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
        self.store.close()

    # -- content-addressed chunks --------------------------------------------

    def put_chunk(
        self,
        data: bytes | memoryview,
        *,
        oid: str | None = None,
        known: AbstractSet[str] = frozenset(),
    ) -> Chunk:
        """Store data as an object unless present. oid: its name when the
        caller hashed it already; known: names known to be stored (no write)."""
        oid, stored = self.seal_chunk(data, oid=oid, known=known)
        if stored is None:
            return Chunk(oid, len(data), 0)
        return self.put_sealed(oid, len(data), stored)

    def seal_chunk(
        self,
        data: bytes | memoryview,
        *,
        oid: str | None = None,
        known: AbstractSet[str] = frozenset(),
    ) -> tuple[str, bytes | None]:
        """put_chunk() but the write: the object's name, and its stored bytes
        (None when the catalog knows the store has it: `known`). An object
        that is only found in the store is confirmed by put_sealed."""
        oid = oid or self.codec.object_id(data)
        if oid in known:
            return oid, None
        return oid, self.codec.seal(data, oid)

    def put_sealed(self, oid: str, size: int, stored: bytes) -> Chunk:
        """Store what a Codec.sealer() made of `size` bytes named oid.

        An object already under that name is trusted only once confirmed:
        junk left there (a copy cut short, a file put by hand) would
        otherwise stand for the data that was acknowledged."""
        key = object_key(oid)
        for _ in range(3):
            if self.store.put_if_absent(key, stored):
                return Chunk(oid, size, len(stored), len(stored))
            have = self._confirmed_size(oid, len(stored))
            if have is not None:
                return Chunk(oid, size, 0, have)
            self.store.delete(key)  # not this object's bytes: replaced
        raise IntegrityError(f"object {oid[:16]}…: the store keeps a different object there")

    def _confirmed_size(self, oid: str, expected: int) -> int | None:
        """The stored size of the object at oid when it holds oid's
        plaintext: the same size as this write's suffices for a large one
        (a cut copy is shorter); a small one, or one of another size (another
        compression level), is read and hashed. None: it is not oid's."""
        info = self.store.stat(object_key(oid))
        if info is None:
            return None  # removed meanwhile: written again
        if info.size == expected and expected > CONFIRM_BY_READING_BELOW:
            return info.size
        try:
            self.codec.decode(oid, self.store.get(object_key(oid)))
        except (IntegrityError, ObjectNotFound):
            return None
        return info.size

    def get_chunk(self, oid: str) -> bytes:
        """Plaintext of an object, verified against its name."""
        return self.codec.decode(oid, self._stored(oid))

    def get_chunk_view(self, oid: str) -> memoryview:
        """get_chunk() in this thread's reused buffer: valid until its next call."""
        return self.codec.decode_view(oid, self._stored(oid))

    def _stored(self, oid: str) -> bytes:
        try:
            return self.store.get(object_key(oid))
        except ObjectNotFound:
            raise ObjectNotFound(f"object {oid[:16]}…: missing from the store") from None

    # -- records ---------------------------------------------------------------

    def put_record(
        self, key: str, fact: dict[str, Any], projected: bool = True
    ) -> dict[str, Any] | None:
        """Write a fact durably unless one is there already, named first in
        the journal; projected: this writer commits it to its catalog too.

        None when written; otherwise the fact already stored, for the caller
        to compare (the archive never changes what it acknowledged)."""
        from catalog.journal import UNPROJECTED, write_entry

        body = json.dumps(fact, sort_keys=True, separators=(",", ":")).encode()
        write_entry(self, key, self.journal_writer() if projected else UNPROJECTED)
        if self.store.put_if_absent(key, self.codec.seal(body, key)):
            return None
        return self.get_record(key)

    def put_fact(self, record: Record, projected: bool = True) -> dict[str, Any] | None:
        """put_record of a typed record under its own key."""
        return self.put_record(record.key, record.to_json(), projected)

    def journal_writer(self) -> str:
        """The catalog's name in the journal entries of the records it projects."""
        if self._writer is None:
            from catalog.catchup import writer_id

            with self.catalog.session() as s:
                self._writer = writer_id(s)
        return self._writer

    def get_record(self, key: str) -> dict[str, Any]:
        stored = self.store.get(key)
        try:
            return dict(json.loads(self.codec.unseal(stored, key)))
        except ValueError as e:
            raise IntegrityError(f"record {key}: is not valid JSON") from e

    def list_records(self, prefix: str) -> Iterator[str]:
        for info in self.store.list(prefix):
            yield info.key
