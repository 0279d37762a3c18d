"""Test-side X12 tools: the sample folder, pyx12 as a second reader and as the
validator, and a small 837 builder that knows the rows it wrote.

Nothing here uses claimsflow.x12's reader: the pyx12 reader finds loops with
pyx12's own map walker, and the builder computes the expected rows from the
claims it lays out, each by its own code, so that the tests compare independent
readings of §10.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pyx12.error_handler  # type: ignore[import-untyped]
import pyx12.params  # type: ignore[import-untyped]
import pyx12.x12context  # type: ignore[import-untyped]
import pyx12.x12n_document  # type: ignore[import-untyped]

#: The shared sample files, beside the repository (see shared/x12/README.md).
SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "x12"
CASE_COLUMNS = (
    "case_id",
    "member_id",
    "provider_id",
    "service_date",
    "received_date",
    "procedure_code",
    "diagnosis_code",
    "units",
    "billed_amount",
    "prior_auth_id",
    "claim_frequency",
    "original_case_id",
)
Row = dict[str, str | None]


def sample_files(folder: str) -> list[Path]:
    """The files of one sample folder; skips the test when the samples are not there."""
    where = SAMPLES / folder
    if not where.is_dir():
        pytest.skip(f"the shared X12 samples are not at {where} (../shared/x12 from the repo)")
    return sorted(p for p in where.iterdir() if p.is_file())


def repaired_component_separator(text: str) -> str:
    """A sample that declares `:` (ISA16) but writes `>` in its composites, with ISA16
    set to `>`: the file its author meant (README of the samples)."""
    return text[:104] + ">" + text[105:]


def writes_other_separator(text: str) -> bool:
    """True for the samples whose composites use `>` under ISA16 `:`."""
    return text[104] == ":" and ("HC>" in text or "BK>" in text)


# --- pyx12 as a second reader -----------------------------------------------------


def _value(segment: Any, ref: str) -> str | None:
    try:
        value = segment.get_value(ref)
    except (IndexError, AttributeError):
        return None
    return value if value else None


def _iso(text: str | None) -> str | None:
    if text is not None and len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text


def _units(text: str | None) -> str | None:
    if text is None:
        return None
    whole, _, decimals = text.partition(".")
    if whole.isdigit() and set(decimals) <= {"0"}:
        return str(int(whole))
    return text


def _dtp_date(segment: Any) -> str | None:
    value = _value(segment, "DTP03")
    if value is not None and _value(segment, "DTP02") == "RD8":
        value = value.split("-")[0] or None
    return _iso(value)


def _diagnosis(qualifier: str | None, code: str | None) -> str | None:
    if code and qualifier in ("ABK", "ABF") and len(code) > 3 and code[3] != ".":
        return f"{code[:3]}.{code[3:]}"
    return code


def pyx12_rows(text: str) -> list[Row]:
    """The §10 rows of an 837 as pyx12 reads it (its map walker places every segment in
    its loop). A2 files are read with the A1 map (pyx12 4.0 ships no A2 map; the
    loops §10 reads are the same in both)."""
    text = text.replace("005010X222A2", "005010X222A1")
    params = pyx12.params.params()
    errors = pyx12.error_handler.errh_null()
    reader = pyx12.x12context.X12ContextReader(params, errors, io.StringIO(text))
    lines: list[dict[str, Any]] = []
    received: str | None = None
    billing: str | None = None
    member: str | None = None
    claim: dict[str, Any] = {}
    line: dict[str, Any] = {}
    for node in reader.iter_segments():
        loops = str(node.x12_map_node.x12path).split("/")
        seg = node.seg_data
        tag = seg.get_seg_id()
        if tag == "BHT":
            received = _iso(_value(seg, "BHT04"))
        elif tag == "HL" and _value(seg, "HL03") == "20":
            billing = None
        elif tag == "HL" and _value(seg, "HL03") == "22":
            member = None
        elif tag == "NM1" and loops[-2] == "2010AA":
            billing = _value(seg, "NM109")
        elif tag == "NM1" and loops[-2] == "2010BA":
            member = _value(seg, "NM109")
        elif tag == "CLM":
            claim = {
                "claim_id": _value(seg, "CLM01"),
                "frequency": _value(seg, "CLM05-3"),
                "member": member,
                "billing": billing,
                "rendering": None,
                "auth": None,
                "f8": None,
                "codes": [],
            }
        elif tag == "NM1" and loops[-2] == "2310B" and claim["rendering"] is None:
            claim["rendering"] = _value(seg, "NM109")
        elif tag == "REF" and loops[-2] == "2300":
            key = {"G1": "auth", "F8": "f8"}.get(_value(seg, "REF01") or "")
            if key and claim[key] is None:
                claim[key] = _value(seg, "REF02")
        elif tag == "HI" and loops[-2] == "2300":
            for index in range(1, 13):
                qualifier = _value(seg, f"HI{index:02d}-1")
                if qualifier in ("ABK", "ABF", "BK", "BF"):
                    claim["codes"].append(_diagnosis(qualifier, _value(seg, f"HI{index:02d}-2")))
        elif tag == "LX":
            line = {"claim": claim, "lx": _value(seg, "LX01"), "date": None, "auth": None}
        elif tag == "SV1":
            line = {**line, "sv1": seg, "received": received}
            lines.append(line)
        elif tag == "DTP" and loops[-2] == "2400" and _value(seg, "DTP01") == "472":
            line["date"] = line.get("date") or _dtp_date(seg)
        elif tag == "REF" and loops[-2] == "2400" and _value(seg, "REF01") == "G1":
            line["auth"] = line.get("auth") or _value(seg, "REF02")
    reader.close()
    return [_pyx12_row(line) for line in lines]


def _pyx12_row(line: dict[str, Any]) -> Row:
    claim, sv1 = line["claim"], line["sv1"]
    pointer = _value(sv1, "SV107-1")
    codes = claim["codes"]
    diagnosis = None
    if pointer and pointer.isdigit() and 1 <= int(pointer) <= len(codes):
        diagnosis = codes[int(pointer) - 1]
    lx, claim_id = line["lx"], claim["claim_id"]
    corrects = claim["frequency"] in ("7", "8")
    return {
        "case_id": f"{claim_id}-{lx}" if claim_id and lx else None,
        "member_id": claim["member"],
        "provider_id": claim["rendering"] or claim["billing"],
        "service_date": line["date"],
        "received_date": line["received"],
        "procedure_code": _value(sv1, "SV101-2"),
        "diagnosis_code": diagnosis,
        "units": _units(_value(sv1, "SV104")),
        "billed_amount": _value(sv1, "SV102"),
        "prior_auth_id": line["auth"] or claim["auth"],
        "claim_frequency": claim["frequency"],
        "original_case_id": f"{claim['f8']}-{lx}" if corrects and claim["f8"] and lx else None,
    }


# --- pyx12 as the validator -------------------------------------------------------


def _errors_in(node: Any, found: list[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "errors" and isinstance(value, list):
                found.extend(f"{e.get('err_cde')}: {e.get('err_str')}" for e in value)
            else:
                _errors_in(value, found)
    elif isinstance(node, list):
        for value in node:
            _errors_in(value, found)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def validate_x12(text: str) -> list[str]:
    """Every error pyx12's validator (x12n_document, the map named by GS08) finds."""
    params = pyx12.params.params()
    out = io.StringIO()
    logger = logging.getLogger("pyx12")
    handler = _Collect()
    logger.addHandler(handler)
    propagate = logger.propagate
    logger.propagate = False
    try:
        valid = pyx12.x12n_document.x12n_document(
            params, io.StringIO(text), None, None, fd_json=out
        )
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    found: list[str] = []
    _errors_in(json.loads(out.getvalue() or "{}"), found)
    if not valid and not found:
        found = handler.messages or ["pyx12 found the document invalid"]
    return found


