"""Generated model layouts: each family's real file structure and size distribution, scaled by a factor.

Each layout is modelled on a real model (names, file counts and byte sizes of the original at factor 1.0);
weight tensors keep their names and count and scale their first dimension, so a size factor of 0.1 gives
the same tree at a tenth of the bytes.  Small metadata files (configs, tokenizers, code) keep their real
sizes.  Weight files are written in their real formats (safetensors, ``torch.save`` zip, SavedModel
protobuf + TensorBundle, ONNX protobuf), streamed so memory stays flat at any size.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import _text
from benchmarks.harness._torchzip import write_checkpoint
from benchmarks.harness._wire import Fill, Part, flat, pb_bytes, pb_int, pb_msg, write_parts

Tensor = tuple[str, tuple[int, ...]]
#: bump when a generator changes so cached layouts are rebuilt
LAYOUT_VERSION = 2


@dataclass(frozen=True)
class Layout:
    """A generated layout: what it models and how to build it."""

    name: str
    family: str
    modelled_on: str
    full_size_note: str
    build: Callable[[Path, float], None]


def _scale(tensors: Sequence[Tensor], factor: float) -> list[Tensor]:
    return [(name, (max(1, round(shape[0] * factor)), *shape[1:]) if len(shape) > 1 else shape)
            for name, shape in tensors]


def _nbytes(shape: Sequence[int], itemsize: int) -> int:
    return math.prod(shape) * itemsize


def _split(tensors: Sequence[Tensor], itemsize: int, fractions: Sequence[float]) -> list[list[Tensor]]:
    """Split tensors in order into len(fractions) non-empty groups with about those byte fractions."""
    total = sum(_nbytes(s, itemsize) for _, s in tensors)
    groups: list[list[Tensor]] = [[] for _ in fractions]
    bounds = [total * sum(fractions[: i + 1]) for i in range(len(fractions))]
    done, g = 0, 0
    for i, (name, shape) in enumerate(tensors):
        left_tensors, left_groups = len(tensors) - i, len(fractions) - g
        if g < len(fractions) - 1 and groups[g] and (done >= bounds[g] or left_tensors <= left_groups - 1):
            g += 1
        groups[g].append((name, shape))
        done += _nbytes(shape, itemsize)
    return groups


def write_safetensors(path: Path, tensors: Sequence[Tensor], dtype: str, itemsize: int, seed: int) -> None:
    """A safetensors file: u64 header length, JSON header (8-byte aligned), then the tensor data."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in tensors:
        n = _nbytes(shape, itemsize)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as fh:
        write_parts(fh, [len(raw).to_bytes(8, "little"), raw, Fill(offset, seed)])


