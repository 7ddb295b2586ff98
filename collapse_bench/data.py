"""Corpora, vocabularies and length-bucketed batches.

Every corpus is a `Corpus` of three `Split`s of int64 token-id arrays (no <s> </s>), built by
`load_corpus(name, data_dir, limits, seed)`. The file formats and provenance are described in the
data directory's README. `synthetic` is generated in memory and needs no files.
"""
from __future__ import annotations

import difflib
import functools
import gzip
import hashlib
import inspect
import json
import os
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
DATASETS: tuple[str, ...] = ("synthetic", "ptb", "short-yelp", "yahoo-mini", "yelp", "yahoo")
ENV_VAR = "COLLAPSE_BENCH_DATA"
CACHE_ENV_VAR = "COLLAPSE_BENCH_CACHE"


class DataError(ValueError):
    """Malformed or missing data; the message names the file (and line) and the fix."""


# ----------------------------------------------------------------------------- vocabulary

class Vocab:
    """itos[i] is the token of id i; ids 0..3 are always SPECIALS. `aliases` are the source's spellings
    of the four specials (e.g. yahoo's "_UNK"): stoi maps them, and ours, to PAD/BOS/EOS/UNK."""

    def __init__(self, itos: Sequence[str], aliases: Sequence[str] = SPECIALS):
        if tuple(itos[:4]) != SPECIALS or len(aliases) != 4:
            raise ValueError(f"a Vocab starts with {SPECIALS} and has 4 aliases, got {list(itos[:4])}, {list(aliases)}")
        self.itos: list[str] = list(itos)
        self.aliases: tuple[str, ...] = tuple(aliases)
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(SPECIALS)}
        self.stoi.update((t, i) for i, t in enumerate(self.aliases))
        for i, t in enumerate(self.itos[4:], 4):
            if t in self.stoi:
                raise ValueError(f"duplicate token {t!r} at ids {self.stoi[t]} and {i}")
            self.stoi[t] = i

    @classmethod
    def build(cls, sentences: Iterable[list[str]], max_size: int | None = None) -> "Vocab":
        """Specials first, then tokens by frequency (desc), ties alphabetical. max_size counts the specials.
        Tokens spelled like a special (e.g. PTB's literal "<unk>") are not added: they map to it."""
        if max_size is not None and max_size < 4:
            raise ValueError(f"max_size must be >= 4 (the specials), got {max_size}")
        counts = Counter(t for s in sentences for t in s)
        words = sorted((t for t in counts if t not in SPECIALS), key=lambda t: (-counts[t], t))
        return cls(list(SPECIALS) + words[: None if max_size is None else max_size - 4])

    @classmethod
    def from_file(cls, path: str | Path) -> "Vocab":
        """One token per line, or "token<TAB>id" with ids 0, 1, 2, ... in line order.
        The first four entries are the specials whatever their spelling."""
        words: list[str] = []
        seen: dict[str, int] = {}
        for i, line in enumerate(_read_lines(path)):
            tok, tab, idx = line.partition("\t")
            if tab and idx.strip() != str(i):
                raise DataError(f"{path}:{i + 1}: id {idx.strip()!r} of token {tok!r} should be {i}; a vocab file is "
                                f"one token per line, or 'token<TAB>id' with ids 0, 1, 2, ... in line order")
            if len(tok.split()) != 1 or tok.strip() != tok:
                raise DataError(f"{path}:{i + 1}: vocab entry {tok!r} is not a single whitespace-free token; "
                                f"write one token per line (optionally followed by <TAB>id)")
            if tok in seen:
                raise DataError(f"{path}:{i + 1}: token {tok!r} already appeared on line {seen[tok] + 1}; "
                                f"remove the duplicate")
            seen[tok] = i
            words.append(tok)
        if len(words) < 4:
            raise DataError(f"{path}: {len(words)} entries; a vocab file begins with the four specials "
                            f"(pad, bos, eos, unk, in that order, any spelling) followed by the words")
        try:
            return cls(list(SPECIALS) + words[4:], aliases=words[:4])
        except ValueError as e:  # a word spelled like one of our specials, e.g. "<unk>" after "_UNK"
            raise DataError(f"{path}: {e}; a special may appear only among the first four entries") from None

    def save(self, path: str | Path) -> None:
        """Write "token<TAB>id" lines, with the source's spelling of the specials, so from_file round-trips."""
        Path(path).write_text("".join(f"{t}\t{i}\n" for i, t in enumerate(list(self.aliases) + self.itos[4:])),
                              encoding="utf-8")

    def encode(self, tokens: list[str]) -> np.ndarray:
        get = self.stoi.get
        return np.fromiter((get(t, UNK) for t in tokens), dtype=np.int64, count=len(tokens))

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids]

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos and self.stoi == other.stoi

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens)"


