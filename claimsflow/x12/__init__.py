"""ASC X12 in and out: the 837P reader and writer and the 835 writer (spec §10, §11).

Pure functions over bytes, text and Polars frames; nothing here reads the lake,
the inbox or the rest of `claimsflow` (docs/x12.md).
"""

from __future__ import annotations

from claimsflow.x12.read837 import CASE_COLUMNS, read_837
from claimsflow.x12.segments import Delimiters, X12Error
from claimsflow.x12.write835 import REMIT_COLUMNS, write_835
from claimsflow.x12.write837 import write_837

__all__ = [
    "CASE_COLUMNS",
    "REMIT_COLUMNS",
    "Delimiters",
    "X12Error",
    "read_837",
    "write_835",
    "write_837",
]
