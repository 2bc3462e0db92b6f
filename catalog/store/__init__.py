"""Object store backends, chosen by the repository URL's scheme
(catalog.store.registry)."""

from __future__ import annotations

from catalog.store.base import ObjectInfo, ObjectStore
from catalog.store.registry import StoreOptions, open_store, register, schemes

__all__ = ["ObjectInfo", "ObjectStore", "StoreOptions", "open_store", "register", "schemes"]
