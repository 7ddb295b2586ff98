"""Vocabularies and tokenising: the four specials, `Vocab`, and sentences to int64 id arrays."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .files import DataError, read_lines

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


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
        for i, line in enumerate(read_lines(path)):
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

    def encode_all(self, sentences: list[list[str]]) -> list[np.ndarray]:
        """`encode` of every sentence, through one flat array (much faster than a call per sentence)."""
        lens = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
        get = self.stoi.get
        flat = np.fromiter((get(t, UNK) for s in sentences for t in s), dtype=np.int64, count=int(lens.sum()))
        return np.split(flat, np.cumsum(lens)[:-1]) if len(sentences) else []

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids]

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos and self.stoi == other.stoi

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens)"
