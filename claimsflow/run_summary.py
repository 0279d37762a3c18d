"""The summary of one run: what the CLI prints and the flow returns."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from claimsflow.pipeline import PROCESSED, REJECTED, SKIPPED, BatchOutcome


@dataclass
class RunSummary:
    run_id: str
    ruleset: str
    batches: list[BatchOutcome] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    #: What needs a human's eye beyond rejections: failed data-quality checks, drift.
    warnings: list[str] = field(default_factory=list)

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
        """Rejections or warnings: the run completed, but someone should look."""
        return bool(self.exit_code or self.warnings)

    @property
    def exit_code(self) -> int:
        """0 when every batch was processed or skipped cleanly, 1 when anything was rejected."""
        rejected = self.batches_by_status[REJECTED] or self.rows_rejected
        return 1 if rejected else 0

    def batch_table(self) -> list[dict[str, Any]]:
        return [
            {
                "batch": b.source,
                "batch_id": b.batch_id[:12],
                "status": b.status,
                "rows_in": b.rows_in,
                "decided": b.rows_decided,
                "rejected": b.rows_rejected,
                "seconds": round(b.seconds, 2),
                "reason": b.reason or "",
            }
            for b in self.batches
        ]

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
            f"rejected batch {b.source}: {b.reason}" for b in self.batches if b.status == REJECTED
        ]
        if self.ignored:
            lines.append(f"not batches, left untouched: {', '.join(self.ignored)}")
        lines += [f"warning: {warning}" for warning in self.warnings]
        return lines
