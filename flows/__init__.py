"""Prefect flows: the nightly run and its ad-hoc variants."""
