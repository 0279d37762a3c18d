"""Hand-written 837 files for the integration tests (inbox, remit, flows), against the
fixture reference of tests/batch_helpers.py, with the decisions worked out by hand.

Reference (batch_helpers): M001 covered from 2024-01-01, deductible 500.00,
coinsurance 20 %; M002 covered in 2023 (deductible 0.00, 10 %) and from 2024-03-01;
P001 active in network, P003 active out of network; 99213 100.00 a unit, at most 4
units; 99214 needs a prior authorization; J1100 12.50 a unit.

FIRST_837 (received 2024-05-10, BHT04), its service lines in file order:

row  case    line                                          decision
1    CLM1-1  M001 P001 99213 x4, 450.00, 2024-05-01            APPROVED: allowed 400.00,
                                                               deductible 400.00, paid 0
2    CLM1-2  M001 P001 J1100 x20, 300.00, 2024-05-01           APPROVED: allowed 250.00
             (20 x 12.50), deductible 100.00 (500 - 400 used), coinsurance
             (250 - 100) x 20 % = 30.00, paid 120.00
3    CLM1-3  M001 P001 99214 x1, 150.00, no prior auth         DENIED CO-197
4    CLM1-4  units 0                                           rejected (units)
5    CLM2-1  rendering P003 (out of network), claim's DTP      DENIED CO-242
             2024-05-02
6    CLM4-1  M001 P001 99213 x1, 10,500.00, RD8 2024-05-03..04 PENDED P-HIGH-DOLLAR
7    CLM3-1  M002 P001, 2023-01-02 (filed 494 days later)      DENIED CO-29

CLM1-1 and CLM1-2 share the service date; the order (service_date, received_date,
case_id) prices CLM1-1 first. Diagnoses: HI ABK J4590, ABF E119 -> `J45.90`,
`E11.9` by the lines' pointers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

ISA = (
    "ISA*00*          *00*          *ZZ*SUBMITTER      *ZZ*PAYER          "
    "*240510*1200*^*00501*{control}*0*T*:"
)


def interchange(
    body: Sequence[str], *, control: str = "000000001", version: str = "005010X222A1"
) -> str:
    """One interchange, one group, one transaction set around `body` (the segments
    after ST, without terminators); SE01 counts ST, the body and SE."""
    segments = [
        ISA.format(control=control),
        f"GS*HC*SUBMITTER*PAYER*20240510*1200*1*X*{version}",
        f"ST*837*0001*{version}",
        *body,
        f"SE*{len(body) + 2}*0001",
        "GE*1*1",
        f"IEA*1*{control}",
    ]
    return "".join(s + "~\n" for s in segments)


def _header(received: str) -> list[str]:
    return [
        f"BHT*0019*00*0001*{received}*1200*CH",
        "NM1*41*2*SUBMITTER*****46*S1",
        "PER*IC*DESK*TE*5555550100",
        "NM1*40*2*PAYER*****46*R1",
        "HL*1**20*1",
        "NM1*85*2*CLINIC*****XX*P001",
        "N3*1 MAIN ST",
        "N4*TOWN*IL*60000",
        "REF*EI*123456789",
    ]


def _subscriber(hl: int, member: str) -> list[str]:
    return [
        f"HL*{hl}*1*22*0",
        "SBR*P*18*******CI",
        f"NM1*IL*1*DOE*JO****MI*{member}",
        "NM1*PR*2*PAYER*****PI*PAYER1",
    ]


FIRST_BODY = [
    *_header("20240510"),
    *_subscriber(2, "M001"),
    "CLM*CLM1*980***11:B:1*Y*A*Y*Y",
    "HI*ABK:J4590*ABF:E119",
    "LX*1",
    "SV1*HC:99213*450*UN*4***1",
    "DTP*472*D8*20240501",
    "LX*2",
    "SV1*HC:J1100*300*UN*20***2",
    "DTP*472*D8*20240501",
    "LX*3",
    "SV1*HC:99214*150*UN*1***1",
    "DTP*472*D8*20240501",
    "LX*4",
    "SV1*HC:99213*80*UN*0***1",
    "DTP*472*D8*20240501",
    "CLM*CLM2*80***11:B:1*Y*A*Y*Y",
    "DTP*472*D8*20240502",
    "HI*ABK:J4590",
    "NM1*82*1*DOC*ANN****XX*P003",
    "LX*1",
    "SV1*HC:99213*80*UN*1.00***1",
    "CLM*CLM4*10500***11:B:1*Y*A*Y*Y",
    "HI*ABK:J4590",
    "LX*1",
    "SV1*HC:99213*10500*UN*1***1",
    "DTP*472*RD8*20240503-20240504",
    *_subscriber(3, "M002"),
    "CLM*CLM3*80***11:B:1*Y*A*Y*Y",
    "HI*ABK:J4590",
    "LX*1",
    "SV1*HC:99213*80*UN*1***1",
    "DTP*472*D8*20230102",
]
FIRST_837 = interchange(FIRST_BODY)

#: Received 2024-06-01: voids CLM2 line 1 (frequency 8, REF*F8 CLM2) and replaces
#: CLM3 line 1 (frequency 7, REF*F8 CLM3) with a line of 2024-05-20 (M002 covered,
#: deductible 250.00, 0 %: 99213 x1 80.00 -> deductible 80.00, paid 0).
SECOND_837 = interchange(
    [
        *_header("20240601"),
        *_subscriber(2, "M002"),
        "CLM*CLM5*80***11:B:8*Y*A*Y*Y",
        "REF*F8*CLM2",
        "HI*ABK:J4590",
        "LX*1",
        "SV1*HC:99213*80*UN*1***1",
        "DTP*472*D8*20240502",
        "CLM*CLM6*80***11:B:7*Y*A*Y*Y",
        "REF*F8*CLM3",
        "HI*ABK:J4590",
        "LX*1",
        "SV1*HC:99213*80*UN*1***1",
        "DTP*472*D8*20240520",
    ],
    control="000000002",
)


def batch_id(text: str) -> str:
    """Spec §6: the SHA-256 of the file's bytes."""
    return hashlib.sha256(text.encode()).hexdigest()
