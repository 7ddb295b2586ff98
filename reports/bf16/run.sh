#!/bin/sh
# The runs behind reports/bf16/table.py (short-Yelp, seed 0, one core, eval.precision=bf16 so that every cell
# records its fp32-vs-bf16 check). study: vanilla at size `study` per decoder. paper: vanilla and BN-VAE with the
# paper's short-Yelp model (128/512/512, nz 32) per decoder, trained 1 epoch on 2,000 sentences and scored with
# K = 100 on 100 test sentences: the drift is a property of the model's widths, the training budget is not the
# paper's.
set -e
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data}
for dec in lstm cnn transformer; do
  OMP_NUM_THREADS=1 "$PY" -m collapse_bench run --methods vanilla --no-baseline --dataset short-yelp \
    --data-dir "$DATA" --size study --seeds 0 --set model.decoder=$dec --set eval.precision=bf16 \
    --out reports/bf16/study --executor serial --no-report
  OMP_NUM_THREADS=1 "$PY" -m collapse_bench run --methods vanilla,bnvae --dataset short-yelp \
    --data-dir "$DATA" --size paper --seeds 0 --set model.decoder=$dec --set eval.precision=bf16 \
    --set train.epochs=1 --set limits.max_train=2000 --set limits.max_valid=300 --set limits.max_test=300 \
    --set eval.iw_samples=100 --set eval.iw_sentences=100 --set eval.probe_labels=100 \
    --out reports/bf16/paper --executor serial --no-report
done
