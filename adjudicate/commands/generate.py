"""`adjudicate generate`: deterministic sample data."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from adjudicate.app import app, out
from claimsflow.settings import DEFAULT_DATA


class SampleFormat(StrEnum):
    """The batch files' formats: `mixed` takes CSV, JSON Lines, Parquet and an X12 837
    in turn; any other value writes every batch in that one format."""

    mixed = "mixed"
    csv = "csv"
    jsonl = "jsonl"
    parquet = "parquet"
    x12_837 = "837"


#: File formats of each choice, taken in turn by the batches.
FORMATS: dict[SampleFormat, tuple[str, ...]] = {
    SampleFormat.mixed: ("csv", "jsonl", "parquet", "837"),
    SampleFormat.csv: ("csv",),
    SampleFormat.jsonl: ("jsonl",),
    SampleFormat.parquet: ("parquet",),
    SampleFormat.x12_837: ("837",),
}


@app.command()
def generate(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for reference/, inbox/ and reviews/.")
    ] = (DEFAULT_DATA),
    cases: Annotated[int, typer.Option(min=1, help="Number of cases.")] = 2000,
    batches: Annotated[int, typer.Option(min=1, help="Number of batch files.")] = 4,
    file_format: Annotated[
        SampleFormat,
        typer.Option(
            "--format",
            help="Batch file format; mixed = CSV, JSON Lines, Parquet and X12 837 in turn "
            "(837: multi-line professional claims, one service line per case).",
        ),
    ] = SampleFormat.mixed,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 7,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Do nothing when the inbox already has files.")
    ] = False,
) -> None:
    """Write deterministic sample reference data, case batches and a review file."""
    from claimsflow.tools.generate import write_sample, write_sample_review

    inbox = out_dir / "inbox"
    if if_empty and inbox.is_dir() and any(inbox.iterdir()):
        out.print(f"{inbox} is not empty: nothing generated")
        return
    written = write_sample(
        out_dir, cases=cases, batches=batches, seed=seed, formats=FORMATS[file_format]
    )
    review = write_sample_review(out_dir)  # decisions on cases the batches will pend
    if review is not None:
        written.append(review)
    out.print(f"wrote {len(written)} file(s) under {out_dir}")
