"""Corpora, vocabularies and length-bucketed batches, split by job:

- `files`: reading corpus text files; `DataError`
- `vocab`: the specials, `Vocab`, tokenising
- `corpus`: `Split`, `Corpus`, `DataLimits`
- `catalog`: the dataset names, their files, where they are looked for; `check_dataset` (cheap, loads nothing)
- `synthetic`: He et al.'s generator and its disk cache
- `corpora`: the real corpora's readers and `load_corpus`
- `batching`: `Batch`, `bucket_batches`

The names other modules use are re-exported here, so `from collapse_bench.data import X` is the way in.
"""
from .batching import Batch, bucket_batches
from .catalog import DATASETS, ENV_VAR, check_dataset, default_data_dir
from .corpora import load_corpus
from .corpus import Corpus, DataLimits, Split
from .files import DataError
from .synthetic import (CACHE_ENV_VAR, SYNTHETIC_CENTERS, SYNTHETIC_SEED, SYNTHETIC_SIZES, _synthetic_arrays,
                        cache_dir)
from .vocab import BOS, EOS, PAD, SPECIALS, UNK, Vocab

__all__ = ["BOS", "CACHE_ENV_VAR", "DATASETS", "ENV_VAR", "EOS", "PAD", "SPECIALS", "SYNTHETIC_CENTERS",
           "SYNTHETIC_SEED", "SYNTHETIC_SIZES", "UNK", "Batch", "Corpus", "DataError", "DataLimits", "Split", "Vocab",
           "bucket_batches", "cache_dir", "check_dataset", "default_data_dir", "load_corpus"]
# `_synthetic_arrays` (private) is imported above because benchmarks/test_ray_speedup.py clears its cache as
# `collapse_bench.data._synthetic_arrays` to start a sweep cold.
