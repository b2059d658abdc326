"""Benchmarks: each script starts what it measures on loopback and prints a table.

A package so that `python -m bench.proxy` works from the repository root; the scripts also
run as files (`python bench/proxy.py`).
"""
