"""Prefect flows: one file per job, composing tasks from tasks/."""
