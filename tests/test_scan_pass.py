"""``sign --scan`` / ``verify --scan``: the scan runs in the hashing pass (no byte read twice), verdicts and order.

Samples are raw bytes (tests/_scan_samples.py); expected digests are computed here with hashlib; the
canary payload proves nothing is ever executed.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import model_signing as ms
from model_signing import scan as scanning
from model_signing.errors import ModelMismatchError, UnsafeModelError, VerificationError
from model_signing.hashing import _pool
from model_signing.results import ScanOutcome
from tests import _scan_samples as samples
from tests._cli import Run

Keypair = Callable[..., tuple[Path, Path]]


def _canary_payload(canary: Path, proto: int = 2) -> bytes:
    return samples.p_reduce(samples.Asm(proto), f"touch {canary}")


def _safetensors(n: int = 4096) -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + os.urandom(4 * n)


def _clean_files() -> dict[str, bytes]:
    return {
        "config.json": b'{"layers": 2}\n',
        "model.safetensors": _safetensors(),
        "state.pkl": pickle.dumps({"step": 3, "lr": [0.1, 0.01], "name": "run"}, protocol=4),
    }


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "canary-executed"
    yield path
    assert not path.exists(), "a payload was executed"


def test_sign_scan_clean_model_signs_and_reports(make_model: Callable[..., Path], ec_keypair: Keypair,
                                                 tmp_path: Path) -> None:
    model = make_model(_clean_files())
    priv, pub = ec_keypair()
    sig = tmp_path / "model.sig"
    result = ms.sign(model, ms.KeySigner(priv), signature_path=sig, scan=scanning.make_config())
    assert result.scan is not None and result.scan.files_scanned == 3
    assert not result.scan.unsafe()
    assert result.as_dict()["scan"]["unsafe"] is False
    verified = ms.verify(model, ms.KeyVerifier(pub), signature_path=sig, scan=scanning.make_config())
    assert verified.scan is not None and verified.scan.files_scanned == 3 and verified.exit_code == 0


def test_sign_scan_refuses_unsafe_model_and_writes_nothing(make_model: Callable[..., Path], ec_keypair: Keypair,
                                                          tmp_path: Path, canary: Path) -> None:
    # A pickle renamed .bin inside a torch zip: found by content, whatever its name.
    model = make_model({**_clean_files(), "pytorch_model.bin": samples.torch_zip(_canary_payload(canary))})
    priv, _ = ec_keypair()
    sig = tmp_path / "model.sig"
    before = set(os.listdir(tmp_path))
    with pytest.raises(UnsafeModelError) as err:
        ms.sign(model, ms.KeySigner(priv), signature_path=sig, scan=scanning.make_config())
    assert err.value.exit_code == 4
    assert any(f.file.startswith("pytorch_model.bin") and f.severity == scanning.Severity.CRITICAL
               for f in err.value.findings)
    assert not sig.exists() and set(os.listdir(tmp_path)) == before  # no signature, no temporary file left


def test_cli_sign_scan_exit_4_and_fail_on(make_model: Callable[..., Path], ec_keypair: Keypair,
                                          tmp_path: Path, run: Run) -> None:
    # An unknown global is medium: unsafe by default, accepted with --fail-on high or --allow-global.
    unknown = samples.p_unknown_global(samples.Asm(2), "x")
    model = make_model({"config.json": b"{}", "extra.pkl": unknown})
    priv, _ = ec_keypair()
    sig = tmp_path / "model.sig"
    code, out, err = run("sign", "key", model, "--private-key", priv, "--signature", sig, "--scan")
    assert code == 4 and not sig.exists()
    assert err.startswith("error: unsafe model content") and "extra.pkl" in err
    code, out, err = run("sign", "key", model, "--private-key", priv, "--signature", sig, "--scan",
                         "--fail-on", "high")
    assert code == 0 and sig.exists(), err
    assert "scanned in the same pass: 2 files, 1 finding (0 at or above high)" in out
    code, _, err = run("sign", "key", model, "--private-key", priv, "--signature", tmp_path / "b.sig", "--fail-on",
                       "high")
    assert code == 1 and "--fail-on only applies with --scan" in err


def test_verify_scan_order_of_verdicts(make_model: Callable[..., Path], ec_keypair: Keypair, tmp_path: Path,
                                       run: Run, canary: Path) -> None:
    model = make_model({**_clean_files(), "evil.bin": _canary_payload(canary, 0)})
    priv, pub = ec_keypair()
    _, other_pub = ec_keypair(name="other")
    sig = tmp_path / "model.sig"
    ms.sign(model, ms.KeySigner(priv), signature_path=sig)  # signed without a scan: authentic, unsafe

    assert run("verify", "key", model, "--public-key", pub, "--signature", sig)[0] == 0
    code, out, err = run("verify", "key", model, "--public-key", pub, "--signature", sig, "--scan", "--json")
    assert code == 4, err
    doc = json.loads(out)
    assert (doc["exit_code"], doc["verified"], doc["scan"]["unsafe"]) == (4, True, True)
    assert [f["file"] for f in doc["scan"]["findings"]] == ["evil.bin"]
    assert doc["signer"] is not None  # the signature verified before the scan's verdict

    # A bad signature outranks unsafe content.
    code, _, err = run("verify", "key", model, "--public-key", other_pub, "--signature", sig, "--scan")
    assert code == 2, err
    with pytest.raises(VerificationError):
        ms.verify(model, ms.KeyVerifier(other_pub), signature_path=sig, scan=scanning.make_config())

    # So does a mismatch: the content is not what was signed.
    (model / "config.json").write_bytes(b'{"layers": 3}\n')
    with pytest.raises(ModelMismatchError) as mismatch:
        ms.verify(model, ms.KeyVerifier(pub), signature_path=sig, scan=scanning.make_config())
    assert mismatch.value.result is not None and mismatch.value.result.scan is not None
    assert mismatch.value.result.scan.unsafe()


def test_each_byte_is_read_once(make_model: Callable[..., Path], ec_keypair: Keypair, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    files = {**_clean_files(), "ckpt.pt": samples.torch_zip(pickle.dumps({"a": 1}, protocol=2))}
    model = make_model(files)
    priv, _ = ec_keypair()
    read: dict[str, int] = {}
    real_preadv = os.preadv

    def counting_preadv(fd: int, buffers: list[memoryview], offset: int) -> int:
        n = real_preadv(fd, buffers, offset)
        name = os.readlink(f"/proc/self/fd/{fd}")
        read[name] = read.get(name, 0) + n
        return n

    def no_second_pass(*args: object, **kwargs: object) -> None:
        raise AssertionError("scan_path must not be used: the scan runs in the hashing pass")

    monkeypatch.setattr(os, "preadv", counting_preadv)
    monkeypatch.setattr(scanning, "scan_path", no_second_pass)
    result = ms.sign(model, ms.KeySigner(priv), signature_path=tmp_path / "m.sig",
                     hashing=ms.HashingConfig(max_workers=1), scan=scanning.make_config())
    assert result.scan is not None and result.scan.files_scanned == len(files)
    assert read == {str((model / name).resolve()): len(data) for name, data in files.items()}


@pytest.mark.parametrize("shard_size", [7, 100, 4096])
def test_shards_scan_matches_a_whole_file_scan(tmp_path: Path, shard_size: int, canary: Path) -> None:
    """A file cut into shards hashed by two workers: every shard's digest, and the scan of the whole file."""
    evil = samples.torch_zip(_canary_payload(canary, 4), flags=0x01)
    benign = samples.torch_zip(pickle.dumps({"w": list(range(50))}, protocol=2))
    model = tmp_path / "m"
    model.mkdir()
    (model / "a.pt").write_bytes(evil)
    (model / "b.pt").write_bytes(benign)
    config = ms.HashingConfig(method="shards", shard_size=shard_size, max_workers=2)
    result = ms.hashing.digest_model(model, config, scan=scanning.make_config())
    expected = {
        f"{name}:{s}:{min(s + shard_size, len(data))}": hashlib.sha256(data[s:s + shard_size]).hexdigest()
        for name, data in (("a.pt", evil), ("b.pt", benign)) for s in range(0, len(data), shard_size)
    }
    assert {r.name: r.digest.hex() for r in result.manifest.resources} == expected
    whole = scanning.scan_path(model)
    assert result.scan is not None
    assert sorted(result.scan.findings, key=str) == sorted(whole.findings, key=str)
    assert any(f.severity == scanning.Severity.CRITICAL and f.file.startswith("a.pt") for f in result.scan.findings)
    assert not any(f.file.startswith("b.pt") and f.severity >= scanning.Severity.MEDIUM for f in result.scan.findings)


