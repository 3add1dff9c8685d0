"""Reports: summary figures, a markdown table, CSV + JSON of the raw figures, and a PNG plot.

Files written to the output folder:

- ``results.md``: machine, command, the table (machine | model | size | ... | sign time | verify time, both
  tools), the hashing shares, the raw read+hash limits and the target checks;
- ``runs.csv``: every timed run (one row per repeat); ``summary.csv``: min / median per case;
- ``results.json``: machine, settings, models, limits, runs, summary and targets;
- ``plot.png``: time vs model size, one line per tool, method and mode (sign and verify panels).
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness.machine import Machine
from benchmarks.harness.runners import OURS, PEER, limit_for

#: the target of issue 16: sign and verify spend at most 1 / 0.9 of the raw limit's time on the model's bytes
SHARE_TARGET = 0.9
#: a share is judged only on a model whose raw limit takes at least this many times ``δ``, the run-to-run
#: spread of the fixed cost subtracted (see :func:`share_threshold`): the spread then moves a share by at
#: most about 10 %, the distance between the target and a tool exactly at the limit
SHARE_NOISE_FACTOR = 10
#: the least ``δ`` assumed: one repeat measures no spread, and a process start is not timed finer than this
MIN_NOISE_S = 0.010
#: results without a named fixed-cost reference (older runs): the smallest model up to this size is one
FIXED_COST_MAX_BYTES = 1_000_000


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
    #: "ranges" (files split in ranges over the processes), "files" (whole files only) or "shards" (files cut
    #: at the run's shard size, settings["limit_shard_size"]); older results: ranges
    split: str = "ranges"


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
    of_limit: float | None = None  # range limit / min: whole-command time, start-up included (kept for old readers)
    note: str = ""
    #: the hashing share (see :func:`summarize`): the limit this mode is held to ("files", "shards" or "ranges"
    #: split; "ranges" for shards mode in older results, which have no shards split),
    #: its fastest time, the fixed cost (min of the same case on the fixed-cost reference model), min - fixed,
    #: and limit / (min - fixed); ``share_median`` is the same from medians
    limit_split: str = ""
    limit_s: float | None = None
    fixed_s: float | None = None
    hashing_s: float | None = None
    share: float | None = None
    share_median: float | None = None


@dataclass
class Results:
    """Everything one harness run measured."""

    machine: Machine
    settings: dict[str, Any]
    models: list[ModelInfo] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    limits: list[LimitRun] = field(default_factory=list)


def limit_seconds(results: Results, model: str, algo: str, split: str = "ranges",
                  stat: Callable[[list[float]], float] = min) -> float | None:
    """The fastest (or ``stat`` of the) raw read+hash time measured for ``model`` with ``algo`` and ``split``."""
    times = [lim.wall_s for lim in results.limits if (lim.model, lim.algo, lim.split) == (model, algo, split)]
    return stat(times) if times else None


def fixed_cost_model(results: Results) -> ModelInfo | None:
    """The model whose command times are the fixed cost of each case: the one the run's settings name
    (``fixed_cost_model``), else, for older results, the smallest model of at most ``FIXED_COST_MAX_BYTES``."""
    name = results.settings.get("fixed_cost_model")
    if name:
        return next((m for m in results.models if m.name == name), None)
    small = [m for m in results.models if 0 < m.size_bytes <= FIXED_COST_MAX_BYTES]
    return min(small, key=lambda m: m.size_bytes) if small else None


def share_noise(results: Results, summary: Sequence[Summary]) -> float:
    """``δ``: how much a fixed cost moves between repeats in this run.

    The median over the fixed-cost reference's cases (every tool, method, mode and op) of median - min, at
    least ``MIN_NOISE_S``.  It is an upper estimate of the error of the min subtracted (a min of many
    repeats wanders less than the median's distance from it), so it errs towards calling a model too small.
    """
    ref = fixed_cost_model(results)
    spreads = [s.median_s - s.min_s for s in summary
               if ref is not None and s.model == ref.name and s.n >= 2 and s.min_s is not None
               and s.median_s is not None]
    return max(MIN_NOISE_S, statistics.median(spreads)) if spreads else MIN_NOISE_S


def share_threshold(results: Results, summary: Sequence[Summary]) -> float:
    """The least raw-limit time (s) for which a model's hashing share is judged: ``SHARE_NOISE_FACTOR`` x δ.

    The threshold is on the model's limit, not on a tool's measured hashing time, so it is one bar for
    both tools and every mode: whether a model is big enough to tell depends on the model and the run.
    """
    return SHARE_NOISE_FACTOR * share_noise(results, summary)


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
    _add_shares(results, out)
    return out


def _add_shares(results: Results, summary: list[Summary]) -> None:
    """Fill each summary's hashing share: the time its command spends on the model's bytes, against the limit.

    hashing = min - fixed, where fixed is the min of the same command (tool, method, mode, op) on the
    fixed-cost reference model, a model so small (80 KB) that its command time is start-up, imports, key
    loading, signing and writing the bundle, all of which the same command pays on any model; the share is
    the limit's time over that.  The limit is the one the mode is held to (:func:`runners.limit_for`), but
    shards mode in results measured before the shards limit existed (no "shards" split at all) falls back
    to the range limit, its bound before then, and says so in ``limit_split``.
    So hashing is the time a model's bytes add to a command: fixed work a tool overlaps with hashing is
    credited to it (a share can exceed 1), and per-file work beyond the reference's one file is charged.
    """
    ref = fixed_cost_model(results)
    fixed = {(s.tool, s.method, s.mode, s.op): s for s in summary if ref is not None and s.model == ref.name}
    has_shards = any(lim.split == "shards" for lim in results.limits)
    for s in summary:
        algo, split = limit_for(s.mode)
        if split == "shards" and not has_shards:
            split = "ranges"
        s.limit_split = split
        s.limit_s = limit_seconds(results, s.model, algo, split)
        f = fixed.get((s.tool, s.method, s.mode, s.op))
        if f is None or f.min_s is None or f.median_s is None or s.min_s is None or s.median_s is None:
            continue
        s.fixed_s = f.min_s
        s.hashing_s = s.min_s - f.min_s
        if s.limit_s is not None and s.hashing_s > 0:
            s.share = s.limit_s / s.hashing_s
        limit_median = limit_seconds(results, s.model, algo, split, statistics.median)
        if limit_median is not None and s.median_s - f.median_s > 0:
            s.share_median = limit_median / (s.median_s - f.median_s)


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


def _ratio(a: Summary | None, b: Summary | None, stat: str = "min_s") -> float | None:
    """``a``'s time over ``b``'s, by min (``stat="min_s"``) or by median (``"median_s"``)."""
    if a is None or b is None:
        return None
    ta, tb = getattr(a, stat), getattr(b, stat)
    if ta is None or tb is None or tb == 0:
        return None
    return float(ta / tb)


#: target groups, in report order
SHARE_CHECK = "hashing share"
PEER_CHECK = "faster than the peer"
OLD_CHECK = "issue 5"


@dataclass(frozen=True)
class Check:
    """One target check: its group (``SHARE_CHECK``, ``PEER_CHECK`` or ``OLD_CHECK``), what, figure, verdict."""

    target: str
    check: str
    measured: str
    verdict: str


def _share_check(s: Summary, ref: ModelInfo | None, threshold: float) -> Check:
    name = f"{s.model}: {s.op} ({s.method}, {s.mode}) hashing share >= {SHARE_TARGET:g}"
    if s.min_s is None:
        return Check(SHARE_CHECK, name, "-", f"not measured ({s.status})")
    if ref is not None and s.model == ref.name:
        return Check(SHARE_CHECK, name, "-", "n/a (the fixed-cost reference)")
    if s.limit_s is None:
        return Check(SHARE_CHECK, name, "-", f"n/a (no {s.limit_split} limit measured)")
    if s.fixed_s is None or s.hashing_s is None:
        return Check(SHARE_CHECK, name, "-", "n/a (no fixed cost: the reference's same case was not measured)")
    figure = f"{s.share:.2f}" if s.share is not None else "-"
    median = f"{s.share_median:.2f}" if s.share_median is not None else "-"
    measured = (f"{figure} ({s.limit_s:.3f} s {s.limit_split} limit / {s.hashing_s:.3f} s hashing); "
                f"by median {median}")
    if s.limit_s < threshold:
        return Check(SHARE_CHECK, name, measured, f"n/a (too small: {s.limit_s * 1000:.0f} ms of hashing)")
    if s.share is None:  # the command was no slower than its fixed cost on a model worth judging
        return Check(SHARE_CHECK, name, measured, "n/a (no time above the fixed cost)")
    return Check(SHARE_CHECK, name, measured, "PASS" if s.share >= SHARE_TARGET else "FAIL")


def target_checks(results: Results, summary: Sequence[Summary]) -> list[Check]:
    """The targets of issue 16, then issue 5's remaining checks.

    Per model, for each of this project's sign and verify cases: the hashing share >= ``SHARE_TARGET``
    (n/a on a model whose raw limit is under :func:`share_threshold`), and faster than the peer by median
    (min shown too), like for like: each mode against the peer's same mode where the run measured it.
    """
    rows: list[Check] = []
    ref = fixed_cost_model(results)
    threshold = share_threshold(results, summary)
    ours = [s for s in summary if s.tool == OURS and s.op in ("sign", "verify")]
    for m in results.models:
        rows += [_share_check(s, ref, threshold) for s in ours if s.model == m.name]
    for m in results.models:
        for s in ours:
            peer = _find(summary, m.name, PEER, s.method, s.mode, s.op)
            if s.model != m.name or peer is None:
                continue
            name = f"{m.name}: {s.op} ({s.method}, {s.mode}) faster than the peer by median"
            by_median, by_min = _ratio(peer, s, "median_s"), _ratio(peer, s)
            if by_median is None or by_min is None:
                bad = s if s.min_s is None else peer
                rows.append(Check(PEER_CHECK, name, "-", f"not measured ({bad.tool}: {bad.status})"))
                continue
            rows.append(Check(PEER_CHECK, name, f"{by_median:.2f}x by median ({by_min:.2f}x by min)",
                              "PASS" if by_median > 1 else "FAIL"))
    methods = sorted({s.method for s in summary})
    for m in results.models:
        for mode in ("files", "shards", "blake3"):
            sign = _find(summary, m.name, OURS, "sigstore", mode, "sign")
            digest = _find(summary, m.name, OURS, "key", mode, "digest") or _find(
                summary, m.name, OURS, "sigstore", mode, "digest")
            if sign and digest and sign.min_s is not None and digest.min_s is not None:
                over = sign.min_s - digest.min_s
                rows.append(Check(OLD_CHECK, f"{m.name}: keyless sign ({mode}) - digest < 1 s", f"{over:+.2f} s",
                                  "PASS" if over < 1 else "FAIL"))
            for method in methods:
                r = _ratio(_find(summary, m.name, OURS, method, mode, "verify"),
                           _find(summary, m.name, OURS, method, mode, "sign"))
                if r is not None:
                    rows.append(Check(OLD_CHECK, f"{m.name}: verify within 10 % of sign ({method}, {mode})",
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


def _share(s: Summary | None, field: str = "share", digits: int = 2) -> str:
    """A summary's figure ``field`` (the share by default) as text, "-" when there is none."""
    value = getattr(s, field) if s is not None else None
    return f"{value:.{digits}f}" if value is not None else "-"


def _table_share(s: Summary | None, threshold: float) -> str:
    """The share for an overview table: in parentheses on a model too small to judge (see ``share_threshold``)."""
    text = _share(s)
    small = s is not None and s.share is not None and s.limit_s is not None and s.limit_s < threshold
    return f"({text})" if small else text


def _secs(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


def _duration(t: float) -> str:
    """Seconds as text, in ms below 10 ms (a tiny model's limit would read 0.000 s)."""
    return f"{t * 1000:.2f} ms" if t < 0.01 else f"{t:.3f} s"


def _tally(checks: Sequence[Check]) -> str:
    passed = sum(c.verdict == "PASS" for c in checks)
    failed = sum(c.verdict == "FAIL" for c in checks)
    return f"{passed} PASS, {failed} FAIL, {len(checks) - passed - failed} n/a"


def _share_section(results: Results, summary: Sequence[Summary]) -> list[str]:
    ref = fixed_cost_model(results)
    lines = ["", "## Hashing share", ""]
    if ref is None:
        return [*lines, "No fixed-cost reference model in this run, so no hashing shares."]
    noise, threshold = share_noise(results, summary), share_threshold(results, summary)
    lines += [
        "How much of its time a command spends on the model's bytes, against the raw limit, the same way for "
        f"both tools: **hashing** = the command's min - the same command's min on **{ref.name}** "
        f"({_size(ref.size_bytes)}, {ref.files} file{'s' if ref.files != 1 else ''}, measured in this run like every "
        "model), which is what the "
        "command pays on any model: interpreter start-up, imports, key loading, signing, writing or reading the "
        "bundle. **share** = the limit's min / hashing (1.00: hashing at the limit; by median: the same from the "
        "three medians). Each mode is held to the limit its format allows: `files` (one sequential sha256 per "
        "file) to the whole-files limit; `shards` (one sequential sha256 per shard) to the shards limit, the "
        "same raw hashing with the same work units, every file cut at the run's shard size, so a file smaller "
        "than one shard keeps one process busy for every tool; `blake3` (a tree hash both tools thread within "
        f"one file) to the range limit.{_shards_fallback(summary)} Per-file work beyond the reference's one "
        "file (walking, opening, manifest entries) counts as hashing, which lowers the share. Hashing is thus "
        "the time the model's bytes add to the command: fixed work that a tool overlaps with hashing "
        "(modelseal's keyless helper process imports sigstore and talks to Fulcio while the workers hash) is "
        "not added on a big model, so it is "
        "credited, and a share can exceed 1.",
        "",
        f"A share is judged only on a model whose limit takes at least {SHARE_NOISE_FACTOR} x δ = "
        f"{threshold * 1000:.0f} ms. δ = {noise * 1000:.0f} ms is how much a fixed cost moves between repeats in "
        f"this run (median - min over the reference's cases, at least {MIN_NOISE_S * 1000:.0f} ms); below "
        f"{SHARE_NOISE_FACTOR} x δ that spread alone moves a share by more than 10 %, the distance between the "
        f"{SHARE_TARGET:g} target and a tool exactly at the limit, so such a model is reported as n/a (too small).",
        "",
        f"Fixed costs (min / median on {ref.name}):", "",
        "| tool | method | mode | sign | verify | digest |", "|---|---|---|---|---|---|",
    ]
    cases: list[tuple[str, str, str, str]] = []
    for s in summary:
        if (s.model, s.tool, s.method, s.mode) not in cases:
            cases.append((s.model, s.tool, s.method, s.mode))
    for model, tool, method, mode in cases:
        if model == ref.name:
            cells = [_time(_find(summary, model, tool, method, mode, op)) for op in ("sign", "verify", "digest")]
            lines.append(f"| {tool} | {method} | {mode} | {' | '.join(cells)} |")
    rows: list[str] = []
    small: dict[str, list[str]] = {}  # model -> its modes too small to judge
    for model, tool, method, mode in cases:
        sign = _find(summary, model, tool, method, mode, "sign")
        verify = _find(summary, model, tool, method, mode, "verify")
        any_case = sign or verify
        if model == ref.name or any_case is None:
            continue
        if any_case.limit_s is not None and any_case.limit_s < threshold:
            # its figures are noise (they stay in summary.csv and results.json); name the model once
            if mode not in small.setdefault(model, []):
                small[model].append(mode)
            continue
        rows.append(f"| {model} | {tool} | {method} | {mode} | {_secs(any_case.limit_s)} {any_case.limit_split} "
                    f"| {_share(sign, 'hashing_s', 3)} / {_share(verify, 'hashing_s', 3)} "
                    f"| {_share(sign)} / {_share(verify)} "
                    f"| {_share(sign, 'share_median')} / {_share(verify, 'share_median')} |")
    if rows:
        lines += ["", "| model | tool | method | mode | limit (s) | hashing sign / verify (s) | share sign / verify "
                  "| share by median sign / verify |", "|---|---|---|---|---|---|---|---|", *rows]
    if small:
        names = [model if set(modes) == {c[3] for c in cases if c[0] == model} else f"{model} ({', '.join(modes)})"
                 for model, modes in small.items()]
        lines += ["", f"Too small to judge (a limit under {threshold * 1000:.0f} ms; their figures are in "
                  f"summary.csv): {', '.join(names)}."]
    return lines


def _shard_size_text(settings: dict[str, Any]) -> str:
    size = settings.get("limit_shard_size")
    return f" ({size:,} bytes)" if isinstance(size, int) else " (not measured in these results)"


def _shards_fallback(summary: Sequence[Summary]) -> str:
    """The sentence saying shards mode is held to the range limit, for results without a shards limit."""
    if any(s.mode == "shards" and s.limit_split == "ranges" for s in summary):
        return (" These results have no shards limit (measured before the harness had one), so `shards` is "
                "held to the range limit here, a bound it cannot reach on a model with fewer shards than "
                "processes.")
    return ""


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
        "peak RSS is the largest process of the command's tree; 'hashing share' = the raw limit's time / the "
        "command's time on the model's bytes (min - the same command's min on a tiny model; see Hashing share), "
        "in parentheses where the model is too small to judge; GB and MB are 10^9 and 10^6 bytes.",
        "",
        "| machine | model | size | files | tool | method | mode | sign time | verify time | sign GB/s "
        "| verify GB/s | peak RSS sign / verify | hashing share sign / verify |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    cases: list[tuple[str, str, str, str]] = []
    for s in summary:
        if s.op in ("sign", "verify") and (s.model, s.tool, s.method, s.mode) not in cases:
            cases.append((s.model, s.tool, s.method, s.mode))
    info = {m.name: m for m in results.models}
    threshold = share_threshold(results, summary)
    for model, tool, method, mode in cases:
        sign = _find(summary, model, tool, method, mode, "sign")
        verify = _find(summary, model, tool, method, mode, "verify")
        m = info[model]

        def gbps(s: Summary | None) -> str:
            return f"{s.gbps:.2f}" if s and s.gbps is not None else "-"

        def rss(s: Summary | None) -> str:
            return f"{s.peak_rss_mb:.0f}" if s and s.peak_rss_mb is not None else "-"

        lines.append(f"| {mach.short()} | {model} | {_size(m.size_bytes)} | {m.files} | {tool} | {method} | {mode} "
                     f"| {_time(sign)} | {_time(verify)} | {gbps(sign)} | {gbps(verify)} "
                     f"| {rss(sign)} / {rss(verify)} MB "
                     f"| {_table_share(sign, threshold)} / {_table_share(verify, threshold)} |")
    digests = [s for s in summary if s.op == "digest"]
    if digests:
        lines += ["", "## Hashing alone (digest)", "", "| model | tool | mode | time | GB/s | hashing share |",
                  "|---|---|---|---|---|---|"]
        for s in digests:
            lines.append(f"| {s.model} | {s.tool} | {s.mode} | {_time(s)} | "
                         f"{f'{s.gbps:.2f}' if s.gbps else '-'} | {_table_share(s, threshold)} |")
    lines += _share_section(results, summary)
    cold = " from a cold page cache" if st.get("cold") else ""
    lines += ["", f"## Raw read+hash limit (same run, same files{cold})", "",
              f"Raw `hashlib` / `blake3` over the model's own files in {st.get('processes')} warm processes, "
              "largest task first. **ranges**: each file cut into byte ranges of at most 1 GB or an even share of "
              "the model, the bound of `blake3` (hashed in threads within a file) and of any tool whatever its "
              "layout. **whole files**: files are never split, the bound of files serialization (one sequential "
              "sha256 per file). **shards**: "
              f"files cut at the shard size{_shard_size_text(st)}, each shard one task, the bound of shards "
              "serialization (one sequential sha256 per shard).", "",
              "| model | family | source | size | files | sha256 ranges | sha256 whole files | sha256 shards "
              "| blake3 ranges |",
              "|---|---|---|---|---|---|---|---|---|"]
    for m in results.models:
        cells = []
        for algo, split in (("sha256", "ranges"), ("sha256", "files"), ("sha256", "shards"), ("blake3", "ranges")):
            t = limit_seconds(results, m.name, algo, split)
            cells.append(f"{_duration(t)} ({m.size_bytes / t / 1e9:.2f} GB/s)" if t else "-")
        lines.append(f"| {m.name} | {m.family} | {m.source} | {_size(m.size_bytes)} | {m.files} | "
                     f"{' | '.join(cells)} |")
    checks = target_checks(results, summary)
    shares = [c for c in checks if c.target == SHARE_CHECK]
    faster = [c for c in checks if c.target == PEER_CHECK]
    if shares or faster:
        lines += ["", "## Targets (issue 16)", "",
                  f"Every layout: sign and verify at >= {SHARE_TARGET:g} of the raw read+hash limit measured in "
                  "this run (hashing share, above), and faster than model-signing 1.1.1 by median on every model "
                  "(min shown too), like for like: each of this project's modes against the peer's same mode where "
                  "the run measured it (`--peer-modes`).", "",
                  f"- Hashing share >= {SHARE_TARGET:g}: {_tally(shares)}",
                  f"- Faster than the peer by median: {_tally(faster)}"]
        for title, group in ((f"Hashing share >= {SHARE_TARGET:g}", shares),
                             ("Faster than model-signing 1.1.1 by median", faster)):
            if group:
                lines += ["", f"### {title}", "", "| check | measured | verdict |", "|---|---|---|"]
                lines += [f"| {c.check} | {c.measured} | {c.verdict} |" for c in group]
    old = [c for c in checks if c.target == OLD_CHECK]
    if old:
        lines += ["", "## Other checks (issue 5)", "", "| check | measured | verdict |", "|---|---|---|"]
        lines += [f"| {c.check} | {c.measured} | {c.verdict} |" for c in old]
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
            op = "read+hash" if lim.split == "ranges" else f"read+hash {lim.split}"  # old rows unchanged
            w.writerow([lim.model, m.family, m.size_bytes, m.files, "raw-limit", f"{lim.processes}-processes",
                        lim.algo, op, lim.repeat, "ok", f"{lim.wall_s:.6f}", "", ""])
    with paths["summary_csv"].open("w", newline="") as fh:
        fields = list(Summary.__dataclass_fields__)
        w2 = csv.DictWriter(fh, fieldnames=fields)
        w2.writeheader()
        for s in summary:
            w2.writerow(asdict(s))
    doc = {"machine": results.machine.to_dict(), "settings": results.settings,
           "models": [asdict(m) for m in results.models], "limits": [asdict(x) for x in results.limits],
           "runs": [asdict(r) for r in results.runs], "summary": [asdict(s) for s in summary],
           "targets": [asdict(c) for c in target_checks(results, summary)]}
    paths["json"].write_text(json.dumps(doc, indent=2) + "\n")
    paths["markdown"].write_text(markdown(results, summary))
    plot(results, summary, paths["plot"])
    return paths
