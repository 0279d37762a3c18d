"""The lake and the inbox on an object store (claimsflow/lake/storage.py, docs/object-storage.md).

* fsspec's `memory://` filesystem: the event log's write-once publication (batch
  record last, create-if-absent), invisibility of a cut-short publish, unique skips
  and quarantine, the catalog through DuckDB's registered filesystem, the lock.
* `file://` URLs: exactly the local lake (a plain Path, rename-based publication).
* A real S3 API: moto's server on a loopback port, through s3fs, in process (the
  pipeline, history across runs) and end to end (`adjudicate run` and `query`),
  compared with the same inbox run on a local lake.

The decisions are worked out by hand from tests/batch_helpers.py's reference data:
M001 has a 500.00 deductible and 20 % coinsurance; 99213 is allowed 100.00 a unit.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from adjudicate.cli import app
from adjudicate.serving import Stack
from claimsflow.core.reference import Reference
from claimsflow.core.rules.ruleset import RuleSet
from claimsflow.ingest.inbox import discover, discover_remote_inbox
from claimsflow.lake import catalog, eventlog, objectstore
from claimsflow.lake.history import LakeHistory
from claimsflow.lake.lock import LOCK_FILE, LakeBusy, writer_lock
from claimsflow.lake.storage import (
    STATE_DIR_ENV,
    Location,
    RemoteLocation,
    StorageError,
    local_state,
    parse_location,
    write_object,
)
from claimsflow.pipeline.batch import (
    BatchOutcome,
    RunContext,
    batch_record,
)
from claimsflow.pipeline.run import run_batches
from claimsflow.vocabulary import SKIPPED
from tests.batch_helpers import case_row, csv_bytes, write_reference
from tests.lake_runner import lake_snapshot
from tests.prefect_support import free_port

UTC = dt.UTC
NOW = dt.datetime(2025, 1, 15, 2, 0, tzinfo=UTC)
ADJUDICATE = str(Path(sys.executable).with_name("adjudicate"))

#: (case_id, status, reason_codes, allowed, deductible, coinsurance, paid) in cents.
#: A1: 4 units x 100.00 = 400.00 allowed (billed 600.00), all of it deductible.
#: A3: member unknown. B1: 3 x 100.00 = 300.00 allowed; 100.00 of the deductible is
#: left after A1, then 20 % of the other 200.00 is coinsurance (40.00), 160.00 paid.
#: B3: same member, provider, service date and procedure as A1 (approved): duplicate.
EXPECTED_DECISIONS = [
    ("A1", "APPROVED", [], 40000, 40000, 0, 0),
    ("A3", "DENIED", ["CO-31"], 0, 0, 0, 0),
    ("B1", "APPROVED", [], 30000, 10000, 4000, 16000),
    ("B3", "DENIED", ["CO-18"], 0, 0, 0, 0),
]
DECISIONS_SQL = (
    "SELECT case_id, status, reason_codes, allowed_cents, deductible_cents, "
    "coinsurance_cents, paid_cents FROM case_decisions ORDER BY case_id"
)


def batch_a() -> bytes:
    return csv_bytes(
        [
            case_row("A1", units="4", billed_amount="600.00"),
            case_row("A2", units="0"),  # rejected row (row 2)
            case_row("A3", member_id="NOBODY"),
        ]
    )


def batch_b() -> bytes:
    return csv_bytes(
        [
            case_row(
                "B1",
                service_date="2024-06-01",
                received_date="2024-06-05",
                units="3",
                billed_amount="300.00",
            ),
            case_row("B3", received_date="2024-05-20"),
        ]
    )


#: The inbox of the end-to-end runs: a.csv, then b.csv, then an unreadable file, then
#: a copy of a.csv (same bytes: skipped), and three entries that are not batches.
def inbox_files() -> dict[str, bytes]:
    return {
        "a.csv": batch_a(),
        "b.csv": batch_b(),
        "c.parquet": csv_bytes([case_row("X1")]),  # not Parquet: quarantined, REJECTED
        "d.csv": batch_a(),
        "notes.txt": b"not a batch\n",
        ".hidden.csv": csv_bytes([case_row("H1")]),
        "sub/e.csv": csv_bytes([case_row("E1")]),  # a sub-folder: not looked into
    }


def sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Remote lakes' local lock and catalog go under the test's folder."""
    folder = tmp_path / "remote-state"
    monkeypatch.setenv(STATE_DIR_ENV, str(folder))
    return folder