# ----------------------------------------------------------------------------- splits and corpora

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


# ----------------------------------------------------------------------------- file reading

def _read_lines(path: str | Path) -> list[str]:
    """Lines of a (possibly gzipped) UTF-8 file; a blank line is an error."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for i, line in enumerate(lines):
        if not line.strip():
            raise DataError(f"{path}:{i + 1}: blank line; every line must hold one example, so delete it")
    return [line.rstrip("\r") for line in lines]


def _read_text(path: Path) -> list[list[str]]:
    return [line.split() for line in _read_lines(path)]


def _read_labelled(path: Path) -> tuple[list[list[str]], np.ndarray]:
    """`label<TAB>text` lines with a non-negative integer label."""
    lines = _read_lines(path)
    toks, labels = [], np.empty(len(lines), dtype=np.int64)
    for i, line in enumerate(lines):
        lab, tab, text = line.partition("\t")
        try:
            labels[i] = int(lab) if tab else -1
        except ValueError:
            labels[i] = -1
        if labels[i] < 0:
            raise DataError(f"{path}:{i + 1}: expected 'label<TAB>text' with a non-negative integer label, got "
                            f"{line[:60]!r}; fix the line, e.g. '1\\tthe food was great .'")
        toks.append(text.split())
    return toks, labels


def _encode_all(vocab: Vocab, sentences: list[list[str]]) -> list[np.ndarray]:
    lens = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
    get = vocab.stoi.get
    flat = np.fromiter((get(t, UNK) for s in sentences for t in s), dtype=np.int64, count=int(lens.sum()))
    return np.split(flat, np.cumsum(lens)[:-1]) if len(sentences) else []


def default_data_dir() -> Path | None:
    v = os.environ.get(ENV_VAR, "").strip()
    return Path(v) if v else None


def _resolve(root: Path, rel: str) -> Path | None:
    for p in (root / rel, root / (rel + ".gz")):
        if p.is_file():
            return p
    return None


_SY, _SHEN, _YAHOO, _YELP = "short_yelp_li2019", "yelp_shen2017", "yahoo_yang2017", "yelp_yang2017"
_LABEL_SIZES = (100, 500, 1000, 2000, 10000)
_SHEN_FILES = tuple(f"{_SHEN}/sentiment.{part}.{c}" for part in ("dev", "test") for c in (0, 1))
_FILES: dict[str, tuple[str, ...]] = {
    "ptb": ("ptb/ptb.train.txt", "ptb/ptb.valid.txt", "ptb/ptb.test.txt"),
    "short-yelp": (f"{_SY}/vocab.txt", f"{_SY}/short_yelp.valid.txt", f"{_SY}/short_yelp.test.txt",
                   *(f"{_SY}/short_yelp.train.{n}.txt" for n in _LABEL_SIZES), *_SHEN_FILES),
    "yahoo-mini": (f"{_YAHOO}/vocab.txt", f"{_YAHOO}/yahoo.valid.txt", f"{_YAHOO}/yahoo.test.txt"),
    "yelp": (f"{_YELP}/vocab.txt", *(f"{_YELP}/yelp.{s}.txt" for s in ("train", "valid", "test"))),
    "yahoo": (f"{_YAHOO}/vocab.txt", *(f"{_YAHOO}/yahoo.{s}.txt" for s in ("train", "valid", "test"))),
}
_MISSING_HINT = {
    "yelp": " The Yelp LM text (Yang et al. 2017) is not in the staged data; 'short-yelp' is the Yelp corpus that is.",
    "yahoo": " yahoo.train.txt (Yang et al. 2017) is not in the staged data; 'yahoo-mini' uses its valid/test files.",
}


def _require(name: str, data_dir: str | Path | None) -> dict[str, Path]:
    """Map each expected relative path of dataset `name` to an existing file, or raise naming what is missing."""
    files = _FILES[name]
    listing = ", ".join(files)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if root is None:
        raise DataError(f"dataset {name!r} needs data files and no data directory was given: pass --data-dir DIR or "
                        f"set {ENV_VAR}=DIR, where DIR contains {listing} (each may be gzipped as NAME.gz). "
                        f"'synthetic' needs no files.")
    found = {rel: _resolve(root, rel) for rel in files}
    missing = [str(root / rel) for rel, p in found.items() if p is None]
    if missing:
        where = "" if root.is_dir() else f" (the directory {root} does not exist)"
        raise DataError(f"dataset {name!r}: {len(missing)} of {len(files)} expected files are missing{where}: "
                        f"{', '.join(missing)} (a gzipped NAME.gz is also accepted).{_MISSING_HINT.get(name, '')} "
                        f"Put the files there, or point --data-dir / {ENV_VAR} at the directory that holds them.")
    return found  # type: ignore[return-value]


# ----------------------------------------------------------------------------- the corpora

# independent random streams default_rng((seed, salt)), so e.g. changing max_valid leaves the train subsample alone
_SALT = {"train": 0, "valid": 1, "test": 2}
_SALT_YAHOO_MINI = 3

# Synthetic data after He et al. 2019's final generator (data README section 6). Constant seed: never changes.
SYNTHETIC_SEED = 783435
SYNTHETIC_CENTERS = np.array([[-2.0, -2.0], [-2.0, 2.0], [2.0, -2.0], [2.0, 2.0]])
SYNTHETIC_SIZES = {"train": 16000, "valid": 2000, "test": 2000}
_SYN_V, _SYN_EMB, _SYN_HID, _SYN_NZ, _SYN_LEN = 1000, 100, 100, 2, 10
_SYN_CHUNK = 1024


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
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, ids=arrays[0], labels=arrays[1], z=arrays[2])
        os.replace(tmp, path)                   # atomic: a reader sees the whole file or none
    except OSError:
        tmp.unlink(missing_ok=True)             # a read-only home only costs the next process the generation


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


def _synthetic(seed: int) -> Corpus:
    ids, labels, zs = _synthetic_arrays()
    splits, latent, lo = {}, {}, 0
    for key, size in SYNTHETIC_SIZES.items():
        splits[key] = Split(list(ids[lo:lo + size].copy()), labels[lo:lo + size].copy())
        latent[key] = zs[lo:lo + size].copy()
        lo += size
    vocab = Vocab(list(SPECIALS) + [f"w{i}" for i in range(_SYN_V)])
    return Corpus("synthetic", vocab, splits["train"], splits["valid"], splits["test"], {}, 4, latent)


def _ptb(files: dict[str, Path], seed: int) -> Corpus:
    train = _read_text(files["ptb/ptb.train.txt"])
    vocab = Vocab.build(train)  # the literal "<unk>" of the files maps to UNK
    enc = lambda toks: Split(_encode_all(vocab, toks))
    return Corpus("ptb", vocab, enc(train), enc(_read_text(files["ptb/ptb.valid.txt"])),
                  enc(_read_text(files["ptb/ptb.test.txt"])))


def _labelled(vocab: Vocab, path: Path) -> Split:
    toks, labels = _read_labelled(path)
    return Split(_encode_all(vocab, toks), labels)


def _short_yelp(files: dict[str, Path], seed: int) -> Corpus:
    """Li et al.'s short-Yelp valid/test/labelled subsets. Their 100k train file is unavailable, so the train
    pool is Shen et al.'s dev+test plus the 10k labelled subset, minus every sentence that occurs in valid or test."""
    vocab = Vocab.from_file(files[f"{_SY}/vocab.txt"])
    valid, test = (_labelled(vocab, files[f"{_SY}/short_yelp.{s}.txt"]) for s in ("valid", "test"))
    subsets = {n: _labelled(vocab, files[f"{_SY}/short_yelp.train.{n}.txt"]) for n in _LABEL_SIZES}
    sents: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for rel in _SHEN_FILES:
        s = _encode_all(vocab, _read_text(files[rel]))
        sents += s
        labels.append(np.full(len(s), int(rel[-1]), dtype=np.int64))
    sents += subsets[10000].sentences
    labels.append(subsets[10000].labels)
    # compare after mapping to the vocab, so sentences that differ only in OOV words are caught too
    held_out = {s.tobytes() for s in valid.sentences + test.sentences}
    keep = np.array([s.tobytes() not in held_out for s in sents], dtype=bool)
    train = Split(sents, np.concatenate(labels)).subset(np.flatnonzero(keep))
    return Corpus("short-yelp", vocab, train, valid, test, subsets, 2)


