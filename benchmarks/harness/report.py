"""Reports: summary figures, a markdown table, CSV + JSON of the raw figures, and a PNG plot.

Files written to the output folder:

- ``results.md``: machine, command, the table (machine | model | size | ... | sign time | verify time, both
  tools), the raw read+hash limits and the target checks;
- ``runs.csv``: every timed run (one row per repeat); ``summary.csv``: min / median per case;
- ``results.json``: machine, settings, models, limits, runs and summary;
- ``plot.png``: time vs model size, one line per tool, method and mode (sign and verify panels).
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness.machine import Machine
from benchmarks.harness.runners import OURS, PEER


@dataclass(frozen=True)
class ModelInfo:
    """A benchmarked model."""

    name: str
    family: str
    source: str
    path: str
    size_bytes: int
    files: int


@dataclass(frozen=True)
class Run:
    """One timed operation (or an "n/a" / "error" marker, with ``repeat`` -1 for n/a)."""

    model: str
    tool: str
    method: str
    mode: str
    op: str
    repeat: int
    status: str  # ok | error | n/a
    wall_s: float | None = None
    peak_rss_bytes: int | None = None
    note: str = ""


@dataclass(frozen=True)
class LimitRun:
    """One raw read+hash limit measurement of a model's files."""

    model: str
    algo: str
    processes: int
    repeat: int
    wall_s: float


@dataclass
class Summary:
    """Min / median over the repeats of one case."""

    model: str
    family: str
    size_bytes: int
    files: int
    tool: str
    method: str
    mode: str
    op: str
    status: str
    n: int = 0
    min_s: float | None = None
    median_s: float | None = None
    gbps: float | None = None
    peak_rss_mb: float | None = None
    of_limit: float | None = None
    note: str = ""


@dataclass
class Results:
    """Everything one harness run measured."""

    machine: Machine
    settings: dict[str, Any]
    models: list[ModelInfo] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    limits: list[LimitRun] = field(default_factory=list)


def limit_seconds(results: Results, model: str, algo: str) -> float | None:
    """The fastest raw read+hash time measured for ``model`` with ``algo``."""
    times = [lim.wall_s for lim in results.limits if lim.model == model and lim.algo == algo]
    return min(times) if times else None


def summarize(results: Results) -> list[Summary]:
    """One :class:`Summary` per (model, tool, method, mode, op), in run order."""
    info = {m.name: m for m in results.models}
    keys: list[tuple[str, str, str, str, str]] = []
    for run in results.runs:
        key = (run.model, run.tool, run.method, run.mode, run.op)
        if key not in keys:
            keys.append(key)
    out = []
    for key in keys:
        model, tool, method, mode, op = key
        runs = [r for r in results.runs if (r.model, r.tool, r.method, r.mode, r.op) == key]
        ok = [r for r in runs if r.status == "ok" and r.wall_s is not None]
        m = info[model]
        s = Summary(model, m.family, m.size_bytes, m.files, tool, method, mode, op, "ok" if ok else runs[0].status)
        bad = [r for r in runs if r.status != "ok"]
        s.note = bad[0].note if bad else ""
        if ok:
            times = [r.wall_s for r in ok if r.wall_s is not None]
            s.n, s.min_s, s.median_s = len(times), min(times), statistics.median(times)
            s.gbps = m.size_bytes / s.min_s / 1e9 if s.min_s > 0 else None
            s.peak_rss_mb = max(r.peak_rss_bytes or 0 for r in ok) / 1e6
            limit = limit_seconds(results, model, "blake3" if mode == "blake3" else "sha256")
            s.of_limit = limit / s.min_s if limit and s.min_s > 0 else None
            if bad:
                s.status = "partial"
        out.append(s)
    return out


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def _time(s: Summary | None) -> str:
    if s is None:
        return "-"
    if s.min_s is None or s.median_s is None:
        return f"n/a ({s.note})" if s.note else "n/a"
    return f"{s.min_s:.2f} / {s.median_s:.2f} s"


