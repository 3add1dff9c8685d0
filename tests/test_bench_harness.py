"""The benchmark harness, offline, at a tiny size factor (seconds, not a benchmark: no timed assertions).

Checks that every family is generated with its real structure (read back with the formats' own readers:
safetensors, torch, onnx, protobuf, torch.hub), that both tools are driven (key and keyless), and that
the report files are produced and parse.
"""

from __future__ import annotations

import ast
import base64
import csv
import hashlib
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.harness import bench, families, pagecache, realmodels
from benchmarks.harness.machine import Machine, describe
from benchmarks.harness.measure import LIMIT_BATCH, LimitMeter, limit_tasks, run_child
from benchmarks.harness.report import LimitRun, ModelInfo, Results, Run, summarize
from benchmarks.harness.runners import OURS, PEER, Context, OurRunner

FACTOR = 0.0002
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N_MODELS = len(families.LAYOUTS) + len(realmodels.REAL_MODELS)


@pytest.fixture(scope="module")
def key_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One offline run: every model, both tools, key signing, files mode, sign + verify."""
    out = tmp_path_factory.mktemp("bench")
    code = bench.main(["--offline", "--size-factor", str(FACTOR), "--repeats", "1", "--out", str(out),
                       "--data-dir", str(out / "models"), "--methods", "key", "--modes", "files",
                       "--peer-modes", "files", "--ops", "sign,verify", "--quiet"])
    assert code == 0
    return out


def _results(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "results.json").read_text())
    return data


def _model(out: Path, prefix: str) -> dict[str, Any]:
    matches: list[dict[str, Any]] = [m for m in _results(out)["models"] if m["name"].startswith(prefix)]
    assert len(matches) == 1, prefix
    return matches[0]


def _unknown_fields(data: bytes) -> list[tuple[int, int, Any]]:
    """Top-level (field number, wire type, value) of any protobuf message, parsed by the protobuf runtime."""
    from google.protobuf import empty_pb2, unknown_fields  # type: ignore[import-untyped]

    msg = empty_pb2.Empty()
    msg.ParseFromString(data)
    return [(f.field_number, f.wire_type, f.data) for f in unknown_fields.UnknownFieldSet(msg)]


def test_huggingface_layouts(key_run: Path) -> None:
    import torch
    from safetensors import safe_open

    root = Path(_model(key_run, "hf-falcon-7b-like")["path"])
    names = sorted(p.name for p in root.iterdir())
    assert [n for n in names if n.endswith(".bin")] == [f"pytorch_model-0000{i}-of-00002.bin" for i in (1, 2)]
    assert [n for n in names if n.endswith(".safetensors")] == [
        f"model-{i:05d}-of-00008.safetensors" for i in range(1, 9)]
    for required in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                     "model.safetensors.index.json", "pytorch_model.bin.index.json", ".gitattributes"):
        assert required in names
    assert json.loads((root / "tokenizer.json").read_text())["model"]["type"] == "BPE"
    expected_names = {name for name, _ in families.falcon_tensors()}
    for index_name, suffix in (("model.safetensors.index.json", ".safetensors"),
                               ("pytorch_model.bin.index.json", ".bin")):
        index = json.loads((root / index_name).read_text())
        assert set(index["weight_map"]) == expected_names
        total = 0
        for shard in sorted({f for f in index["weight_map"].values()}):
            assert shard.endswith(suffix)
            if suffix == ".safetensors":
                with safe_open(root / shard, "pt") as fh:
                    keys = set(fh.keys())
                    tensors = [fh.get_tensor(k) for k in keys]
            else:
                state = torch.load(root / shard, weights_only=True)
                keys, tensors = set(state), list(state.values())
            assert keys == {k for k, v in index["weight_map"].items() if v == shard}
            assert all(t.dtype == torch.bfloat16 for t in tensors)
            total += sum(t.numel() * 2 for t in tensors)
        assert index["metadata"]["total_size"] == total

    minilm = Path(_model(key_run, "hf-all-minilm-l6-v2")["path"])
    for required in ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "1_Pooling/config.json"):
        assert (minilm / required).is_file()
    with safe_open(minilm / "model.safetensors", "pt") as fh:
        assert any(k.endswith("embeddings.word_embeddings.weight") for k in fh.keys())  # noqa: SIM118 - safe_open is no dict


def test_tf_savedmodel_layout(key_run: Path) -> None:
    root = Path(_model(key_run, "tf-bertseq2seq-like")["path"])
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        "assets/vocab.txt", "fingerprint.pb", "saved_model.pb", "variables/variables.data-00000-of-00001",
        "variables/variables.index"]
    top = _unknown_fields((root / "saved_model.pb").read_bytes())
    assert [(n, w) for n, w, _ in top] == [(1, 0), (2, 2)] and top[0][2] == 1  # schema version, meta graph
    meta_graph = _unknown_fields(top[1][2])
    assert [n for n, _, _ in meta_graph] == [1, 2]  # meta_info_def, graph_def
    meta_info = _unknown_fields(meta_graph[0][2])
    assert (4, 2, b"serve") in meta_info
    graph_nodes = [n for n, _, _ in _unknown_fields(meta_graph[1][2])]
    assert graph_nodes.count(1) == len(families.bertseq2seq_variables()) + 1  # VarHandleOps + a Const
    fingerprint = _unknown_fields((root / "fingerprint.pb").read_bytes())
    assert [n for n, _, _ in fingerprint] == [1, 2, 3, 4, 5, 6]
    index = (root / "variables" / "variables.index").read_bytes()
    assert index[-8:] == (0xDB4775248B80FB57).to_bytes(8, "little")  # leveldb table magic
    data_size = (root / "variables" / "variables.data-00000-of-00001").stat().st_size
    expected = sum(math.prod((max(1, round(s[0] * FACTOR)), *s[1:]) if len(s) > 1 else s) * 4
                   for _, s in families.bertseq2seq_variables())
    assert data_size == expected


def test_pytorch_hub_layouts(key_run: Path) -> None:
    import torch

    yolop = _model(key_run, "torchhub-yolop-like")
    root = Path(yolop["path"])
    hubconf = ast.parse((root / "hubconf.py").read_text())
    assigned = [t.id for n in hubconf.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)]
    assert "dependencies" in assigned
    assert any(isinstance(n, ast.FunctionDef) and n.name == "yolop" for n in hubconf.body)
    for rel in families.YOLOP_CODE:
        if rel.endswith(".py"):
            ast.parse((root / rel).read_text())  # the repo's code is valid Python
    state = torch.load(root / "weights" / "End-to-end.pth", weights_only=True)
    assert len(state) == len(families.yolop_tensors())
    assert (root / ".git" / "HEAD").is_file() and (root / ".gitignore").is_file()
    on_disk = [p for p in root.rglob("*") if p.is_file()]
    hashed = [p for p in on_disk if p.relative_to(root).parts[0] not in (".git", ".gitignore")]
    assert yolop["files"] == len(hashed) < len(on_disk)  # a clone's .git is not part of the model

    tiny = Path(_model(key_run, "torchhub-tinynet")["path"])
    model = torch.hub.load(str(tiny), "tinynet", source="local", trust_repo=True)  # type: ignore[no-untyped-call]
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    assert "2.13.0" in (tiny / "weights" / "VERSION").read_text()


def test_onnx_layouts(key_run: Path) -> None:
    import onnx

    generated = _model(key_run, "onnx-roberta-base-11-like")
    path = Path(generated["path"])
    assert path.is_file() and path.suffix == ".onnx" and generated["files"] == 1
    onnx.checker.check_model(str(path))
    model = onnx.load(str(path))
    assert len(model.graph.initializer) == len(families.roberta_tensors())
    assert model.opset_import[0].version == 11
    real = Path(_model(key_run, "onnx-resnet50-light")["path"])
    onnx.checker.check_model(onnx.load(str(real)))


def test_both_tools_driven(key_run: Path) -> None:
    summary = _results(key_run)["summary"]
    for tool in (OURS, PEER):
        for op in ("sign", "verify"):
            rows = [s for s in summary if s["tool"] == tool and s["op"] == op]
            assert len(rows) == N_MODELS
            assert all(s["status"] == "ok" and s["min_s"] > 0 and s["peak_rss_mb"] > 0 for s in rows), rows
    sigs = sorted((key_run / "signatures").rglob("*.sig"))
    assert len(sigs) == 2 * N_MODELS
    for sig in sigs:
        assert json.loads(sig.read_text())["mediaType"].startswith("application/vnd.dev.sigstore.bundle")


def _signed_digests(sig: Path) -> dict[str, str]:
    statement = json.loads(base64.b64decode(json.loads(sig.read_text())["dsseEnvelope"]["payload"]))
    return {r["name"]: r["digest"] for r in statement["predicate"]["resources"]}


def test_both_tools_signed_the_same_files(key_run: Path) -> None:
    """Per model, both tools' signatures cover exactly the files on disk (minus a clone's git files), with
    the digests hashlib computes here, and the reported size and file count are those files'."""
    git = {".git", ".gitattributes", ".github", ".gitignore"}
    for model in _results(key_run)["models"]:
        path = Path(model["path"])
        if path.is_file():
            files = {path.name: path}
        else:
            files = {p.relative_to(path).as_posix(): p for p in path.rglob("*")
                     if p.is_file() and p.relative_to(path).parts[0] not in git}
        expected = {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in files.items()}
        assert (model["files"], model["size_bytes"]) == (len(files), sum(p.stat().st_size for p in files.values()))
        ours, peer = (key_run / "signatures" / model["name"] / "modelseal_key_files.sig",
                      key_run / "signatures" / model["name"] / "model-signing_111_key_files.sig")
        assert _signed_digests(ours) == expected, model["name"]
        peer_digests = _signed_digests(peer)
        if path.is_file():  # the peer names a single-file model's one resource "."
            assert list(peer_digests.values()) == list(expected.values()), model["name"]
        else:
            assert peer_digests == expected, model["name"]