@pytest.fixture
def memory_lake() -> Iterator[RemoteLocation]:
    """A lake on fsspec's in-process memory filesystem, under a prefix of its own."""
    lake = parse_location(f"memory://claims-{uuid.uuid4().hex[:12]}/lake")
    assert isinstance(lake, RemoteLocation)
    yield lake
    bucket = lake.root.rsplit("/", 1)[0]
    if lake.fs.exists(bucket):
        lake.fs.rm(bucket, recursive=True)  # the memory filesystem is process-wide


def objects(lake: RemoteLocation) -> list[str]:
    """Every object under the lake, relative to it, sorted."""
    base = lake.root + "/"
    return sorted(str(p)[len(base) :] for p in lake.fs.find(lake.root))


def record(batch_id: str, status: str = "PROCESSED", source: str = "x.csv") -> pl.DataFrame:
    return pl.DataFrame(
        {"batch_id": [batch_id], "source": [source], "status": [status], "processed_at": [NOW]}
    )


def decisions(batch_id: str, paid: Mapping[str, int]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "batch_id": [batch_id] * len(paid),
            "case_id": list(paid),
            "status": ["APPROVED"] * len(paid),
            "paid_cents": list(paid.values()),
            "decided_at": [NOW] * len(paid),
        }
    )


def paid_by_case(lake: Location) -> dict[str, int]:
    frame = eventlog.scan_table(lake, "decisions").select("case_id", "paid_cents").collect()
    return dict(zip(frame["case_id"].to_list(), frame["paid_cents"].to_list(), strict=True))


# --- locations ----------------------------------------------------------------------------


def test_plain_paths_and_file_urls_are_local_paths(tmp_path: Path) -> None:
    assert parse_location("data/lake") == Path("data/lake")
    assert parse_location(tmp_path) == tmp_path
    assert parse_location(f"file://{tmp_path}/lake/") == tmp_path / "lake"
    remote = parse_location("memory://bucket/lake/")
    assert remote == RemoteLocation("memory://bucket/lake", "/bucket/lake")
    assert isinstance(remote, RemoteLocation)
    assert (remote / "events").url == "memory://bucket/lake/events"
    assert remote.full_url("a.parquet") == "memory:///bucket/lake/a.parquet"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "nosuch://bucket/lake",
            "nosuch://bucket/lake: unknown storage protocol 'nosuch' (give a folder, a file:// "
            "URL, or an fsspec URL such as s3:// or gs://)",
        ),
        (
            "gs://bucket/lake",
            "gs://bucket/lake: gs:// needs a package that is not installed "
            "(Please install gcsfs to access Google Storage)",
        ),
        (
            "simplecache::memory://b/lake",
            "simplecache::memory://b/lake: chained fsspec URLs are not supported; "
            "give one protocol",
        ),
    ],
)
def test_an_unusable_url_is_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(StorageError) as raised:
        parse_location(text)
    assert str(raised.value) == message


# --- one lake interface: reads never write ---------------------------------------------


