"""The benchmark's figures: table rows, target verdicts and the Markdown section."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
GIB = 1024**3
TEN_MILLION = 10_000_000


@dataclass
class Measurement:
    result: dict[str, Any]
    wall: float
    peak_rss: int  # bytes: the child's own ru_maxrss

    @property
    def seconds(self) -> float:
        return float(self.result.get("seconds", self.wall))

    @property
    def cpu_seconds(self) -> float | None:
        cpu = self.result.get("cpu_seconds")
        return float(cpu) if cpu is not None else None

    @property
    def own_peak_rss(self) -> int:
        """The child's own peak: wait4's counts the processes it waited for too (a Dask
        coordinator's workers, which it starts and reaps)."""
        return int(self.result.get("own_peak_rss", self.peak_rss))

    @property
    def rows(self) -> int:
        return int(self.result.get("rows", 0))

    def rate(self, rows: int | None = None) -> float:
        return (rows if rows is not None else self.rows) / self.seconds if self.seconds else 0.0


@dataclass
class Figures:
    sizes: list[int]
    sample: int
    command: str
    started: dt.datetime
    machine: dict[str, str]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: The uniform workload's measurements by size (the peers' and old targets' figures).
    by_size: dict[int, dict[str, Measurement]] = field(default_factory=dict)
    #: Every workload's measurements: workload -> size -> measure -> Measurement.
    by_workload: dict[str, dict[int, dict[str, Measurement]]] = field(default_factory=dict)
    #: `adjudicate run` over an empty inbox: on a new Prefect home, then again.
    empty_first: Measurement | None = None
    empty: Measurement | None = None
    stages: Measurement | None = None
    zen: Measurement | None = None
    loop: Measurement | None = None
    sample_core: Measurement | None = None
    prefect_first: Measurement | None = None
    prefect: Measurement | None = None
    prefect_ephemeral: Measurement | None = None
    plain: Measurement | None = None
    #: Issue 16: size -> generate_lifecycle, the core "without" and "with" (maxima and
    #: ~1% corrections), each after an earlier batch.
    lifecycle: dict[int, dict[str, Measurement]] = field(default_factory=dict)

    @property
    def largest(self) -> int:
        return max(self.by_size) if self.by_size else max(self.sizes)

    def core_rate(self) -> float:
        """Cases per second of the pipeline core at the largest size (CSV in)."""
        if not self.by_size:
            return 0.0
        return self.by_size[self.largest]["core"].rate()

    def stage_rate(self, *names: str) -> float | None:
        """Cases per second of some stages of the core (from the stage profile)."""
        if self.stages is None:
            return None
        laps: dict[str, float] = self.stages.result["laps"]
        seconds = sum(laps[n] for n in names if n in laps)
        return self.stages.rows / seconds if seconds else None

    def rows(self) -> list[tuple[str, ...]]:
        out: list[tuple[str, ...]] = []
        for label, run in (
            ("adjudicate run, empty inbox, new Prefect home", self.empty_first),
            ("adjudicate run, empty inbox", self.empty),
        ):
            if run is not None:
                out.append(_row(label, run, 0))
        for workload, sizes in self.by_workload.items():
            for size, row in sorted(sizes.items()):
                core = row["core"]
                tag = f"[{workload}] "
                out += [
                    _row(f"{tag}generate {size:,} cases", row["generate"], size),
                    _row(
                        f"{tag}floor: read CSV + write Parquet",
                        row["floor"],
                        size,
                        _x(core, row["floor"]),
                    ),
                    _row(
                        f"{tag}floor, streamed (scan -> sink)",
                        row["floor_streaming"],
                        size,
                        _x(core, row["floor_streaming"]),
                    ),
                    _row(f"{tag}pipeline core, CSV in", core, size, "1.0x"),
                ]
                if "core_parquet" in row:
                    out.append(
                        _row(f"{tag}pipeline core, Parquet in", row["core_parquet"], size, "1.0x")
                    )
                if "core_jsonl" in row:
                    out.append(
                        _row(
                            f"{tag}pipeline core, JSON Lines in",
                            row["core_jsonl"],
                            size,
                            f"{_ratio(row['core_jsonl'].seconds, core.seconds)} the CSV core",
                        )
                    )
                if "twin" in row and "core_parquet" in row:
                    twin = _ratio(row["twin"].seconds, row["core_parquet"].seconds)
                    out.append(
                        _row(
                            f"{tag}DuckDB twin, Parquet in",
                            row["twin"],
                            size,
                            f"twin {twin} slower",
                        )
                    )
                for workers in (1, 2):
                    dask = row.get(f"dask_{workers}")
                    if dask is not None:
                        out.append(_dask_row(dask, workers, size, core))
                if "dask_jsonl_2" in row and "core_jsonl" in row:
                    out.append(
                        _dask_row(row["dask_jsonl_2"], 2, size, row["core_jsonl"], "JSON Lines")
                    )
                command = row.get("command")
                if command is not None:
                    out.append(
                        _row(
                            f"{tag}adjudicate run (gate, report, metrics on)",
                            command,
                            size,
                            f"command = {_ratio(command.seconds, row['floor'].seconds)} floor; "
                            f"{_ratio(command.seconds, core.seconds)} the core",
                        )
                    )
        out += lifecycle_rows(self)
        core_rate = self.core_rate()
        for label, peer in (
            ("zen-engine per case (rules only)", self.zen),
            ("row-at-a-time Python loop", self.loop),
        ):
            if peer is None:
                continue
            if "unavailable" in peer.result:
                out.append((label, "-", "-", "-", "-", "-", str(peer.result["unavailable"])))
                continue
            out.append(
                _row(
                    f"{label}, sample",
                    peer,
                    peer.rows,
                    f"pipeline {core_rate / peer.rate():,.0f}x faster",
                )
            )
        if self.sample_core is not None:
            out.append(_row("pipeline core, same sample", self.sample_core, self.sample_core.rows))
        if self.plain is not None:
            out.append(_row("nightly run, 1,000 cases, no Prefect", self.plain, 1_000))
        for label, run in (
            ("nightly run through the flow (server)", self.prefect),
            ("  first run on that server", self.prefect_first),
            ("nightly run through the flow (ephemeral API)", self.prefect_ephemeral),
        ):
            if run is not None and self.plain is not None:
                added = run.seconds - self.plain.seconds
                imported = run.result.get("import_seconds", 0.0)
                out.append(
                    _row(label, run, 1_000, f"+{added:.1f} s (import prefect {imported:.1f} s)")
                )
        return out


def _row(label: str, m: Measurement, cases: int, versus: str = "") -> tuple[str, ...]:
    return (
        label,
        f"{cases:,}",
        f"{m.seconds:,.2f}",
        f"{m.cpu_seconds:,.2f}" if m.cpu_seconds is not None else "",
        f"{cases / m.seconds:,.0f}" if m.seconds else "-",
        f"{m.peak_rss / GIB:.2f} GiB",
        versus,
    )


def _dask_row(
    m: Measurement, workers: int, cases: int, core: Measurement, fmt: str = "CSV"
) -> tuple[str, ...]:
    """The Dask executor: the coordinator's own peak RSS, and the sum of its workers'
    (`core`: the local core on the same `fmt` batch)."""
    workers_rss = int(m.result.get("worker_peak_rss", 0))
    label = f"dask executor, {workers} worker(s) x 1 thread, {fmt} in"
    versus = (
        f"{_ratio(m.seconds, core.seconds)} the local core; workers {workers_rss / GIB:.2f} GiB"
    )
    return _row(label, replace(m, peak_rss=m.own_peak_rss), cases, versus)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def _x(core: Measurement, floor: Measurement) -> str:
    return f"pipeline = {_ratio(core.seconds, floor.seconds)} floor"


def per_case_bytes(m: Measurement) -> float:
    """Peak RSS the batch added over the process after setup, per case."""
    before = int(m.result.get("rss_before", 0))
    return (m.peak_rss - before) / m.rows if m.rows else 0.0


GIB_4 = 4.0
EMPTY_SECONDS = 10.0
DASK_COORDINATOR_GIB = 2.0


def command_targets(f: Figures) -> list[tuple[str, str, str]]:
    """Issue 15's targets: the command users run, per workload at its largest size."""
    out = []
    if f.empty is not None:
        out.append(
            (
                "adjudicate run over an empty inbox ≤ 10 s",
                f"{f.empty.seconds:.1f} s ({_cpu(f.empty)}; first run on a new Prefect home "
                f"{f.empty_first.seconds if f.empty_first else float('nan'):.1f} s)",
                _at_most(f.empty.seconds, EMPTY_SECONDS, " s"),
            )
        )
    for workload, sizes in f.by_workload.items():
        big = max(sizes)
        at = f"[{workload}] {big:,} cases" + ("" if big >= TEN_MILLION else " (set for 10M)")
        row = sizes[big]
        floor = row["floor"].seconds
        core = row["core"].seconds / floor
        out.append(
            (
                f"core ≤ 3x the floor, {at}",
                f"{core:.2f}x ({row['core'].seconds:.1f} s vs {floor:.1f} s)",
                _at_most(core, 3.0, "x"),
            )
        )
        command = row.get("command")
        if command is None:
            continue
        whole = command.seconds / floor
        out.append(
            (
                f"whole adjudicate run ≤ 4x the floor, gate on, {at}",
                f"{whole:.2f}x ({command.seconds:.1f} s vs {floor:.1f} s)",
                _at_most(whole, 4.0, "x"),
            )
        )
        peak = command.peak_rss / GIB
        out.append(
            (
                f"adjudicate run peak RSS ≤ 4 GiB, {at}",
                f"{peak:.2f} GiB (the core alone: {row['core'].peak_rss / GIB:.2f} GiB)",
                _at_most(peak, GIB_4, " GiB"),
            )
        )
        if len(sizes) > 1:
            small = min(sizes)
            if "command" in sizes[small]:
                a = sizes[small]["command"].peak_rss / small
                b = command.peak_rss / big
                out.append(
                    (
                        f"adjudicate run memory per case flat, [{workload}] {small:,} -> {big:,}",
                        f"{a:,.0f} -> {b:,.0f} bytes/case ({b / a:.2f}x)",
                        _flat(b / a),
                    )
                )
        for key, which in (
            ("dask_1", "1 worker(s)"),
            ("dask_2", "2 worker(s)"),
            ("dask_jsonl_2", "2 worker(s), JSON Lines"),
        ):
            dask = row.get(key)
            if dask is not None:
                coordinator = dask.own_peak_rss / GIB
                out.append(
                    (
                        f"Dask coordinator ≤ 2 GiB, {which}, {at}",
                        f"{coordinator:.2f} GiB",
                        _at_most(coordinator, DASK_COORDINATOR_GIB, " GiB"),
                    )
                )
    return out


def _cpu(m: Measurement) -> str:
    cpu = m.cpu_seconds
    return f"CPU {cpu:.1f} s" if cpu is not None else "CPU ?"


def lifecycle_rows(f: Figures) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for size, row in sorted(f.lifecycle.items()):
        without, with_ = row["without"], row["with"]
        corrections = int(row["generate"].result.get("corrections", 0))
        out += [
            _row(
                "[lifecycle] core after an earlier batch, no oop_max, no corrections "
                "(median of runs interleaved with the next row's)",
                without,
                size,
                "1.0x",
            ),
            _row(
                f"[lifecycle] the same batch with oop_max (2 spans in 3) and {corrections:,} "
                f"corrections ({int(with_.result.get('voided_originals', 0)):,} originals "
                "voided; median of its runs)",
                with_,
                size,
                f"{with_.seconds / without.seconds:.2f}x" if without.seconds else "?",
            ),
        ]
    return out


def lifecycle_targets(f: Figures) -> list[tuple[str, str, str]]:
    """Issue 16: out-of-pocket maxima and ~1% corrections cost at most 10% of the core."""
    if not f.lifecycle:
        return []
    size = max(f.lifecycle)
    row = f.lifecycle[size]
    at = f"{size:,} cases" + ("" if size >= TEN_MILLION else " (the target is set for 10M)")
    ratio = row["with"].seconds / row["without"].seconds if row["without"].seconds else 0.0
    return [
        (
            f"core with oop_max and ~1% corrections ≤ 10% slower than without, {at}",
            f"{(ratio - 1) * 100:+.1f}% ({row['with'].seconds:.1f} s vs "
            f"{row['without'].seconds:.1f} s; {_cpu(row['with'])} vs {_cpu(row['without'])})",
            _at_most(ratio, 1.10, "x"),
        )
    ]


def targets(f: Figures) -> list[tuple[str, str, str]]:
    out = command_targets(f) + lifecycle_targets(f)
    if not f.by_size:
        return out
    big = f.largest
    at = f"{big:,} cases" + ("" if big >= TEN_MILLION else " (targets are set for 10M)")
    row = f.by_size[big]
    floor_ratio = row["core"].seconds / row["floor"].seconds
    out.append(
        (
            f"end to end within 4x the floor (issue 6: the core), {at}",
            f"{floor_ratio:.2f}x ({row['core'].seconds:.1f} s vs {row['floor'].seconds:.1f} s)",
            _at_most(floor_ratio, 4.0, "x"),
        )
    )
    if "twin" in row and "core_parquet" in row:
        twin_ratio = row["twin"].seconds / row["core_parquet"].seconds
        out.append(
            (
                f"faster than the DuckDB twin, {at}",
                f"twin {row['twin'].seconds:.1f} s, pipeline {row['core_parquet'].seconds:.1f} s "
                f"(Parquet in; {row['core'].seconds:.1f} s CSV in)",
                "met" if twin_ratio > 1 else f"missed: pipeline {1 / twin_ratio:.2f}x slower",
            )
        )
    peak = row["core"].peak_rss / GIB
    out.append((f"core peak RSS under 6 GB, {at}", f"{peak:.2f} GiB", _at_most(peak, 6.0, " GiB")))
    if "core_x12_837" in row and "core_x12_csv" in row:
        csv, x12 = row["core_x12_csv"], row["core_x12_837"]
        x12_ratio = x12.seconds / csv.seconds
        out.append(
            (
                f"837 within 3x the same rows as CSV (issue 17), {csv.rows:,} service lines",
                f"{x12_ratio:.2f}x ({x12.seconds:.1f} s vs {csv.seconds:.1f} s, batch path)",
                _at_most(x12_ratio, 3.0, "x"),
            )
        )
    if len(f.by_size) > 1:
        small = min(f.by_size)
        a, b = per_case_bytes(f.by_size[small]["core"]), per_case_bytes(row["core"])
        drift = b / a if a else 0.0
        out.append(
            (
                f"core memory per case flat, {small:,} -> {big:,}",
                f"{a:,.0f} -> {b:,.0f} bytes/case ({drift:.2f}x)",
                _flat(drift),
            )
        )
    rate = f.core_rate()
    for label, peer, wanted in (
        ("zen-engine", f.zen, 100.0),
        ("row-at-a-time loop", f.loop, 500.0),
    ):
        if peer is None:
            continue
        if "unavailable" in peer.result:
            out.append((f"≥{wanted:.0f}x {label}", "not measured", str(peer.result["unavailable"])))
            continue
        times = rate / peer.rate()
        out.append(
            (
                f"≥{wanted:.0f}x the throughput of the {label}",
                f"{times:,.0f}x ({rate:,.0f} vs {peer.rate():,.0f} cases/s)",
                _at_least(times, wanted, "x"),
            )
        )
    like_for_like = (
        ("zen-engine", f.zen, 100.0, ("rules",), "the rules stage"),
        (
            "row-at-a-time loop",
            f.loop,
            500.0,
            ("validate (Pandera)", "context joins", "rules", "pricing"),
            "validate + context + rules + pricing",
        ),
    )
    for label, peer, wanted, stages, what in like_for_like:
        stage_rate = f.stage_rate(*stages)
        if peer is None or "unavailable" in peer.result or stage_rate is None:
            continue
        times = stage_rate / peer.rate()
        out.append(
            (
                f"  like for like: {what} vs the {label}",
                f"{times:,.0f}x ({stage_rate:,.0f} vs {peer.rate():,.0f} cases/s)",
                _at_least(times, wanted, "x"),
            )
        )
    if f.prefect is not None and f.plain is not None:
        added = f.prefect.seconds - f.plain.seconds
        ephemeral = (
            f"; ephemeral API: +{f.prefect_ephemeral.seconds - f.plain.seconds:.1f} s"
            if f.prefect_ephemeral is not None
            else ""
        )
        out.append(
            (
                "Prefect adds under 10 s to a 1,000-case run (flow on a server, import included)",
                f"+{added:.1f} s ({f.prefect.seconds:.1f} s vs {f.plain.seconds:.1f} s{ephemeral})",
                _at_most(added, 10.0, " s"),
            )
        )
    return out


def command_tables(f: Figures) -> list[tuple[str, list[tuple[str, ...]]]]:
    """Where `adjudicate run`'s time goes: one column per command measured."""
    runs: list[tuple[str, Measurement]] = []
    if f.empty is not None:
        runs.append(("empty inbox", f.empty))
    for workload, sizes in f.by_workload.items():
        for size, row in sorted(sizes.items()):
            if "command" in row:
                runs.append((f"{workload} {_short(size)}", row["command"]))
    if not runs:
        return []
    names: list[str] = []
    # The run with the most stages first: its order (batches in place) leads.
    for _, run in sorted(runs, key=lambda r: -len(r[1].result.get("stages", {}))):
        for name in run.result.get("stages", {}):
            if name not in names:
                names.append(name)
    header = ("stage", *[label for label, _ in runs])
    rows: list[tuple[str, ...]] = [header]
    for name in names:
        cells = [run.result.get("stages", {}).get(name) for _, run in runs]
        rows.append((name, *[f"{c:.2f}" if c is not None else "" for c in cells]))
    rows.append(("total (wall s)", *[f"{run.seconds:.2f}" for _, run in runs]))
    rows.append(("CPU s (command + server)", *[f"{run.cpu_seconds or 0:.1f}" for _, run in runs]))
    rows.append(("peak RSS (GiB)", *[f"{run.peak_rss / GIB:.2f}" for _, run in runs]))
    return [("adjudicate run, stage by stage (seconds)", rows)]


def _short(size: int) -> str:
    return f"{size // 1_000_000}M" if size % 1_000_000 == 0 else f"{size:,}"


def _at_most(value: float, limit: float, unit: str) -> str:
    if value <= limit:
        return "met"
    return f"missed by {value - limit:.2f}{unit} ({(value / limit - 1) * 100:.0f}% over)"


def _at_least(value: float, wanted: float, unit: str) -> str:
    if value >= wanted:
        return "met"
    return f"missed: {value:,.0f}{unit} of {wanted:,.0f}{unit} ({value / wanted * 100:.0f}%)"


def render_markdown(f: Figures) -> str:
    load = ", ".join(f"{x:.1f}" for x in f.load_before)
    load_after = ", ".join(f"{x:.1f}" for x in f.load_after)
    lines = [
        BEGIN,
        "",
        f"Measured {f.started:%Y-%m-%d %H:%M} UTC with `{f.command}` "
        f"(sizes {', '.join(f'{n:,}' for n in f.sizes)}; peers on {f.sample:,} cases).",
        "",
        f"- Machine: {f.machine['cpu']}, {f.machine['ram']} RAM, {f.machine['os']}",
        f"- Python {f.machine['python']}; {f.machine['libraries']}",
        f"- Load average (1, 5, 15 min) before: {load}; after: {load_after} "
        "(a shared machine: wall times are noisy)",
        "",
        "| measure | cases | seconds | CPU s | cases/s | peak RSS | vs pipeline |",
        "|---|---:|---:|---:|---:|---:|---|",
        *[f"| {' | '.join(row)} |" for row in f.rows()],
        "",
    ]
    if f.stages is not None:
        laps: dict[str, float] = f.stages.result["laps"]
        total = sum(laps.values())
        lines += [
            f"Stages of the core (uniform workload) at {f.stages.rows:,} cases "
            "(one run, same calls as the core):",
            "",
            "| stage | seconds | share |",
            "|---|---:|---:|",
            *[f"| {name} | {s:.2f} | {s / total * 100:.0f}% |" for name, s in laps.items()],
            f"| total | {total:.2f} | |",
            "",
        ]
    for title, table in command_tables(f):
        lines += [
            f"{title}:",
            "",
            "| " + " | ".join(table[0]) + " |",
            "|---|" + "---:|" * (len(table[0]) - 1),
            *["| " + " | ".join(cells) + " |" for cells in table[1:]],
            "",
        ]
    lines += [
        "| target | measured | verdict |",
        "|---|---|---|",
        *[f"| {t} | {m} | {v} |" for t, m, v in targets(f)],
    ]
    for label, peer in (("zen-engine", f.zen), ("row-at-a-time loop", f.loop)):
        if peer is not None and "agree" in peer.result:
            lines.append("")
            lines.append(
                f"The {label} agreed with the pipeline on {peer.result['agree']:,} of "
                f"{peer.result.get('decided', peer.rows):,} decided cases."
            )
    lines += ["", END]
    return "\n".join(lines)


TEMPLATE = """# Benchmarks

`make bench` (`python -m bench`; `BENCH_SIZES=100000 make bench` for a quick run)
measures the pipeline against the floor and its peers on the same generated data,
each measurement in a fresh process. The section between the markers is rewritten
by each run.

{section}
"""


def update_doc(path: Path, section: str) -> None:
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            path.write_text(head + section + tail, encoding="utf-8")
            return
    path.write_text(TEMPLATE.format(section=section), encoding="utf-8")


def _flat(drift: float) -> str:
    """Memory per case is flat when it does not grow with the batch (at most +25 %).
    Falling per case is fixed costs (buffers, thread pools) spread over more cases."""
    if drift > 1.25:
        return f"missed: grows {drift:.2f}x (flat = at most +25%)"
    if drift < 0.8:
        return f"met: falls {drift:.2f}x (fixed costs spread over more cases)"
    return "met"
