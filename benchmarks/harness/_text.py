"""Plausible small text files of a given size (tokenizers, vocabularies, source code, READMEs).

Metadata files in real repos are small but numerous; the layouts carry them at their real sizes so
file counts and per-file overheads match the originals.
"""

from __future__ import annotations

import json
import random

_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "zi", "po", "an", "er", "in", "on", "st", "th", "qu", "ex"]


def words(count: int, seed: int = 0) -> list[str]:
    """``count`` distinct pseudo-words (syllables, then a base-36 suffix once the short ones run out)."""
    rng = random.Random(seed)
    out: list[str] = []
    for i in range(count):
        w = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3)))
        out.append(w if i < 256 else f"{w}{i:x}")
    return list(dict.fromkeys(out))


def vocab_txt(size: int, seed: int = 0) -> bytes:
    """A BERT-style ``vocab.txt`` (one token a line) of about ``size`` bytes."""
    lines = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    total = sum(len(x) + 1 for x in lines)
    for w in words(max(16, size // 5), seed):
        if total >= size:
            break
        lines.append(w)
        total += len(w) + 1
    return ("\n".join(lines) + "\n").encode()


def tokenizer_json(size: int, seed: int = 0) -> bytes:
    """A Hugging Face ``tokenizer.json`` (BPE model with vocab and merges) of about ``size`` bytes."""
    vocab: dict[str, int] = {}
    merges: list[str] = []
    budget = size - 400
    ws = words(max(16, size // 12), seed)
    for i, w in enumerate(ws):
        if budget <= 0:
            break
        vocab[w] = i
        budget -= len(w) + 10
        if i % 2 and budget > 0:
            merges.append(f"{ws[i - 1]} {w}")
            budget -= len(merges[-1]) + 4
    doc = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": 0, "content": "<|endoftext|>", "special": True}],
        "normalizer": None, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False},
        "post_processor": None, "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "vocab": vocab, "merges": merges},
    }
    return json.dumps(doc, indent=1).encode()


def source(size: int, name: str, seed: int = 0) -> bytes:
    """Valid Python source of about ``size`` bytes (whole functions, so it may run a little over)."""
    rng = random.Random(f"{seed}:{name}")
    lines = [f'"""{name}: generated stand-in for model code (same size as the original)."""', "", "import math", ""]
    total = sum(len(x) + 1 for x in lines)
    n = 0
    while total < size:
        a, b = rng.choice(_SYLLABLES), rng.choice(_SYLLABLES)
        block = [f"def {a}{b}_{n}(x, y={n}):", f"    return math.sqrt(abs(x * {n} - y)) + {rng.random():.6f}", ""]
        lines += block
        total += sum(len(x) + 1 for x in block)
        n += 1
    return ("\n".join(lines) + "\n").encode()  # whole lines (about ``size``): it must stay valid Python


def prose(size: int, seed: int = 0) -> bytes:
    """Markdown prose of about ``size`` bytes (READMEs, model cards)."""
    ws = words(400, seed)
    rng = random.Random(seed)
    out = ["# Model card", ""]
    total = 14
    while total < size:
        line = " ".join(rng.choice(ws) for _ in range(14)) + "."
        out.append(line)
        total += len(line) + 1
    return "\n".join(out).encode()[: max(size, 1)]
