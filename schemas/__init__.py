"""Pandera schemas: the spec's input contracts (§1 case batches, §2 reference data)."""
