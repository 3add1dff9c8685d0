"""Dask executor vs the local executor on the same data: throughput and the cost of one work item.

    python -m benchmarks.bench_dask [--gb 2] [--repeats 3] [--shard-mib 4,64,256] [--json out.json]

Starts a real local cluster (``dask scheduler`` + 2 ``dask worker`` processes, one thread each, on
127.0.0.1), writes ``--gb`` GB of pseudo-random data as 8 files (warm page cache), then for each shard
size, alternating the two executors in every repeat, hashes the model with ``shards`` serialization
through the API (``hash_model``): ``local`` = the fork pool with 2 workers, ``dask`` = ``DaskExecutor``.
The manifests must be equal.  Fewer bytes per item = more items for the same bytes, so the slope of time
over item count gives the per-item overhead of each executor:

    overhead per item = (t(small shards) - t(large shards)) / (items(small) - items(large))

Reported: min and median seconds, GB/s (from the min), items; the local per-item overhead (slope of the
min times) and the Dask executor's extra cost per item over local (slope of the paired, same-repeat
differences dask - local, which cancels noise common to both), plus its fixed extra (connect, start).
On this 2-core machine the scheduler, both workers and the client
share the two cores, so the figures are the cost of the machinery, not a cluster's speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GB = 1_000_000_000
MiB = 1024 * 1024


def _data(root: Path, total: int) -> Path:
    model = root / f"model-{total}"
    stamp = model / ".done"
    if stamp.exists():
        return model
    shutil.rmtree(model, ignore_errors=True)
    model.mkdir(parents=True)
    per = total // 8
    block = os.urandom(16 * MiB)
    for i in range(8):
        with (model / f"part-{i}.bin").open("wb") as f:
            left = per
            n = 0
            while left > 0:
                chunk = block[: min(left, len(block))]
                f.write(i.to_bytes(4, "little") + n.to_bytes(4, "little") + chunk[8:])
                left -= len(chunk)
                n += 1
    stamp.write_text("ok")
    return model


def _cluster(tmp: Path) -> tuple[str, list[subprocess.Popen[bytes]]]:
    dask = shutil.which("dask", path=os.path.dirname(sys.executable)) or shutil.which("dask")
    if dask is None:
        raise SystemExit("the dask command is missing: pip install 'modelseal[dask]'")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sched_file = tmp / "scheduler.json"
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(sched_file)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    while not sched_file.exists() or not sched_file.read_text().strip().endswith("}"):
        time.sleep(0.1)
    for i in range(2):
        procs.append(subprocess.Popen([dask, "worker", "--scheduler-file", str(sched_file), "--nthreads", "1",
                                       "--no-dashboard", "--host", "127.0.0.1", "--no-nanny", "--name", f"w{i}"],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    address: str = json.loads(sched_file.read_text())["address"]
    from distributed import Client

    with Client(address, timeout=30, set_as_default=False) as c:
        c.wait_for_workers(2, timeout=60)
    return address, procs


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table (and write JSON with ``--json``)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shard-mib", default="4,64,256", help="shard sizes in MiB (comma-separated)")
    ap.add_argument("--data-dir", default="/tmp/modelseal-bench-dask")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    import model_signing as ms
    from model_signing.hashing._dask import DaskExecutor

    model = _data(Path(args.data_dir), int(args.gb * GB))
    total = sum(p.stat().st_size for p in model.glob("*.bin"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-dask-"))
    address, procs = _cluster(tmp)
    rows: list[dict[str, object]] = []
    paired: dict[int, dict[str, list[float]]] = {}
    try:
        for mib in (int(x) for x in args.shard_mib.split(",")):
            shard = mib * MiB
            times: dict[str, list[float]] = {"local": [], "dask": []}
            connect: list[float] = []
            items = 0
            for _ in range(args.repeats):
                manifests = {}
                for name in ("local", "dask"):
                    executor = DaskExecutor(address) if name == "dask" else None
                    cfg = ms.HashingConfig(method="shards", shard_size=shard, max_workers=2, executor=executor,
                                           progress=False)
                    t0 = time.perf_counter()
                    manifests[name] = ms.hash_model(model, cfg)
                    times[name].append(time.perf_counter() - t0)
                    if isinstance(executor, DaskExecutor):
                        connect.append(executor.last_run["connect_s"])
                        items = int(executor.last_run["items"])
                if manifests["local"] != manifests["dask"]:
                    raise SystemExit(f"shard {mib} MiB: the Dask manifest differs from the local one")
            paired[items] = times
            for name, ts in times.items():
                rows.append({"executor": name, "shard_mib": mib, "items": items, "min_s": min(ts),
                             "median_s": statistics.median(ts), "gb_per_s": total / GB / min(ts),
                             **({"connect_s_median": statistics.median(connect)} if name == "dask" else {})})
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    # Per-item overhead.  Local: the slope of the min time over the item count.  Dask, relative to local:
    # the paired (same repeat) difference dask - local, whose slope over the item count cancels the noise
    # that hits both runs of a repeat alike.
    by = {(str(r["executor"]), int(str(r["items"]))): r for r in rows}
    counts = sorted({k for _, k in by})
    many, few = counts[-1], counts[0]
    overhead: dict[str, float] = {}
    if many > few:
        lo_many, lo_few = by[("local", many)], by[("local", few)]
        overhead["local_slope_of_min"] = (float(str(lo_many["min_s"])) - float(str(lo_few["min_s"]))) / (
            many - few) * 1000
        extra = {k: statistics.median(d - loc for d, loc in zip(paired[k]["dask"], paired[k]["local"], strict=True))
                 for k in (many, few)}
        overhead["dask_extra_over_local"] = (extra[many] - extra[few]) / (many - few) * 1000
        overhead["dask_fixed_extra_s"] = extra[few]
    print(f"{total / GB:.2f} GB in 8 files; shards; 2 local workers vs 2 Dask workers (1 thread each)")
    print(f"{'executor':8} {'shard MiB':>9} {'items':>6} {'min s':>7} {'median s':>8} {'GB/s':>6}")
    for r in rows:
        print(f"{r['executor']:8} {r['shard_mib']:>9} {r['items']:>6} {r['min_s']:>7.3f} {r['median_s']:>8.3f} "
              f"{r['gb_per_s']:>6.2f}")
    for name, value in overhead.items():
        print(f"{name}: {value:.3f} {'s' if name.endswith('_s') else 'ms per item'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"bytes": total, "rows": rows, "overhead_ms_per_item": overhead},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
