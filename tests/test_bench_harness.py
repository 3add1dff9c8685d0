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
from benchmarks.harness.measure import (
    LIMIT_BATCH,
    LIMIT_BATCH_FILES,
    LimitMeter,
    file_limit_tasks,
    limit_tasks,
    run_child,
    shard_limit_tasks,
)
from benchmarks.harness.report import (
    LimitRun,
    ModelInfo,
    Results,
    Run,
    Summary,
    load,
    markdown,
    share_noise,
    share_threshold,
    summarize,
    target_checks,
    write_all,
)
from benchmarks.harness.runners import OURS, PEER, Context, OurRunner, limit_for

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
        assert meter.measure(files, "sha256", "files") > 0
        assert meter.measure(files, "sha256", "shards", LIMIT_BATCH) > 0
        with pytest.raises(ValueError, match="unknown limit split"):
            meter.measure(files, "sha256", "bogus")
        with pytest.raises(ValueError, match="needs the shard size"):
            meter.measure(files, "sha256", "shards")
    finally:
        meter.close()


def test_whole_files_limit_never_splits_a_file(tmp_path: Path) -> None:
    """The files limit's work: every file exactly once as one range from byte 0 to its end (files
    serialization hashes a file with one sequential hasher), largest first, small files batched."""
    sizes = {"big.bin": 3 * LIMIT_BATCH + 5, "mid.bin": LIMIT_BATCH, "empty.bin": 0, "odd.bin": LIMIT_BATCH - 1}
    sizes |= {f"small/{i:03d}.bin": 1000 + i for i in range(300)}
    for rel, size in sizes.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"\0" * size)
    files = sorted(tmp_path / rel for rel in sizes)
    tasks = file_limit_tasks(files)
    ranges = [r for task in tasks for r in task]
    assert sorted(ranges) == sorted((str(tmp_path / rel), 0, size) for rel, size in sizes.items())
    assert [task for task in tasks if len(task) == 1][:2] == [[(str(tmp_path / "big.bin"), 0, 3 * LIMIT_BATCH + 5)],
                                                             [(str(tmp_path / "mid.bin"), 0, LIMIT_BATCH)]]
    task_bytes = [sum(end - start for _, start, end in task) for task in tasks]
    assert task_bytes[:2] == [3 * LIMIT_BATCH + 5, LIMIT_BATCH]  # the two big files first, alone
    for task in tasks[2:]:  # then batches of small files, none over the batch limits
        assert sum(e - s for _, s, e in task) <= LIMIT_BATCH and len(task) <= LIMIT_BATCH_FILES
    assert len(tasks) < len(files) // 2
    # the range limit, on the same files with 2 processes, does split the big file
    assert len([r for task in limit_tasks(files, 2) for r in task if r[0].endswith("big.bin")]) == 2
    assert file_limit_tasks(files) == tasks  # the split does not depend on the number of processes


