"""The harness: materialize each model, run every runner on it (alternating), measure, report.

Per model: the files are read once (warm page cache, untimed), then each repeat measures the raw
read+hash limits (byte ranges; whole files and shards for files and shards serialization) and runs every
runner's ``sign`` then ``verify`` (and ``digest``), reversing the runner order on odd repeats so neither tool
always runs right after the other.  Every run includes the tiny :data:`FIXED_COST_MODEL` (added to ``--models`` when
left out): its command times are each case's fixed cost, which the report subtracts for the hashing
share.  With ``--cold`` nothing is warmed: the model's files are evicted from the page cache before every
timed run (the limits and every command of both tools), so every byte comes from the disk.  A runner whose
command does not exist is recorded once as "n/a" with the reason; a command that fails is recorded as
"error" with the tail of its stderr, and that case is not retried.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import families, fetch, pagecache, realmodels
from benchmarks.harness.machine import describe
from benchmarks.harness.measure import LimitMeter, model_files, run_child
from benchmarks.harness.report import LimitRun, ModelInfo, Results, Run, load, write_all
from benchmarks.harness.runners import (
    METHODS,
    OPS,
    OUR_MODES,
    OURS,
    PEER_MODES,
    ROOT,
    Context,
    KeylessMaterial,
    Runner,
    build_runners,
    limit_for,
)
from model_signing.manifest import DEFAULT_SHARD_SIZE

BENCH_IDENTITY = "bench@modelseal.test"
#: the 80 KB real model whose command times are every case's fixed cost (start-up, keys, signing, bundle)
FIXED_COST_MODEL = "onnx-resnet50-light"


@dataclass(frozen=True)
class ModelSource:
    """A model the harness can materialize (generate, copy from a package, or fetch) and later remove."""

    name: str
    family: str
    source: str
    materialize: Callable[[], Path]
    remove: Callable[[], None] | None = None


def offline_sources(data_dir: Path, factor: float) -> list[ModelSource]:
    """Real models shipped in PyPI packages, then the generated layouts at ``factor``, smallest first."""
    out = [ModelSource(m.name, m.family, m.source, functools.partial(realmodels.materialize, m, data_dir))
           for m in realmodels.REAL_MODELS.values()]
    for layout in sorted(families.LAYOUTS.values(), key=lambda lay: lay.build is families.build_falcon_like):
        out.append(ModelSource(f"{layout.name}-x{factor:g}", layout.family,
                               f"generated, modelled on {layout.modelled_on}",
                               functools.partial(_generated, layout, data_dir, factor)))
    return out


def with_fixed_cost_model(sources: list[ModelSource], data_dir: Path) -> list[ModelSource]:
    """``sources`` with :data:`FIXED_COST_MODEL` first if it is not among them (it comes from a PyPI
    package, so online runs have it too)."""
    if any(s.name == FIXED_COST_MODEL for s in sources):
        return sources
    m = realmodels.REAL_MODELS[FIXED_COST_MODEL]
    return [ModelSource(m.name, m.family, m.source, functools.partial(realmodels.materialize, m, data_dir)),
            *sources]


def _generated(layout: families.Layout, data_dir: Path, factor: float) -> Path:
    return families.model_path(layout, families.generate(layout, data_dir, factor))


def online_sources(data_dir: Path, cleanup: bool) -> list[ModelSource]:
    """The issue's real models, fetched from their hubs (smallest first)."""
    return [ModelSource(m.name, m.family, f"{m.source} ({m.approx_size})",
                        functools.partial(fetch.materialize, m, data_dir),
                        functools.partial(fetch.remove, m, data_dir) if cleanup else None)
            for m in fetch.ONLINE_MODELS.values()]


