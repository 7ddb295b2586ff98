"""The in-memory corpus: `Split`s of int64 token-id arrays, a `Corpus` of three of them, and `DataLimits`."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .vocab import Vocab


@dataclass
class Split:
    sentences: list[np.ndarray]         # int64 token ids WITHOUT <s> </s>
    labels: np.ndarray | None = None    # int64 class per sentence, or None

    def __post_init__(self):
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
            if self.labels.shape != (len(self.sentences),):
                raise ValueError(f"labels have shape {self.labels.shape}, expected ({len(self.sentences)},)")

    def __len__(self) -> int:
        return len(self.sentences)

    def lengths(self) -> np.ndarray:
        return np.fromiter(map(len, self.sentences), dtype=np.int64, count=len(self.sentences))

    def num_tokens(self) -> int:
        return int(self.lengths().sum()) + len(self)  # +1 per sentence for </s>, as PPL counts it

    def subset(self, index: np.ndarray | Sequence[int]) -> "Split":
        index = np.asarray(index, dtype=np.int64)
        return Split([self.sentences[i] for i in index], None if self.labels is None else self.labels[index])

    def _hash_into(self, h) -> None:
        lens = self.lengths()
        h.update(lens.astype("<i8").tobytes())
        if len(self):
            h.update(np.concatenate(self.sentences).astype("<i8").tobytes())
        h.update(b"no-labels" if self.labels is None else b"labels" + self.labels.astype("<i8").tobytes())


@dataclass
class Corpus:
    name: str
    vocab: Vocab
    train: Split
    valid: Split
    test: Split
    label_subsets: dict[int, Split] = field(default_factory=dict)  # fixed labelled training subsets by size
    num_classes: int = 0                                            # 0 if unlabelled
    latent: dict[str, np.ndarray] | None = None                     # synthetic only: true z per split name

    def fingerprint(self) -> str:
        """sha256 over the vocabulary and every split's ids and labels (the dataset hash of result files)."""
        h = hashlib.sha256()
        h.update(json.dumps([self.vocab.itos, sorted(self.vocab.stoi.items())]).encode())
        parts = [("train", self.train), ("valid", self.valid), ("test", self.test)]
        for key, split in parts + [(f"labelled-{n}", s) for n, s in sorted(self.label_subsets.items())]:
            h.update(key.encode())
            split._hash_into(h)
        return h.hexdigest()

    def __repr__(self) -> str:
        subsets = f", label_subsets={sorted(self.label_subsets)}" if self.label_subsets else ""
        return (f"Corpus({self.name!r}, vocab={len(self.vocab)}, train/valid/test={len(self.train)}/"
                f"{len(self.valid)}/{len(self.test)}, classes={self.num_classes}{subsets})")


@dataclass(frozen=True)
class DataLimits:
    max_train: int | None = None
    max_valid: int | None = None
    max_test: int | None = None
    max_len: int | None = None  # drop longer sentences (tokens, without <s></s>) from train only

    def __post_init__(self):
        for k in ("max_train", "max_valid", "max_test", "max_len"):
            v = getattr(self, k)
            if v is not None and (not isinstance(v, (int, np.integer)) or v < (0 if k == "max_len" else 1)):
                raise ValueError(f"limits.{k} must be None or an integer >= {0 if k == 'max_len' else 1}, got {v!r}")