def test_reads_of_a_lake_without_an_event_log_create_nothing(
    tmp_path: Path, memory_lake: RemoteLocation
) -> None:
    """Every read of a lake that has no event log (a local folder that does not exist,
    a prefix with no objects) answers "nothing recorded" and creates nothing."""
    for lake in (tmp_path / "no-lake", memory_lake):
        for table in eventlog.BATCH_TABLES:
            scanned = eventlog.scan_table(lake, table).collect()
            assert (scanned.height, scanned.schema) == (0, eventlog.TABLE_SCHEMAS[table])
            assert eventlog.scan_batches(lake, table, []).collect().height == 0
        assert eventlog.scan_skips(lake).collect().height == 0
        assert eventlog.recorded_batch_ids(lake) == []
        assert not eventlog.has_event_log(lake)
        assert not eventlog.batch_recorded(lake, "b1")
        assert LakeHistory(lake).decision_count() == 0
        assert LakeHistory(lake).decided_among(pl.Series(["X1"])).is_empty()
        assert eventlog.log_size(lake) == (0, 0, 0)
    assert not (tmp_path / "no-lake").exists()
    assert not memory_lake.fs.exists(memory_lake.root)
    assert not local_state(memory_lake).exists()


# --- the event log on an object store -----------------------------------------------------


def test_a_fresh_remote_lake_has_the_empty_pseudo_batch(memory_lake: RemoteLocation) -> None:
    assert not eventlog.has_event_log(memory_lake)
    eventlog.ensure_lake(memory_lake)
    assert eventlog.has_event_log(memory_lake)
    assert objects(memory_lake) == [
        "events/batches/_empty/batch.parquet",
        "events/batches/_empty/cases.parquet",
        "events/batches/_empty/decisions.parquet",
        "events/batches/_empty/rejections.parquet",
        "events/batches/_empty/rule_hits.parquet",
        "events/skips/_empty.parquet",
    ]
    assert eventlog.recorded_batch_ids(memory_lake) == ["_empty"]
    assert eventlog.scan_table(memory_lake, "decisions").collect().shape == (
        0,
        len(eventlog.TABLE_SCHEMAS["decisions"]),
    )
    before = objects(memory_lake)
    eventlog.ensure_lake(memory_lake)  # idempotent: writes nothing more
    assert objects(memory_lake) == before


def test_record_then_read_back_and_refuse_a_second_record(memory_lake: RemoteLocation) -> None:
    eventlog.ensure_lake(memory_lake)
    assert not eventlog.batch_recorded(memory_lake, "b1")
    folder = eventlog.record_batch(
        memory_lake, "b1", {"batch": record("b1"), "decisions": decisions("b1", {"C1": 1600})}
    )
    assert folder == memory_lake / "events" / "batches" / "b1"
    assert eventlog.batch_recorded(memory_lake, "b1")
    assert paid_by_case(memory_lake) == {"C1": 1600}
    batches = eventlog.scan_table(memory_lake, "batch").select("batch_id", "status").collect()
    assert batches.rows() == [("b1", "PROCESSED")]
    kept = {name: memory_lake.fs.cat_file(memory_lake.path(name)) for name in objects(memory_lake)}
    # Write-once: a second record of the same batch id is refused and writes nothing.
    with pytest.raises(eventlog.BatchAlreadyRecorded):
        eventlog.record_batch(
            memory_lake, "b1", {"batch": record("b1"), "decisions": decisions("b1", {"C9": 1})}
        )
    assert {n: memory_lake.fs.cat_file(memory_lake.path(n)) for n in objects(memory_lake)} == kept
    assert paid_by_case(memory_lake) == {"C1": 1600}


