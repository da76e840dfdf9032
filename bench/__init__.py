"""Benchmarks: `bench/run.sh` runs them all; see bench/README.md."""
