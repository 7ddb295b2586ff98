#!/bin/sh
# Issue 21's closing table (reports/decoders.md): vanilla, BN-VAE and FB under each decoder on short-Yelp at size
# `default`, seed 0, on one core, one cell at a time, one process at a time. Then reports/decoders/table.py.
#   sh reports/decoders/run.sh            (OUT=runs/default-decoders, DATA=../shared/data, CORE=0)
set -e
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/default-decoders}
DATA=${DATA:-../shared/data}
PY=${PY:-.venv/bin/python}
for dec in lstm cnn transformer; do
  if [ "$dec" = lstm ]; then set -- ; else set -- --set "model.decoder=$dec"; fi
  OMP_NUM_THREADS=1 taskset -c "${CORE:-0}" "$PY" -m collapse_bench run --methods bnvae,fb --dataset short-yelp \
    --data-dir "$DATA" --size default --seeds 0 "$@" --out "$OUT" --executor serial --no-report
done
"$PY" -m collapse_bench report "$OUT"
# The extra sections of reports/decoders.md: the same cells of the CNN and the Transformer with
# --set train.dec_optimizer=same (the protocol's SGD lr 1 for the decoder too; reports/decoders/default-sgd, run
# before the setting existed, with the same figures), and vanilla and bnvae with --set model.tf_z=add
# (reports/decoders/default-tf-add); then
#   python reports/decoders/table.py reports/decoders/default --extra "reports/decoders/default-sgd=..." \
#     --extra "reports/decoders/default-tf-add=..."