def _find(summary: Sequence[Summary], *key: str) -> Summary | None:
    """The summary of (model, tool, method, mode, op)."""
    for s in summary:
        if (s.model, s.tool, s.method, s.mode, s.op) == key:
            return s
    return None


def _ratio(a: Summary | None, b: Summary | None) -> float | None:
    if a is None or b is None or a.min_s is None or b.min_s is None or b.min_s == 0:
        return None
    return a.min_s / b.min_s


def target_checks(results: Results, summary: Sequence[Summary]) -> list[tuple[str, str, str]]:
    """(check, measured, verdict) rows for the issue's targets."""
    rows: list[tuple[str, str, str]] = []
    methods = sorted({s.method for s in summary})
    for m in results.models:
        for method in methods:
            for op in ("sign", "verify"):
                r = _ratio(_find(summary, m.name, PEER, method, "files", op),
                           _find(summary, m.name, OURS, method, "files", op))
                if r is not None:
                    rows.append((f"{m.name}: {op} ({method}, files) faster than the peer", f"{r:.2f}x",
                                 "PASS" if r > 1 else "FAIL"))
    if results.models:
        largest = max(results.models, key=lambda m: m.size_bytes)
        for method in methods:
            for op in ("sign", "verify"):
                r = _ratio(_find(summary, largest.name, PEER, method, "files", op),
                           _find(summary, largest.name, OURS, method, "shards", op))
                if r is not None:
                    rows.append((f"largest ({largest.name}): {op} ({method}) shards vs peer files >= 1.8x",
                                 f"{r:.2f}x", "PASS" if r >= 1.8 else "FAIL"))
    for m in results.models:
        for mode in ("files", "shards", "blake3"):
            sign = _find(summary, m.name, OURS, "sigstore", mode, "sign")
            digest = _find(summary, m.name, OURS, "key", mode, "digest") or _find(
                summary, m.name, OURS, "sigstore", mode, "digest")
            if sign and digest and sign.min_s is not None and digest.min_s is not None:
                over = sign.min_s - digest.min_s
                rows.append((f"{m.name}: keyless sign ({mode}) - digest < 1 s", f"{over:+.2f} s",
                             "PASS" if over < 1 else "FAIL"))
            for method in methods:
                r = _ratio(_find(summary, m.name, OURS, method, mode, "verify"),
                           _find(summary, m.name, OURS, method, mode, "sign"))
                if r is not None:
                    rows.append((f"{m.name}: verify within 10 % of sign ({method}, {mode})",
                                 f"verify/sign {r:.2f}", "PASS" if r <= 1.10 else "FAIL"))
    return rows


def _cache_state(settings: dict[str, Any]) -> str:
    if not settings.get("cold"):
        return "warm page cache"
    left = settings.get("resident_after_evict_bytes") or {}
    most = max(left.values(), default=0)
    return ("cold: each model's files evicted from the page cache (posix_fadvise DONTNEED) before every timed "
            f"run, the raw limit's too; at most {most} bytes of a model were still cached after an eviction "
            "(mincore)")


