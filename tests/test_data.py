import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from collapse_bench import data as D
from collapse_bench.data import (BOS, DATASETS, EOS, PAD, SPECIALS, UNK, Batch, Corpus, DataError, DataLimits, Split,
                                 Vocab, bucket_batches, check_dataset, load_corpus)
from collapse_bench.data import synthetic as S

# the staged corpora: $COLLAPSE_BENCH_DATA, else shared/data beside the checkout
DATA = Path(os.environ.get("COLLAPSE_BENCH_DATA")
            or Path(__file__).resolve().parents[1].parent / "shared" / "data")
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"staged corpora not found at {DATA}")


def random_split(n=300, max_len=7, seed=0, labels=True) -> Split:
    rng = np.random.default_rng(seed)
    sents = [rng.integers(4, 50, size=rng.integers(0, max_len + 1)) for _ in range(n)]
    return Split(sents, rng.integers(0, 3, size=n) if labels else None)


# ----------------------------------------------------------------------------- bucketing

def test_bucket_batches_identical_lengths_cover_once_and_match_sentences():
    split = random_split()
    assert any(len(s) == 0 for s in split.sentences)  # empty sentences are exercised
    batches = bucket_batches(split, 8)
    seen = np.concatenate([b.index for b in batches])
    assert sorted(seen.tolist()) == list(range(len(split)))
    lens = split.lengths()
    for b in batches:
        assert 1 <= b.size <= 8 and b.tokens.dtype == torch.int64
        T = b.tokens.shape[1] - 2
        assert (lens[b.index] == T).all()
        assert (b.tokens[:, 0] == BOS).all() and (b.tokens[:, -1] == EOS).all()
        for row, i in zip(b.tokens, b.index):
            assert row[1:-1].tolist() == split.sentences[i].tolist()
        assert b.labels.tolist() == split.labels[b.index].tolist()
    # per length: ceil(count / batch_size) batches, so some are smaller than batch_size
    counts = np.bincount(lens)
    per_len = np.bincount([b.tokens.shape[1] - 2 for b in batches], minlength=len(counts))
    assert per_len.tolist() == [-(-c // 8) for c in counts]
    # unshuffled: batches come in order of length
    assert np.all(np.diff([b.tokens.shape[1] for b in batches]) >= 0)


def test_bucket_batches_membership_and_order_are_seeded():
    split = random_split(labels=False)
    members = lambda bs: sorted(tuple(sorted(b.index.tolist())) for b in bs)
    order = lambda bs: [tuple(b.index.tolist()) for b in bs]
    plain, a, a2, b = (bucket_batches(split, 5, **kw) for kw in
                       (dict(seed=1), dict(shuffle=True, seed=1), dict(shuffle=True, seed=1), dict(shuffle=True, seed=2)))
    assert members(a) == members(plain) != members(b)    # shuffle=True permutes only the order
    assert order(a) == order(a2) and order(a) != order(plain)
    assert bucket_batches(split, 5)[0].labels is None
    with pytest.raises(ValueError):
        bucket_batches(split, 0)
    assert bucket_batches(Split([]), 4) == []


def pure_share(batches, min_size: int) -> float:
    full = [b for b in batches if b.size >= min_size]
    return np.mean([len(np.unique(b.labels.numpy())) == 1 for b in full])


def test_file_order_never_decides_batch_membership():
    # a corpus file sorted by label, as short-Yelp's pool is: a stable length sort would make every batch label-pure
    rng = np.random.default_rng(0)
    sents = [rng.integers(4, 50, size=rng.integers(3, 6)) for _ in range(4000)]
    split = Split(sents, np.repeat([0, 1], 2000))
    for seed in (0, 1):
        assert pure_share(bucket_batches(split, 32, seed=seed), 32) < 0.01   # random mixing: 2 * 0.5**32


def test_batch_size_one_and_to():
    split = Split([np.array([5, 6]), np.array([], dtype=np.int64), np.array([7, 8])], np.array([0, 1, 1]))
    batches = bucket_batches(split, 1)
    assert [b.size for b in batches] == [1, 1, 1]
    assert batches[0].tokens.tolist() == [[BOS, EOS]] and batches[0].index.tolist() == [1]
    moved = next(b for b in batches if b.index.tolist() == [0]).to("cpu")
    assert isinstance(moved, Batch) and moved.tokens.tolist() == [[BOS, 5, 6, EOS]] and moved.labels.tolist() == [0]
    assert split.num_tokens() == 2 + 0 + 2 + 3  # counts one </s> per sentence


# ----------------------------------------------------------------------------- vocabulary

def test_vocab_build_order_and_max_size():
    v = Vocab.build([["b", "a", "<unk>", "c"], ["a", "b", "d"], ["a"]])
    assert v.itos == list(SPECIALS) + ["a", "b", "c", "d"]  # freq desc, ties alphabetical, "<unk>" not a word
    assert v.encode(["a", "<unk>", "zzz", "<pad>"]).tolist() == [4, UNK, UNK, PAD]
    assert v.encode([]).dtype == np.int64
    assert len(Vocab.build([["b", "a", "a", "c"]], max_size=5)) == 5
    assert Vocab.build([["b", "a", "a", "c"]], max_size=5).itos[4] == "a"


@pytest.mark.parametrize("tabbed", [False, True])
def test_vocab_file_formats_round_trip_and_unk(tmp_path, tabbed):
    entries = ["<pad>", "<bos>", "<eos>", "_UNK", "the", "cat"]
    lines = [f"{t}\t{i}" if tabbed else t for i, t in enumerate(entries)]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(lines) + "\n")
    v = Vocab.from_file(path)
    assert v.itos == list(SPECIALS) + ["the", "cat"] and len(v) == 6
    assert v.encode(["the", "_UNK", "<unk>", "dog", "cat"]).tolist() == [4, UNK, UNK, UNK, 5]
    assert v.stoi["<bos>"] == BOS and v.stoi["<eos>"] == EOS
    assert v.decode([4, 5, UNK]) == ["the", "cat", "<unk>"]
    v.save(tmp_path / "saved.txt")
    assert Vocab.from_file(tmp_path / "saved.txt") == v


@pytest.mark.parametrize("content, line, what", [
    ("<pad>\t0\n<s>\t1\n</s>\t2\n<unk>\t4\n", 4, "should be 3"),
    ("<pad>\n<s>\n</s>\n<unk>\n\nword\n", 5, "blank line"),
    ("<pad>\n<s>\n</s>\n<unk>\nword\nword\n", 6, "duplicate"),
])
def test_vocab_file_errors_name_file_and_line(tmp_path, content, line, what):
    path = tmp_path / "vocab.txt"
    path.write_text(content)
    with pytest.raises(DataError, match=what) as e:
        Vocab.from_file(path)
    assert f"{path}:{line}:" in str(e.value)


# ----------------------------------------------------------------------------- file datasets in a temp dir

def write_yelp(root: Path, valid_text: str = "1\tthe cat\n0\tdog\n") -> None:
    d = root / "yelp_yang2017"
    d.mkdir(parents=True)
    words = ["<pad>", "<bos>", "<eos>", "_UNK", "the", "cat"]
    (d / "vocab.txt").write_text("".join(f"{t}\t{i}\n" for i, t in enumerate(words)))
    with gzip.open(d / "yelp.train.txt.gz", "wt") as f:  # gz is read transparently
        f.write("0\tthe cat _UNK\n4\tcat\n2\tthe the dog\n")
    (d / "yelp.valid.txt").write_text(valid_text)
    (d / "yelp.test.txt").write_text("3\tcat the\n")


def test_labelled_files_and_gz(tmp_path):
    write_yelp(tmp_path)
    c = load_corpus("yelp", tmp_path)
    assert [s.tolist() for s in c.train.sentences] == [[4, 5, UNK], [5], [4, 4, UNK]]
    assert c.train.labels.tolist() == [0, 4, 2] and c.num_classes == 5
    assert c.valid.labels.dtype == np.int64 and len(c.test) == 1


@pytest.mark.parametrize("valid_text, line, what", [
    ("1\tthe cat\npos\tdog\n", 2, "integer label"),
    ("1\tthe cat\n0 dog\n", 2, "TAB"),
    ("1\tthe cat\n\n0\tdog\n", 2, "blank line"),
])
def test_malformed_labelled_file_names_file_and_line(tmp_path, valid_text, line, what):
    write_yelp(tmp_path, valid_text)
    with pytest.raises(DataError, match=what) as e:
        load_corpus("yelp", tmp_path)
    assert f"yelp.valid.txt:{line}:" in str(e.value)


def test_unknown_dataset_suggests_close_match():
    with pytest.raises(DataError, match="Did you mean 'short-yelp'") as e:
        load_corpus("short_yelp", None)
    assert all(n in str(e.value) for n in DATASETS)


def test_missing_data_dir_says_how_to_give_it(monkeypatch):
    monkeypatch.delenv("COLLAPSE_BENCH_DATA", raising=False)
    assert D.default_data_dir() is None
    with pytest.raises(DataError) as e:
        load_corpus("ptb", None)
    msg = str(e.value)
    assert "--data-dir" in msg and "COLLAPSE_BENCH_DATA" in msg and "ptb/ptb.train.txt" in msg
    monkeypatch.setenv("COLLAPSE_BENCH_DATA", "/nonexistent/dir")
    with pytest.raises(DataError, match="/nonexistent/dir/ptb/ptb.valid.txt"):
        load_corpus("ptb", None)


# ----------------------------------------------------------------------------- check_dataset (cheap, before a sweep)

PTB_FILES = ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt")


def test_check_dataset_unknown_name_suggests_and_lists_known():
    with pytest.raises(DataError, match="Did you mean 'yahoo-mini'") as e:
        check_dataset("yahoo_mini", None)
    assert all(n in str(e.value) for n in DATASETS)
    with pytest.raises(DataError, match="unknown dataset 'mnist'") as e:
        check_dataset("mnist", None)
    assert "Did you mean" not in str(e.value)


def test_check_dataset_missing_folder_names_files_place_flag_and_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("COLLAPSE_BENCH_DATA", raising=False)
    with pytest.raises(DataError) as e:
        check_dataset("ptb", None)
    assert all(s in str(e.value) for s in ("--data-dir", "COLLAPSE_BENCH_DATA", "ptb/ptb.train.txt"))
    absent = tmp_path / "absent"
    with pytest.raises(DataError) as e:
        check_dataset("ptb", str(absent))
    msg = str(e.value)
    assert "3 of 3" in msg and all(str(absent / "ptb" / f) in msg for f in PTB_FILES)
    assert "does not exist" in msg and "--data-dir" in msg and "COLLAPSE_BENCH_DATA" in msg
    monkeypatch.setenv("COLLAPSE_BENCH_DATA", str(absent))
    with pytest.raises(DataError, match=f"missing in {absent} \\(from COLLAPSE_BENCH_DATA"):
        check_dataset("ptb", None)


def test_check_dataset_names_only_the_missing_file(tmp_path):
    (tmp_path / "ptb").mkdir()
    for f in PTB_FILES[:2]:
        (tmp_path / "ptb" / f).write_text("a b\n")
    with pytest.raises(DataError) as e:
        check_dataset("ptb", tmp_path)
    msg = str(e.value)
    assert "1 of 3" in msg and str(tmp_path / "ptb" / "ptb.test.txt") in msg
    assert "ptb.train.txt" not in msg and "does not exist" not in msg


def test_check_dataset_passes_on_existence_without_reading(tmp_path):
    (tmp_path / "ptb").mkdir()
    for f in PTB_FILES[:2]:
        (tmp_path / "ptb" / f).write_text("a b\n\n")          # a blank line: loading would fail
    with gzip.open(tmp_path / "ptb" / "ptb.test.txt.gz", "wt") as f:
        f.write("c\n")
    assert check_dataset("ptb", tmp_path) is None
    assert check_dataset("synthetic", None) is None
    with pytest.raises(DataError, match="blank line"):          # the check did not read the files; loading does
        load_corpus("ptb", tmp_path)


# ----------------------------------------------------------------------------- synthetic

SYNTHETIC_FINGERPRINT = "312f7a2d09dba0ac4e8a789fc6ceb1ad338e6b96c7bf14873606481e383ba63e"


@pytest.fixture
def synthetic() -> Corpus:
    return load_corpus("synthetic", None)  # generated once per process, then copied from a cache


def test_synthetic_sizes_labels_and_determinism(synthetic):
    c = synthetic
    assert (len(c.train), len(c.valid), len(c.test)) == (16000, 2000, 2000)
    assert len(c.vocab) == 1004 and c.vocab.itos[4] == "w0" and c.num_classes == 4 and c.label_subsets == {}
    assert all(len(s) == 10 for s in c.train.sentences)
    ids = np.concatenate(c.train.sentences)
    assert ids.min() >= 4 and ids.max() <= 1003 and len(np.unique(ids)) > 900
    assert sorted(np.unique(c.train.labels).tolist()) == [0, 1, 2, 3]
    # The corpus must never change: a golden hash rather than a second generation (which costs ~1 s of CPU).
    # If this fails after a torch upgrade, the RNG stream changed and every synthetic result is incomparable.
    assert c.fingerprint() == SYNTHETIC_FINGERPRINT
    c.train.sentences[0][0] = PAD  # a loaded corpus is the caller's to change: the next load is unaffected
    again = load_corpus("synthetic", None)
    assert again.fingerprint() == SYNTHETIC_FINGERPRINT and again.train.sentences[0][0] != PAD
    assert all(np.array_equal(again.latent[k], c.latent[k]) for k in ("train", "valid", "test"))


def test_synthetic_corpus_disk_cache_round_trips_and_never_trusts_a_bad_file(synthetic, tmp_path, monkeypatch):
    monkeypatch.setenv(D.CACHE_ENV_VAR, str(tmp_path))
    S._synthetic_arrays.cache_clear()
    try:
        S._synthetic_arrays()                                   # generated here (empty cache), then written
        (path,) = tmp_path.glob("synthetic-*.npz")
        S._synthetic_arrays.cache_clear()
        assert load_corpus("synthetic", None).fingerprint() == SYNTHETIC_FINGERPRINT   # read back from the file
        arrays = S._read_cached(path)
        assert arrays is not None and [a.dtype for a in arrays] == [np.int64, np.int64, np.float32]
        path.write_bytes(path.read_bytes()[:4096])              # a truncated file (a writer killed mid-way)
        assert S._read_cached(path) is None
        S._write_cached(path, tuple(a[:10] for a in arrays))    # another generator's shapes
        assert S._read_cached(path) is None
        assert S._read_cached(tmp_path / "absent.npz") is None
        assert [p.name for p in tmp_path.iterdir()] == [path.name]   # no temporary file left behind
        monkeypatch.setenv(D.CACHE_ENV_VAR, "off")
        assert S._synthetic_cache_file() is None
    finally:
        S._synthetic_arrays.cache_clear()


def test_synthetic_cache_write_failure_is_swallowed(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    S._write_cached(blocker / "synthetic-x.npz", (np.zeros(1),) * 3)   # OSError inside: the next process regenerates
    assert [p.name for p in tmp_path.iterdir()] == ["not-a-dir"]


def test_synthetic_labels_are_the_latent_component_and_shape_the_text(synthetic):
    c = synthetic
    for key in ("train", "test"):
        z, y = c.latent[key], getattr(c, key).labels
        nearest = np.argmin(((z[:, None, :] - D.SYNTHETIC_CENTERS[None]) ** 2).sum(-1), 1)
        assert (nearest == y).mean() > 0.9  # unit variance around centres 4 apart: ~95.5%
    # z drives the text: a per-class unigram model fitted on train predicts test labels far above chance
    X = np.stack(c.train.sentences)
    counts = np.ones((4, len(c.vocab)))
    np.add.at(counts, (np.repeat(c.train.labels, X.shape[1]), X.ravel()), 1)
    logp = np.log(counts / counts.sum(1, keepdims=True))
    scores = logp[:, np.stack(c.test.sentences)].sum(-1)  # [4, n_test]
    assert (scores.argmax(0) == c.test.labels).mean() > 0.8


def test_limits_subsample_in_order_and_keep_latent_aligned(synthetic):
    lim = DataLimits(max_train=300, max_valid=50, max_test=40)
    a, b, other = (load_corpus("synthetic", None, lim, seed=s) for s in (0, 0, 1))
    assert (len(a.train), len(a.valid), len(a.test)) == (300, 50, 40)
    assert a.fingerprint() == b.fingerprint() != other.fingerprint()
    pos = {s.tobytes(): i for i, s in enumerate(synthetic.train.sentences)}
    idx = np.array([pos[s.tobytes()] for s in a.train.sentences])
    assert (np.diff(idx) > 0).all()  # original order kept
    assert np.array_equal(a.train.labels, synthetic.train.labels[idx])
    assert np.array_equal(a.latent["train"], synthetic.latent["train"][idx])
    # a different valid cap leaves the train subsample alone
    assert load_corpus("synthetic", None, DataLimits(max_train=300, max_valid=60), seed=0).train.labels.tolist() \
        == a.train.labels.tolist()
    with pytest.raises(ValueError):
        DataLimits(max_train=0)


def test_fingerprint_sees_a_single_token_change(synthetic):
    c = load_corpus("synthetic", None, DataLimits(max_train=20, max_valid=5, max_test=5))
    before = c.fingerprint()
    c.test.sentences[0] = c.test.sentences[0].copy()
    c.test.sentences[0][3] += 1
    assert c.fingerprint() != before


# ----------------------------------------------------------------------------- staged corpora

@pytest.fixture(scope="module")
def short_yelp() -> Corpus:
    return load_corpus("short-yelp", DATA)


@needs_data
def test_short_yelp_sizes_and_subsets(short_yelp):
    c = short_yelp
    assert (len(c.valid), len(c.test), len(c.vocab), c.num_classes) == (10000, 10000, 8411, 2)
    assert {n: len(s) for n, s in c.label_subsets.items()} == {100: 100, 500: 500, 1000: 1000, 2000: 2000, 10000: 10000}
    # nested prefixes, as in Li et al.'s files
    assert all(np.array_equal(a, b) for a, b in zip(c.label_subsets[100].sentences, c.label_subsets[10000].sentences))
    assert c.valid.labels.tolist().count(0) == 3982 and set(c.train.labels.tolist()) == {0, 1}
    pool = 25278 + 38205 + 50278 + 76392 + 10000
    assert 150_000 < len(c.train) < pool  # some leaked sentences were removed
    assert max(len(s) for s in c.train.sentences) <= 15


@needs_data
def test_short_yelp_training_batches_mix_labels_and_sources(short_yelp):
    c = short_yelp
    batches = bucket_batches(c.train, 32, seed=0)
    assert pure_share(batches, 32) < 0.01    # the label-sorted pool gave 99% label-pure batches before
    # sources: the pool is Shen dev, Shen test, then Li et al.'s 10k subset (the last 10k-minus-leaks positions)
    from_subset = np.arange(len(c.train)) >= len(c.train) - 9000
    assert np.mean([from_subset[b.index].all() or not from_subset[b.index].any()
                    for b in batches if b.size == 32]) < 0.5


@needs_data
def test_short_yelp_train_does_not_leak_into_valid_or_test(short_yelp):
    c = short_yelp
    held_out = {s.tobytes() for s in c.valid.sentences + c.test.sentences}
    assert not any(s.tobytes() in held_out for s in c.train.sentences)
    # ... while the labelled subsets (probe training data, never changed) do share generic sentences with them
    assert any(s.tobytes() in held_out for s in c.label_subsets[10000].sentences)


@needs_data
def test_ptb_with_limits():
    full = load_corpus("ptb", DATA)
    assert (len(full.train), len(full.valid), len(full.test), len(full.vocab)) == (42068, 3370, 3761, 10002)
    assert full.test.num_tokens() == 78669 + 3761
    assert np.mean(np.concatenate(full.train.sentences) == UNK) > 0.04  # the literal <unk> maps to UNK
    lim = load_corpus("ptb", DATA, DataLimits(max_train=500, max_valid=100, max_test=100, max_len=20), seed=3)
    assert (len(lim.train), len(lim.valid), len(lim.test)) == (500, 100, 100)
    assert lim.vocab == full.vocab and max(len(s) for s in lim.train.sentences) <= 20
    assert max(len(s) for s in full.valid.sentences) > 20  # max_len is train-only; valid keeps long sentences
    assert lim.fingerprint() == load_corpus("ptb", DATA, DataLimits(500, 100, 100, 20), seed=3).fingerprint()


@needs_data
def test_yahoo_mini_seeded_split_and_limits():
    a = load_corpus("yahoo-mini", DATA, seed=0)
    assert (len(a.train), len(a.valid), len(a.test), len(a.vocab)) == (9000, 1000, 10000, 20000)
    assert a.num_classes == 0 and a.train.labels is None
    assert np.mean(np.concatenate(a.test.sentences) == UNK) > 0.03  # "_UNK" in the text maps to UNK
    b = load_corpus("yahoo-mini", DATA, DataLimits(max_train=200, max_valid=50, max_test=50), seed=1)
    assert (len(b.train), len(b.valid), len(b.test)) == (200, 50, 50)
    pool = {s.tobytes() for s in a.train.sentences + a.valid.sentences}
    assert all(s.tobytes() in pool for s in b.train.sentences + b.valid.sentences)
    b_full = load_corpus("yahoo-mini", DATA, seed=1)
    assert {s.tobytes() for s in b_full.valid.sentences} != {s.tobytes() for s in a.valid.sentences}


@needs_data
def test_yelp_and_yahoo_name_missing_files():
    with pytest.raises(DataError) as e:
        load_corpus("yelp", DATA)
    msg = str(e.value)
    assert all(str(DATA / "yelp_yang2017" / f"yelp.{s}.txt") in msg for s in ("train", "valid", "test"))
    assert "vocab.txt" not in msg  # present, so not reported
    with pytest.raises(DataError, match="yahoo.train.txt"):
        load_corpus("yahoo", DATA)