def test_the_batch_record_is_created_only_if_absent(
    memory_lake: RemoteLocation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that got past the check (a racing writer) still cannot record twice."""
    eventlog.ensure_lake(memory_lake)
    eventlog.record_batch(memory_lake, "b1", {"batch": record("b1", source="first.csv")})
    monkeypatch.setattr(objectstore, "object_exists", lambda fs, path: False)
    with pytest.raises(eventlog.BatchAlreadyRecorded):
        eventlog.record_batch(memory_lake, "b1", {"batch": record("b1", source="second.csv")})
    monkeypatch.undo()
    sources = eventlog.scan_table(memory_lake, "batch").select("source").collect()
    assert sources["source"].to_list() == ["first.csv"]
    fs = memory_lake.fs
    assert not write_object(
        fs, memory_lake.path("events/skips/_empty.parquet"), b"x", exclusive=True
    )


def test_without_an_exclusive_mode_a_write_checks_first(
    memory_lake: RemoteLocation, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = memory_lake.fs
    real_open = fs.open

    def open_without_exclusive(path: str, mode: str = "rb", **options: Any) -> Any:
        if mode == "xb":
            raise NotImplementedError("File mode not supported")
        return real_open(path, mode, **options)

    monkeypatch.setattr(fs, "open", open_without_exclusive)
    marker = memory_lake.path("marker")
    assert write_object(fs, marker, b"first", exclusive=True)
    assert not write_object(fs, marker, b"second", exclusive=True)
    assert fs.cat_file(marker) == b"first"


class CutShort(Exception):
    """Stands for a writer killed between its table objects and its batch record."""


def test_a_cut_short_publish_is_invisible_then_overwritten(
    memory_lake: RemoteLocation, monkeypatch: pytest.MonkeyPatch, state_dir: Path
) -> None:
    eventlog.ensure_lake(memory_lake)
    eventlog.record_batch(
        memory_lake, "b1", {"batch": record("b1"), "decisions": decisions("b1", {"C1": 1600})}
    )

    def crash(name: str) -> None:
        if name == "before-publish":
            raise CutShort(name)

    monkeypatch.setattr(objectstore, "crash_point", crash)
    with pytest.raises(CutShort):
        eventlog.record_batch(
            memory_lake, "b2", {"batch": record("b2"), "decisions": decisions("b2", {"C2": 111})}
        )
    monkeypatch.undo()
    monkeypatch.setenv(STATE_DIR_ENV, str(state_dir))
    # The four table objects are there, the record is not: no reader sees batch b2.
    assert [o for o in objects(memory_lake) if "/b2/" in o] == [
        "events/batches/b2/cases.parquet",
        "events/batches/b2/decisions.parquet",
        "events/batches/b2/rejections.parquet",
        "events/batches/b2/rule_hits.parquet",
    ]
    assert not eventlog.batch_recorded(memory_lake, "b2")
    assert eventlog.recorded_batch_ids(memory_lake) == ["_empty", "b1"]
    assert paid_by_case(memory_lake) == {"C1": 1600}
    catalog.refresh_catalog(memory_lake)
    assert catalog.run_query(memory_lake, DECISIONS_SQL.replace(", reason_codes", "")).rows == [
        ("C1", "APPROVED", None, None, None, 1600)
    ]
    # The next run leaves the objects in the store (nothing is deleted) and publishing
    # b2 again replaces them whole: the batch counts once, with the new rows.
    assert eventlog.clean_staging(memory_lake) == 0
    eventlog.record_batch(
        memory_lake, "b2", {"batch": record("b2"), "decisions": decisions("b2", {"C2": 222})}
    )
    assert paid_by_case(memory_lake) == {"C1": 1600, "C2": 222}
    assert catalog.run_query(memory_lake, "SELECT count(*) FROM batches").rows == [(2,)]


def test_skips_get_unique_names_and_never_replace_another(memory_lake: RemoteLocation) -> None:
    eventlog.ensure_lake(memory_lake)
    batch_id = "f" * 64
    first = eventlog.record_skip(
        memory_lake, "run-1", batch_record(batch_id, "copy-1.csv", SKIPPED, "run-1", NOW)
    )
    kept = memory_lake.fs.cat_file(first.root)
    second = eventlog.record_skip(
        memory_lake, "run-1", batch_record(batch_id, "copy-2.csv", SKIPPED, "run-1", NOW)
    )
    assert (first.name, second.name) == (f"run-1-{batch_id}.parquet", f"run-1-{batch_id}-1.parquet")
    assert memory_lake.fs.cat_file(first.root) == kept
    skips = eventlog.scan_skips(memory_lake).select("source", "status").sort("source").collect()
    assert skips.rows() == [("copy-1.csv", "SKIPPED"), ("copy-2.csv", "SKIPPED")]


def test_quarantine_keeps_the_first_file_and_reason(memory_lake: RemoteLocation) -> None:
    eventlog.ensure_lake(memory_lake)
    folder = eventlog.quarantine(memory_lake, "b" * 64, "bad.csv", b"first bytes", "first reason")
    again = eventlog.quarantine(memory_lake, "b" * 64, "bad.csv", b"other bytes", "other reason")
    assert again == folder == memory_lake / "quarantine" / ("b" * 64)
    fs = memory_lake.fs
    assert fs.cat_file(folder.path("bad.csv")) == b"first bytes"
    assert fs.cat_file(folder.path("reason.txt")) == b"bad.csv: first reason\n"


# --- the catalog, the inbox and the lock on a remote lake ---------------------------------


def test_catalog_file_is_local_and_views_read_through_the_registered_filesystem(
    memory_lake: RemoteLocation, state_dir: Path
) -> None:
    eventlog.ensure_lake(memory_lake)
    eventlog.record_batch(
        memory_lake, "b1", {"batch": record("b1"), "decisions": decisions("b1", {"C1": 1600})}
    )
    path = catalog.refresh_catalog(memory_lake)
    assert (
        path == state_dir / memory_lake.slug / "catalog.duckdb" == catalog.catalog_path(memory_lake)
    )
    sql = "SELECT case_id, paid_cents FROM case_decisions"
    assert catalog.run_query(memory_lake, sql).rows == [("C1", 1600)]
    # Recorded after the catalog was built: visible at once (the views glob).
    eventlog.record_batch(
        memory_lake, "b2", {"batch": record("b2"), "decisions": decisions("b2", {"C2": 7})}
    )
    assert sorted(catalog.run_query(memory_lake, sql).rows) == [("C1", 1600), ("C2", 7)]
    # On a machine without the catalog file, the same views are built in memory.
    path.unlink()
    assert sorted(catalog.run_query(memory_lake, sql).rows) == [("C1", 1600), ("C2", 7)]
    # Reads stay inside the lake: another prefix of the same filesystem is refused.
    outside = f"memory://{memory_lake.root.split('/')[1]}/elsewhere.parquet"
    memory_lake.fs.pipe_file(
        outside, memory_lake.fs.cat_file(memory_lake.path("events/batches/b1/decisions.parquet"))
    )
    with pytest.raises(catalog.CatalogError, match="Permission Error"):
        catalog.run_query(memory_lake, f"SELECT * FROM read_parquet('{outside}')")
    memory_lake.fs.rm(outside)


def test_query_on_a_remote_lake_without_a_log_says_so(memory_lake: RemoteLocation) -> None:
    with pytest.raises(catalog.CatalogError, match="no event log here"):
        catalog.run_query(memory_lake, "SELECT 1")
    assert objects_or_none(memory_lake) == []


def objects_or_none(lake: RemoteLocation) -> list[str]:
    return objects(lake) if lake.fs.exists(lake.root) else []


def test_remote_inbox_lists_batches_by_name_and_names_the_rest(
    memory_lake: RemoteLocation,
) -> None:
    inbox = parse_location(memory_lake.url.replace("/lake", "/inbox"))
    assert isinstance(inbox, RemoteLocation)
    assert discover_remote_inbox(inbox) == ([], [])  # no objects yet: an empty inbox
    for name, data in inbox_files().items():
        inbox.fs.pipe_file(inbox.path(name), data)
    batches, ignored = discover_remote_inbox(inbox)
    assert [b.name for b in batches] == ["a.csv", "b.csv", "c.parquet", "d.csv"]
    assert [i.name for i in ignored] == [".hidden.csv", "notes.txt", "sub"]
    assert batches[1].read_bytes() == batch_b()


def test_remote_writer_lock_is_a_local_lock_file_per_url(memory_lake: RemoteLocation) -> None:
    with writer_lock(memory_lake, timeout=5):
        assert (local_state(memory_lake) / LOCK_FILE).is_file()
        with pytest.raises(LakeBusy, match=memory_lake.url), writer_lock(memory_lake, timeout=0.3):
            pass
        other = parse_location(memory_lake.url + "-other")
        with writer_lock(other, timeout=0.3):  # another lake: another lock
            pass
    with writer_lock(memory_lake, timeout=0.3):
        pass
    assert objects_or_none(memory_lake) == []  # the lock writes nothing to the store


# --- file:// is the local lake --------------------------------------------------------------


def run_inbox_into(
    inbox: Location, lake: Location, reference: Reference, ruleset: RuleSet, run_id: str
) -> list[BatchOutcome]:
    """What flows/nightly.py does, without Prefect: lock, prepare, history, batches, catalog."""
    ticks = itertools.count()

    def clock() -> dt.datetime:
        return NOW + dt.timedelta(seconds=next(ticks))

    with writer_lock(lake, timeout=30):
        run = RunContext(lake, reference, ruleset, run_id, clock)
        return run_batches(run, discover(inbox)[0])


def write_inbox(folder: Path, files: Mapping[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def outcome_rows(outcomes: list[BatchOutcome]) -> list[tuple[str, str, int, int]]:
    return [(o.source, o.status, o.rows_decided, o.rows_rejected) for o in outcomes]


EXPECTED_OUTCOMES = [
    ("a.csv", "PROCESSED", 2, 1),
    ("b.csv", "PROCESSED", 2, 0),
    ("c.parquet", "REJECTED", 0, 0),
    ("d.csv", "SKIPPED", 0, 0),
]


def snapshot(lake: Location) -> dict[str, list[tuple[Any, ...]]]:
    con = catalog.connect_read_only(lake)
    try:
        return lake_snapshot(con)
    finally:
        con.close()


def test_a_file_url_lake_is_the_local_lake(
    tmp_path: Path, reference: Reference, ruleset_v1: RuleSet
) -> None:
    inbox = write_inbox(tmp_path / "inbox", inbox_files())
    plain = tmp_path / "plain"
    as_url = parse_location(f"file://{tmp_path}/by-url")
    assert as_url == tmp_path / "by-url"
    first = run_inbox_into(inbox, plain, reference, ruleset_v1, "run-1")
    second = run_inbox_into(
        parse_location(f"file://{inbox}"), as_url, reference, ruleset_v1, "run-1"
    )
    assert outcome_rows(first) == outcome_rows(second) == EXPECTED_OUTCOMES

    def files(root: Path) -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    assert files(plain) == files(tmp_path / "by-url")
    assert ".writer.lock" in files(plain) and "catalog.duckdb" in files(plain)
    assert snapshot(plain) == snapshot(as_url)
    assert catalog.run_query(as_url, DECISIONS_SQL).rows == EXPECTED_DECISIONS


# --- a real S3 API: moto's server on loopback, through s3fs -------------------------------

BUCKET = "claims"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, for this module's tests only."""
    from moto.server import ThreadedMotoServer
    from s3fs import S3FileSystem

    # One request log line per S3 call would drown a failing test's report.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    settings = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # pragma: allowlist secret
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint,  # botocore's own setting: no code change needed
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.items():
            patch.setenv(name, value)
        # s3fs keeps one filesystem per set of options: one made for another endpoint
        # (an earlier module's server) must not be reused.
        S3FileSystem.clear_instance_cache()
        S3FileSystem().mkdir(BUCKET)
        try:
            yield endpoint
        finally:
            S3FileSystem.clear_instance_cache()
            server.stop()


def s3_location(text: str) -> RemoteLocation:
    location = parse_location(text)
    assert isinstance(location, RemoteLocation)
    return location


def upload(inbox: RemoteLocation, files: Mapping[str, bytes]) -> None:
    for name, data in files.items():
        inbox.fs.pipe_file(inbox.path(name), data)


@pytest.mark.integration
def test_s3_honours_create_if_absent(s3_endpoint: str) -> None:
    lake = s3_location(f"s3://{BUCKET}/exclusive-{uuid.uuid4().hex[:8]}")
    assert write_object(lake.fs, lake.path("marker"), b"first", exclusive=True)
    assert not write_object(lake.fs, lake.path("marker"), b"second", exclusive=True)
    assert lake.fs.cat_file(lake.path("marker")) == b"first"


@pytest.mark.integration
def test_pipeline_on_s3_matches_the_local_lake(
    s3_endpoint: str, tmp_path: Path, reference: Reference, ruleset_v1: RuleSet
) -> None:
    """Two runs (history rebuilt from S3 in between), then the same on a local lake."""
    prefix = f"s3://{BUCKET}/pipeline-{uuid.uuid4().hex[:8]}"
    inbox, lake = s3_location(f"{prefix}/inbox"), s3_location(f"{prefix}/lake")
    files = inbox_files()
    later = {"b.csv": files.pop("b.csv")}
    upload(inbox, files)
    first = run_inbox_into(inbox, lake, reference, ruleset_v1, "run-1")
    assert outcome_rows(first) == [
        ("a.csv", "PROCESSED", 2, 1),
        ("c.parquet", "REJECTED", 0, 0),
        ("d.csv", "SKIPPED", 0, 0),
    ]
    upload(inbox, later)
    second = run_inbox_into(inbox, lake, reference, ruleset_v1, "run-2")
    # b.csv is decided against A1 read back from S3: the deductible left, the duplicate.
    assert outcome_rows(second) == [
        ("a.csv", "SKIPPED", 0, 0),
        ("b.csv", "PROCESSED", 2, 0),
        ("c.parquet", "SKIPPED", 0, 0),
        ("d.csv", "SKIPPED", 0, 0),
    ]
    assert catalog.run_query(lake, DECISIONS_SQL).rows == EXPECTED_DECISIONS
    a_id, c_id = sha(batch_a()), sha(files["c.parquet"])
    assert sorted(eventlog.recorded_batch_ids(lake)) == sorted(
        ["_empty", a_id, sha(later["b.csv"]), c_id]
    )
    fs = lake.fs
    assert fs.cat_file(lake.path("quarantine", c_id, "c.parquet")) == files["c.parquet"]
    reason = fs.cat_file(lake.path("quarantine", c_id, "reason.txt")).decode()
    assert reason.startswith("c.parquet: ")
    skips = eventlog.scan_skips(lake).select("run_id", "source").sort("run_id", "source")
    assert skips.collect().rows() == [
        ("run-1", "d.csv"),
        ("run-2", "a.csv"),
        ("run-2", "c.parquet"),
        ("run-2", "d.csv"),
    ]
    # The same two runs on a local lake give the same catalog.
    local_inbox, local_lake = tmp_path / "inbox", tmp_path / "lake"
    write_inbox(local_inbox, files)
    run_inbox_into(local_inbox, local_lake, reference, ruleset_v1, "run-1")
    write_inbox(local_inbox, later)
    run_inbox_into(local_inbox, local_lake, reference, ruleset_v1, "run-2")
    assert snapshot(lake) == snapshot(local_lake)
    raw = json.dumps(case_row("A2", units="0"), separators=(",", ":"))
    assert snapshot(lake)["rejections"] == [
        (a_id, 2, "A2", ["units: must be between 1 and 999"], raw)
    ]


# --- end to end: `adjudicate run` and `adjudicate query` on S3 -----------------------------


def adjudicate(
    root: Path, args: Sequence[str], env: Mapping[str, str], home: str = "unused"
) -> subprocess.CompletedProcess[str]:
    command = [ADJUDICATE if Path(ADJUDICATE).exists() else "adjudicate", *args]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    environment.update(env)
    environment["PREFECT_HOME"] = str(root / f".prefect-{home}")
    return subprocess.run(
        command, cwd=root, env=environment, capture_output=True, text=True, timeout=420, check=False
    )


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"{result.args}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
    )