def markdown(results: Results, summary: Sequence[Summary]) -> str:
    """The report as markdown."""
    mach = results.machine
    st = results.settings
    lines = [
        "# Model signing benchmark: modelseal vs model-signing 1.1.1", "",
        f"- Machine: {mach.cpu_model}, {mach.cores} cores, {mach.ram_bytes / 2**30:.1f} GiB RAM, "
        f"{mach.kernel}, Python {mach.python}",
        f"- Command: `{st.get('command', '')}`",
        f"- Mode: {st.get('mode')}; size factor {st.get('size_factor')}; {st.get('repeats')} repeats; "
        f"{_cache_state(st)}; both tools byte-compiled; raw limit with {st.get('processes')} processes; "
        f"started {st.get('started')}",
        "- Times are min / median wall time of the whole command (process start to exit); GB/s = size / min; "
        "peak RSS is the largest process of the command's tree; 'of limit' = raw read+hash time / command time; "
        "GB and MB are 10^9 and 10^6 bytes.",
        "",
        "| machine | model | size | files | tool | method | mode | sign time | verify time | sign GB/s "
        "| verify GB/s | peak RSS sign / verify | sign of limit |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    cases: list[tuple[str, str, str, str]] = []
    for s in summary:
        if s.op in ("sign", "verify") and (s.model, s.tool, s.method, s.mode) not in cases:
            cases.append((s.model, s.tool, s.method, s.mode))
    info = {m.name: m for m in results.models}
    for model, tool, method, mode in cases:
        sign = _find(summary, model, tool, method, mode, "sign")
        verify = _find(summary, model, tool, method, mode, "verify")
        m = info[model]

        def gbps(s: Summary | None) -> str:
            return f"{s.gbps:.2f}" if s and s.gbps is not None else "-"

        def rss(s: Summary | None) -> str:
            return f"{s.peak_rss_mb:.0f}" if s and s.peak_rss_mb is not None else "-"

        of = f"{sign.of_limit:.2f}" if sign and sign.of_limit is not None else "-"
        lines.append(f"| {mach.short()} | {model} | {_size(m.size_bytes)} | {m.files} | {tool} | {method} | {mode} "
                     f"| {_time(sign)} | {_time(verify)} | {gbps(sign)} | {gbps(verify)} "
                     f"| {rss(sign)} / {rss(verify)} MB | {of} |")
    digests = [s for s in summary if s.op == "digest"]
    if digests:
        lines += ["", "## Hashing alone (digest)", "", "| model | tool | mode | time | GB/s | of limit |",
                  "|---|---|---|---|---|---|"]
        for s in digests:
            lines.append(f"| {s.model} | {s.tool} | {s.mode} | {_time(s)} | "
                         f"{f'{s.gbps:.2f}' if s.gbps else '-'} | {f'{s.of_limit:.2f}' if s.of_limit else '-'} |")
    cold = " from a cold page cache" if st.get("cold") else ""
    lines += ["", f"## Raw read+hash limit (same run, same files{cold})", "",
              "| model | family | source | size | files | sha256 | blake3 |", "|---|---|---|---|---|---|---|"]
    for m in results.models:
        cells = []
        for algo in ("sha256", "blake3"):
            t = limit_seconds(results, m.name, algo)
            cells.append(f"{t:.3f} s ({m.size_bytes / t / 1e9:.2f} GB/s)" if t else "-")
        lines.append(f"| {m.name} | {m.family} | {m.source} | {_size(m.size_bytes)} | {m.files} | "
                     f"{cells[0]} | {cells[1]} |")
    checks = target_checks(results, summary)
    if checks:
        lines += ["", "## Targets (issue 5)", "", "| check | measured | verdict |", "|---|---|---|"]
        lines += [f"| {c} | {v} | {p} |" for c, v, p in checks]
    na = [s for s in summary if s.status not in ("ok",)]
    if na:
        lines += ["", "## Not measured", ""]
        grouped: dict[tuple[str, str, str], list[str]] = {}
        for s in na:  # one line per model and reason, naming the cases it hit
            grouped.setdefault((s.model, s.status, s.note), []).append(f"{s.tool} {s.method} {s.mode} {s.op}")
        lines += [f"- {model}: {status}: {note} ({'; '.join(cases)})"
                  for (model, status, note), cases in grouped.items()]
    lines += ["", "![time vs model size](plot.png)", ""]
    return "\n".join(lines)


_COLOURS = {(True, "files"): "tab:blue", (True, "shards"): "tab:green", (True, "blake3"): "tab:purple",
            (False, "files"): "tab:red", (False, "shards"): "tab:orange", (False, "blake3"): "tab:brown"}


def plot(results: Results, summary: Sequence[Summary], path: Path) -> None:
    """PNG: min time vs model size, one line per tool+method+mode, a panel per operation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    ops = [op for op in ("sign", "verify", "digest") if any(s.op == op and s.min_s for s in summary)] or ["sign"]
    fig, axes = plt.subplots(1, len(ops), figsize=(6.2 * len(ops), 4.8), squeeze=False)
    for ax, op in zip(axes[0], ops, strict=True):
        labels = []
        for s in summary:
            label = f"{s.tool} {s.method} {s.mode}"
            if s.op == op and label not in labels:
                labels.append(label)
        for label in labels:
            pts = sorted((s.size_bytes / 1e9, s.min_s) for s in summary
                         if s.op == op and f"{s.tool} {s.method} {s.mode}" == label and s.min_s)
            if pts:
                # this project solid, the peer dashed; key circles, keyless squares; a colour per mode
                tool, method, mode = label.rsplit(" ", 2)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "-" if tool == OURS else "--",
                        marker="o" if method == "key" else "s", markersize=4, label=label,
                        color=_COLOURS.get((tool == OURS, mode), "grey"))
        ax.set_xscale("log")
        ax.set_yscale("log")
        # plain seconds on the time axis (log scale would print 3x10^-1)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_locator(matplotlib.ticker.LogLocator(subs=(2.0, 3.0, 5.0)))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_xlabel("model size (GB)")
        ax.set_ylabel(f"{op} time, min of repeats (s)")
        ax.set_title(op)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=7)
    fig.suptitle(f"{results.machine.short()} - size factor {results.settings.get('size_factor')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load(path: Path) -> Results:
    """Read a ``results.json`` back (to re-render the reports without re-measuring)."""
    doc = json.loads(path.read_text())
    return Results(Machine(**doc["machine"]), doc["settings"], [ModelInfo(**m) for m in doc["models"]],
                   [Run(**r) for r in doc["runs"]], [LimitRun(**x) for x in doc["limits"]])


def write_all(results: Results, out: Path) -> dict[str, Path]:
    """Write every report file into ``out``; return their paths by kind."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    paths = {"markdown": out / "results.md", "runs_csv": out / "runs.csv", "summary_csv": out / "summary.csv",
             "json": out / "results.json", "plot": out / "plot.png"}
    info = {m.name: m for m in results.models}
    with paths["runs_csv"].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "family", "size_bytes", "files", "tool", "method", "mode", "op", "repeat", "status",
                    "wall_s", "peak_rss_bytes", "note"])
        for r in results.runs:
            m = info[r.model]
            w.writerow([r.model, m.family, m.size_bytes, m.files, r.tool, r.method, r.mode, r.op, r.repeat,
                        r.status, "" if r.wall_s is None else f"{r.wall_s:.6f}",
                        "" if r.peak_rss_bytes is None else r.peak_rss_bytes, r.note])
        for lim in results.limits:
            m = info[lim.model]
            w.writerow([lim.model, m.family, m.size_bytes, m.files, "raw-limit", f"{lim.processes}-processes",
                        lim.algo, "read+hash", lim.repeat, "ok", f"{lim.wall_s:.6f}", "", ""])
    with paths["summary_csv"].open("w", newline="") as fh:
        fields = list(Summary.__dataclass_fields__)
        w2 = csv.DictWriter(fh, fieldnames=fields)
        w2.writeheader()
        for s in summary:
            w2.writerow(asdict(s))
    doc = {"machine": results.machine.to_dict(), "settings": results.settings,
           "models": [asdict(m) for m in results.models], "limits": [asdict(x) for x in results.limits],
           "runs": [asdict(r) for r in results.runs], "summary": [asdict(s) for s in summary],
           "targets": [{"check": c, "measured": v, "verdict": p} for c, v, p in target_checks(results, summary)]}
    paths["json"].write_text(json.dumps(doc, indent=2) + "\n")
    paths["markdown"].write_text(markdown(results, summary))
    plot(results, summary, paths["plot"])
    return paths