def _yahoo_mini(files: dict[str, Path], seed: int) -> Corpus:
    """yahoo.valid.txt split 90/10 (seeded) into train/valid; test = yahoo.test.txt."""
    vocab = Vocab.from_file(files[f"{_YAHOO}/vocab.txt"])
    pool = Split(_encode_all(vocab, _read_text(files[f"{_YAHOO}/yahoo.valid.txt"])))
    perm = np.random.default_rng((seed, _SALT_YAHOO_MINI)).permutation(len(pool))
    n_valid = len(pool) // 10
    return Corpus("yahoo-mini", vocab, pool.subset(np.sort(perm[n_valid:])), pool.subset(np.sort(perm[:n_valid])),
                  Split(_encode_all(vocab, _read_text(files[f"{_YAHOO}/yahoo.test.txt"]))))


def _yelp(files: dict[str, Path], seed: int) -> Corpus:
    vocab = Vocab.from_file(files[f"{_YELP}/vocab.txt"])
    train, valid, test = (_labelled(vocab, files[f"{_YELP}/yelp.{s}.txt"]) for s in ("train", "valid", "test"))
    num_classes = int(max(s.labels.max(initial=-1) for s in (train, valid, test))) + 1  # labels kept as in the file
    return Corpus("yelp", vocab, train, valid, test, {}, num_classes)


def _yahoo(files: dict[str, Path], seed: int) -> Corpus:
    vocab = Vocab.from_file(files[f"{_YAHOO}/vocab.txt"])
    train, valid, test = (Split(_encode_all(vocab, _read_text(files[f"{_YAHOO}/yahoo.{s}.txt"])))
                          for s in ("train", "valid", "test"))
    return Corpus("yahoo", vocab, train, valid, test)


_BUILDERS: dict[str, Callable[[dict[str, Path], int], Corpus]] = {
    "ptb": _ptb, "short-yelp": _short_yelp, "yahoo-mini": _yahoo_mini, "yelp": _yelp, "yahoo": _yahoo}


def load_corpus(name: str, data_dir: str | Path | None = None, limits: DataLimits = DataLimits(),
                seed: int = 0) -> Corpus:
    """Load dataset `name`, then apply `limits`: drop train sentences longer than max_len, and cap each split
    by a seeded subsample that keeps the original order. `seed` is the data seed (subsamples and splits)."""
    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DataError(f"unknown dataset {name!r}.{hint} Known datasets: {', '.join(DATASETS)}.")
    corpus = _synthetic(seed) if name == "synthetic" else _BUILDERS[name](_require(name, data_dir), seed)
    caps = {"train": limits.max_train, "valid": limits.max_valid, "test": limits.max_test}
    for key, cap in caps.items():
        split: Split = getattr(corpus, key)
        index = np.arange(len(split))
        if key == "train" and limits.max_len is not None:
            index = index[split.lengths() <= limits.max_len]
        if cap is not None and len(index) > cap:
            index = np.sort(np.random.default_rng((seed, _SALT[key])).choice(index, size=cap, replace=False))
        if len(index) < len(split):
            setattr(corpus, key, split.subset(index))
            if corpus.latent is not None:
                corpus.latent[key] = corpus.latent[key][index]
    return corpus


# ----------------------------------------------------------------------------- batching

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