def test_whole_file_plan_keeps_shards_in_order(tmp_path: Path) -> None:
    from model_signing.hashing import _plan, walk

    data = os.urandom(12_000_000)
    (tmp_path / "big.bin").write_bytes(data)
    (tmp_path / "small.bin").write_bytes(b"x" * 10)
    files = walk.walk(tmp_path).files
    plan = _plan.make_plan(files, "shards", 1_000_000, whole_files=True)
    by_file: dict[str, list[tuple[int, int]]] = {}
    for item in plan.items:
        for t in item:
            by_file.setdefault(t.path, []).append((plan.items.index(item), t.start))
    for spans in by_file.values():
        assert len({i for i, _ in spans}) == 1  # one work item per file
        assert [s for _, s in spans] == sorted(s for _, s in spans)  # in offset order
    assert len(by_file[str(tmp_path / "big.bin")]) == 12


def test_worker_error_still_surfaces_with_a_tap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that changes while it is hashed and scanned is still an error (the tap does not hide it)."""
    (tmp_path / "a.bin").write_bytes(b"a" * 5000)
    (tmp_path / "b.bin").write_bytes(b"b" * 5000)

    def grow(path: str) -> None:
        with open(path, "ab") as f:
            f.write(b"more")

    monkeypatch.setattr(_pool, "_after_open_hook", grow)
    with pytest.raises(ms.ModelSigningError, match="changed while it was being hashed"):
        ms.hashing.digest_model(tmp_path, ms.HashingConfig(max_workers=2), scan=scanning.make_config())


def test_the_malicious_corpus_is_caught_in_the_hashing_pass(tmp_path: Path, canary: Path) -> None:
    """Every gadget, in every container and protocol, in one model hashed by two workers, in shards."""
    model = tmp_path / "corpus"
    model.mkdir()
    expected: set[str] = set()
    for container, wrap in samples.CONTAINERS.items():
        for proto in samples.PROTOCOLS:
            for name, build in samples.MALICIOUS.items():
                fname = f"{container}-{proto}-{name}.bin"
                (model / fname).write_bytes(wrap(build(samples.Asm(proto), f"touch {canary}")))
                expected.add(fname)
    result = ms.hashing.digest_model(model, ms.HashingConfig(method="shards", shard_size=64, max_workers=2),
                                     scan=scanning.make_config())
    assert result.scan is not None and result.scan.files_scanned == len(expected)
    critical = {f.file.split("!")[0] for f in result.scan.findings if f.severity == scanning.Severity.CRITICAL}
    assert critical == expected


def test_crc_of_analysed_members_is_still_checked_in_the_pass(tmp_path: Path) -> None:
    """In the pass the CRC of tensor data is not recomputed, but a pickle member's bad CRC is still found."""
    bad_pickle = samples.zip_bytes([samples.Member("archive/data.pkl", pickle.dumps({"a": 1}, protocol=2),
                                                   crc=0xDEADBEEF)])
    bad_data = samples.zip_bytes([
        samples.Member("archive/data.pkl", pickle.dumps({"a": 1}, protocol=2)),
        samples.Member("archive/data/0", b"\xff\xfe" * 2500, crc=0xDEADBEEF),  # data: no format
    ])
    (tmp_path / "p.pt").write_bytes(bad_pickle)
    (tmp_path / "d.pt").write_bytes(bad_data)
    in_pass = ms.hashing.digest_model(tmp_path, ms.HashingConfig(max_workers=1), scan=scanning.make_config()).scan
    standalone = scanning.scan_path(tmp_path)
    assert in_pass is not None

    def crc_files(report: ScanOutcome) -> set[str]:
        return {f.file for f in report.findings if f.kind == "zip-crc"}

    assert crc_files(standalone) == {"p.pt", "d.pt"}
    assert crc_files(in_pass) == {"p.pt"}