def test_shards_limit_cuts_every_file_at_the_shard_size(tmp_path: Path) -> None:
    """The shards limit's work: every byte of every file exactly once, in the shards that shards serialization
    hashes (each file cut at the shard size), a task being one whole shard or a batch of whole small shards,
    never a range across a shard boundary, largest first; it does not depend on the number of processes."""
    shard = LIMIT_BATCH + 10  # shards at or over the batch limit are tasks alone, the tails under it batched
    sizes = {"two.bin": 2 * shard + 7, "one.bin": shard, "under.bin": shard - 3, "tiny.bin": 5, "empty.bin": 0}
    for rel, size in sizes.items():
        (tmp_path / rel).write_bytes(b"\1" * size)
    files = sorted(tmp_path / rel for rel in sizes)
    tasks = shard_limit_tasks(files, shard)

    def p(rel: str) -> str:
        return str(tmp_path / rel)

    expected_alone = [[(p("one.bin"), 0, shard)], [(p("two.bin"), 0, shard)], [(p("two.bin"), shard, 2 * shard)]]
    # under.bin's one shard (LIMIT_BATCH + 7 bytes) is over the batch limit too: alone, after the full shards
    expected_alone.append([(p("under.bin"), 0, shard - 3)])
    expected_batch = [(p("two.bin"), 2 * shard, 2 * shard + 7), (p("tiny.bin"), 0, 5), (p("empty.bin"), 0, 0)]
    assert sorted(tasks[:3]) == sorted(expected_alone[:3])  # the three full shards first (ties in any order)
    assert tasks[3:] == [expected_alone[3], expected_batch]
    ranges = [r for task in tasks for r in task]
    assert len(ranges) == len(set(ranges)) == 7
    for rel, size in sizes.items():  # every byte exactly once, each range inside one shard
        spans = sorted((s, e) for path, s, e in ranges if path == p(rel))
        assert spans[0][0] == 0 and spans[-1][1] == size
        assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
        assert all(s % shard == 0 and e - s <= shard and (e - s == shard or e == size) for s, e in spans)
    # the batch holds whole small shards only, within the batch limits
    assert sum(e - s for _, s, e in tasks[-1]) <= LIMIT_BATCH and len(tasks[-1]) <= LIMIT_BATCH_FILES
    # a file under one shard is one task however many processes: the range limit would split it
    assert shard_limit_tasks([tmp_path / "under.bin"], shard) == [[(p("under.bin"), 0, shard - 3)]]
    assert len([r for task in limit_tasks([tmp_path / "under.bin"], 2) for r in task]) == 2
    # a shard size of one byte: every byte its own shard, small shards batched up to LIMIT_BATCH_FILES each
    tiny = shard_limit_tasks([tmp_path / "tiny.bin"], 1)
    assert tiny == [[(p("tiny.bin"), i, i + 1) for i in range(5)]]
    with pytest.raises(ValueError, match="shard size"):
        shard_limit_tasks(files, 0)
    # the default the harness cuts at, without --shard-size, is the tools' default
    assert bench.shard_size_used(None) == 1_000_000_000 and bench.shard_size_used(4096) == 4096


def test_each_mode_is_held_to_its_formats_limit() -> None:
    assert limit_for("files") == ("sha256", "files")
    assert limit_for("shards") == ("sha256", "shards")
    assert limit_for("blake3") == ("blake3", "ranges")


def test_fixed_cost_model_always_runs(tmp_path: Path) -> None:
    sources = bench.offline_sources(tmp_path, 0.01)
    falcon = [s for s in sources if s.name.startswith("hf-falcon")]
    assert [s.name for s in bench.with_fixed_cost_model(falcon, tmp_path)] == [
        bench.FIXED_COST_MODEL, falcon[0].name]
    assert bench.with_fixed_cost_model(sources, tmp_path) == sources


