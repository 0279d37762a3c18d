"""Which rows repeat a value of an earlier row: first-row-wins (spec §3) and the
duplicate rule's twins (spec §4), at the scale of a night's batch.

A hash table of ten million distinct values (`is_duplicated`, `is_first_distinct`)
misses the CPU cache on almost every row: seconds per call. Sorting the values'
64-bit hashes finds the few that occur twice in a fraction of that; only the rows
carrying one of those few are then compared by their real values.
"""

from __future__ import annotations

import polars as pl


def hash_repeated(hashes: pl.Series) -> pl.Series:
    """Per row, whether its hash occurs on more than one row.

    True for every row that shares its value with another (and, rarely, for one
    whose hash only collides): a superset that callers narrow by the values.
    """
    ordered = hashes.sort()
    repeated = ordered.filter(ordered == ordered.shift(1))
    return hashes.is_in(repeated.implode())


def repeats_earlier_row(values: pl.Series) -> pl.Series:
    """Per row, whether its value is not null and occurred on an earlier row.

    Exactly `values.is_not_null() & ~values.is_first_distinct()`.
    """
    maybe = hash_repeated(values.hash()).arg_true()
    few = values.gather(maybe)
    repeated = few.is_not_null() & ~few.is_first_distinct()
    return pl.repeat(False, values.len(), dtype=pl.Boolean, eager=True).scatter(
        maybe.filter(repeated), True
    )