def test_child_peak_rss_is_the_commands_own(tmp_path: Path) -> None:
    """Peak RSS is the command's process tree's (a worker it waits for counts), never the harness's own."""
    mib = 2**20
    ballast = b"x" * (300 * mib)  # the harness is big: a fork+wait4 from here would report >= 300 MiB
    small = run_child(["true"], tmp_path, tmp_path / "true.log")
    assert small.returncode == 0 and 0 < small.peak_rss_bytes < 100 * mib, small
    alloc = "b = b'x' * (200 * 2**20)"
    child = run_child([sys.executable, "-c", alloc], tmp_path, tmp_path / "child.log")
    assert child.returncode == 0 and child.peak_rss_bytes >= 200 * mib and child.wall_s > 0, child
    worker = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {alloc!r}], check=True)"
    tree = run_child([sys.executable, "-c", worker], tmp_path, tmp_path / "tree.log")
    assert tree.returncode == 0 and tree.peak_rss_bytes >= 200 * mib, tree
    failed = run_child([sys.executable, "-c", "import sys; sys.exit('no model here')"], tmp_path,
                       tmp_path / "fail.log")
    assert failed.returncode == 1 and "no model here" in failed.stderr_tail
    missing = run_child([str(tmp_path / "no-such-tool")], tmp_path, tmp_path / "missing.log")
    assert missing.returncode != 0 and "no-such-tool" in missing.stderr_tail
    assert len(ballast) == 300 * mib


