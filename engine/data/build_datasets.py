"""Build the shipped datasets as canonical safetensors files (run once; outputs are committed).

    python -m engine.data.build_datasets

- digits.safetensors: scikit-learn's bundled 8x8 handwritten digits (1,797 images, offline), pixels
  scaled to [0, 1] as float32 `[N, 64]`, labels int64; a fixed shuffled 80/20 train/test split.
- tinytext.safetensors: a character-level language-modelling set from `tinytext.txt`, a corpus
  generated here from a small English grammar (so it is ours to ship); windows of 32 tokens,
  `train_x[i]` and `train_y[i]` offset by one character.

Every dataset file holds `train_x`, `train_y`, `test_x`, `test_y` and metadata describing itself.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TEXT_WINDOW = 32


def build_digits() -> bytes:
    """Digits as canonical safetensors bytes."""
    import torch
    from sklearn.datasets import load_digits

    from engine.tensors_io import encode

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.RandomState(20_240_601).permutation(len(x))
    x, y = x[order], y[order]
    cut = int(len(x) * 0.8)
    tensors = {
        "train_x": torch.from_numpy(x[:cut].copy()), "train_y": torch.from_numpy(y[:cut].copy()),
        "test_x": torch.from_numpy(x[cut:].copy()), "test_y": torch.from_numpy(y[cut:].copy()),
    }  # fmt: skip
    meta = {"name": "digits", "source": "sklearn.datasets.load_digits", "classes": "10", "input_shape": "[64]"}
    return encode(tensors, meta)


_SUBJECTS = ["the cat", "a dog", "the old man", "my sister", "the bird", "a small fox", "the teacher", "our cook"]
_VERBS = ["sees", "likes", "finds", "paints", "follows", "feeds", "carries", "hears"]
_OBJECTS = ["the ball", "a red apple", "the river", "a green hat", "the moon", "some bread", "the garden", "a letter"]
_ENDINGS = ["today", "at night", "in the morning", "again", "with care", "near the house", "every day", "slowly"]


def generate_corpus(sentences: int = 900, seed: int = 7) -> str:
    """A deterministic toy English corpus: subject, verb, object, ending."""
    rng = random.Random(seed)
    lines = []
    for _ in range(sentences):
        words = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)]
        if rng.random() < 0.6:
            words.append(rng.choice(_ENDINGS))
        lines.append(" ".join(words) + ".")
    return "\n".join(lines) + "\n"


def build_tinytext(corpus: str) -> bytes:
    """Character windows of the corpus as canonical safetensors bytes."""
    import torch

    from engine.tensors_io import encode

    vocab = sorted(set(corpus))
    index = {ch: i for i, ch in enumerate(vocab)}
    tokens = np.array([index[ch] for ch in corpus], dtype=np.int64)
    count = (len(tokens) - 1) // TEXT_WINDOW
    x = np.stack([tokens[i * TEXT_WINDOW : (i + 1) * TEXT_WINDOW] for i in range(count)])
    y = np.stack([tokens[i * TEXT_WINDOW + 1 : (i + 1) * TEXT_WINDOW + 1] for i in range(count)])
    cut = int(count * 0.9)
    tensors = {
        "train_x": torch.from_numpy(x[:cut].copy()), "train_y": torch.from_numpy(y[:cut].copy()),
        "test_x": torch.from_numpy(x[cut:].copy()), "test_y": torch.from_numpy(y[cut:].copy()),
    }  # fmt: skip
    meta = {"name": "tinytext", "source": "engine/data/tinytext.txt", "vocab": json.dumps(vocab),
            "classes": str(len(vocab)), "input_shape": f"[{TEXT_WINDOW}]"}  # fmt: skip
    return encode(tensors, meta)


def main() -> None:
    """Write every dataset next to this file and print their hashes."""
    from protocol.hashing import sha256_hex

    corpus = generate_corpus()
    (HERE / "tinytext.txt").write_text(corpus, encoding="utf-8")
    for name, data in (("digits", build_digits()), ("tinytext", build_tinytext(corpus))):
        (HERE / f"{name}.safetensors").write_bytes(data)
        print(f"{name}: {len(data)} bytes {sha256_hex(data)}")


if __name__ == "__main__":
    main()
