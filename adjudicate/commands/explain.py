"""`adjudicate explain`: a case's story."""

from __future__ import annotations

from typing import Annotated

import typer

from adjudicate.app import app, fail
from adjudicate.options import location
from claimsflow.settings import (
    DEFAULT_LAKE,
)


@app.command()
def explain(
    case_id: Annotated[str, typer.Argument(help="The case to explain.")],
    lake: Annotated[str, typer.Option(help="Lake folder, or an object-store URL.")] = str(
        DEFAULT_LAKE
    ),
) -> None:
    """A case's whole story: inputs, then each decision with who, when, why, pricing."""
    from claimsflow.analysis.explain import explain_case
    from claimsflow.lake.catalog import CatalogError

    try:
        text = explain_case(location(lake), case_id)
    except CatalogError as exc:
        raise fail(str(exc)) from None
    typer.echo(text)
