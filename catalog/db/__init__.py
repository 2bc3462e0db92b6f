"""The catalog database: a projection of the records kept in the object store."""
