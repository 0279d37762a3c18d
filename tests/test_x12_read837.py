"""The 837P reader against §10: one test per row of the mapping table (values worked
out by hand), the envelope rules that reject a whole file, the delimiters, and the
shared third-party samples read by pyx12 as well (differential test)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import polars as pl
import pytest

from claimsflow.x12 import CASE_COLUMNS, X12Error, read_837
from tests.test_x12_helpers import (
    pyx12_rows,
    repaired_component_separator,
    sample_files,
    writes_other_separator,
)

ISA = (
    "ISA*00*          *00*          *ZZ*SENDER         *ZZ*RECEIVER       "
    "*240110*1200*^*00501*000000042*0*T*:~"
)
HEADER = [
    "BHT*0019*00*REF1*20240110*1200*CH",
    "NM1*41*2*SUBMITTER*****46*S1",
    "PER*IC*DESK*TE*5555550100",
    "NM1*40*2*PAYER*****46*R1",
]
BILLING = ["HL*1**20*1", "NM1*85*2*CLINIC*****XX*BILL01", "N3*1 MAIN ST", "N4*TOWN*IL*60000"]
SUBSCRIBER = [
    "HL*2*1*22*0",
    "SBR*P*18*******CI",
    "NM1*IL*1*DOE*JO****MI*MEM01",
    "NM1*PR*2*PAYER*****PI*P1",
]


def transaction(
    body: Sequence[str], control: str = "0001", version: str = "005010X222A1"
) -> list[str]:
    """ST + body + SE with SE01 counting ST and SE."""
    return [f"ST*837*{control}*{version}", *body, f"SE*{len(body) + 2}*{control}"]


def interchange(*transactions: list[str], version: str = "005010X222A1") -> str:
    """One interchange, one group, the given transaction sets; counts right."""
    segments = [
        f"GS*HC*SENDER*RECEIVER*20240110*1200*7*X*{version}",
        *(s for t in transactions for s in t),
        f"GE*{len(transactions)}*7",
        "IEA*1*000000042",
    ]
    return ISA + "\n" + "".join(f"{s}~\n" for s in segments)


def claim_file(claim: Sequence[str], *, level: Sequence[str] = SUBSCRIBER) -> bytes:
    """An 837 with one billing provider, one subscriber and the given claim segments."""
    body = [*HEADER, *BILLING, *level, *claim]
    return interchange(transaction(body)).encode()


LINE = ["LX*1", "SV1*HC:99213*40.00*UN*1***1", "DTP*472*D8*20240102"]
CLAIM = ["CLM*CLAIM7*40.00***11:B:1*Y*A*Y*Y", "HI*ABK:J101", *LINE]


def only_row(data: bytes) -> dict[str, object]:
    frame = read_837(data)
    assert frame.height == 1
    return frame.row(0, named=True)


# --- the frame ---------------------------------------------------------------------


def test_frame_shape_columns_and_types() -> None:
    frame = read_837(claim_file(CLAIM))
    assert frame.columns == [*CASE_COLUMNS, "row_number", "raw"]
    assert all(frame.schema[c] == pl.String for c in CASE_COLUMNS)
    assert frame.schema["row_number"] == pl.Int64
    assert frame.schema["raw"] == pl.String


def test_one_row_per_service_line_in_file_order_with_row_numbers() -> None:
    lines = [
        "LX*1",
        "SV1*HC:99213*40.00*UN*1***1",
        "DTP*472*D8*20240102",
        "LX*2",
        "SV1*HC:87070*15.00*UN*1***1",
        "DTP*472*D8*20240103",
        "LX*3",
        "SV1*HC:99214*35.00*UN*1***1",
        "DTP*472*D8*20240104",
    ]
    frame = read_837(claim_file(["CLM*C9*90***11:B:1*Y*A*Y*Y", "HI*ABK:I10", *lines]))
    assert frame["case_id"].to_list() == ["C9-1", "C9-2", "C9-3"]
    assert frame["procedure_code"].to_list() == ["99213", "87070", "99214"]
    assert frame["row_number"].to_list() == [1, 2, 3]


def test_raw_is_the_json_of_the_mapped_values_plus_claim_id_and_line() -> None:
    row = only_row(claim_file(CLAIM))
    assert json.loads(str(row["raw"])) == {
        "case_id": "CLAIM7-1",
        "member_id": "MEM01",
        "provider_id": "BILL01",
        "service_date": "2024-01-02",
        "received_date": "2024-01-10",
        "procedure_code": "99213",
        "diagnosis_code": "J10.1",
        "units": "1",
        "billed_amount": "40.00",
        "prior_auth_id": None,
        "claim_frequency": "1",
        "original_case_id": None,
        "claim_id": "CLAIM7",
        "line": "1",
    }


# --- one test per row of the §10 mapping table -------------------------------------


def test_case_id_is_clm01_dash_lx01() -> None:
    claim = ["CLM*26463774*40***11:B:1*Y*A*Y*Y", "HI*ABK:J101", "LX*3", *LINE[1:]]
    assert only_row(claim_file(claim))["case_id"] == "26463774-3"


def test_case_id_is_missing_when_clm01_is() -> None:
    claim = ["CLM**40***11:B:1*Y*A*Y*Y", "HI*ABK:J101", *LINE]
    row = only_row(claim_file(claim))
    assert row["case_id"] is None
    assert json.loads(str(row["raw"]))["claim_id"] is None


def test_member_id_is_the_subscriber_nm109_not_the_patient_nor_other_subscriber() -> None:
    level = [
        "HL*2*1*22*1",
        "SBR*P********CI",
        "NM1*IL*1*DOE*JO****MI*SUBSCRIBER9",
        "NM1*PR*2*PAYER*****PI*P1",
        "HL*3*2*23*0",
        "PAT*19",
        "NM1*QC*1*DOE*KID****MI*PATIENT5",
    ]
    claim = [
        "CLM*C1*40***11:B:1*Y*A*Y*Y",
        "HI*ABK:J101",
        # 2320/2330A: the other payer's subscriber, not the claim's member.
        "SBR*S*01*******CI",
        "NM1*IL*1*OTHER*SUB****MI*OTHERSUB",
        *LINE,
    ]
    assert only_row(claim_file(claim, level=level))["member_id"] == "SUBSCRIBER9"


def test_member_id_follows_hl02_of_the_patient_level() -> None:
    # Two subscribers; the patient level names the first one (HL02 = 2) although the
    # second comes between them: §10 takes "the patient HL whose parent is" it.
    level = [
        "HL*2*1*22*1",
        "SBR*P********CI",
        "NM1*IL*1*DOE*JO****MI*FIRST",
        "HL*3*1*22*0",
        "SBR*P*18*******CI",
        "NM1*IL*1*ROE*AL****MI*SECOND",
        "HL*4*2*23*0",
        "PAT*19",
        "NM1*QC*1*DOE*KID",
    ]
    assert only_row(claim_file(CLAIM, level=level))["member_id"] == "FIRST"


def test_member_id_is_missing_without_a_subscriber_name() -> None:
    level = ["HL*2*1*22*0", "SBR*P*18*******CI", "NM1*PR*2*PAYER*****PI*P1"]
    assert only_row(claim_file(CLAIM, level=level))["member_id"] is None


def test_provider_id_is_the_rendering_provider_when_present() -> None:
    claim = [*CLAIM[:2], "NM1*82*1*DOC*ANN****XX*RENDER3", "PRV*PE*PXC*207Q00000X", *LINE]
    assert only_row(claim_file(claim))["provider_id"] == "RENDER3"


def test_provider_id_is_the_billing_provider_otherwise() -> None:
    # A 2330D NM1*82 (other payer's rendering provider, after SBR) and a 2420A NM1*82
    # (the line's) are not the claim's 2310B rendering provider.
    claim = [
        *CLAIM[:2],
        "SBR*S*01*******CI",
        "NM1*IL*1*OTHER*SUB****MI*X1",
        "NM1*82*1*OTHER*DOC****XX*OTHERPAYERDOC",
        *LINE,
        "NM1*82*1*LINE*DOC****XX*LINEDOC",
    ]
    assert only_row(claim_file(claim))["provider_id"] == "BILL01"


def test_service_date_is_the_line_d8_date() -> None:
    assert only_row(claim_file(CLAIM))["service_date"] == "2024-01-02"


def test_service_date_is_the_first_date_of_a_line_rd8_range() -> None:
    claim = [*CLAIM[:2], "LX*1", "SV1*HC:99213*40.00*UN*7***1", "DTP*472*RD8*20240201-20240207"]
    assert only_row(claim_file(claim))["service_date"] == "2024-02-01"


def test_service_date_falls_back_to_the_claim_dtp472() -> None:
    claim = [
        "CLM*C1*40***11:B:1*Y*A*Y*Y",
        "DTP*472*D8*20231130",
        "HI*ABK:J101",
        "LX*1",
        "SV1*HC:99213*40.00*UN*1***1",
        "LX*2",
        "SV1*HC:99213*40.00*UN*1***1",
        "DTP*472*D8*20231201",
    ]
    frame = read_837(claim_file(claim))
    assert frame["service_date"].to_list() == ["2023-11-30", "2023-12-01"]


def test_service_date_is_missing_without_any_dtp472() -> None:
    claim = [*CLAIM[:2], "LX*1", "SV1*HC:99213*40.00*UN*1***1", "DTP*471*D8*20240101"]
    assert only_row(claim_file(claim))["service_date"] is None


def test_received_date_is_bht04_of_the_transaction_set() -> None:
    first = transaction([*HEADER, *BILLING, *SUBSCRIBER, *CLAIM], "0001")
    later = [h.replace("20240110", "20240315") for h in HEADER]
    second = transaction([*later, *BILLING, *SUBSCRIBER, *CLAIM], "0002")
    frame = read_837(interchange(first, second).encode())
    assert frame["received_date"].to_list() == ["2024-01-10", "2024-03-15"]


def test_procedure_code_is_sv101_2() -> None:
    claim = [*CLAIM[:2], "LX*1", "SV1*HC:A0427:RH*700.00*UN*1***1", "DTP*472*D8*20240102"]
    assert only_row(claim_file(claim))["procedure_code"] == "A0427"


def test_diagnosis_code_is_the_pointed_code_numbered_across_hi_segments() -> None:
    # Diagnosis codes in order: 1 J10.1, 2 E11.9 (BG, a condition code, is not one),
    # 3 I10 in the second HI; pointer 3 -> I10, pointer 2 -> E11.9.
    claim = [
        "CLM*C1*80***11:B:1*Y*A*Y*Y",
        "HI*ABK:J101*BG:01*ABF:E119",
        "HI*ABF:I10",
        "LX*1",
        "SV1*HC:99213*40.00*UN*1***3:1",
        "DTP*472*D8*20240102",
        "LX*2",
        "SV1*HC:99213*40.00*UN*1***2",
        "DTP*472*D8*20240102",
        "LX*3",
        "SV1*HC:99213*40.00*UN*1***4",
        "DTP*472*D8*20240102",
    ]
    frame = read_837(claim_file(claim))
    assert frame["diagnosis_code"].to_list() == ["I10", "E11.9", None]


def test_diagnosis_code_icd9_is_taken_as_written() -> None:
    claim = [
        "CLM*C1*40***11:B:1*Y*A*Y*Y",
        "HI*BK:8540*BF:V7389",
        "LX*1",
        "SV1*HC:99201*40*UN*1***2",
    ]
    assert only_row(claim_file(claim))["diagnosis_code"] == "V7389"


def test_diagnosis_code_short_icd10_gets_no_dot() -> None:
    claim = ["CLM*C1*40***11:B:1*Y*A*Y*Y", "HI*ABK:R51", "LX*1", "SV1*HC:99201*40*UN*1***1"]
    assert only_row(claim_file(claim))["diagnosis_code"] == "R51"


def test_units_whole_numbers_with_zero_decimals_are_integers() -> None:
    values = {"1.00": "1", "1": "1", "21.0": "21", "007": "7", "2.5": "2.5", "X": "X"}
    for written, expected in values.items():
        claim = [*CLAIM[:2], "LX*1", f"SV1*HC:99213*40.00*UN*{written}***1"]
        assert only_row(claim_file(claim))["units"] == expected, written


def test_billed_amount_is_sv102_as_written() -> None:
    claim = [*CLAIM[:2], "LX*1", "SV1*HC:99213*1250.5*UN*1***1"]
    assert only_row(claim_file(claim))["billed_amount"] == "1250.5"


def test_prior_auth_is_the_line_ref_g1_over_the_claim_ref_g1() -> None:
    claim = [
        "CLM*C1*80***11:B:1*Y*A*Y*Y",
        "REF*G1*CLAIMAUTH",
        "HI*ABK:J101",
        "LX*1",
        "SV1*HC:99213*40.00*UN*1***1",
        "REF*G1*LINEAUTH",
        "LX*2",
        "SV1*HC:99213*40.00*UN*1***1",
    ]
    frame = read_837(claim_file(claim))
    assert frame["prior_auth_id"].to_list() == ["LINEAUTH", "CLAIMAUTH"]


def test_prior_auth_of_another_payer_is_not_the_claims() -> None:
    claim = [
        *CLAIM[:2],
        "SBR*S*01*******CI",
        "NM1*IL*1*OTHER*SUB****MI*X1",
        "NM1*PR*2*OTHER PAYER*****PI*OP",
        "REF*G1*OTHERPAYERAUTH",
        *LINE,
    ]
    assert only_row(claim_file(claim))["prior_auth_id"] is None


def test_claim_frequency_is_clm05_3() -> None:
    claim = ["CLM*C1*40***11:B:7*Y*A*Y*Y", "REF*F8*ORIG1", "HI*ABK:J101", *LINE]
    assert only_row(claim_file(claim))["claim_frequency"] == "7"
    claim = ["CLM*C1*40***11:B*Y*A*Y*Y", "HI*ABK:J101", *LINE]
    assert only_row(claim_file(claim))["claim_frequency"] is None


def test_original_case_id_is_ref_f8_dash_lx01_for_replacements_and_voids() -> None:
    for frequency in ("7", "8"):
        claim = [
            f"CLM*C2*40***11:B:{frequency}*Y*A*Y*Y",
            "REF*F8*C1",
            "HI*ABK:J101",
            "LX*2",
            *LINE[1:],
        ]
        assert only_row(claim_file(claim))["original_case_id"] == "C1-2"


def test_original_case_id_is_not_read_for_other_frequencies() -> None:
    claim = ["CLM*C2*40***11:B:1*Y*A*Y*Y", "REF*F8*C1", "HI*ABK:J101", *LINE]
    assert only_row(claim_file(claim))["original_case_id"] is None


def test_original_case_id_is_missing_without_ref_f8() -> None:
    claim = ["CLM*C2*40***11:B:8*Y*A*Y*Y", "HI*ABK:J101", *LINE]
    assert only_row(claim_file(claim))["original_case_id"] is None


# --- delimiters --------------------------------------------------------------------


def test_delimiters_come_from_each_interchanges_isa() -> None:
    first = claim_file(CLAIM).decode()
    table = str.maketrans({"*": "|", ":": "^", "~": "!", "^": "\\"})
    second = first.translate(table).replace("\n", "\r\n").replace("CLAIM7", "CLAIM8")
    frame = read_837((first + second).encode())
    assert frame["case_id"].to_list() == ["CLAIM7-1", "CLAIM8-1"]
    assert frame["diagnosis_code"].to_list() == ["J10.1", "J10.1"]
    assert frame["row_number"].to_list() == [1, 2]


def test_an_isa11_that_is_no_separator_is_ignored() -> None:
    # 4010-style `U`, or ISA16's character again: no repetition separator, still read.
    for isa11 in ("U", ":"):
        text = claim_file(CLAIM).decode()
        text = text[:82] + isa11 + text[83:]
        assert only_row(text.encode())["case_id"] == "CLAIM7-1"


def test_newline_as_segment_terminator() -> None:
    text = claim_file(CLAIM).decode().replace("~\n", "\n")
    text = text[:105] + "\n" + text[106:]
    assert only_row(text.encode())["case_id"] == "CLAIM7-1"


def test_no_line_breaks_at_all() -> None:
    text = claim_file(CLAIM).decode().replace("\n", "")
    assert only_row(text.encode())["procedure_code"] == "99213"


# --- whole-file rejections ----------------------------------------------------------


def reason(data: bytes) -> str:
    with pytest.raises(X12Error) as caught:
        read_837(data)
    message = str(caught.value)
    assert "\n" not in message
    assert "MEM01" not in message and "BILL01" not in message  # no member data
    return message


def test_not_an_interchange() -> None:
    assert "not an X12 interchange" in reason(b"case_id,member_id\nC1,M1\n")
    assert "empty" in reason(b"")
    assert "ISA" in reason(b"ISA*00*short~")


def test_isa_that_is_not_fixed_width() -> None:
    text = claim_file(CLAIM).decode().replace("SENDER         ", "SENDER", 1)
    assert "fixed-width" in reason(text.encode())


def test_missing_iea() -> None:
    text = claim_file(CLAIM).decode()
    assert "IEA" in reason(text[: text.index("IEA")].encode())


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("IEA*1*000000042", "IEA*2*000000042", "IEA01"),
        ("IEA*1*000000042", "IEA*1*000000043", "IEA02"),
        ("GE*1*7", "GE*2*7", "GE01"),
        ("GE*1*7", "GE*1*8", "GE02"),
        ("SE*", "SE*99", "SE01"),
        ("*0001~\nGE", "*0002~\nGE", "SE02"),
        (
            "GS*HC*SENDER*RECEIVER*20240110*1200*7*X*005010X222A1",
            "GS*HC*S*R*20240110*1200*7*X*005010X223A2",
            "GS08",
        ),
        ("ST*837*0001*005010X222A1", "ST*837*0001*004010X098A1", "ST03"),
        ("ST*837*0001*", "ST*835*0001*", "ST01"),
    ],
)
def test_envelope_counts_control_numbers_and_versions(old: str, new: str, expected: str) -> None:
    text = claim_file(CLAIM).decode()
    assert old in text
    message = reason(text.replace(old, new, 1).encode())
    assert expected in message
    assert message.startswith("interchange 1, segment ")


def test_envelopes_that_do_not_pair() -> None:
    text = claim_file(CLAIM).decode()
    assert "GE after SE" not in reason(text.replace("GE*1*7~\n", "", 1).encode())
    assert "IEA after SE" in reason(text.replace("GE*1*7~\n", "", 1).encode())
    se = text[text.index("SE*") : text.index("GE*")]
    assert "GE after" in reason(text.replace(se, "", 1).encode())
    assert "outside a transaction set" in reason(
        text.replace("GE*1*7~", "NTE*ADD*X~\nGE*1*7~").encode()
    )


def test_padding_after_the_last_interchange_is_not_data() -> None:
    text = claim_file(CLAIM) + b"\r\n  \x00\x00\x1a"
    assert only_row(text)["case_id"] == "CLAIM7-1"


def test_a_second_interchange_must_follow_the_first_iea() -> None:
    text = claim_file(CLAIM).decode()
    assert "interchange 1" in reason((text + "garbage").encode())


def test_reason_names_the_segment_number() -> None:
    text = claim_file(CLAIM).decode().replace("SE*", "SE*99", 1)
    # ISA 1, GS 2, ST 3, BHT..NM1*40 4-7, billing 8-11, subscriber 12-15,
    # CLM HI LX SV1 DTP 16-20, SE 21; ST..SE is 19 segments.
    assert reason(text.encode()) == (
        "interchange 1, segment 21: SE01 '9919' does not count the 19 segments"
        " of the transaction set"
    )


def test_4010_samples_are_rejected_for_their_version() -> None:
    for path in sample_files("lfh-4010-837p"):
        message = reason(path.read_bytes())
        assert "GS08 version '004010X098A1' is not 005010X222A1 or 005010X222A2" in message


# --- the shared samples, also read by pyx12 -----------------------------------------


def test_samples_read_like_pyx12_reads_them() -> None:
    for path in sample_files("lfh-5010-837p"):
        text = path.read_text()
        frame = read_837(text.encode())
        reference = repaired_component_separator(text) if writes_other_separator(text) else text
        assert frame.select(CASE_COLUMNS).to_dicts() == pyx12_rows(reference), path.name


def test_samples_that_write_another_component_separator_read_as_meant() -> None:
    paths = [p for p in sample_files("lfh-5010-837p") if writes_other_separator(p.read_text())]
    # Three of the five such samples are 837s (the other two are 835s).
    assert [p.name for p in paths] == [
        "demo.cob.2ndary.example4.837",
        "demo.example12.837",
        "demo.example6.837",
    ]
    row = read_837(
        (sample_files("lfh-5010-837p")[0].parent / "demo.example6.837").read_bytes()
    ).row(0, named=True)
    # CLM*125WILL*145.50***11>B>1, HI*BK>7215, SV1*HC>98940*145.50*UN*1.00***1.
    assert (row["case_id"], row["procedure_code"], row["diagnosis_code"]) == (
        "125WILL-1",
        "98940",
        "7215",
    )
    assert row["claim_frequency"] == "1"
    for path in paths:
        assert read_837(path.read_bytes()).equals(
            read_837(repaired_component_separator(path.read_text()).encode())
        )


def test_sample_example1_by_hand() -> None:
    folder = sample_files("lfh-5010-837p")[0].parent
    frame = read_837((folder / "demo.example1.837").read_bytes())
    assert frame.select(CASE_COLUMNS).row(2, named=True) == {
        "case_id": "26463774-3",
        "member_id": "JS00111223333",  # subscriber, not the patient SMITH TED (2010CA)
        "provider_id": "1912301953",  # billing provider (no 2310B)
        "service_date": "2006-10-10",
        "received_date": "2006-10-15",
        "procedure_code": "99214",
        "diagnosis_code": "V7389",  # pointer 2 of BK:0340, BF:V7389 (ICD-9 as written)
        "units": "1",  # 1.00
        "billed_amount": "35.00",
        "prior_auth_id": None,
        "claim_frequency": "1",
        "original_case_id": None,
    }