def test_keras_config_with_escaped_keys_is_still_parsed(tmp_path: Path) -> None:
    """The JSON fast path (no "class_name", no escape: not a Keras config) cannot be dodged by escaping the key."""
    escaped = b'{"class_name": "Sequential", "config": {"layers": [{"class\\u005fname": "Lambda", ' \
              b'"config": {"name": "evil", "function": "x"}}]}}'
    plain_tokenizer = json.dumps({"model": {"vocab": {f"tok{i}": i for i in range(2000)}}}).encode()
    (tmp_path / "config.json").write_bytes(escaped.replace(b'"class_name": "Sequential"', b'"cl\\u0061ss_name": "S"'))
    (tmp_path / "tokenizer.json").write_bytes(plain_tokenizer)
    report = ms.hashing.digest_model(tmp_path, ms.HashingConfig(max_workers=1), scan=scanning.make_config()).scan
    assert report is not None
    assert [(f.file, f.kind) for f in report.findings if f.severity >= scanning.Severity.MEDIUM] == [
        ("config.json", "keras-lambda")]


def test_blake3_read_ahead_path_feeds_the_scanner(tmp_path: Path, canary: Path) -> None:
    """One stream hashed by several blake3 threads reads ahead into two buffers: the scanner still sees it all."""
    import blake3

    payload = _canary_payload(canary, 2)
    data = samples.zip_bytes([samples.Member("archive/data/0", b"\xff" * 5_000_000),
                              samples.Member("archive/data.pkl", payload)])  # the pickle after 5 MB of data
    path = tmp_path / "ckpt.bin"
    path.write_bytes(data)
    result = ms.hashing.digest_model(path, ms.HashingConfig(hash_type="blake3", max_workers=2),
                                     scan=scanning.make_config())
    assert result.manifest.resources[0].digest.hex() == blake3.blake3(data).hexdigest()
    assert result.scan is not None
    assert [f.file for f in result.scan.findings if f.severity == scanning.Severity.CRITICAL] == [
        "ckpt.bin!archive/data.pkl"]