def validate_835(text: str) -> list[str]:
    """Errors of an 835 under pyx12's 005010X221A1 map (empty when valid)."""
    assert "*005010X221A1" in text[:400] or "005010X221A1" in text[:400]
    return validate_x12(text)


def validate_837(text: str) -> list[str]:
    """Errors of an 837 under pyx12's 005010X222A1 map (empty when valid)."""
    return validate_x12(text)


# --- a builder that knows its rows --------------------------------------------------


@dataclass
class Line:
    lx: str | None
    procedure: str | None
    billed: str | None
    units: str | None
    pointer: str | None
    date: tuple[str, str] | None = None  # (D8|RD8, value)
    auth: str | None = None
    rendering_decoy: str | None = None  # a 2420A NM1*82, not the claim's provider


@dataclass
class Claim:
    claim_id: str | None
    frequency: str | None
    lines: list[Line]
    diagnoses: list[list[tuple[str, str]]] = field(default_factory=list)  # HI segments
    auth: str | None = None
    payer_claim: str | None = None
    date: tuple[str, str] | None = None  # claim-level DTP*472
    rendering: str | None = None
    other_subscriber: str | None = None  # a 2320/2330A whose NM1*IL is not the member


@dataclass
class Subscriber:
    member: str | None
    claims: list[Claim]
    patients: list[list[Claim]] = field(default_factory=list)  # HL 23 children


