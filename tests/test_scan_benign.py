"""The benign corpus: real files written by the real libraries must scan clean (nothing at medium or above).

torch state_dicts (zip and legacy), numpy arrays, safetensors, ONNX models from the onnx package, joblib
dumps, plain-data pickles of every protocol, and the benchmark harness's real models.
"""

from __future__ import annotations

import collections
import pickle
from pathlib import Path

import pytest

from model_signing.scan import ScanReport, Severity, scan_path


def _clean(report: ScanReport) -> None:
    serious = [str(f) for f in report.findings if f.severity >= Severity.MEDIUM]
    assert not serious
    assert not report.unsafe()


def _formats(report: ScanReport) -> dict[str, str]:
    return {f.file: f.format for f in report.formats}


PLAIN_DATA = {
    "ints": [0, 1, -1, 255, 256, 65535, 65536, 2**31, -(2**31) - 1, 2**70, -(2**100)],
    "floats": [0.0, -1.5, 1e300, float("inf")],
    "text": ["", "a", "é ü 中文", "x" * 300, "line\nbreak", "quote ' and \""],
    "bytes": [b"", b"\x00\xff", b"y" * 1000, bytearray(b"abc")],
    "nested": {"t": (1, (2, (3,))), "l": [[], [[]]], "d": {"k": {"k": None}}, "b": [True, False, None]},
    "sets": [set(), {1, 2}, frozenset({"a"})],
    "complex": 1 + 2j,
    "ordered": collections.OrderedDict(a=1, b=2),
    "shared": [["same"]] * 3,
}


@pytest.mark.parametrize("protocol", range(6))
def test_plain_data_pickles_of_every_protocol(protocol: int, tmp_path: Path) -> None:
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps(PLAIN_DATA, protocol=protocol))
    report = scan_path(path)
    assert report.findings == ()
    assert _formats(report) == {"data.pkl": "pickle"}


def test_big_plain_pickle_is_clean(tmp_path: Path) -> None:
    # more memo entries and longer strings than the walk keeps: still no finding
    data = {f"token{i}": i for i in range(300_000)}
    path = tmp_path / "vocab.pkl"
    path.write_bytes(pickle.dumps(data, protocol=4) + pickle.dumps(list(range(1000)), protocol=2))
    report = scan_path(path)
    _clean(report)


def test_torch_state_dicts(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    assert torch.__version__.startswith("2.13.0")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    state = model.state_dict()
    state["half"] = torch.ones(3, dtype=torch.float16)
    state["bf16"] = torch.ones(3, dtype=torch.bfloat16)
    state["int8"] = torch.arange(5, dtype=torch.int8)
    state["bool"] = torch.tensor([True, False])
    state["param"] = torch.nn.Parameter(torch.zeros(2))
    state["view"] = state["0.weight"][1:]  # a view: storage offset
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(3, 8)).sum().backward()
    opt.step()
    torch.save(state, tmp_path / "model.pt")
    torch.save(state, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.save(opt.state_dict(), tmp_path / "optimizer.bin")
    torch.save([torch.zeros(2), {"epoch": 3}], tmp_path / "misc.pth")
    report = scan_path(tmp_path)
    _clean(report)
    assert report.findings == ()
    formats = _formats(report)
    assert formats["model.pt"] == "pytorch-zip"
    assert formats["legacy.pt"] == "pytorch-legacy"
    assert formats["optimizer.bin"] == "pytorch-zip"
    # what torch accepts with weights_only=True, the scanner accepts (and the files really load)
    for name in ("model.pt", "legacy.pt", "optimizer.bin", "misc.pth"):
        torch.load(tmp_path / name, weights_only=True)


def test_numpy_arrays(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    np.save(tmp_path / "a.npy", np.arange(100, dtype=np.float32).reshape(10, 10))
    np.save(tmp_path / "s.npy", np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]))
    np.save(tmp_path / "u.npy", np.array(["abc", "de"]))
    np.savez(tmp_path / "z.npz", x=np.arange(3), y=np.ones((2, 2)))
    np.savez_compressed(tmp_path / "c.npz", x=np.arange(1000))
    # numpy arrays pickled (their own reduce: numpy reconstruct + dtype)
    (tmp_path / "arr.pkl").write_bytes(pickle.dumps({"a": np.arange(4), "s": np.float64(1.5)}, protocol=2))
    report = scan_path(tmp_path)
    assert report.findings == ()
    formats = _formats(report)
    assert formats["a.npy"] == "npy" and formats["z.npz"] == "npz" and formats["c.npz"] == "npz"


