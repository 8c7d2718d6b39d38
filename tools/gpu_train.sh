#!/usr/bin/env bash
# Train on a lent GPU machine (the `device` tool of this workplace; docs/training.md "On a GPU").
#
#   tools/gpu_train.sh SECONDS "NAME OVERRIDE..." ["NAME OVERRIDE..." ...]
#
# Needs, carried beside the checkout: .whl/ (keras, albumentations, hydra and their pure-Python
# needs for the machine's Python; JAX and OpenCV are there already) and .gpu/ (view1.npz from
# `tools/cache_pack.py pack`, lfw/*.txt). Each spec is one `siamese train` on the JAX backend in
# bfloat16; all run side by side on the one GPU, each stopped after SECONDS. Every run's model,
# metrics and logs come back as $OUT/runs.tgz.NN (split under the 16 MiB per-file limit).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false \
    PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
rm -rf /tmp/runs /tmp/*.log /tmp/cache  # a warm machine keeps /tmp; unpack wants a new folder
python3 tools/cache_pack.py unpack .gpu/view1.npz /tmp/cache || exit 1
mkdir -p /tmp/lfw/lfw && cp .gpu/lfw/*.txt /tmp/lfw/
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
set -f  # hydra list overrides like model.widths=[48,96] are not globs
limit=$1
shift
for spec in "$@"; do
    set -- $spec
    name=$1
    shift
    timeout "$limit" python3 -m siamese.cli train data.root=/tmp/lfw cache_dir=/tmp/cache \
        paths.checkpoints_dir=/tmp/runs run_name="$name" mixed_precision=mixed_bfloat16 "$@" \
        > "/tmp/$name.log" 2>&1 &
done
wait
set +f
for log in /tmp/*.log; do
    echo "== $log"
    grep -E "epoch [0-9]+:|test accuracy|Error|error|Traceback" "$log" | tail -40
done
# A run stopped before its end has no model/ yet: its best epoch's parts (siamese.train.trainer.save_parts),
# left for `siamese refinish runs=[...]` to calibrate and score here.
for run in /tmp/runs/*; do
    [ -f "$run/model/embedding.keras" ] || [ ! -f "$run/best.keras" ] ||
        python3 -c "import sys; from pathlib import Path; from siamese.train.trainer import save_parts; \
save_parts(Path(sys.argv[1])); print(sys.argv[1], 'stopped early: best epoch saved')" "$run"
done
cp /tmp/*.log /tmp/runs/ 2>/dev/null
tar czf /tmp/runs.tgz -C /tmp --exclude=best.keras --exclude=last.keras --exclude=tensorboard runs
ls -la /tmp/runs.tgz
split -b 15m -d /tmp/runs.tgz "$OUT/runs.tgz."