@dataclass
class Billing:
    provider: str | None
    subscribers: list[Subscriber]


@dataclass
class Transaction:
    received: str | None  # CCYYMMDD
    billing: list[Billing]


@dataclass
class Interchange:
    element: str = "*"
    component: str = ":"
    repetition: str = "^"
    segment: str = "~"
    line_break: str = "\n"
    groups: list[list[Transaction]] = field(default_factory=list)
    version: str = "005010X222A1"


def _date_text(date: tuple[str, str] | None) -> str | None:
    if date is None:
        return None
    return _iso(date[1].split("-")[0] if date[0] == "RD8" else date[1])


def expected_rows(interchanges: Sequence[Interchange]) -> list[Row]:
    """The §10 rows of the built file, worked out from the claims themselves."""
    rows: list[Row] = []
    for interchange in interchanges:
        for group in interchange.groups:
            for transaction in group:
                for billing in transaction.billing:
                    for subscriber in billing.subscribers:
                        claims = subscriber.claims + [c for p in subscriber.patients for c in p]
                        for claim in claims:
                            rows.extend(_claim_rows(claim, subscriber, billing, transaction))
    return rows


def _claim_rows(
    claim: Claim, subscriber: Subscriber, billing: Billing, transaction: Transaction
) -> Iterator[Row]:
    codes = [
        _diagnosis(q, c or None)
        for hi in claim.diagnoses
        for q, c in hi
        if q in ("ABK", "ABF", "BK", "BF")
    ]
    for line in claim.lines:
        diagnosis = None
        if line.pointer and line.pointer.isdigit() and 1 <= int(line.pointer) <= len(codes):
            diagnosis = codes[int(line.pointer) - 1]
        corrects = claim.frequency in ("7", "8")
        lx = line.lx
        yield {
            "case_id": f"{claim.claim_id}-{lx}" if claim.claim_id and lx else None,
            "member_id": subscriber.member,
            "provider_id": claim.rendering or billing.provider,
            "service_date": _date_text(line.date) or _date_text(claim.date),
            "received_date": _iso(transaction.received),
            "procedure_code": line.procedure,
            "diagnosis_code": diagnosis,
            "units": _units(line.units),
            "billed_amount": line.billed,
            "prior_auth_id": line.auth or claim.auth,
            "claim_frequency": claim.frequency,
            "original_case_id": (
                f"{claim.payer_claim}-{lx}" if corrects and claim.payer_claim and lx else None
            ),
        }


def render(interchanges: Sequence[Interchange]) -> str:
    """The X12 text of the built interchanges, counts and control numbers right."""
    return "".join(_render_interchange(ic, n) for n, ic in enumerate(interchanges, start=1))


def _render_interchange(ic: Interchange, number: int) -> str:
    e, c = ic.element, ic.component
    end = ic.segment + ic.line_break

    def seg(*elements: str | None) -> str:
        return e.join(x or "" for x in elements).rstrip(e) + end

    control = f"{number:09d}"
    isa = e.join(
        [
            "ISA",
            "00",
            " " * 10,
            "00",
            " " * 10,
            "ZZ",
            "SENDER".ljust(15),
            "ZZ",
            "RECEIVER".ljust(15),
            "260101",
            "1200",
            ic.repetition,
            "00501",
            control,
            "0",
            "T",
            c,
        ]
    )
    out = [isa + end]
    for g, group in enumerate(ic.groups, start=1):
        out.append(
            seg("GS", "HC", "SENDER", "RECEIVER", "20260101", "1200", str(g), "X", ic.version)
        )
        for t, transaction in enumerate(group, start=1):
            body = _transaction_body(ic, transaction, f"{t:04d}", seg)
            out.append("".join(body))
            out.append(seg("SE", str(len(body) + 1), f"{t:04d}"))
        out.append(seg("GE", str(len(group)), str(g)))
    out.append(seg("IEA", str(len(ic.groups)), control))
    return "".join(out)


