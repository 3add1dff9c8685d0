"""Bounds and robustness: memory stays bounded on huge blobs, any chunking gives the same findings, and
mutated or truncated inputs never crash the scanner."""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path

from model_signing.scan import FileScanner, Finding, Severity, scan_path
from tests import _scan_samples as S

REPO = Path(__file__).resolve().parents[1]
BLOB = 200 * 1024 * 1024


def _crc_of_zeros(n: int) -> int:
    crc, block = 0, bytes(1 << 20)
    while n:
        k = min(n, len(block))
        crc = zlib.crc32(block[:k], crc)
        n -= k
    return crc


def _sparse_zip(path: Path, *, descriptor: bool) -> None:
    """A zip whose one stored member is BLOB zero bytes (a sparse hole on disk), then a malicious pickle."""
    crc = _crc_of_zeros(BLOB)
    payload = S.p_reduce(S.Asm(2), "id")
    name = b"archive/data/0"
    with open(path, "wb") as f:
        flags = 0x08 if descriptor else 0
        lcrc, lsize = (0, 0) if descriptor else (crc, BLOB)
        f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, 0, 0, 0x21, lcrc, lsize, lsize, len(name), 0))
        f.write(name)
        f.seek(BLOB, 1)
        if descriptor:
            f.write(struct.pack("<IIII", 0x08074B50, crc, BLOB, BLOB))
        second = f.tell()
        pname = b"archive/data.pkl"
        f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, zlib.crc32(payload), len(payload),
                            len(payload), len(pname), 0) + pname + payload)
        start = f.tell()
        f.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, flags, 0, 0, 0x21, crc, BLOB, BLOB,
                            len(name), 0, 0, 0, 0, 0, 0) + name)
        f.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0x21, zlib.crc32(payload),
                            len(payload), len(payload), len(pname), 0, 0, 0, 0, 0, second) + pname)
        size = f.tell() - start
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 2, 2, size, start, 0))


def _big_bytes_pickle(path: Path) -> None:
    with open(path, "wb") as f:
        f.write(b"\x80\x04\x8e" + struct.pack("<Q", BLOB))
        f.seek(BLOB, 1)
        f.write(b"0" + b"\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.")


def test_memory_is_bounded_on_huge_blobs(tmp_path: Path) -> None:
    _sparse_zip(tmp_path / "stored.pt", descriptor=False)
    _sparse_zip(tmp_path / "torchstyle.pt", descriptor=True)
    _big_bytes_pickle(tmp_path / "bytes.pkl")
    code = (
        "import json, resource, sys\n"
        "from model_signing.scan import scan_path\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "out = {}\n"
        "for p in sys.argv[1:]:\n"
        "    r = scan_path(p)\n"
        "    out[p] = sorted({(f.kind, f.severity.label) for f in r.findings})\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'grew_kib': peak - base, 'findings': out}))\n"
    )
    files = [str(tmp_path / n) for n in ("stored.pt", "torchstyle.pt", "bytes.pkl")]
    proc = subprocess.run([sys.executable, "-c", code, *files], capture_output=True, text=True, check=True,
                          cwd=REPO, timeout=300)
    result = json.loads(proc.stdout)
    assert result["grew_kib"] < 64 * 1024, result  # 600 MB scanned, well under 64 MB more memory
    for p in files:
        # the payload after the blob was found, and nothing else was reported (the CRCs matched)
        assert result["findings"][p] == [["dangerous-global", "critical"]], (p, result)


def _signature(findings: list[Finding]) -> list[tuple[str, str, str, int | None, str]]:
    return sorted((f.file, f.kind, f.detail, f.offset, f.severity.label) for f in findings)


def test_any_chunking_gives_the_same_findings() -> None:
    rng = random.Random(7)
    payload = S.p_memo_names(S.Asm(4), "id")
    for container, wrap in S.CONTAINERS.items():
        data = wrap(payload)
        one = FileScanner("f")
        one.feed(data)
        expected = _signature(one.finish())
        assert expected, container
        for size in (1, 2, 3, 17, 4096, 0):
            s = FileScanner("f")
            pos = 0
            while pos < len(data):
                n = size or rng.randint(1, 50)
                s.feed(memoryview(data)[pos:pos + n])
                pos += n
            assert _signature(s.finish()) == expected, (container, size)


