"""The synthetic corpus after He et al. 2019's final generator (data README section 6), and its disk cache.

Generated in memory from a constant seed; needs no files. Generating costs ~3 s of one core, so the arrays are
kept on disk under `cache_dir()` in a file named by a hash of the generator's code and constants."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..fileio import atomic_path
from .corpus import Corpus, Split
from .vocab import SPECIALS, Vocab

CACHE_ENV_VAR = "COLLAPSE_BENCH_CACHE"
SYNTHETIC_SEED = 783435  # constant: the corpus never changes
SYNTHETIC_CENTERS = np.array([[-2.0, -2.0], [-2.0, 2.0], [2.0, -2.0], [2.0, 2.0]])
SYNTHETIC_SIZES = {"train": 16000, "valid": 2000, "test": 2000}
_SYN_V, _SYN_EMB, _SYN_HID, _SYN_NZ, _SYN_LEN = 1000, 100, 100, 2, 10
_SYN_CHUNK = 1024


def synthetic_corpus(seed: int) -> Corpus:
    """The whole synthetic corpus, as fresh copies the caller may change. `seed` (the data seed) is unused: the
    corpus is fixed, and only `DataLimits` subsamples depend on the seed."""
    ids, labels, zs = _synthetic_arrays()
    splits, latent, lo = {}, {}, 0
    for key, size in SYNTHETIC_SIZES.items():
        splits[key] = Split(list(ids[lo:lo + size].copy()), labels[lo:lo + size].copy())
        latent[key] = zs[lo:lo + size].copy()
        lo += size
    vocab = Vocab(list(SPECIALS) + [f"w{i}" for i in range(_SYN_V)])
    return Corpus("synthetic", vocab, splits["train"], splits["valid"], splits["test"], {}, 4, latent)


@functools.lru_cache(maxsize=1)
def _synthetic_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids [N, 10] with the specials' offset, mixture component [N], z [N, 2]); read-only, cached in this process
    and on disk (`cache_dir()`): generating costs ~3 s of one core, paid by every worker process of a sweep."""
    path = _synthetic_cache_file()
    arrays = _read_cached(path) if path else None
    if arrays is None:
        # One thread: the result cannot depend on the caller's thread count, and on a busy machine two BLAS
        # threads run this several times slower than one.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            arrays = _generate_synthetic()
        finally:
            torch.set_num_threads(threads)
        if path:
            _write_cached(path, arrays)
    for a in arrays:
        a.flags.writeable = False
    return arrays


def cache_dir() -> Path | None:
    """Where generated corpora are kept between processes: $COLLAPSE_BENCH_CACHE (`off` disables), else
    $XDG_CACHE_HOME/collapse_bench, else ~/.cache/collapse_bench."""
    env = os.environ.get(CACHE_ENV_VAR, "")
    if env.lower() in ("off", "0", "none"):
        return None
    return Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "collapse_bench"


def _synthetic_cache_file() -> Path | None:
    """The file name carries a hash of everything the corpus depends on (the generator's code and constants, torch's
    version), so a changed generator never reads an old file."""
    root = cache_dir()
    if root is None:
        return None
    key = repr((inspect.getsource(_generate_synthetic), SYNTHETIC_SEED, SYNTHETIC_CENTERS.tolist(), SYNTHETIC_SIZES,
                _SYN_V, _SYN_EMB, _SYN_HID, _SYN_NZ, _SYN_LEN, len(SPECIALS), torch.__version__))
    return root / f"synthetic-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def _read_cached(path: Path) -> tuple[np.ndarray, ...] | None:
    n = sum(SYNTHETIC_SIZES.values())
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = (f["ids"], f["labels"], f["z"])
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # absent, unreadable, truncated: generate
        return None
    ok = [a.shape for a in arrays] == [(n, _SYN_LEN), (n,), (n, _SYN_NZ)]
    return arrays if ok else None


def _write_cached(path: Path, arrays: tuple[np.ndarray, ...]) -> None:
    """Atomically: a reader sees the whole file or none. An OSError (e.g. a read-only home) is swallowed: it only
    costs the next process the generation."""
    with contextlib.suppress(OSError), atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, ids=arrays[0], labels=arrays[1], z=arrays[2])


def _generate_synthetic() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = torch.Generator().manual_seed(SYNTHETIC_SEED)
    f64 = torch.float64  # float64 so the sampled corpus does not depend on the BLAS kernel's rounding

    def uniform(*shape: int, a: float = 1.0) -> torch.Tensor:
        return (torch.rand(shape, generator=g, dtype=f64) * 2 - 1) * a

    V, E, H, NZ = _SYN_V, _SYN_EMB, _SYN_HID, _SYN_NZ
    emb, w_ih, w_hh = uniform(V, E), uniform(4 * H, E + NZ), uniform(4 * H, H)
    b_ih, b_hh = uniform(4 * H), uniform(4 * H)
    w_c, w_out, w_z = uniform(H, NZ), uniform(V, H), uniform(V, NZ, a=5.0)
    n = sum(SYNTHETIC_SIZES.values())
    comp = torch.randint(4, (n,), generator=g)
    z = torch.from_numpy(SYNTHETIC_CENTERS)[comp] + torch.randn(n, NZ, generator=g, dtype=f64)
    ids = torch.empty(n, _SYN_LEN, dtype=torch.int64)
    ids[:, 0] = torch.randint(V, (n,), generator=g)
    u = torch.rand(n, _SYN_LEN - 1, generator=g, dtype=f64)  # all draws made up front: chunking cannot change them
    # Vectorised over sentences in chunks of _SYN_CHUNK rows: [20000, 1000] float64 logits per step would cost
    # 160 MB of fresh pages each and run several times slower.
    for lo in range(0, n, _SYN_CHUNK):
        zc, uc, xs = z[lo:lo + _SYN_CHUNK], u[lo:lo + _SYN_CHUNK], ids[lo:lo + _SYN_CHUNK]
        c = zc @ w_c.T
        h = torch.tanh(c)
        z_logits = zc @ w_z.T
        for t in range(1, _SYN_LEN):
            gates = torch.cat([emb[xs[:, t - 1]], zc], 1) @ w_ih.T + b_ih + h @ w_hh.T + b_hh
            i, f, gg, o = gates.chunk(4, 1)  # PyTorch's LSTM gate order
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
            h = torch.sigmoid(o) * torch.tanh(c)
            # inverse-CDF sample from softmax(logits): one uniform per token, much cheaper than multinomial
            cdf = torch.softmax(torch.addmm(z_logits, h, w_out.T), 1).cumsum_(1)
            xs[:, t] = torch.searchsorted(cdf, uc[:, t - 1:t] * cdf[:, -1:], right=True).squeeze(1).clamp_max(V - 1)
    return (ids + len(SPECIALS)).numpy(), comp.numpy().astype(np.int64), z.numpy().astype(np.float32)