def _transaction_body(
    ic: Interchange, transaction: Transaction, control: str, seg: Any
) -> list[str]:
    c = ic.component
    body = [
        seg("ST", "837", control, ic.version),
        seg("BHT", "0019", "00", control, transaction.received, "1200", "CH"),
        seg("NM1", "41", "2", "SUBMITTER", "", "", "", "", "46", "S1"),
        seg("PER", "IC", "DESK", "TE", "5555550100"),
        seg("NM1", "40", "2", "RECEIVER", "", "", "", "", "46", "R1"),
    ]
    hl = 0
    for billing in transaction.billing:
        hl += 1
        billing_hl = hl
        body.append(seg("HL", str(hl), "", "20", "1"))
        body.append(
            seg(
                "NM1",
                "85",
                "2",
                "CLINIC",
                "",
                "",
                "",
                "",
                "XX" if billing.provider else "",
                billing.provider,
            )
        )
        body.append(seg("N3", "1 MAIN ST"))
        body.append(seg("N4", "TOWN", "IL", "60000"))
        body.append(seg("REF", "EI", "123456789"))
        for subscriber in billing.subscribers:
            hl += 1
            subscriber_hl = hl
            child = "1" if subscriber.patients else "0"
            body.append(seg("HL", str(hl), str(billing_hl), "22", child))
            body.append(
                seg("SBR", "P", "" if subscriber.patients else "18", "", "", "", "", "", "", "CI")
            )
            body.append(
                seg(
                    "NM1",
                    "IL",
                    "1",
                    "DOE",
                    "JO",
                    "",
                    "",
                    "",
                    "MI" if subscriber.member else "",
                    subscriber.member,
                )
            )
            body.append(seg("NM1", "PR", "2", "PAYER", "", "", "", "", "PI", "PAYER1"))
            for claim in subscriber.claims:
                body.extend(_claim_segments(claim, seg, c))
            for patient in subscriber.patients:
                hl += 1
                body.append(seg("HL", str(hl), str(subscriber_hl), "23", "0"))
                body.append(seg("PAT", "19"))
                body.append(seg("NM1", "QC", "1", "DOE", "KID", "", "", "", "MI", "QC-NOT-MEMBER"))
                for claim in patient:
                    body.extend(_claim_segments(claim, seg, c))
    return body


def _claim_segments(claim: Claim, seg: Any, c: str) -> list[str]:
    total = "100"
    out = [
        seg(
            "CLM",
            claim.claim_id,
            total,
            "",
            "",
            c.join(["11", "B", claim.frequency or ""]).rstrip(c),
            "Y",
            "A",
            "Y",
            "Y",
        )
    ]
    if claim.date is not None:
        out.append(seg("DTP", "472", *claim.date))
    if claim.payer_claim is not None:
        out.append(seg("REF", "F8", claim.payer_claim))
    if claim.auth is not None:
        out.append(seg("REF", "G1", claim.auth))
    for hi in claim.diagnoses:
        out.append(seg("HI", *(c.join([q, code]).rstrip(c) for q, code in hi)))
    if claim.rendering is not None:
        out.append(seg("NM1", "82", "1", "DOC", "ANN", "", "", "", "XX", claim.rendering))
    if claim.other_subscriber is not None:
        out.append(seg("SBR", "S", "01", "", "", "", "", "", "", "CI"))
        out.append(seg("OI", "", "", "Y", "P", "", "Y"))
        out.append(seg("NM1", "IL", "1", "OTHER", "SUB", "", "", "", "MI", claim.other_subscriber))
        out.append(seg("NM1", "PR", "2", "OTHER PAYER", "", "", "", "", "PI", "OP1"))
        out.append(seg("REF", "G1", "OTHER-PAYER-AUTH"))
        out.append(seg("REF", "F8", "OTHER-PAYER-CLAIM"))
        out.append(seg("NM1", "82", "1", "OTHER", "DOC", "", "", "", "", ""))
    for line in claim.lines:
        out.append(seg("LX", line.lx))
        procedure = c.join(["HC", line.procedure]) if line.procedure else "HC"
        out.append(seg("SV1", procedure, line.billed, "UN", line.units, "", "", line.pointer))
        if line.date is not None:
            out.append(seg("DTP", "472", *line.date))
        if line.auth is not None:
            out.append(seg("REF", "G1", line.auth))
        if line.rendering_decoy is not None:
            out.append(seg("NM1", "82", "1", "LINE", "DOC", "", "", "", "XX", line.rendering_decoy))
    return out


def test_builder_rows_match_pyx12_reading() -> None:
    """The builder and pyx12 agree on a plain file (so either can be the reference)."""
    claim = Claim(
        "CLM1",
        "1",
        [Line("1", "99213", "40.00", "1.00", "1", ("D8", "20240102"), auth="A1")],
        diagnoses=[[("ABK", "J101"), ("ABF", "E119")]],
        rendering="1234567893",
    )
    ic = Interchange(
        groups=[[Transaction("20240105", [Billing("1111111112", [Subscriber("M1", [claim])])])]]
    )
    rows = expected_rows([ic])
    assert rows == pyx12_rows(render([ic]))
    assert rows[0]["diagnosis_code"] == "J10.1"
    assert rows[0]["units"] == "1"