def test_cli_sign_scan_json_and_single_file_quarantine(tmp_path: Path, ec_keypair: Keypair, run: Run) -> None:
    path = tmp_path / "weights.safetensors"
    path.write_bytes(_safetensors())
    priv, pub = ec_keypair()
    code, out, err = run("sign", "key", path, "--private-key", priv, "--scan", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["scan"] == {"files_scanned": 1, "findings": [], "unsafe": False}
    path.write_bytes(b"\x80\x02c" + b"os\nsystem\n(S'true'\ntR.")  # replaced by a pickle: mismatch and unsafe
    qdir = tmp_path / "q"
    code, out, err = run("verify", "key", path, "--public-key", pub, "--scan", "--quarantine", qdir, "--json")
    assert code == 3, err  # the mismatch outranks the unsafe content
    doc = json.loads(out)
    assert doc["scan"]["unsafe"] is True and doc["quarantine"]["completed"] is True
    moved = Path(doc["quarantine"]["quarantined_to"])
    assert moved.name == "weights.safetensors" and moved.parent.parent == qdir and not path.exists()


@pytest.mark.parametrize("method", ["files", "shards"])
def test_empty_files_count_as_scanned_in_both_serializations(tmp_path: Path, method: str) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "state.pkl").write_bytes(pickle.dumps([1, 2], protocol=2))
    config = ms.HashingConfig(method=method, shard_size=4, max_workers=2)  # type: ignore[arg-type]
    report = ms.hashing.digest_model(tmp_path, config, scan=scanning.make_config()).scan
    assert report is not None and report.files_scanned == 2 == scanning.scan_path(tmp_path).files_scanned


def test_scan_tap_refuses_shards_out_of_order(tmp_path: Path) -> None:
    """A plan that split a file's shards over workers would give a wrong verdict: the tap refuses it instead."""
    from model_signing.hashing import _plan, scan_tap, walk

    (tmp_path / "a.bin").write_bytes(b"x" * 30)
    files = walk.walk(tmp_path).files
    plan = _plan.make_plan(files, "shards", 10)  # not whole_files: three independent items
    shards = sorted((t for item in plan.items for t in item), key=lambda t: t.start)
    tap = scan_tap(files, scanning.make_config())
    with pytest.raises(RuntimeError, match="before byte 0"):
        tap.feed_for(shards[1])
    tap.feed_for(shards[0])
    with pytest.raises(RuntimeError, match="out of order"):
        tap.feed_for(shards[2])


