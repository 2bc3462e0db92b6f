"""The repository: content-addressed object store, blob codec and catalog database."""
