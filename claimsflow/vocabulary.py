"""The contract's names, defined once: decision and batch statuses (spec §4, §7),
decision sources and batch kinds (§7, §8, §9), and the row columns every reader adds."""

from __future__ import annotations

from typing import Final

# Decision statuses (spec §4, §7, §9).
APPROVED: Final = "APPROVED"
DENIED: Final = "DENIED"
PENDED: Final = "PENDED"
VOIDED: Final = "VOIDED"
DECISION_STATUSES: Final = (APPROVED, DENIED, PENDED, VOIDED)

# Batch statuses (spec §7).
PROCESSED: Final = "PROCESSED"
SKIPPED: Final = "SKIPPED"
REJECTED: Final = "REJECTED"
BATCH_STATUSES: Final = (PROCESSED, SKIPPED, REJECTED)

# Where a decision came from (spec §7).
ADJUDICATION: Final = "ADJUDICATION"
REVIEW: Final = "REVIEW"
CORRECTION: Final = "CORRECTION"
DECISION_SOURCES: Final = (ADJUDICATION, REVIEW, CORRECTION)

# What a batch holds (spec §7, §8).
CASES: Final = "CASES"
BATCH_KINDS: Final = (CASES, REVIEW)

# Columns every reader adds to a batch's text frame (spec §3, §7 `rejections`).
ROW_NUMBER: Final = "row_number"
RAW: Final = "raw"
#: Problems a reader found with a row itself (a CSV line with fewer or more fields than
#: its header, a JSON object with a repeated key): List(Struct(column, error)), null
#: for a row without any. Validation adds them to the row's errors (it is rejected).
READ_ERRORS: Final = "_read_errors"