def test_reports_parse(key_run: Path) -> None:
    results = _results(key_run)
    assert results["machine"]["cores"] >= 1 and results["machine"]["ram_bytes"] > 0
    assert len(results["models"]) == N_MODELS
    assert {lim["algo"] for lim in results["limits"]} == {"sha256"}
    with (key_run / "runs.csv").open() as fh:
        runs = list(csv.DictReader(fh))
    timed = [r for r in runs if r["tool"] in (OURS, PEER)]
    assert len(timed) == N_MODELS * 2 * 2 and all(float(r["wall_s"]) > 0 for r in timed)
    with (key_run / "summary.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == N_MODELS * 2 * 2
    md = (key_run / "results.md").read_text()
    assert "| machine | model | size |" in md and "sign time | verify time" in md
    assert all(f"| {m['name']} |" in md for m in results["models"])
    png = (key_run / "plot.png").read_bytes()
    assert png[:8] == PNG_MAGIC and len(png) > 10_000


def test_keyless_both_tools(tmp_path: Path) -> None:
    """Keyless signing against the local Sigstore instance, every mode of both tools, on one real model."""
    out = tmp_path / "keyless"
    assert bench.main(["--offline", "--models", "onnx-resnet50-light", "--repeats", "1", "--out", str(out),
                       "--data-dir", str(tmp_path / "models"), "--methods", "sigstore", "--ops", "sign,verify",
                       "--peer-modes", "files,shards,blake3", "--quiet"]) == 0
    summary = _results(out)["summary"]
    got = {(s["tool"], s["mode"], s["op"]): s["status"] for s in summary}
    assert got == {(tool, m, op): "ok" for tool in (OURS, PEER) for m in ("files", "shards", "blake3")
                   for op in ("sign", "verify")}
    bundle = json.loads((out / "signatures" / "onnx-resnet50-light" / "modelseal_sigstore_files.sig").read_text())
    assert bundle["verificationMaterial"]["tlogEntries"]  # a real Rekor entry from the local instance


def test_missing_command_is_reported_not_run(tmp_path: Path) -> None:
    """A runner whose CLI command does not exist yet is "n/a" with the reason (here: a CLI that fails)."""
    key = tmp_path / "k.pem"
    ctx = Context("/bin/false", None, key, key, None)
    reason = OurRunner(OURS, "key", "files").unavailable(ctx, "sign")
    assert reason is not None and "main.py sign key" in reason and "not available" in reason
    assert OurRunner(OURS, "sigstore", "files").unavailable(ctx, "sign") is not None


def test_machine_description_from_proc(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nmodel name\t: Test CPU  9000\n")
    (tmp_path / "meminfo").write_text("MemTotal:       2048 kB\nMemFree: 1 kB\n")
    machine = describe(tmp_path)
    assert machine.cpu_model == "Test CPU 9000" and machine.ram_bytes == 2048 * 1024


def test_raw_limit_hashes_every_byte_once_on_every_process(tmp_path: Path) -> None:
    """The limit's work covers each file exactly once, splits a lone big file across the processes (else a
    tool with small shards beats the "limit"), and batches small files without hiding big ones in a batch."""
    sizes = {"big.bin": 3 * LIMIT_BATCH + 5, "mid.bin": LIMIT_BATCH, "empty.bin": 0}
    sizes |= {f"small/{i:03d}.bin": 1000 + i for i in range(300)}
    for rel, size in sizes.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"\0" * size)
    files = sorted(tmp_path / rel for rel in sizes)
    total = sum(sizes.values())
    for processes in (1, 2, 3):
        tasks = limit_tasks(files, processes)
        covered: dict[str, list[tuple[int, int]]] = {}
        for path, start, end in (r for task in tasks for r in task):
            covered.setdefault(path, []).append((start, end))
        for rel, size in sizes.items():
            spans = sorted(covered[str(tmp_path / rel)])
            assert spans[0][0] == 0 and spans[-1][1] == size
            assert all(a[1] == b[0] for a, b in itertools.pairwise(spans)), (rel, spans)
        assert all(end - start <= -(-total // processes) for task in tasks for _, start, end in task)
        task_bytes = [sum(end - start for _, start, end in task) for task in tasks]
        big = [n for n in task_bytes if n > LIMIT_BATCH]
        assert big == sorted(big, reverse=True) and task_bytes[: len(big)] == big  # largest first
        assert all(len(task) == 1 for task in tasks if sum(e - s for _, s, e in task) > LIMIT_BATCH)
        assert len(tasks) < len(files) // 2  # 300 small files do not cost 300 pool round trips
    assert len([r for task in limit_tasks([tmp_path / "big.bin"], 2) for r in task]) == 2
    meter = LimitMeter(2)
    try:
        assert meter.measure(files, "sha256") > 0 and meter.measure(files, "blake3") > 0
    finally:
        meter.close()


def test_summary_figures() -> None:
    """Min and median over the repeats, GB/s and MB in powers of ten, 'of limit' from the fastest limit run,
    the largest peak RSS; a case with a failed repeat is "partial" and keeps its note."""
    results = Results(Machine("cpu", 2, 2**30, "Linux", "3.11", "host"), {},
                      [ModelInfo("m", "onnx", "test", "/m", 3_000_000_000, 2)],
                      [Run("m", OURS, "key", "files", "sign", 0, "ok", 2.0, 50_000_000),
                       Run("m", OURS, "key", "files", "sign", 1, "ok", 1.5, 70_000_000),
                       Run("m", OURS, "key", "files", "sign", 2, "ok", 1.75, 60_000_000),
                       Run("m", PEER, "key", "blake3", "sign", 0, "ok", 4.0, 1_000_000),
                       Run("m", PEER, "key", "blake3", "sign", 1, "error", 0.5, 1_000_000, "exit 1: boom")],
                      [LimitRun("m", "sha256", 2, 0, 1.2), LimitRun("m", "sha256", 2, 1, 0.75),
                       LimitRun("m", "blake3", 2, 0, 0.5)])
    ours, peer = summarize(results)
    assert (ours.status, ours.n, ours.min_s, ours.median_s) == ("ok", 3, 1.5, 1.75)
    assert ours.gbps == pytest.approx(2.0) and ours.peak_rss_mb == pytest.approx(70.0)
    assert ours.of_limit == pytest.approx(0.5)  # 0.75 s raw sha256 limit / 1.5 s
    assert (peer.status, peer.n, peer.min_s, peer.note) == ("partial", 1, 4.0, "exit 1: boom")
    assert peer.of_limit == pytest.approx(0.125)  # the blake3 limit for the blake3 mode


def _fs_type(path: Path) -> str:
    """The filesystem type of the mount holding ``path`` (longest mount point prefix in /proc/self/mounts)."""
    best, kind = "", ""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, mount, fstype, *_ = line.split()
        if (str(path) + "/").startswith(mount.rstrip("/") + "/") and len(mount) >= len(best):
            best, kind = mount, fstype
    return kind


@pytest.fixture
def disk_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on a disk-backed filesystem: tmpfs pages cannot be evicted (they have nowhere to go)."""
    if _fs_type(tmp_path.resolve()) not in ("tmpfs", "ramfs"):
        yield tmp_path
        return
    root = Path(__file__).resolve().parents[1]
    path = Path(tempfile.mkdtemp(prefix=".pagecache-test-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_cold_eviction_drops_exactly_the_given_files(disk_dir: Path) -> None:
    """Eviction empties the page cache of the given files only, dirty (just written) pages included, and the
    residency measure follows real reads: a whole re-read, and a 1 MiB read with readahead off."""
    page = os.sysconf("SC_PAGE_SIZE")
    mib = 2**20
    sizes = {"big.bin": 8 * mib + 123, "small.json": 5000, "empty.txt": 0, "other.bin": 4 * mib}
    for name, size in sizes.items():
        (disk_dir / name).write_bytes(os.urandom(size))  # dirty pages: not yet written back
    paths = {name: disk_dir / name for name in sizes}
    for path in paths.values():
        path.read_bytes()
    assert pagecache.resident_bytes(paths.values()) == sum(sizes.values())
    if shutil.which("fincore"):  # util-linux's own mincore reading, in whole pages
        out = subprocess.run(["fincore", "--bytes", "--raw", "--noheadings", "-o", "RES", str(paths["big.bin"])],
                             capture_output=True, text=True, check=True).stdout
        assert int(out) == -(-sizes["big.bin"] // page) * page
    model = [paths["big.bin"], paths["small.json"], paths["empty.txt"]]
    pagecache.evict(model)
    assert pagecache.resident_bytes(model) == 0
    assert pagecache.resident_bytes([paths["other.bin"]]) == sizes["other.bin"]  # not in the list: kept
    if shutil.which("fincore"):
        out = subprocess.run(["fincore", "--bytes", "--raw", "--noheadings", "-o", "RES", str(paths["big.bin"])],
                             capture_output=True, text=True, check=True).stdout
        assert int(out) == 0
    fd = os.open(paths["big.bin"], os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead: exactly the pages read come in
        assert len(os.pread(fd, mib, 2 * mib)) == mib
    finally:
        os.close(fd)
    assert pagecache.resident_bytes([paths["big.bin"]]) == mib
    assert len(paths["big.bin"].read_bytes()) == sizes["big.bin"]
    assert pagecache.resident_bytes(model) == sizes["big.bin"]  # small.json was not read again


def test_cold_run_evicts_before_every_timed_run(disk_dir: Path) -> None:
    """``--cold``: no warm-up, and every eviction (also those right after a command read the model) left
    nothing cached; the report says the runs were cold."""
    out = disk_dir / "cold"
    assert bench.main(["--offline", "--cold", "--models", "onnx-resnet50-light", "--repeats", "2", "--out",
                       str(out), "--data-dir", str(disk_dir / "models"), "--methods", "key", "--modes", "files",
                       "--peer-modes", "files", "--ops", "sign,verify", "--quiet"]) == 0
    results = _results(out)
    assert results["settings"]["cold"] is True
    assert results["settings"]["resident_after_evict_bytes"] == {"onnx-resnet50-light": 0}
    assert {(s["tool"], s["op"], s["status"], s["n"]) for s in results["summary"]} == {
        (tool, op, "ok", 2) for tool in (OURS, PEER) for op in ("sign", "verify")}
    assert len(results["limits"]) == 2
    # the last command read the model back in, so an eviction that did nothing would have been seen
    model = Path(_model(out, "onnx-resnet50-light")["path"])
    assert pagecache.resident_bytes([model]) == model.stat().st_size
    md = (out / "results.md").read_text()
    assert "cold: each model's files evicted from the page cache" in md and "warm page cache" not in md


@pytest.mark.parametrize("bad", [["--shard-size", "0"], ["--shard-size", "-5"], ["--repeats", "0"],
                                 ["--size-factor", "0"], ["--methods", "key,gpg"]])
def test_bad_options_are_one_usage_error(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(bad)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("python -m benchmarks.harness: error: ") and "Traceback" not in "".join(err)