def _share_results(*, shards: bool = True) -> Results:
    """Hand-made figures: a fixed-cost reference ("ref"), a 4 GB model ("big") and a too-small one ("mid");
    without ``shards``, the limits of results written before the shards limit existed."""
    def runs(model: str, tool: str, mode: str, op: str, *times: float) -> list[Run]:
        return [Run(model, tool, "key", mode, op, i, "ok", t, 1_000_000) for i, t in enumerate(times)]

    return Results(
        Machine("cpu", 2, 2**30, "Linux", "3.11", "host"), {"fixed_cost_model": "ref", "processes": 2},
        [ModelInfo("ref", "onnx", "test", "/ref", 80_000, 1), ModelInfo("big", "huggingface", "test", "/big",
                                                                       4_000_000_000, 2),
         ModelInfo("mid", "onnx", "test", "/mid", 100_000_000, 1)],
        [*runs("ref", OURS, "files", "sign", 0.30, 0.32, 0.34), *runs("ref", OURS, "files", "verify", 0.28, 0.29, 0.31),
         *runs("ref", OURS, "shards", "sign", 0.31, 0.35, 0.36),
         *runs("ref", OURS, "shards", "verify", 0.29, 0.30, 0.33),
         *runs("ref", OURS, "blake3", "sign", 0.30),  # one repeat: no spread, left out of δ
         *runs("ref", PEER, "files", "sign", 0.50, 0.55, 0.60), *runs("ref", PEER, "files", "verify", 0.45, 0.48, 0.50),
         *runs("big", OURS, "files", "sign", 2.90, 3.00, 3.10), *runs("big", OURS, "files", "verify", 3.10, 3.20, 3.30),
         *runs("big", OURS, "shards", "sign", 2.30, 2.40, 2.50),
         *runs("big", OURS, "shards", "verify", 2.50, 2.60, 2.70),
         *runs("big", OURS, "blake3", "sign", 1.40), *runs("big", OURS, "blake3", "verify", 1.30),
         *runs("big", PEER, "files", "sign", 3.20, 2.80, 3.40), *runs("big", PEER, "files", "verify", 3.00, 3.10, 3.60),
         *runs("mid", OURS, "files", "sign", 0.40, 0.42), *runs("mid", PEER, "files", "sign", 0.60, 0.70)],
        [LimitRun("big", "sha256", 2, 0, 1.9), LimitRun("big", "sha256", 2, 1, 2.0),
         LimitRun("big", "sha256", 2, 0, 2.4, "files"), LimitRun("big", "sha256", 2, 1, 2.6, "files"),
         LimitRun("big", "blake3", 2, 0, 1.0), LimitRun("mid", "sha256", 2, 0, 0.04),
         LimitRun("mid", "sha256", 2, 0, 0.06, "files"), LimitRun("ref", "sha256", 2, 0, 0.0001),
         LimitRun("ref", "sha256", 2, 0, 0.0002, "files"),
         *([LimitRun("big", "sha256", 2, 0, 2.1, "shards"), LimitRun("big", "sha256", 2, 1, 2.3, "shards"),
            LimitRun("mid", "sha256", 2, 0, 0.05, "shards"), LimitRun("ref", "sha256", 2, 0, 0.0002, "shards")]
           if shards else [])])


def _case(summary: list[Summary], model: str, tool: str, mode: str, op: str) -> Summary:
    (s,) = [s for s in summary if (s.model, s.tool, s.mode, s.op) == (model, tool, mode, op)]
    return s


def test_hashing_share_is_limit_over_time_beyond_the_fixed_cost() -> None:
    """hashing = min - the same command's min on the reference; share = the mode's own limit / hashing, for
    both tools alike; by median from the three medians."""
    results = _share_results()
    summary = summarize(results)
    files_sign = _case(summary, "big", OURS, "files", "sign")
    assert (files_sign.limit_split, files_sign.limit_s, files_sign.fixed_s) == ("files", 2.4, 0.30)
    assert files_sign.hashing_s == pytest.approx(2.60)  # 2.90 - 0.30
    assert files_sign.share == pytest.approx(2.4 / 2.6)  # the whole-files limit, not the 1.9 s range one
    assert files_sign.share_median == pytest.approx(2.5 / (3.00 - 0.32))  # median limit of 2.4 and 2.6
    assert files_sign.of_limit == pytest.approx(1.9 / 2.9)  # unchanged: range limit / whole command
    shards_verify = _case(summary, "big", OURS, "shards", "verify")
    assert (shards_verify.limit_split, shards_verify.limit_s, shards_verify.fixed_s) == ("shards", 2.1, 0.29)
    assert shards_verify.share == pytest.approx(2.1 / (2.50 - 0.29))  # the shards limit, not the range one
    assert shards_verify.share_median == pytest.approx(2.2 / (2.60 - 0.30))
    blake3_sign = _case(summary, "big", OURS, "blake3", "sign")
    assert blake3_sign.limit_s == 1.0 and blake3_sign.share == pytest.approx(1.0 / (1.40 - 0.30))
    blake3_verify = _case(summary, "big", OURS, "blake3", "verify")  # the reference has no blake3 verify
    assert blake3_verify.fixed_s is None and blake3_verify.share is None
    peer_sign = _case(summary, "big", PEER, "files", "sign")
    assert peer_sign.share == pytest.approx(2.4 / (2.80 - 0.50))  # the peer's own fixed cost
    assert peer_sign.share_median == pytest.approx(2.5 / (3.20 - 0.55))
    # δ: median of the reference's median - min spreads .02 .01 .04 .01 .05 .03 (the 1-repeat case left out)
    assert share_noise(results, summary) == pytest.approx(0.025)
    assert share_threshold(results, summary) == pytest.approx(0.25)
    no_ref = Results(results.machine, {}, results.models[1:], [r for r in results.runs if r.model != "ref"],
                     results.limits)
    assert all(s.share is None for s in summarize(no_ref))  # no model under 1 MB: no fixed cost, no share
    assert share_noise(no_ref, summarize(no_ref)) == 0.010  # the floor


