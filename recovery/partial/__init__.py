"""Partial restore and export: rows of a database as it was at an instant."""