def test_mutated_and_truncated_inputs_never_crash() -> None:
    rng = random.Random(1234)
    seeds = [wrap(build(S.Asm(p), "id"))
             for p in S.PROTOCOLS for build in list(S.MALICIOUS.values())[:4] for wrap in S.CONTAINERS.values()]
    for i in range(20000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if i % 3 == 0:
            data = data[: rng.randrange(len(data))]
        scanner = FileScanner("fuzz")
        scanner.feed(bytes(data))
        findings = scanner.finish()
        assert not [f for f in findings if f.kind == "scanner-error"], (i, bytes(data))
    # every prefix of a torch checkpoint: a truncated payload is still found once its GLOBAL is in
    checkpoint = S.CONTAINERS["torch-zip"](S.p_reduce(S.Asm(2), "id"))
    globl = checkpoint.index(b"cos\nsystem\n") + len(b"cos\nsystem\n")
    for end in range(len(checkpoint)):
        scanner = FileScanner("prefix")
        scanner.feed(checkpoint[:end])
        worst = max((f.severity for f in scanner.finish()), default=None)
        if end >= globl:
            assert worst is Severity.CRITICAL, end


def test_deep_nesting_and_huge_counts_are_bounded() -> None:
    # 100 000 nested MARKs and tuples: no recursion, no crash
    deep = b"\x80\x02" + b"(" * 100_000 + b")" + b"t" * 100_000 + b"."
    s = FileScanner("deep")
    s.feed(deep)
    assert s.finish() == []
    # a text-protocol string line of 1 MB is streamed past
    long_line = b"S'" + b"a" * (1 << 20) + b"'\n."
    s = FileScanner("line")
    s.feed(long_line)
    assert s.finish() == []


def test_scan_path_reads_each_file_once(tmp_path: Path, monkeypatch: object) -> None:
    import os

    data = S.CONTAINERS["nested-zip-deflated"](S.p_reduce(S.Asm(2), "id")) + b"\x00" * 3_000_000
    path = tmp_path / "m.pt"
    path.write_bytes(data)
    opened: list[str] = []
    real_open = os.open

    def counting_open(p: str, *args: object, **kw: object) -> int:
        opened.append(str(p))
        return real_open(p, *args, **kw)  # type: ignore[arg-type]

    import pytest

    mp = pytest.MonkeyPatch()
    mp.setattr(os, "open", counting_open)
    try:
        report = scan_path(path, chunk_size=65536)
    finally:
        mp.undo()
    assert opened == [str(path)]
    assert report.max_severity is Severity.CRITICAL


def _safetensors_bytes(data_len: int, claimed: int = 4096) -> bytes:
    header = json.dumps({"__metadata__": {"format": "pt"},
                         "w": {"dtype": "U8", "shape": [claimed], "data_offsets": [0, claimed]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + bytes(range(256)) * (data_len // 256) + b"\x07" * (data_len % 256)


def _release_seeds() -> dict[str, bytes]:
    seeds = {f"{c}-{name}": wrap(build(S.Asm(2), "id"))
             for c, wrap in S.CONTAINERS.items() for name, build in list(S.MALICIOUS.items())[:3]}
    seeds["safetensors"] = _safetensors_bytes(4096)
    seeds["safetensors-short-data"] = _safetensors_bytes(4000)
    seeds["safetensors-long-data"] = _safetensors_bytes(4103)
    # A pickle where the tensors are: safetensors loaders never unpickle data, and the scanner never looks.
    evil = bytes(2000) + S.p_reduce(S.Asm(2), "id")
    seeds["safetensors-pickle-in-data"] = _safetensors_bytes(0, claimed=len(evil)) + evil
    seeds["gguf"] = b"GGUF" + struct.pack("<IQQ", 3, 0, 0) + bytes(5000)
    seeds["unknown"] = bytes(range(7, 256)) * 40
    seeds["zip-trailing"] = S.torch_zip(b"\x80\x02}.") + b"tail" * 300
    return seeds


def test_wants_more_is_false_only_once_the_rest_cannot_change_the_findings() -> None:
    """Feeding stops at the first chunk after which the scanner wants no more; the rest is skipped by count.

    The findings must be those of feeding every byte, for every sample, mutation and chunk size.
    """
    rng = random.Random(99)
    seeds = _release_seeds()
    samples = list(seeds.items())
    for i in range(600):
        name, data = rng.choice(list(seeds.items()))
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        samples.append((f"{name}-mutated-{i}", bytes(mutated)))
    released: set[str] = set()
    for name, data in samples:
        whole = FileScanner("f")
        whole.feed(data)
        expected = _signature(whole.finish())
        for chunk in (1, 61, 4096):
            s = FileScanner("f")
            pos = 0
            while pos < len(data) and s.wants_more():
                s.feed(memoryview(data)[pos:pos + chunk])
                pos = min(pos + chunk, len(data))
            if pos < len(data):
                released.add(name)
                s.skip(len(data) - pos)
            assert _signature(s.finish()) == expected, (name, chunk)
    # Data formats are released right after what the scanner checks; pickles and archives never.
    assert {"safetensors", "safetensors-short-data", "safetensors-long-data", "safetensors-pickle-in-data",
            "gguf", "unknown"} <= released
    assert not {n for n in released if n.split("-")[0] in ("raw", "torch", "legacy", "npy", "npz")
                and "mutated" not in n}


def test_safetensors_wants_more_until_its_header_is_checked() -> None:
    data = _safetensors_bytes(1 << 20)
    header_end = 8 + struct.unpack_from("<Q", data)[0]
    s = FileScanner("w.safetensors")
    s.feed(data[:header_end - 1])
    assert s.wants_more()
    s.feed(data[header_end - 1:header_end + 512])  # the sniff needs its 512 bytes
    assert not s.wants_more() and s.format == "safetensors"
    s.skip(len(data) - s.size - 1)
    s.feed(b"\x00")  # fed or skipped, later bytes only count
    findings = s.finish()
    assert [f.detail for f in findings] == [
        f"malformed safetensors header: the data section is {1 << 20} bytes, the tensors cover 4096"]


def test_skipping_bytes_a_scanner_needs_is_refused() -> None:
    s = FileScanner("p.pkl")
    s.feed(b"\x80\x02" + b"X" * 600)
    assert s.wants_more()
    try:
        s.skip(10)
    except RuntimeError as exc:
        assert "still needs them" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("skip while the scanner needs the bytes was accepted")