# --- releasing a file's shards to every worker once the scanner needs no more of it -----------------------

SHARD = 4 * 1024 * 1024  # the plan's SMALL_RANGE: each released shard is a work item of its own


def _big_safetensors(n_tensors: int, per: int, extra: bytes = b"", data: bytes | None = None) -> bytes:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    for i in range(n_tensors):
        header[f"t{i}"] = {"dtype": "U8", "shape": [per], "data_offsets": [i * per, (i + 1) * per]}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    body = data if data is not None else os.urandom(n_tensors * per)
    return struct.pack("<Q", len(raw)) + raw + body + extra


Reads = dict[str, dict[int, list[tuple[int, int]]]]


def _reads_by_pid(monkeypatch: pytest.MonkeyPatch, log: Path) -> Callable[[], Reads]:
    """Log every ``preadv`` of the hashing pass, in whichever (forked) process it runs: path -> pid -> ranges."""
    real_preadv = os.preadv

    def logging_preadv(fd: int, buffers: list[memoryview], offset: int) -> int:
        n = real_preadv(fd, buffers, offset)
        line = f"{os.getpid()} {offset} {n} {os.readlink(f'/proc/self/fd/{fd}')}\n".encode()
        out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(out, line)  # one short O_APPEND write: lines of several processes do not interleave
        finally:
            os.close(out)
        return n

    monkeypatch.setattr(os, "preadv", logging_preadv)

    def reads() -> Reads:
        out: Reads = {}
        for line in log.read_text().splitlines():
            pid, offset, n, path = line.split(" ", 3)
            out.setdefault(path, {}).setdefault(int(pid), []).append((int(offset), int(offset) + int(n)))
        return out

    return reads


def _read_once(ranges: list[tuple[int, int]], size: int) -> bool:
    pos = 0
    for start, end in sorted(ranges):
        if start != pos:
            return False
        pos = end
    return pos == size


@pytest.mark.parametrize("extra", [b"", b"trailing bytes the tensors do not cover"])
def test_single_safetensors_shards_are_hashed_by_every_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              extra: bytes, canary: Path) -> None:
    """A model of one big safetensors file, scanned: once its header is checked, its shards go to every worker.

    The tensor data carries a pickle payload: safetensors loaders never unpickle tensor data, and the whole-
    file scan does not look there either, so the verdict is the same whether those bytes are scanned or not.
    """
    per = SHARD + 12_345  # tensor boundaries fall inside shards
    evil = _canary_payload(canary, 2)
    body = bytearray(os.urandom(5 * per))
    body[3 * SHARD:3 * SHARD + len(evil)] = evil
    data = _big_safetensors(5, per, extra, bytes(body))
    path = tmp_path / "model.safetensors"
    path.write_bytes(data)
    reads = _reads_by_pid(monkeypatch, tmp_path / "reads.log")
    config = ms.HashingConfig(method="shards", shard_size=SHARD, max_workers=2)
    result = ms.hashing.digest_model(path, config, scan=scanning.make_config())
    by_pid = reads()[str(path.resolve())]

    expected = {f"model.safetensors:{s}:{min(s + SHARD, len(data))}": hashlib.sha256(data[s:s + SHARD]).hexdigest()
                for s in range(0, len(data), SHARD)}
    assert len(expected) == 6
    assert {r.name: r.digest.hex() for r in result.manifest.resources} == expected
    assert result.manifest == ms.hashing.digest_model(path, config).manifest  # the same as without a scan

    assert len(by_pid) == 2, by_pid  # both workers hashed shards of the one file
    assert os.getpid() not in by_pid  # in the workers, not the parent
    assert _read_once([r for rs in by_pid.values() for r in rs], len(data))  # every byte read once

    whole = scanning.scan_path(path)
    assert result.scan is not None
    assert result.scan.files_scanned == whole.files_scanned == 1
    assert result.scan.findings == whole.findings
    assert [f.detail for f in whole.findings] == (
        [] if not extra else [f"malformed safetensors header: the data section is {5 * per + len(extra)} bytes, "
                              f"the tensors cover {5 * per}"])


