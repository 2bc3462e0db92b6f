"""The benchmark: pitr side by side with pgBackRest (see bench/README.md)."""
