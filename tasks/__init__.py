"""Prefect tasks: thin named wrappers around mlci library calls (retries, caching, logging)."""
