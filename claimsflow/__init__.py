"""Claims adjudication core: pure functions on Polars frames (no Prefect imports)."""

__version__ = "0.1.0"
