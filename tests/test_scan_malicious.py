"""The malicious corpus: every bypass class, in every container, in protocols 0, 2 and 4, is detected.

The samples are raw bytes assembled in tests/_scan_samples.py.  Each one carries a canary command
(``touch <tmp path>``): the scans must never create the file, while a real ``pickle.loads`` of the
raw sample (in a child process) does -- which proves the samples are live exploits, not strawmen.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from model_signing.scan import FileScanner, Finding, Severity, scan_path
from tests import _scan_samples as S


def _scan(data: bytes, name: str = "sample") -> list[Finding]:
    scanner = FileScanner(name)
    scanner.feed(data)
    return scanner.finish()


def _worst(findings: list[Finding]) -> Severity | None:
    return max((f.severity for f in findings), default=None)


@pytest.mark.parametrize("proto", S.PROTOCOLS)
@pytest.mark.parametrize("container", sorted(S.CONTAINERS))
def test_every_gadget_in_every_container_is_critical(container: str, proto: int, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    missed = []
    for name, build in S.MALICIOUS.items():
        data = S.CONTAINERS[container](build(S.Asm(proto), f"touch {canary}"))
        path = tmp_path / f"{name}.bin"  # the name says nothing: formats are found by content
        path.write_bytes(data)
        report = scan_path(path)
        if report.max_severity is not Severity.CRITICAL or not report.unsafe(Severity.MEDIUM):
            missed.append((name, report.max_severity, [str(f) for f in report.findings]))
        assert path.read_bytes() == data  # never written to
    assert not missed
    assert not canary.exists()


@pytest.mark.parametrize("proto", S.PROTOCOLS)
@pytest.mark.parametrize("container", sorted(S.CONTAINERS))
def test_unknown_global_is_medium_in_every_container(container: str, proto: int) -> None:
    for build in S.MEDIUM_ONLY.values():
        findings = _scan(S.CONTAINERS[container](build(S.Asm(proto), "x")))
        kinds = {f.kind for f in findings if f.severity >= Severity.MEDIUM}
        assert "unknown-global" in kinds
        assert _worst(findings) is Severity.MEDIUM or container.startswith("torch-zip-")


@pytest.mark.parametrize("name", ["reduce", "memo-callable", "inst", "obj"])
@pytest.mark.parametrize("proto", S.PROTOCOLS)
def test_samples_are_live_exploits_and_scanning_runs_none(name: str, proto: int, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    sample = tmp_path / "sample.pkl"
    sample.write_bytes(S.MALICIOUS[name](S.Asm(proto), f"touch {canary}"))
    report = scan_path(sample)
    assert report.max_severity is Severity.CRITICAL
    assert not canary.exists()
    # The same bytes, really unpickled in a throwaway child process, do run the command.
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(open(sys.argv[1], 'rb').read())",
                    str(sample)], check=True, capture_output=True, timeout=60)
    assert canary.exists()


def test_findings_name_the_member_and_the_gadget() -> None:
    payload = S.p_reduce(S.Asm(2), "id")
    findings = _scan(S.CONTAINERS["nested-zip"](payload), "model.pt")
    crit = [f for f in findings if f.severity is Severity.CRITICAL]
    assert [f.file for f in crit] == ["model.pt!inner.zip!deep/data.pkl"]
    assert "os.system" in crit[0].detail and crit[0].kind == "dangerous-global"
    assert crit[0].offset == 2  # the GLOBAL right after PROTO 2


def test_stack_global_from_memo_is_resolved() -> None:
    findings = _scan(S.p_memo_names(S.Asm(4), "id"))
    assert any("posix.system" in f.detail and f.severity is Severity.CRITICAL for f in findings)


def test_computed_callables_are_findings() -> None:
    # pydoc.locate(...) returns a callable that is then called: the second call cannot be named statically.
    findings = _scan(S.p_pydoc(S.Asm(2), "id"))
    kinds = {f.kind: f.severity for f in findings}
    assert kinds["unresolved-callable"] is Severity.HIGH
    assert kinds["dangerous-global"] is Severity.CRITICAL


def test_stack_global_with_computed_names_is_high() -> None:
    a = S.Asm(4)
    # module name = str('os') computed by a call; STACK_GLOBAL then cannot be resolved
    data = a.header() + a.call(a.glob("builtins", "str"), a.string("os")) + a.string("system") + b"\x93" + \
        a.tup(a.string("id")) + b"R."
    findings = _scan(data)
    assert any(f.kind == "unresolved-global" and f.severity is Severity.HIGH for f in findings)


def test_partial_torch_load_is_named() -> None:
    findings = _scan(S.p_partial_torch_load(S.Asm(2), "x"))
    assert any("functools.partial wraps torch.load with weights_only=False" in f.detail for f in findings)


def test_ext_codes_are_unresolved() -> None:
    findings = _scan(b"\x80\x02\x82\x01)R.")
    assert {f.kind for f in findings} >= {"unresolved-global", "unresolved-callable"}


def test_build_on_an_imported_object_is_high() -> None:
    # BUILD on a class monkeypatches it for every later use
    data = b"\x80\x02ctorch\nFloatStorage\n}X\x07\x00\x00\x00__new__K\x01sb."
    findings = _scan(data)
    assert [(f.kind, f.severity) for f in findings] == [("global-modified", Severity.HIGH)]


def test_truncated_and_malformed_streams_are_analysed_up_to_the_break() -> None:
    payload = S.p_reduce(S.Asm(2), "id")
    truncated = _scan(payload[:-2])  # ends after the REDUCE's arguments
    assert _worst(truncated) is Severity.CRITICAL
    assert any(f.kind == "truncated-pickle" for f in truncated)
    malformed = _scan(payload[:-1] + b"\xff")
    assert _worst(malformed) is Severity.CRITICAL
    assert any(f.kind == "malformed-pickle" for f in malformed)


def test_trailing_pickle_after_garbage_tail_and_text_pickles() -> None:
    # text protocol with no PROTO opcode, renamed: still a pickle by content
    assert _worst(_scan(b"cposix\nsystem\n(S'id'\ntR.", "README")) is Severity.CRITICAL
    # a text file is not a pickle, even though it starts like an INT opcode
    assert _scan(b"I am a text file\nwith lines\n") == []


def test_legacy_torch_skips_storages_but_not_pickles() -> None:
    benign_main = b"\x80\x02}q\x00."
    storages = struct.pack("<Q", 3) + b"cos\nsystem\n" + b"\x00" * 20  # raw tensor bytes torch never unpickles
    data = S.LEGACY_MAGIC + S.LEGACY_PROTOCOL + S.LEGACY_SYS_INFO + benign_main + S.LEGACY_KEYS + storages
    scanner = FileScanner("legacy.pt")
    scanner.feed(data)
    assert scanner.finish() == []
    assert scanner.format == "pytorch-legacy"


def test_zip_tampering_is_reported_and_the_member_still_analysed() -> None:
    payload = S.p_reduce(S.Asm(2), "id")
    cases = {
        "torch-zip-name-mismatch": "zip-mismatch",
        "torch-zip-encrypted-flag": "zip-encrypted",
        "torch-zip-bad-crc": "zip-crc",
        "torch-zip-unlisted": "zip-mismatch",
    }
    for container, kind in cases.items():
        findings = _scan(S.CONTAINERS[container](payload))
        assert kind in {f.kind for f in findings}, container
        assert _worst(findings) is Severity.CRITICAL, container
    # the same tampering around a harmless pickle still fails the default threshold (except an unlisted extra)
    benign = b"\x80\x02}."
    for container in ("torch-zip-name-mismatch", "torch-zip-encrypted-flag", "torch-zip-bad-crc"):
        assert _worst(_scan(S.CONTAINERS[container](benign))) is Severity.MEDIUM


def test_zip_member_hidden_from_the_walk_is_high() -> None:
    # The central directory points into the middle of another member's data, where a loader following the
    # directory would find a local header the sequential walk never saw as a member.
    hidden_pickle = S.p_reduce(S.Asm(2), "id")
    name = "hidden.pkl"
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, zlib.crc32(hidden_pickle), len(hidden_pickle),
                        len(hidden_pickle), len(name), 0) + name.encode() + hidden_pickle
    cover = S.Member("data/0", b"\x00" * 8 + local)
    data = S.zip_bytes([cover], hidden=((name, 30 + len("data/0") + 8),))
    findings = _scan(data)
    assert any(f.kind == "zip-hidden-member" and f.severity is Severity.HIGH for f in findings)


def test_nested_depth_is_bounded() -> None:
    data = S.p_reduce(S.Asm(2), "id")
    for i in range(12):
        data = S.zip_bytes([S.Member(f"level{i}.zip", data)])
    findings = _scan(data)
    assert any(f.kind == "nesting-too-deep" for f in findings)
    assert _worst(findings) is Severity.MEDIUM  # the payload is deeper than analysed, the depth itself is a finding


def test_safetensors_header_is_checked() -> None:
    def st(header: bytes, data: bytes) -> bytes:
        return struct.pack("<Q", len(header)) + header + data

    good = st(b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', b"\x00" * 8)
    assert _scan(good) == []
    overlap = st(b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                 b'"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\x00" * 8)
    outside = st(b'{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', b"\x00" * 8)
    for bad in (overlap, outside):
        findings = _scan(bad)
        assert [f.kind for f in findings] and all(f.kind == "safetensors-header" for f in findings)
        assert _worst(findings) is Severity.MEDIUM


def test_keras_lambda_and_custom_objects() -> None:
    config = (b'{"module": "keras", "class_name": "Sequential", "config": {"layers": ['
              b'{"module": "keras.layers", "class_name": "Lambda", "config": {"name": "l", "function": "x"}},'
              b'{"module": "evilpkg.layers", "class_name": "Backdoor", "config": {"name": "b"}},'
              b'{"module": "builtins", "class_name": "function", "config": "exec", "registered_name": "function"}'
              b']}}')
    data = S.zip_bytes([S.Member("metadata.json", b"{}"), S.Member("config.json", config),
                        S.Member("model.weights.h5", b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)])
    findings = _scan(data, "model.keras")
    got = {(f.kind, f.severity) for f in findings}
    assert ("keras-lambda", Severity.HIGH) in got
    assert ("keras-custom-object", Severity.MEDIUM) in got
    assert ("keras-custom-object", Severity.CRITICAL) in got  # builtins.exec


def test_keras_h5_lambda_found_byte_level() -> None:
    config = (b'{"class_name": "Sequential", "config": {"name": "s", "layers": [{"class_name": "Lambda", '
              b'"config": {"name": "lam", "function": ["4wEAAAAAAAAA", null, null]}}]}}')
    data = b"\x89HDF\r\n\x1a\n" + b"\x00" * 1000 + config + b"\x00" * 1000
    findings = _scan(data, "model.h5")
    assert {f.kind for f in findings} == {"keras-lambda"}
    assert all(f.severity is Severity.HIGH for f in findings)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _pb(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def test_tf_savedmodel_file_and_python_ops() -> None:
    def node(name: str, op: str) -> bytes:
        return _pb(1, name.encode()) + _pb(2, op.encode())

    graph = _pb(1, node("c", "Const")) + _pb(1, node("r", "ReadFile"))
    library = _pb(1, _pb(1, _pb(1, b"fn")) + _pb(3, node("p", "PyFunc")))
    meta = _pb(2, graph + _pb(2, library))
    saved_model = b"\x08\x01" + _pb(2, meta)
    scanner = FileScanner("saved_model.pb")
    scanner.feed(saved_model)
    findings = scanner.finish()
    assert scanner.format == "tf-savedmodel"
    got = {(f.detail.split(" ")[2], f.severity) for f in findings}
    assert got == {("ReadFile", Severity.MEDIUM), ("PyFunc", Severity.CRITICAL)}


def test_allow_global_clears_unknown_globals_only(tmp_path: Path) -> None:
    a = S.Asm(2)
    data = a.header() + a.call(a.glob("mypkg.cfg", "Config"), a.string("x")) + b"0" + \
        a.call(a.glob("os", "system"), a.string("id")) + b"."
    path = tmp_path / "m.pkl"
    path.write_bytes(data)
    assert {f.kind for f in scan_path(path).findings} == {"unknown-global", "dangerous-global"}
    for allow in ("mypkg.cfg.Config", "mypkg.*", "mypkg.cfg.*"):
        report = scan_path(path, allow_globals=[allow, "os.system"])  # gadgets cannot be allowed
        assert {f.kind for f in report.findings} == {"dangerous-global"}, allow
    assert not os.path.exists(tmp_path / "canary")


def _scan_in_chunks(data: bytes, size: int) -> list[tuple[str, Severity, str, str, int | None]]:
    scanner = FileScanner("sample")
    for i in range(0, len(data), size):
        # Each chunk is a view of a buffer that is overwritten once the call returns, as in the hashing
        # pass: a scanner that kept a view past a request would see the garbage.
        buf = bytearray(data[i:i + size])
        scanner.feed(memoryview(buf))
        buf[:] = b"\xa5" * len(buf)
    return [(f.file, f.severity, f.kind, f.detail, f.offset) for f in scanner.finish()]


@pytest.mark.parametrize("container", sorted(S.CONTAINERS))
def test_findings_do_not_depend_on_how_the_bytes_are_chunked(container: str) -> None:
    # The scanner reads at most a window of each chunk into its own buffer and passes the rest on as a
    # view: every chunking, from single bytes to one chunk bigger than the window, must give the same.
    pad = S.Member("archive/data/0", b"\x00" * 200_000)  # tensor bytes, longer than the reader's window
    for name, build in S.MALICIOUS.items():
        data = S.CONTAINERS[container](build(S.Asm(2), "id"))
        samples = [data]
        if container.startswith("torch-zip"):
            samples.append(S.zip_bytes([pad, S.Member("archive/data.pkl", build(S.Asm(4), "id"))]))
        for sample in samples:
            whole = _scan_in_chunks(sample, len(sample))
            assert any(f[1] is Severity.CRITICAL for f in whole), (container, name)
            for size in (1, 7, 4096, 70_000) if len(sample) < 20_000 else (7, 4096, 70_000):
                assert _scan_in_chunks(sample, size) == whole, (container, name, size)
