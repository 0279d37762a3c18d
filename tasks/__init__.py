"""Prefect tasks: thin wrappers over claimsflow's pure stages, one per batch or stage."""
