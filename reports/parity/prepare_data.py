"""Write the parity data once, from the harness's own loader, so both implementations read the same sentences:
train = the 40,000 training sentences of --subset (`draw`, the default: the harness's short-Yelp training subset, a
seeded draw with data seed 0, in pool order, into work/data/; `first`: the pool's first 40,000 sentences in pool
order, into work/data-first/; common.SUBSETS),
valid = short-Yelp valid, test lines 0-499 / 0-999 / all, the labelled subsets; every word mapped through the
harness vocabulary (OOV -> <unk>), labelled lines as 'label<TAB>sentence' like the original files."""
from __future__ import annotations

import argparse
import json

import numpy as np

from common import BUDGET, LABEL_SIZES, SUBSETS, load_parity_corpus, subset_data


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subset", choices=SUBSETS, default="draw", help="which 40,000 training sentences")
    a = ap.parse_args()
    corpus = load_parity_corpus(a.subset)
    out = subset_data(a.subset)
    out.mkdir(parents=True, exist_ok=True)

    def write(name, split, rows=None):
        idx = range(len(split)) if rows is None else range(rows)
        with open(out / name, "w") as f:
            for i in idx:
                f.write(f"{int(split.labels[i])}\t{' '.join(corpus.vocab.decode(split.sentences[i]))}\n")

    write("train.txt", corpus.train)
    write("valid.txt", corpus.valid)
    write("test.txt", corpus.test)
    write("test500.txt", corpus.test, BUDGET["iw_sentences"])
    write("test1000.txt", corpus.test, BUDGET["latent_sentences"])
    for n in LABEL_SIZES:
        write(f"train{n}.txt", corpus.label_subsets[n])
    (out / "vocab.json").write_text(json.dumps(corpus.vocab.itos))
    labels = corpus.train.labels
    tokens = int(sum(len(s) for s in corpus.train.sentences))
    print(f"wrote {out}: train {len(corpus.train)} (labels 0/1: {int((labels == 0).sum())}/{int((labels == 1).sum())}, "
          f"{tokens} tokens), valid {len(corpus.valid)}, "
          f"test {len(corpus.test)}, vocab {len(corpus.vocab)}, fingerprint {corpus.fingerprint()[:12]}")


if __name__ == "__main__":
    main()
