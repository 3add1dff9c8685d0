"""Online mode: fetch real models of each family with the ecosystem's own clients.

- Hugging Face repos: ``huggingface_hub.snapshot_download`` (the hub's client; all files of the repo);
- TF Hub SavedModels: the compressed tarball over plain HTTPS, unpacked with ``tarfile`` (data filter);
- ONNX model zoo files: plain HTTPS;
- PyTorch Hub repos: ``git clone`` (the repo as ``torch.hub`` sees it, ``.git`` included and ignored by
  both tools).

Used by ``benchmarks/run.sh`` on machines with internet; this machine cannot reach these hosts.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OnlineModel:
    """A real model fetched from its hub."""

    name: str
    family: str
    source: str
    approx_size: str
    fetch: Callable[[Path], Path]  # downloads under the given root; returns the path a tool signs


def _download(url: str, dest: Path) -> Path:
    """Stream ``url`` to ``dest`` (via a .part file) with a byte progress bar on stderr."""
    from tqdm import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    req = urllib.request.Request(url, headers={"User-Agent": "modelseal-benchmark"})
    with urllib.request.urlopen(req, timeout=60) as resp, part.open("wb") as fh:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, file=sys.stderr, leave=False) as bar:
            while chunk := resp.read(1 << 20):
                fh.write(chunk)
                bar.update(len(chunk))
    part.replace(dest)
    return dest


def _hf(repo_id: str) -> Callable[[Path], Path]:
    def fetch(root: Path) -> Path:
        from huggingface_hub import snapshot_download

        snapshot_download(repo_id=repo_id, local_dir=root)
        # the client's own bookkeeping is not part of the model
        shutil.rmtree(root / ".cache", ignore_errors=True)
        return root

    return fetch


def _https_file(url: str, filename: str) -> Callable[[Path], Path]:
    def fetch(root: Path) -> Path:
        return _download(url, root / filename)

    return fetch


def _tfhub(url: str) -> Callable[[Path], Path]:
    def fetch(root: Path) -> Path:
        tarball = _download(url, root.parent / f"{root.name}.tar.gz")
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as tf:
            tf.extractall(root, filter="data")
        tarball.unlink()
        return root

    return fetch


def _git(url: str) -> Callable[[Path], Path]:
    def fetch(root: Path) -> Path:
        subprocess.run(["git", "clone", "--quiet", url, str(root)], check=True)
        return root

    return fetch


ONLINE_MODELS: dict[str, OnlineModel] = {
    m.name: m
    for m in (
        OnlineModel("torchhub-hustvl-yolop", "pytorch-hub", "git clone github.com/hustvl/YOLOP", "~355 MB",
                    _git("https://github.com/hustvl/YOLOP.git")),
        OnlineModel("onnx-roberta-base-11", "onnx", "ONNX model zoo (HTTPS)", "~0.5 GB",
                    _https_file("https://github.com/onnx/models/raw/main/validated/text/machine_comprehension/"
                                "roberta/model/roberta-base-11.onnx", "roberta-base-11.onnx")),
        OnlineModel("tfhub-bertseq2seq-bert24-en-de", "tf-savedmodel", "TF Hub tarball (HTTPS)", "~2.8 GB",
                    _tfhub("https://tfhub.dev/google/bertseq2seq/bert24_en_de/1?tf-hub-format=compressed")),
        OnlineModel("hf-bert-base-uncased", "huggingface", "huggingface_hub google-bert/bert-base-uncased",
                    "~6.5 GB", _hf("google-bert/bert-base-uncased")),
        OnlineModel("hf-falcon-7b", "huggingface", "huggingface_hub tiiuae/falcon-7b", "~27 GB",
                    _hf("tiiuae/falcon-7b")),
    )
}


def materialize(model: OnlineModel, data_dir: Path) -> Path:
    """Fetch ``model`` under ``data_dir`` unless a complete copy is there; return the path a tool signs."""
    root = data_dir / model.name
    stamp = data_dir / f"{model.name}.done"
    if stamp.exists() and root.exists():
        return Path(stamp.read_text().strip())
    if root.exists():
        shutil.rmtree(root)
    path = model.fetch(root)
    stamp.write_text(str(path))
    return path


def remove(model: OnlineModel, data_dir: Path) -> None:
    """Delete a fetched model (``cleanup``: bounds disk use on cloud machines)."""
    shutil.rmtree(data_dir / model.name, ignore_errors=True)
    (data_dir / f"{model.name}.done").unlink(missing_ok=True)
