"""Benchmarks of warren_raft (and PySyncObj, for comparison): measurements, not tests.

Run `python -m benches [--only NAME ...] [--trials N] [--out DIR]` from the repository root; see
`benches/__main__.py`. Each scenario starts real node processes on loopback through the integration
harness (`tests/integration/cluster.py`), records every number in a JSON file and prints a table with
the targets next to the measurements. Nothing here asserts: a missed target is reported, not raised.
"""
