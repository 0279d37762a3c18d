"""The summary of one run: what the CLI prints and the flow returns."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from claimsflow.pipeline.batch import BatchOutcome
from claimsflow.text import printable, shown_name
from claimsflow.vocabulary import PROCESSED, REJECTED, SKIPPED


@dataclass
class RunSummary:
    run_id: str
    ruleset: str
    batches: list[BatchOutcome] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    #: Batch files modified within the quiet period (seconds): left for the next run.
    not_ready: list[str] = field(default_factory=list)
    quiet_seconds: float = 0
    #: Entries left alone, with the reason: "name (reason)" (claimsflow/ingest/inbox.py).
    not_read: list[str] = field(default_factory=list)
    #: What needs a human's eye beyond rejections: failed data-quality checks, drift.
    warnings: list[str] = field(default_factory=list)
    #: batch_id -> why it was SKIPPED ("seen before as a.csv (PROCESSED 2025-01-15 ...)"),
    #: read back from the event log once the run is recorded. The catalog's
    #: batches.reason stays null for SKIPPED batches (spec §7): this is the summary's.
    seen_before: dict[str, str] = field(default_factory=dict)

    @property
    def by_status(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for outcome in self.batches:
            total.update(outcome.by_status)
        return total

    @property
    def rows_rejected(self) -> int:
        return sum(b.rows_rejected for b in self.batches)

    @property
    def batches_by_status(self) -> Counter[str]:
        return Counter(b.status for b in self.batches)

    @property
    def needs_attention(self) -> bool:
        """Rejections, warnings or entries it could not read: the run completed, but
        someone should look."""
        return bool(self.exit_code or self.warnings or self.not_read)

    @property
    def exit_code(self) -> int:
        """0 when every batch was processed or skipped cleanly, 1 when anything was rejected."""
        rejected = self.batches_by_status[REJECTED] or self.rows_rejected
        return 1 if rejected else 0

    def batch_table(self) -> list[dict[str, Any]]:
        return [
            {
                "batch": shown_name(b.source),
                "batch_id": b.batch_id[:12],
                "status": b.status,
                "rows_in": b.rows_in,
                "decided": b.rows_decided,
                "rejected": b.rows_rejected,
                "seconds": round(b.seconds, 2),
                "reason": printable(b.reason or self._skip_reason(b)),
            }
            for b in self.batches
        ]

    def _skip_reason(self, outcome: BatchOutcome) -> str:
        if outcome.status != SKIPPED:
            return ""
        return self.seen_before.get(outcome.batch_id, "seen before (same bytes)")

    def lines(self) -> list[str]:
        statuses = self.by_status
        batches = self.batches_by_status
        lines = [
            f"rule set {self.ruleset}; batches: {batches[PROCESSED]} processed, "
            f"{batches[SKIPPED]} skipped, {batches[REJECTED]} rejected",
            f"cases decided: {statuses['APPROVED']} approved, {statuses['DENIED']} denied, "
            f"{statuses['PENDED']} pended; rows rejected: {self.rows_rejected}",
        ]
        lines += [
            f"rejected batch {shown_name(b.source)}: {printable(b.reason or '')}"
            for b in self.batches
            if b.status == REJECTED
        ]
        lines += [
            f"skipped batch {shown_name(b.source)}: {printable(self._skip_reason(b))}"
            for b in self.batches
            if b.status == SKIPPED
        ]
        if self.ignored:
            names = ", ".join(map(shown_name, self.ignored))
            lines.append(f"not batches, left untouched: {names}")
        if self.not_ready:
            lines.append(
                f"not ready (modified in the last {self.quiet_seconds:g} s), left for the "
                f"next run: {', '.join(map(shown_name, self.not_ready))}"
            )
        if self.not_read:
            left = ", ".join(map(printable, self.not_read))
            lines.append(f"not read, left for the next run: {left}")
        lines += [f"warning: {warning}" for warning in self.warnings]
        return lines