def s3_env(endpoint: str, state: Path) -> dict[str, str]:
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    return {
        **{name: os.environ[name] for name in names},
        "AWS_ENDPOINT_URL_S3": endpoint,
        STATE_DIR_ENV: str(state),
    }


@pytest.mark.integration
@pytest.mark.prefect
@pytest.mark.e2e
@pytest.mark.slow
def test_adjudicate_run_on_s3_gives_the_decisions_of_a_local_run(
    s3_endpoint: str, tmp_path: Path, prefect_server: Stack
) -> None:
    root = tmp_path
    write_reference(root / "ref")
    write_inbox(root / "inbox", inbox_files())
    prefix = f"s3://{BUCKET}/e2e-{uuid.uuid4().hex[:8]}"
    upload(s3_location(f"{prefix}/inbox"), inbox_files())
    # The session's Prefect server (tests/conftest.py): no temporary server per run.
    env = {**s3_env(s3_endpoint, root / "state"), "PREFECT_API_URL": prefect_server.api_url}
    common = ["--reference", "ref", "--ruleset", "1", "--no-checks", "--quiet-seconds", "0"]
    runs: dict[str, list[str]] = {
        "s3": ["run", "--inbox", f"{prefix}/inbox", "--lake", f"{prefix}/lake", *common],
        "local": ["run", "--inbox", "inbox", "--lake", "lake", *common],
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(adjudicate, root, args, env, name) for name, args in runs.items()
        }
        results = {name: future.result() for name, future in futures.items()}
    for result in results.values():
        assert result.returncode == 1, describe(result)  # a rejected row and a rejected batch
        assert "Traceback" not in result.stderr
        assert "2 processed, 1 skipped, 1 rejected" in result.stdout, describe(result)
    s3_catalog = root / "state" / s3_location(f"{prefix}/lake").slug / "catalog.duckdb"
    assert f"catalog: {s3_catalog}" in results["s3"].stdout
    queried = {
        name: adjudicate(root, ["query", DECISIONS_SQL, "--lake", lake, "--format", "json"], env)
        for name, lake in (("s3", f"{prefix}/lake"), ("local", "lake"))
    }
    for result in queried.values():
        assert result.returncode == 0, describe(result)
    rows = json.loads(queried["s3"].stdout)
    assert rows == json.loads(queried["local"].stdout)
    assert [tuple(row.values()) for row in rows] == EXPECTED_DECISIONS
    # Besides the bucket, a remote lake has a local lock file and catalog only.
    assert (root / "state" / s3_location(f"{prefix}/lake").slug / LOCK_FILE).is_file()


def test_cli_refuses_an_unknown_protocol_in_one_line(tmp_path: Path) -> None:
    result = adjudicate(tmp_path, ["query", "SELECT 1", "--lake", "nosuch://b/lake"], {})
    assert result.returncode == 2, describe(result)
    assert result.stderr.splitlines() == [
        "adjudicate: error: nosuch://b/lake: unknown storage protocol 'nosuch' (give a folder, "
        "a file:// URL, or an fsspec URL such as s3:// or gs://)"
    ]
    # The same check in process (Typer's runner): a run stops before anything is written.
    lake = tmp_path / "lake"
    missing = CliRunner().invoke(
        app, ["run", "--inbox", "gs://b/inbox", "--lake", str(lake), "--reference", "ref"]
    )
    assert missing.exit_code == 2, missing.output
    assert missing.stderr.splitlines() == [
        "adjudicate: error: gs://b/inbox: gs:// needs a package that is not installed "
        "(Please install gcsfs to access Google Storage)"
    ]
    assert not lake.exists()