def test_joblib_dumps(tmp_path: Path) -> None:
    joblib = pytest.importorskip("joblib")
    np = pytest.importorskip("numpy")
    value = {"w": np.arange(1000.0), "i": np.arange(7, dtype=np.int16), "u": np.array(["ab", "c"]),
             "rec": np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]), "o": np.array([{"k": 1}, None], dtype=object),
             "meta": [1, "two"]}
    for compress in (0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3)):
        path = tmp_path / f"m{compress if isinstance(compress, int) else compress[0]}.joblib"
        joblib.dump(value, path, compress=compress)
    report = scan_path(tmp_path)
    assert report.findings == ()


def test_safetensors(tmp_path: Path) -> None:
    st_numpy = pytest.importorskip("safetensors.numpy")
    np = pytest.importorskip("numpy")
    st_numpy.save_file({"a": np.zeros((3, 4), dtype=np.float32), "b": np.arange(5, dtype=np.int64),
                        "empty": np.zeros((0,), dtype=np.float16)}, str(tmp_path / "model.safetensors"),
                       metadata={"format": "np"})
    report = scan_path(tmp_path / "model.safetensors")
    assert report.findings == ()
    assert _formats(report) == {"model.safetensors": "safetensors"}


def test_onnx_models_from_the_onnx_package(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    data = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    models = sorted(data.glob("*.onnx"))
    assert models
    for m in models:
        _clean(scan_path(m))
        assert scan_path(m).findings == ()
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), tmp_path / "relu.onnx")
    assert scan_path(tmp_path / "relu.onnx").findings == ()


def test_harness_real_models(tmp_path: Path) -> None:
    from benchmarks.harness import realmodels

    built = []
    for build in (realmodels.build_minilm, realmodels.build_onnx_resnet50, realmodels.build_tinynet):
        try:
            built.append(build(tmp_path / build.__name__))
        except realmodels.MissingPackageError as exc:
            pytest.skip(str(exc))
    for path in built:
        report = scan_path(path)
        assert report.findings == (), path
        assert report.files_scanned >= 1
    tinynet = _formats(scan_path(built[2]))
    assert tinynet["weights/tinynet.pt"] == "pytorch-zip"


def test_text_and_source_files_are_not_pickles(tmp_path: Path) -> None:
    # Text starts with bytes that are pickle opcodes ("i" INST, "c" GLOBAL, "(" MARK ...): none of it is one.
    files = {
        "modeling.py": "import os\nimport torch\nfrom torch import nn\n\nclass M(nn.Module):\n    pass\n",
        "requirements.txt": "click\ntyper\nrich\n",
        "vocab.txt": "cat\ndog\nsystem\nos\n(\n)\n.\n",
        "README.md": "I am a model card.\n(see below)\n",
        "config.json": '{"class_name": "Dense", "config": {"units": 4}}',
        "merges.txt": "c os\ni system\n",
        "notes": "cos\nsystem of units\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    report = scan_path(tmp_path)
    assert report.files_scanned == len(files)
    assert [f for f in report.findings if f.severity >= Severity.MEDIUM] == []
    # ... and the site-packages sources of a big library scan clean
    sklearn = pytest.importorskip("sklearn")
    _clean(scan_path(Path(sklearn.__file__).parent / "utils"))