def _make_keys(out: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    priv, pub = out / "keys" / "bench-p256.pem", out / "keys" / "bench-p256.pub.pem"
    priv.parent.mkdir(parents=True, exist_ok=True)
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


@contextlib.contextmanager
def keyless_setup(args: argparse.Namespace, out: Path) -> Iterator[tuple[KeylessMaterial | None, str]]:
    """Offline: a local Sigstore instance (our own) on 127.0.0.1; online: the public-good instance."""
    if "sigstore" not in args.methods:
        yield None, "keyless not selected"
        return
    if args.online:
        yield KeylessMaterial(None, args.identity, args.identity_provider, online_token), ""
        return
    try:
        from model_signing.sigstore_local import LocalSigstore
    except ImportError as exc:
        yield None, f"local Sigstore instance not available ({exc})"
        return
    with LocalSigstore() as instance:
        # the trust config lives in the instance's temporary state; copy it where the report can name it
        tc = out / "trust-config.json"
        shutil.copyfile(instance.trust_config_path, tc)
        yield KeylessMaterial(tc, BENCH_IDENTITY, instance.oidc_issuer,
                              lambda: instance.mint_token(BENCH_IDENTITY)), ""


def online_token() -> str | None:
    """An identity token for one public-good signing: a fresh one from ``$BENCH_TOKEN_COMMAND`` (e.g. a
    cloud metadata query; real tokens live minutes, a big run lasts longer), else ``$SIGSTORE_IDENTITY_TOKEN``,
    else None: each tool then finds ambient CI credentials itself."""
    command = os.environ.get("BENCH_TOKEN_COMMAND")
    if command:
        proc = subprocess.run(command, shell=True, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not proc.stdout.strip():
            raise SystemExit(f"error: BENCH_TOKEN_COMMAND failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout.strip()
    return os.environ.get("SIGSTORE_IDENTITY_TOKEN") or None


def _byte_compile() -> None:
    """Byte-compile this checkout, as ``pip install`` does for an installed package (and did for the peer).

    Without it, a run under ``PYTHONDONTWRITEBYTECODE=1`` would time our modules being compiled from
    source in every command while the peer's are loaded from ``.pyc`` files.
    """
    import compileall

    compileall.compile_dir(str(Path(__file__).resolve().parents[2] / "model_signing"), quiet=1)


def _slug(runner: Runner) -> str:
    return runner.label.replace(" ", "_").replace(".", "")


def shard_size_used(shard_size: int | None) -> int:
    """The shard size shards mode runs with, where the shards limit cuts the files: ``--shard-size``, else
    the tools' default (modelseal's ``DEFAULT_SHARD_SIZE``; model-signing 1.1.1 defaults to the same
    1,000,000,000 bytes, and neither tool is passed a size then)."""
    return shard_size or DEFAULT_SHARD_SIZE


def run(args: argparse.Namespace) -> Results:
    """Run the benchmark described by parsed ``args``; return what was measured."""
    from tqdm import tqdm

    out = Path(args.out).resolve()
    data_dir = Path(args.data_dir).resolve() if args.data_dir else out / "models"
    data_dir.mkdir(parents=True, exist_ok=True)
    mode = "online" if args.online else "offline"
    results = Results(describe(), {
        "command": args.command_line, "mode": mode, "size_factor": None if args.online else args.size_factor,
        "repeats": args.repeats, "processes": args.processes, "methods": args.methods, "modes": args.modes,
        "peer_modes": args.peer_modes, "ops": args.ops, "shard_size": args.shard_size, "cold": args.cold,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "data_dir": str(data_dir), "fixed_cost_model": FIXED_COST_MODEL})
    sources = online_sources(data_dir, args.cleanup) if args.online else offline_sources(data_dir, args.size_factor)
    if args.models:
        wanted = set(args.models)
        sources = [s for s in sources if s.name in wanted or s.family in wanted
                   or any(s.name.startswith(w) for w in wanted)]
    sources = with_fixed_cost_model(sources, data_dir)
    peer_python, peer_reason = None, ""
    try:
        from benchmarks.peer import ensure_peer_venv

        peer_python = ensure_peer_venv()
    except Exception as exc:  # noqa: BLE001 - reported as n/a for every peer case
        peer_reason = f"peer venv unavailable: {exc}"
    _byte_compile()
    private_key, public_key = _make_keys(out)
    runners = build_runners(args.methods, args.modes, args.peer_modes)
    ops = [op for op in OPS if op in args.ops]
    algos = sorted({r.hash_type for r in runners})
    # the raw limits to measure: each mode's own (runners.limit_for), and for sha256 every split, so the
    # report can show what whole files and shards cost against ranges
    limits = {limit_for(r.mode) for r in runners}
    if "sha256" in algos:
        limits |= {("sha256", "ranges"), ("sha256", "files"), ("sha256", "shards")}
    limit_shard_size = shard_size_used(args.shard_size)
    results.settings["limit_shard_size"] = limit_shard_size

    def wanted_op(runner: Runner, op: str) -> bool:
        # hashing alone does not depend on the signing method: measure it once per tool and mode
        return op != "digest" or runner.method == args.methods[0]

    per_model = sum(1 for r in runners for op in ops if wanted_op(r, op)) + 1
    meter = LimitMeter(args.processes)
    # cold runs: the most of a model's bytes found still cached right after an eviction (the proof it worked)
    residency: dict[str, int] = results.settings.setdefault("resident_after_evict_bytes", {}) if args.cold else {}

    def timed_start(model: str, files: list[Path]) -> None:
        if not args.cold:
            return
        pagecache.evict(files)
        left = pagecache.resident_bytes(files)
        residency[model] = max(residency.get(model, 0), left)
    try:
        with keyless_setup(args, out) as (keyless, keyless_reason), tqdm(
                total=len(sources) * args.repeats * per_model, unit="run", file=sys.stderr,
                disable=args.quiet, dynamic_ncols=True) as bar:
            ctx = Context(sys.executable, peer_python, private_key, public_key, keyless, args.shard_size)
            for src in sources:
                bar.set_description(f"{src.name}: preparing")
                try:
                    path = src.materialize()
                except Exception as exc:  # noqa: BLE001 - a model that cannot be had is reported, not fatal
                    _unobtainable(results, src, runners, ops, wanted_op=wanted_op,
                                  reason=f"could not get the model: {exc}")
                    bar.update(args.repeats * per_model)
                    continue
                files = model_files(path)
                info = ModelInfo(src.name, src.family, src.source, str(path),
                                 sum(f.stat().st_size for f in files), len(files))
                results.models.append(info)
                if not args.cold:
                    for algo in algos:
                        meter.measure(files, algo)  # untimed: warm the page cache and the workers
                done: set[tuple[str, str]] = set()  # (runner label, op) recorded as n/a or error
                for rep in range(args.repeats):
                    bar.set_description(f"{src.name} #{rep + 1}: raw limit")
                    bar.update(1)
                    for algo, split in sorted(limits, key=lambda lim: (lim[0], lim[1] != "ranges")):
                        timed_start(src.name, files)
                        results.limits.append(LimitRun(src.name, algo, args.processes, rep,
                                                       meter.measure(files, algo, split, limit_shard_size),
                                                       split))
                    for runner in runners if rep % 2 == 0 else list(reversed(runners)):
                        signed = False
                        for op in ops:
                            if not wanted_op(runner, op):
                                continue
                            bar.set_description(f"{src.name} #{rep + 1}: {runner.label} {op}")
                            bar.update(1)  # counted up front: the loop body has several exits
                            if (runner.label, op) in done:
                                continue
                            reason = (peer_reason if runner.tool != OURS and peer_reason else "") or (
                                keyless_reason if runner.method == "sigstore" and keyless is None else "") or (
                                runner.unavailable(ctx, op) or "")
                            if not reason and op == "verify" and not signed:
                                reason = "no signature to verify (sign did not run)"
                            if reason:
                                results.runs.append(Run(src.name, runner.tool, runner.method, runner.mode, op,
                                                        -1, "n/a", note=reason))
                                done.add((runner.label, op))
                                continue
                            sig = out / "signatures" / src.name / f"{_slug(runner)}.sig"
                            sig.parent.mkdir(parents=True, exist_ok=True)
                            if op == "sign":
                                sig.unlink(missing_ok=True)
                            cmd = runner.command(op, path, sig, ctx)
                            log = out / "logs" / src.name / f"{_slug(runner)}.{op}.{rep}.log"
                            timed_start(src.name, files)
                            res = run_child(cmd, ROOT, log)
                            if res.returncode != 0:
                                note = f"exit {res.returncode}: {res.stderr_tail}"
                                results.runs.append(Run(src.name, runner.tool, runner.method, runner.mode, op,
                                                        rep, "error", res.wall_s, res.peak_rss_bytes, note))
                                done.add((runner.label, op))
                                print(f"\n{runner.label} {op} failed on {src.name}: {note}\n  command: "
                                      f"{shlex.join(_redact(cmd))}", file=sys.stderr)
                                continue
                            signed = signed or op == "sign"
                            results.runs.append(Run(src.name, runner.tool, runner.method, runner.mode, op, rep,
                                                    "ok", res.wall_s, res.peak_rss_bytes))
                left = residency.get(src.name, 0)
                if left > info.size_bytes // 100:
                    print(f"\n{src.name}: eviction left {left} of {info.size_bytes} bytes cached (tmpfs?): "
                          "its --cold figures are partly warm", file=sys.stderr)
                if src.remove is not None:
                    src.remove()
    finally:
        meter.close()
    return results


def _unobtainable(results: Results, src: ModelSource, runners: list[Runner], ops: list[str], *,
                  wanted_op: Callable[[Runner, str], bool], reason: str) -> None:
    print(f"\n{src.name}: {reason}", file=sys.stderr)
    results.models.append(ModelInfo(src.name, src.family, src.source, "", 0, 0))
    results.runs.extend(Run(src.name, r.tool, r.method, r.mode, op, -1, "n/a", note=reason)
                        for r in runners for op in ops if wanted_op(r, op))


def _redact(cmd: list[str]) -> list[str]:
    out, hide = [], False
    for word in cmd:
        out.append("<token>" if hide else word)
        hide = word in ("--identity-token", "--identity_token")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see ``python -m benchmarks.harness --help``)."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.harness",
        description="Benchmark modelseal against model-signing 1.1.1 on HF, TF Hub, PyTorch Hub and ONNX models.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--offline", action="store_true", help="real models from PyPI packages + generated "
                       "layouts, keyless against a local Sigstore instance (the default)")
    where.add_argument("--online", action="store_true", help="fetch real models from their hubs, keyless "
                       "against the public-good instance (needs --identity and --identity-provider)")
    p.add_argument("--size-factor", type=float, default=0.1, help="scale of the generated layouts (1.0 = the "
                   "real sizes, e.g. 28.9 GB for the falcon-7b-like layout; default 0.1)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per case (default 3)")
    p.add_argument("--out", default="out/bench", help="report folder (default out/bench)")
    p.add_argument("--data-dir", default=os.environ.get("BENCH_DATA"),
                   help="where models are generated or fetched (default $BENCH_DATA or OUT/models)")
    p.add_argument("--models", type=_csv, default=None,
                   help=f"comma list of model names, name prefixes or families to run (default all; "
                   f"{FIXED_COST_MODEL} always runs: it measures each command's fixed cost)")
    p.add_argument("--methods", type=_csv, default=None, help=f"signing methods, from {','.join(METHODS)} "
                   "(default: both offline, sigstore online)")
    p.add_argument("--modes", type=_csv, default=list(OUR_MODES), help="this project's modes (default "
                   "files,shards,blake3)")
    p.add_argument("--peer-modes", type=_csv, default=["files"], help=f"the peer's modes, from "
                   f"{','.join(PEER_MODES)} (default files: what its CLI does; others use its Python API)")
    p.add_argument("--ops", type=_csv, default=list(OPS), help="operations (default sign,verify,digest)")
    p.add_argument("--processes", type=int, default=len(os.sched_getaffinity(0)),
                   help="processes for the raw read+hash limit (default: CPUs)")
    p.add_argument("--shard-size", type=int, default=None, help="shard size for shards mode (default: the "
                   "tools' default, 1 GB)")
    p.add_argument("--identity", default=None, help="online: the signer identity to verify (e.g. an email)")
    p.add_argument("--identity-provider", default=None, help="online: the identity's OIDC issuer URL")
    p.add_argument("--cleanup", action="store_true", help="online: delete each model after its run")
    p.add_argument("--cold", action="store_true", help="evict each model's files from the page cache "
                   "(posix_fadvise DONTNEED, no privileges needed) before every timed run, the raw limit's too, "
                   "instead of warming it: reads come from the disk")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--report-only", action="store_true", help="re-render the reports from OUT/results.json")
    args = p.parse_args(argv)
    if args.methods is None:
        args.methods = ["sigstore"] if args.online else list(METHODS)
    for name, values, allowed in (("--methods", args.methods, METHODS), ("--modes", args.modes, OUR_MODES),
                                  ("--peer-modes", args.peer_modes, PEER_MODES), ("--ops", args.ops, OPS)):
        bad = [v for v in values if v not in allowed]
        if bad:
            p.error(f"{name}: unknown {', '.join(bad)}; choose from {', '.join(allowed)}")
    if args.online and "sigstore" in args.methods and not (args.identity and args.identity_provider):
        p.error("--online keyless runs need --identity and --identity-provider")
    counts = (args.repeats, args.processes, 1 if args.shard_size is None else args.shard_size)
    if min(counts) < 1 or args.size_factor <= 0:
        p.error("--repeats, --processes and --shard-size must be >= 1 and --size-factor > 0")
    args.command_line = "python -m benchmarks.harness " + shlex.join(argv if argv is not None else sys.argv[1:])
    return args


def _csv(text: str) -> list[str]:
    return [w.strip() for w in text.split(",") if w.strip()]


def main(argv: list[str] | None = None) -> int:
    """Run the harness and write the reports; print where they are."""
    args = parse_args(argv)
    results = load(Path(args.out) / "results.json") if args.report_only else run(args)
    paths = write_all(results, Path(args.out))
    failed = [r for r in results.runs if r.status == "error"]
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    if failed:
        print(f"{len(failed)} case(s) failed; see the 'Not measured' section of {paths['markdown']}",
              file=sys.stderr)
    return 0
