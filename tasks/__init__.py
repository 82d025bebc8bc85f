"""Prefect tasks: named wrappers around one mlci library call each (I/O retries, logging; no result caching)."""