def test_pickle_and_zip_are_still_scanned_whole_by_one_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              canary: Path) -> None:
    """Pickles and archives are never released (their end can hold the payload); safetensors beside them are."""
    blob = os.urandom(3 * SHARD)
    payload = _canary_payload(canary, 2)
    files = {
        # the payload after 12 MB of pickled bytes, and after a 12 MB data member
        "state.pkl": pickle.dumps([blob], protocol=4)[:-1] + payload[2:],
        "ckpt.pt": samples.zip_bytes([samples.Member("archive/data/0", blob),
                                      samples.Member("archive/data.pkl", payload)]),
        "weights.safetensors": _big_safetensors(3, SHARD),
    }
    model = tmp_path / "m"
    model.mkdir()
    for name, data in files.items():
        (model / name).write_bytes(data)
    reads = _reads_by_pid(monkeypatch, tmp_path / "reads.log")
    config = ms.HashingConfig(method="shards", shard_size=SHARD, max_workers=2)
    result = ms.hashing.digest_model(model, config, scan=scanning.make_config())

    expected = {f"{name}:{s}:{min(s + SHARD, len(data))}": hashlib.sha256(data[s:s + SHARD]).hexdigest()
                for name, data in files.items() for s in range(0, len(data), SHARD)}
    assert {r.name: r.digest.hex() for r in result.manifest.resources} == expected
    seen = reads()
    for name, data in files.items():
        by_pid = seen[str((model / name).resolve())]
        assert _read_once([r for rs in by_pid.values() for r in rs], len(data)), name
        if name != "weights.safetensors":
            assert len(by_pid) == 1, name  # read in order by one worker, first byte to last

    whole = scanning.scan_path(model)
    assert result.scan is not None and result.scan.files_scanned == whole.files_scanned == 3
    assert sorted(result.scan.findings, key=str) == sorted(whole.findings, key=str)
    critical = {f.file.split("!")[0] for f in result.scan.findings if f.severity == scanning.Severity.CRITICAL}
    assert critical == {"state.pkl", "ckpt.pt"}


def test_verified_loading_tap_never_releases(tmp_path: Path) -> None:
    """A combined tap releases a file only if every tap agrees: the loading tap keeps every byte."""
    from model_signing.hashing import _plan, combine_taps, scan_tap, walk
    from model_signing.loading import _Retain

    (tmp_path / "w.safetensors").write_bytes(_big_safetensors(2, 3000))
    files = walk.walk(tmp_path).files
    plan = _plan.make_plan(files, "shards", 1024, whole_files=True)
    (item,) = plan.items
    scan = scan_tap(files, scanning.make_config())
    both = combine_taps(scan, _Retain(files, "auto", None))
    buf = _pool.new_buffer()
    first = item[0]
    _pool.hash_task(first, "sha256", buf, feed=both.feed_for(first))
    both.task_done(first)
    assert not scan.wants_rest(first)  # the header is in the first shard: the scan alone would release
    assert both.wants_rest(first)


def test_a_released_shard_of_a_changed_file_is_still_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Released shards are hashed with the same identity checks: a file touched meanwhile fails the run."""
    path = tmp_path / "model.safetensors"
    path.write_bytes(_big_safetensors(4, SHARD))
    opens = tmp_path / "opens"

    def touch_on_third_open(p: str) -> None:
        fd = os.open(opens, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, b"x")
            n = os.lseek(fd, 0, os.SEEK_CUR)  # this open's number, even with two workers appending at once
        finally:
            os.close(fd)
        if n == 3:  # the head shard was opened first; the second and third are released shards
            st = os.stat(p)
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    monkeypatch.setattr(_pool, "_after_open_hook", touch_on_third_open)
    config = ms.HashingConfig(method="shards", shard_size=SHARD, max_workers=2)
    with pytest.raises(ms.ModelSigningError, match="changed while it was being hashed"):
        ms.hashing.digest_model(path, config, scan=scanning.make_config())
    assert opens.stat().st_size >= 3
