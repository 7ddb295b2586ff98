"""Write the parity data once, from the harness's own loader, so both implementations read the same sentences:
train = the harness's 40,000-sentence short-Yelp training subset (seeded draw, data seed 0, in pool order),
valid = short-Yelp valid, test lines 0-499 / 0-999 / all, the labelled subsets; every word mapped through the
harness vocabulary (OOV -> <unk>), labelled lines as 'label<TAB>sentence' like the original files."""
from __future__ import annotations

import json

import numpy as np

from collapse_bench.data import DataLimits, load_corpus
from common import BUDGET, LABEL_SIZES, WORK, data_dir


def main() -> None:
    corpus = load_corpus("short-yelp", data_dir(), DataLimits(max_train=BUDGET["train_sentences"]), seed=0)
    out = WORK / "data"
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
    print(f"wrote {out}: train {len(corpus.train)} (label share {np.mean(labels):.3f}), valid {len(corpus.valid)}, "
          f"test {len(corpus.test)}, vocab {len(corpus.vocab)}, fingerprint {corpus.fingerprint()[:12]}")


if __name__ == "__main__":
    main()
