"""He et al.'s length-bucketed batches: one length per batch, no padding."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .corpus import Split
from .vocab import BOS, EOS


@dataclass
class Batch:
    tokens: torch.Tensor          # LongTensor [B, T+2]: <s> w1..wT </s>, one length T per batch, no padding
    index: np.ndarray             # positions of these sentences in the split
    labels: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return self.tokens.shape[0]

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.tokens.to(device), self.index, None if self.labels is None else self.labels.to(device))


def bucket_batches(split: Split, batch_size: int, *, seed: int = 0, shuffle: bool = False) -> list[Batch]:
    """He et al.'s batching: sentences grouped by length and cut into batches of at most batch_size that all share
    one length (no padding). Which sentences of one length share a batch is decided by a seeded shuffle, never by
    the file's order: corpus files are often sorted by label or source (short-Yelp's pool is), and a stable length
    sort would hand the model label-pure batches, which BN-VAE's batch statistics turn into a different model.
    The original code's unstable sort scatters ties too, but by accident. shuffle=True also permutes the batch order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(split)
    if n == 0:
        return []
    rng = np.random.default_rng(seed)
    lens = split.lengths()
    flat = np.concatenate(split.sentences).astype(np.int64, copy=False)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    scattered = rng.permutation(n)
    order = scattered[np.argsort(lens[scattered], kind="stable")]
    batches: list[Batch] = []
    for group in np.split(order, np.flatnonzero(np.diff(lens[order])) + 1):
        T = int(lens[group[0]])
        tok = np.empty((len(group), T + 2), dtype=np.int64)
        tok[:, 0], tok[:, -1] = BOS, EOS
        tok[:, 1:-1] = flat[starts[group, None] + np.arange(T)]
        tokens = torch.from_numpy(tok)
        labels = None if split.labels is None else torch.from_numpy(split.labels[group])
        for lo in range(0, len(group), batch_size):
            sl = slice(lo, lo + batch_size)
            batches.append(Batch(tokens[sl], group[sl], None if labels is None else labels[sl]))
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches
