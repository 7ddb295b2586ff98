"""The real corpora's readers and `load_corpus`, the one entry point for every dataset.

Every corpus is a `Corpus` of three `Split`s of int64 token-id arrays (no <s> </s>). The file formats and
provenance are described in the data directory's README. `synthetic` is generated in memory and needs no files."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .catalog import LABEL_SIZES, SHEN_FILES, SHORT_YELP, YAHOO, YELP, check_name, dataset_files
from .corpus import Corpus, DataLimits, Split
from .files import read_labelled, read_text
from .synthetic import synthetic_corpus
from .vocab import Vocab

# independent random streams default_rng((seed, salt)), so e.g. changing max_valid leaves the train subsample alone
_SALT = {"train": 0, "valid": 1, "test": 2}
_SALT_YAHOO_MINI = 3


def load_corpus(name: str, data_dir: str | Path | None = None, limits: DataLimits = DataLimits(),
                seed: int = 0) -> Corpus:
    """Load dataset `name`, then apply `limits`: drop train sentences longer than max_len, and cap each split
    by a seeded subsample that keeps the original order. `seed` is the data seed (subsamples and splits)."""
    check_name(name)
    corpus = synthetic_corpus(seed) if name == "synthetic" else _BUILDERS[name](dataset_files(name, data_dir), seed)
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


def _ptb(files: dict[str, Path], seed: int) -> Corpus:
    train = read_text(files["ptb/ptb.train.txt"])
    vocab = Vocab.build(train)  # the literal "<unk>" of the files maps to UNK
    enc = lambda toks: Split(vocab.encode_all(toks))
    return Corpus("ptb", vocab, enc(train), enc(read_text(files["ptb/ptb.valid.txt"])),
                  enc(read_text(files["ptb/ptb.test.txt"])))


def _labelled(vocab: Vocab, path: Path) -> Split:
    toks, labels = read_labelled(path)
    return Split(vocab.encode_all(toks), labels)


def _short_yelp(files: dict[str, Path], seed: int) -> Corpus:
    """Li et al.'s short-Yelp valid/test/labelled subsets. Their 100k train file is unavailable, so the train
    pool is Shen et al.'s dev+test plus the 10k labelled subset, minus every sentence that occurs in valid or test."""
    vocab = Vocab.from_file(files[f"{SHORT_YELP}/vocab.txt"])
    valid, test = (_labelled(vocab, files[f"{SHORT_YELP}/short_yelp.{s}.txt"]) for s in ("valid", "test"))
    subsets = {n: _labelled(vocab, files[f"{SHORT_YELP}/short_yelp.train.{n}.txt"]) for n in LABEL_SIZES}
    sents: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for rel in SHEN_FILES:
        s = vocab.encode_all(read_text(files[rel]))
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
    vocab = Vocab.from_file(files[f"{YAHOO}/vocab.txt"])
    pool = Split(vocab.encode_all(read_text(files[f"{YAHOO}/yahoo.valid.txt"])))
    perm = np.random.default_rng((seed, _SALT_YAHOO_MINI)).permutation(len(pool))
    n_valid = len(pool) // 10
    return Corpus("yahoo-mini", vocab, pool.subset(np.sort(perm[n_valid:])), pool.subset(np.sort(perm[:n_valid])),
                  Split(vocab.encode_all(read_text(files[f"{YAHOO}/yahoo.test.txt"]))))


def _yelp(files: dict[str, Path], seed: int) -> Corpus:
    vocab = Vocab.from_file(files[f"{YELP}/vocab.txt"])
    train, valid, test = (_labelled(vocab, files[f"{YELP}/yelp.{s}.txt"]) for s in ("train", "valid", "test"))
    num_classes = int(max(s.labels.max(initial=-1) for s in (train, valid, test))) + 1  # labels kept as in the file
    return Corpus("yelp", vocab, train, valid, test, {}, num_classes)


def _yahoo(files: dict[str, Path], seed: int) -> Corpus:
    vocab = Vocab.from_file(files[f"{YAHOO}/vocab.txt"])
    train, valid, test = (Split(vocab.encode_all(read_text(files[f"{YAHOO}/yahoo.{s}.txt"])))
                          for s in ("train", "valid", "test"))
    return Corpus("yahoo", vocab, train, valid, test)


_BUILDERS: dict[str, Callable[[dict[str, Path], int], Corpus]] = {
    "ptb": _ptb, "short-yelp": _short_yelp, "yahoo-mini": _yahoo_mini, "yelp": _yelp, "yahoo": _yahoo}
