"""mlci: active learning for video clips (the library; no Prefect imports)."""

__version__ = "0.1.0"