def test_target_rows_share_and_median_speed() -> None:
    """Issue 16's rows: share >= 0.9 per case of ours (n/a on the reference and on a model under the
    threshold), and faster than the peer by median (min shown, not deciding)."""
    results = _share_results()
    summary = summarize(results)
    rows = {c.check: c for c in target_checks(results, summary)}
    big = "big: sign (key, files) hashing share >= 0.9"
    assert rows[big].target == "hashing share" and rows[big].verdict == "PASS"
    assert rows[big].measured == "0.92 (2.400 s files limit / 2.600 s hashing); by median 0.93"
    assert rows["big: verify (key, files) hashing share >= 0.9"].verdict == "FAIL"  # 2.4 / 2.82 = 0.85
    assert rows["big: sign (key, shards) hashing share >= 0.9"].verdict == "PASS"  # 2.1 / 1.99 = 1.06
    shards_verify = rows["big: verify (key, shards) hashing share >= 0.9"]
    assert shards_verify.verdict == "PASS"  # 2.1 / 2.21 = 0.95
    assert shards_verify.measured == "0.95 (2.100 s shards limit / 2.210 s hashing); by median 0.96"
    assert rows["big: sign (key, blake3) hashing share >= 0.9"].verdict == "PASS"  # 1.0 / 1.1 = 0.91
    assert rows["big: verify (key, blake3) hashing share >= 0.9"].verdict.startswith("n/a (no fixed cost")
    assert rows["mid: sign (key, files) hashing share >= 0.9"].verdict == "n/a (too small: 60 ms of hashing)"
    assert rows["ref: sign (key, files) hashing share >= 0.9"].verdict == "n/a (the fixed-cost reference)"
    sign = rows["big: sign (key, files) faster than the peer by median"]
    # by min the peer is faster (2.80 vs 2.90 s), by median ours is (3.00 vs 3.20 s): the median decides
    assert (sign.target, sign.measured, sign.verdict) == ("faster than the peer", "1.07x by median (0.97x by min)",
                                                          "PASS")
    verify = rows["big: verify (key, files) faster than the peer by median"]
    assert (verify.measured, verify.verdict) == ("0.97x by median (0.97x by min)", "FAIL")  # 3.10 / 3.20
    assert rows["mid: sign (key, files) faster than the peer by median"].measured == "1.59x by median (1.50x by min)"
    assert not [c for c in rows if "shards vs peer" in c or ("shards" in c and "peer" in c)]  # like for like only
    peer_rows = [c for c in rows.values() if c.target == "faster than the peer"]
    assert len(peer_rows) == 5 and sum(c.verdict == "PASS" for c in peer_rows) == 4
    md = markdown(results, summary)
    assert "## Targets (issue 16)" in md and "## Hashing share" in md and "## Other checks (issue 5)" in md
    assert "- Hashing share >= 0.9: 4 PASS, 1 FAIL, 7 n/a" in md
    assert "- Faster than the peer by median: 4 PASS, 1 FAIL, 0 n/a" in md
    assert "δ = 25 ms" in md and "10 x δ = 250 ms" in md
    assert ("| big | huggingface | test | 4.00 GB | 2 | 1.900 s (2.11 GB/s) | 2.400 s (1.67 GB/s) "
            "| 2.100 s (1.90 GB/s) | 1.000 s") in md
    assert "| sha256 shards |" in md and "no shards limit" not in md
    assert "`shards` (one sequential sha256 per shard) to the shards limit" in md
    assert "| big | modelseal | key | files | 2.400 files | 2.600 / 2.820 | 0.92 / 0.85 | 0.93 / 0.86 |" in md
    assert "| mid | modelseal |" not in md.split("## Hashing share")[1].split("## Raw")[0]
    assert "Too small to judge (a limit under 250 ms; their figures are in summary.csv): mid." in md