def _write(path: Path, data: bytes | Sequence[Part]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        write_parts(fh, [data] if isinstance(data, bytes) else data)


def _json(obj: object) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()


GIT_ATTRIBUTES = b"*.bin filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


# --- Hugging Face: tiiuae/falcon-7b ---------------------------------------------------------------


def falcon_tensors() -> list[Tensor]:
    """falcon-7b's parameters (7.2 B, bfloat16 = 14.4 GB), in checkpoint order."""
    h, layers, vocab = 4544, 32, 65024
    out: list[Tensor] = [("transformer.word_embeddings.weight", (vocab, h))]
    for i in range(layers):
        p = f"transformer.h.{i}"
        out += [
            (f"{p}.input_layernorm.weight", (h,)), (f"{p}.input_layernorm.bias", (h,)),
            (f"{p}.self_attention.query_key_value.weight", (h + 2 * 64, h)),
            (f"{p}.self_attention.dense.weight", (h, h)),
            (f"{p}.mlp.dense_h_to_4h.weight", (4 * h, h)),
            (f"{p}.mlp.dense_4h_to_h.weight", (h, 4 * h)),
        ]
    out += [("transformer.ln_f.weight", (h,)), ("transformer.ln_f.bias", (h,)), ("lm_head.weight", (vocab, h))]
    return out


def build_falcon_like(root: Path, factor: float) -> None:
    """tiiuae/falcon-7b: weights twice (2 PyTorch .bin shards and 8 safetensors shards) + indexes + tokenizer."""
    tensors = _scale(falcon_tensors(), factor)
    total = sum(_nbytes(s, 2) for _, s in tensors)
    # the original's two .bin shards are 9.95 GB and 4.48 GB
    for kind, groups in (("bin", _split(tensors, 2, [0.6894, 0.3106])), ("st", _split(tensors, 2, [1 / 8] * 8))):
        weight_map: dict[str, str] = {}
        for i, group in enumerate(groups, 1):
            if kind == "bin":
                fname = f"pytorch_model-{i:05d}-of-{len(groups):05d}.bin"
                write_checkpoint(root / fname, group, "bfloat16", seed=100 + i)
            else:
                fname = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
                write_safetensors(root / fname, group, "BF16", 2, seed=200 + i)
            weight_map.update({name: fname for name, _ in group})
        index = "pytorch_model.bin.index.json" if kind == "bin" else "model.safetensors.index.json"
        _write(root / index, _json({"metadata": {"total_size": total}, "weight_map": weight_map}))
    _write(root / "config.json", _json({
        "architectures": ["FalconForCausalLM"], "model_type": "falcon", "hidden_size": 4544,
        "num_hidden_layers": 32, "num_attention_heads": 71, "vocab_size": 65024, "torch_dtype": "bfloat16",
        "auto_map": {"AutoConfig": "configuration_falcon.FalconConfig",
                     "AutoModelForCausalLM": "modeling_falcon.FalconForCausalLM"},
        "bos_token_id": 11, "eos_token_id": 11, "multi_query": True, "parallel_attn": True, "bias": False,
    }))
    _write(root / "generation_config.json",
           _json({"_from_model_config": True, "bos_token_id": 11, "eos_token_id": 11}))
    _write(root / "configuration_falcon.py", _text.source(6_700, "configuration_falcon"))
    _write(root / "modeling_falcon.py", _text.source(56_000, "modeling_falcon"))
    _write(root / "special_tokens_map.json", _json({"eos_token": "<|endoftext|>"}))
    _write(root / "tokenizer_config.json", _json({
        "add_prefix_space": False, "eos_token": "<|endoftext|>", "model_max_length": 2048,
        "tokenizer_class": "PreTrainedTokenizerFast"}))
    _write(root / "tokenizer.json", _text.tokenizer_json(2_734_000, seed=7))
    _write(root / "README.md", _text.prose(9_700, seed=7))
    _write(root / ".gitattributes", GIT_ATTRIBUTES)


# --- TF Hub SavedModel: google/bertseq2seq --------------------------------------------------------


def bertseq2seq_variables() -> list[Tensor]:
    """A 24-layer BERT encoder + decoder (float32), the shape of bertseq2seq's checkpoint (~2.8 GB)."""
    h, inter, vocab = 1024, 4096, 119547
    out: list[Tensor] = [("bert/embeddings/word_embeddings", (vocab, h)),
                         ("bert/embeddings/position_embeddings", (512, h))]
    for part in ("encoder", "decoder"):
        for i in range(24):
            p = f"bert/{part}/layer_{i}"
            attn = ["attention/self"] + (["attention/encdec"] if part == "decoder" else [])
            for a in attn:
                out += [(f"{p}/{a}/{q}/kernel", (h, h)) for q in ("query", "key", "value")]
            out += [(f"{p}/attention/output/dense/kernel", (h, h)), (f"{p}/intermediate/dense/kernel", (h, inter)),
                    (f"{p}/output/dense/kernel", (inter, h)), (f"{p}/output/LayerNorm/gamma", (h,))]
    return out


def _tensor_bundle_index(entries: Sequence[tuple[str, Sequence[int], int, int]]) -> bytes:
    """variables.index: a TensorBundle table (key -> BundleEntryProto) ending in the table magic footer."""
    body = bytearray()
    body += b"\x00" + pb_int(1, 1) + pb_int(2, 1)  # header entry: BundleHeaderProto(num_shards=1, endianness)
    for name, shape, offset, size in entries:
        shape_pb = b"".join(pb_bytes(2, pb_int(1, d)) for d in shape)  # TensorShapeProto.dim[].size
        entry = pb_int(1, 1) + pb_bytes(2, shape_pb) + pb_int(4, offset) + pb_int(5, size)
        key = name.encode()
        body += pb_bytes(1, key) + pb_bytes(2, entry)
    footer = b"\x00" * 40 + (0xDB4775248B80FB57).to_bytes(8, "little")  # leveldb table magic
    return bytes(body) + footer


def build_bertseq2seq_like(root: Path, factor: float) -> None:
    """TF Hub google/bertseq2seq: saved_model.pb + variables/ (data + index) + assets/ + fingerprint.pb."""
    variables = _scale(bertseq2seq_variables(), factor)
    entries, offset = [], 0
    for name, shape in variables:
        n = _nbytes(shape, 4)
        entries.append((name, shape, offset, n))
        offset += n
    _write(root / "variables" / "variables.data-00000-of-00001", [Fill(offset, 300)])
    _write(root / "variables" / "variables.index", _tensor_bundle_index(entries))
    # SavedModel{schema_version=1, meta_graphs=[MetaGraphDef{meta_info_def{tags, tf version}, graph_def}]}
    nodes: list[Part] = []
    for name, _ in variables:
        node = pb_bytes(1, name) + pb_bytes(2, "VarHandleOp") + pb_bytes(4, "/device:CPU:0")
        nodes += pb_msg(1, [node])
    # the real graph also carries constants (e.g. the beam-search tables) - ~9 MB at full size
    const_value = pb_msg(8, flat(pb_int(1, 1), pb_msg(4, [Fill(max(1024, round(9_000_000 * factor)), 301)])))
    const_attr = pb_msg(5, flat(pb_bytes(1, "value"), pb_msg(2, const_value)))
    nodes += pb_msg(1, flat(pb_bytes(1, "decoder/beam_search/Const"), pb_bytes(2, "Const"), const_attr))
    graph_def = flat(nodes, pb_msg(4, [pb_int(1, 1645)]))
    meta_info = pb_bytes(4, "serve") + pb_bytes(5, "2.15.0") + pb_bytes(1, "v1")
    meta_graph = flat(pb_msg(1, [meta_info]), pb_msg(2, graph_def))
    _write(root / "saved_model.pb", flat(pb_int(1, 1), pb_msg(2, meta_graph)))
    _write(root / "fingerprint.pb", pb_int(1, 0x1234_5678_9ABC_DEF0) + pb_int(2, 77) + pb_int(3, 78)
           + pb_int(4, 79) + pb_int(5, 80) + pb_bytes(6, pb_int(1, 1)))
    _write(root / "assets" / "vocab.txt", _text.vocab_txt(870_000, seed=3))


# --- PyTorch Hub repo: hustvl/YOLOP ---------------------------------------------------------------


def yolop_tensors() -> list[Tensor]:
    """A YOLOP-sized detector state dict (float32, ~32 MB at full size)."""
    out: list[Tensor] = []
    chans = [32, 64, 128, 256, 512, 256, 128, 64]
    for i, c in enumerate(chans):
        for j in range(4):
            out += [(f"model.{i}.m.{j}.cv1.conv.weight", (c, c, 3, 3)), (f"model.{i}.m.{j}.cv1.bn.weight", (c,)),
                    (f"model.{i}.m.{j}.cv1.bn.bias", (c,)), (f"model.{i}.m.{j}.cv2.conv.weight", (c, c, 1, 1))]
    return out


YOLOP_CODE = {
    "lib/config/default.py": 7_800, "lib/config/__init__.py": 60, "lib/core/activations.py": 2_600,
    "lib/core/evaluate.py": 9_300, "lib/core/function.py": 14_200, "lib/core/general.py": 17_900,
    "lib/core/loss.py": 8_100, "lib/core/postprocess.py": 7_600, "lib/core/__init__.py": 0,
    "lib/dataset/AutoDriveDataset.py": 10_400, "lib/dataset/bdd.py": 3_400, "lib/dataset/convert.py": 900,
    "lib/dataset/DemoDataset.py": 7_000, "lib/dataset/hust.py": 3_500, "lib/dataset/__init__.py": 120,
    "lib/models/common.py": 10_300, "lib/models/YOLOP.py": 23_100, "lib/models/__init__.py": 40,
    "lib/utils/augmentations.py": 10_800, "lib/utils/autoanchor.py": 6_200, "lib/utils/plot.py": 9_500,
    "lib/utils/split_dataset.py": 1_200, "lib/utils/utils.py": 8_800, "lib/utils/__init__.py": 300,
    "tools/demo.py": 7_700, "tools/test.py": 6_000, "tools/train.py": 16_500,
    "toolkits/deploy/main.cpp": 6_700, "toolkits/deploy/yolov5.hpp": 12_000, "toolkits/deploy/zedcam.hpp": 3_900,
    "toolkits/deploy/CMakeLists.txt": 1_700, "export_onnx.py": 11_700, "test_onnx.py": 6_100,
}
#: binary assets of the repo at full size (pictures, demo video, exported ONNX weights)
YOLOP_ASSETS = {
    "pictures/yolop.png": 1_230_000, "pictures/detect.gif": 31_400_000, "pictures/da_onnx.png": 340_000,
    "pictures/ll_onnx.png": 290_000, "pictures/input2.gif": 17_800_000, "pictures/output2.gif": 18_600_000,
    "inference/videos/1.mp4": 5_900_000, "inference/images/0ace96c3-48481887.jpg": 110_000,
    "inference/images/3c0e7240-96e390d2.jpg": 125_000, "inference/images/adb4871d-4d063244.jpg": 130_000,
    "weights/yolop-320-320.onnx": 31_600_000, "weights/yolop-640-640.onnx": 31_700_000,
    "weights/yolop-1280-1280.onnx": 32_100_000,
}


def build_yolop_like(root: Path, factor: float) -> None:
    """PyTorch Hub hustvl/YOLOP as ``git clone`` leaves it: hubconf.py, code, weights, assets, and .git/."""
    _write(root / "hubconf.py", (
        b"dependencies = ['torch']\n\n"
        b"def yolop(pretrained=True, device='cpu'):\n"
        b"    from lib.models import get_net\n"
        b"    import torch, os\n"
        b"    model = get_net(False)\n"
        b"    if pretrained:\n"
        b"        path = os.path.join(os.path.dirname(__file__), 'weights', 'End-to-end.pth')\n"
        b"        model.load_state_dict(torch.load(path, map_location=device, weights_only=True)['state_dict'])\n"
        b"    return model\n"))
    for rel, size in YOLOP_CODE.items():
        _write(root / rel, _text.source(size, rel) if size else b"")
    _write(root / "README.md", _text.prose(14_300, seed=5))
    _write(root / "requirements.txt", b"torch>=1.7\ntorchvision\nopencv-python\nyacs\nscipy\ntqdm\nPyYAML\n")
    _write(root / ".gitignore", b"__pycache__/\n*.pyc\nruns/\n")
    write_checkpoint(root / "weights" / "End-to-end.pth", _scale(yolop_tensors(), factor), "float32", seed=400)
    for i, (rel, size) in enumerate(YOLOP_ASSETS.items()):
        _write(root / rel, [Fill(max(64, round(size * factor)), 410 + i)])
    # a clone's history: excluded from the signed set by both tools' default .git ignore
    git = root / ".git"
    _write(git / "HEAD", b"ref: refs/heads/main\n")
    _write(git / "config", b"[core]\n\trepositoryformatversion = 0\n\tbare = false\n")
    _write(git / "refs" / "heads" / "main", b"8d2b9c7ad1b0f1d8a0b7c8e3f2a1b0c9d8e7f6a5\n")
    _write(git / "objects" / "pack" / "pack-8d2b9c7a.pack", [Fill(max(64, round(150_000_000 * factor)), 499)])


# --- ONNX: roberta-base-11 ------------------------------------------------------------------------


def roberta_tensors() -> list[Tensor]:
    """roberta-base (125 M parameters, float32 = 499 MB) as ONNX initializers."""
    h, inter, vocab = 768, 3072, 50265
    out: list[Tensor] = [("embeddings.word_embeddings.weight", (vocab, h)),
                         ("embeddings.position_embeddings.weight", (514, h))]
    for i in range(12):
        p = f"encoder.layer.{i}"
        out += [(f"{p}.attention.self.{q}.weight", (h, h)) for q in ("query", "key", "value")]
        out += [(f"{p}.attention.output.dense.weight", (h, h)), (f"{p}.intermediate.dense.weight", (h, inter)),
                (f"{p}.output.dense.weight", (inter, h)), (f"{p}.output.LayerNorm.weight", (h,))]
    return out


def _value_info(name: str, elem_type: int, dims: Sequence[int]) -> bytes:
    """ValueInfoProto{name, type: TypeProto{tensor_type{elem_type, shape{dim[].dim_value}}}}."""
    shape = b"".join(pb_bytes(1, pb_int(1, d)) for d in dims)
    tensor_type = pb_int(1, elem_type) + pb_bytes(2, shape)
    return pb_bytes(1, name) + pb_bytes(2, pb_bytes(1, tensor_type))


def build_onnx_file(path: Path, tensors: Sequence[Tensor], seed: int) -> None:
    """A single-file ONNX ModelProto (opset 11) whose initializers carry the weights as raw_data."""
    graph: list[Part] = []
    # Identity(word embeddings) -> output: a valid, checkable graph that references the initializers
    first = tensors[0][0]
    graph += pb_msg(1, [pb_bytes(1, first) + pb_bytes(2, "embeddings") + pb_bytes(3, "Identity_0")
                        + pb_bytes(4, "Identity")])
    graph.append(pb_bytes(2, "torch-jit-export"))
    for i, (name, shape) in enumerate(tensors):
        dims = b"".join(pb_int(1, d) for d in shape)
        tensor = flat(dims + pb_int(2, 1) + pb_bytes(8, name), pb_msg(9, [Fill(_nbytes(shape, 4), seed + i)]))
        graph += pb_msg(5, tensor)
    graph.append(pb_bytes(12, _value_info("embeddings", 1, tensors[0][1])))
    model = flat(pb_int(1, 6), pb_bytes(2, "pytorch"), pb_bytes(3, "1.6"), pb_msg(7, graph),
                 pb_msg(8, [pb_bytes(1, "") + pb_int(2, 11)]))
    _write(path, model)


def build_roberta_like(root: Path, factor: float) -> None:
    """ONNX model zoo roberta-base-11: one ``.onnx`` file (the root is a directory holding only it)."""
    build_onnx_file(root / "roberta-base-11.onnx", _scale(roberta_tensors(), factor), seed=500)


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("hf-falcon-7b-like", "huggingface", "tiiuae/falcon-7b",
               "28.9 GB: 2 .bin + 8 safetensors shards, indexes, tokenizer", build_falcon_like),
        Layout("tf-bertseq2seq-like", "tf-savedmodel", "TF Hub google/bertseq2seq",
               "2.8 GB: saved_model.pb, variables data + index, assets, fingerprint", build_bertseq2seq_like),
        Layout("torchhub-yolop-like", "pytorch-hub", "PyTorch Hub hustvl/YOLOP",
               "~355 MB clone: hubconf.py, lib/ code, weights/*.pth, assets, .git", build_yolop_like),
        Layout("onnx-roberta-base-11-like", "onnx", "ONNX model zoo roberta-base-11",
               "499 MB single .onnx file", build_roberta_like),
    )
}


def model_path(layout: Layout, root: Path) -> Path:
    """The path a tool signs: the directory, or for single-file families the file itself."""
    return root / "roberta-base-11.onnx" if layout.family == "onnx" else root


def generate(layout: Layout, data_dir: Path, factor: float) -> Path:
    """Build ``layout`` at ``factor`` under ``data_dir`` (reused when already complete); return its root."""
    root = data_dir / f"{layout.name}-x{factor:g}"
    stamp = data_dir / f"{layout.name}-x{factor:g}.done.json"
    want = {"layout": layout.name, "factor": factor, "version": LAYOUT_VERSION}
    if stamp.exists() and root.exists():
        try:
            if json.loads(stamp.read_text()) == want:
                return root
        except ValueError:
            pass
    stamp.unlink(missing_ok=True)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    layout.build(root, factor)
    stamp.write_text(json.dumps(want))  # written last: a half-built layout is rebuilt next time
    return root