def test_reports_stay_readable_by_old_readers(tmp_path: Path) -> None:
    """New figures are added fields: old keys and CSV columns stay, and an old results.json (limits without a
    split) still loads, as range limits."""
    results = _share_results()
    write_all(results, tmp_path)
    doc = json.loads((tmp_path / "results.json").read_text())
    assert {"check", "measured", "verdict"} <= set(doc["targets"][0])
    assert {"min_s", "median_s", "of_limit", "share", "hashing_s", "fixed_s"} <= set(doc["summary"][0])
    with (tmp_path / "runs.csv").open() as fh:
        ops = {r["op"] for r in csv.DictReader(fh) if r["tool"] == "raw-limit"}
    assert ops == {"read+hash", "read+hash files", "read+hash shards"}
    for lim in doc["limits"]:
        if lim["split"] == "ranges":
            del lim["split"]
    (tmp_path / "results.json").write_text(json.dumps(doc))
    again = load(tmp_path / "results.json")
    assert again.limits == results.limits


def test_old_results_without_a_shards_limit_hold_shards_to_the_range_limit(tmp_path: Path) -> None:
    """A results.json written before the shards limit existed still loads and reports: shards mode falls back
    to the range limit (its bound then), and the report says so."""
    write_all(_share_results(shards=False), tmp_path)
    doc = json.loads((tmp_path / "results.json").read_text())
    for lim in doc["limits"]:
        if lim["split"] == "ranges":
            del lim["split"]  # as the oldest results.json has it
    (tmp_path / "results.json").write_text(json.dumps(doc))
    results = load(tmp_path / "results.json")
    assert {lim.split for lim in results.limits} == {"ranges", "files"}
    summary = summarize(results)
    shards_verify = _case(summary, "big", OURS, "shards", "verify")
    assert (shards_verify.limit_split, shards_verify.limit_s) == ("ranges", 1.9)
    assert shards_verify.share == pytest.approx(1.9 / (2.50 - 0.29))
    assert _case(summary, "big", OURS, "files", "sign").limit_split == "files"  # the others unchanged
    assert _case(summary, "big", OURS, "blake3", "sign").limit_split == "ranges"
    rows = {c.check: c for c in target_checks(results, summary)}
    shards_row = rows["big: verify (key, shards) hashing share >= 0.9"]
    assert shards_row.verdict == "FAIL"  # 1.9 / 2.21 = 0.86
    assert shards_row.measured.startswith("0.86 (1.900 s ranges limit / 2.210 s hashing)")
    md = markdown(results, summary)
    assert "These results have no shards limit" in md and "`shards` is held to the range limit here" in md
    # the limits table keeps its shards column, empty; its text says no shard size was recorded
    assert "| 2.400 s (1.67 GB/s) | - | 1.000 s" in md
    assert "cut at the shard size (not measured in these results)" in md


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
    assert sorted(lim["split"] for lim in results["limits"]) == ["files", "files", "ranges", "ranges", "shards",
                                                                 "shards"]
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
