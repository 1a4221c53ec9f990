#!/usr/bin/env bash
# Side-by-side training speed of cimnet and the PyTorch baseline on the SAME
# data: one synthetic MOSEI-shaped npz, the same batch size and model, the
# training split only (no validation), best epoch of each.
#
#   benches/baseline/compare.sh            # release binary, 2 epochs each, batch 16, 2 torch threads
#   EPOCHS=1 BATCH=16 THREADS=2 SCALE=1.0 CIMNET=target/release/cimnet benches/baseline/compare.sh
#
# Prints each side's per-epoch seconds and the ratio cimnet / PyTorch (< 1: cimnet is faster).
# cimnet trains with `cimnet bench` (its default adapter: the GPU, llvmpipe on a machine without one);
# extra arguments go to `cimnet bench` (e.g. --adapter llvmpipe). Needs python3 with torch and numpy.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CIMNET=${CIMNET:-target/release/cimnet}
PYTHON=${PYTHON:-python3}
EPOCHS=${EPOCHS:-2}
BATCH=${BATCH:-16}
THREADS=${THREADS:-2}
SCALE=${SCALE:-1.0}
DEVICE=${DEVICE:-cpu}
[ -x "$CIMNET" ] || { echo "no cimnet binary at $CIMNET: build it with cargo build --release, or set CIMNET" >&2; exit 1; }
"$PYTHON" -c 'import torch, numpy' 2>/dev/null || { echo "$PYTHON has no torch/numpy: pip install torch numpy" >&2; exit 1; }
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
data=$work/synth-$SCALE.npz
[ -f "$data" ] || "$CIMNET" data synth --out "$data" --seed 0 --scale "$SCALE" >/dev/null
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores; data $data; batch $BATCH; $EPOCHS epochs each" >&2
"$CIMNET" bench --data "$data" --batch "$BATCH" --epochs "$EPOCHS" --cpu-batches 0 --json "$@" >"$work/cimnet.json"
"$PYTHON" "$here/baseline.py" --data "$data" --batch "$BATCH" --epochs "$EPOCHS" --threads "$THREADS" \
    --device "$DEVICE" --no-eval >"$work/pytorch.json"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$PYTHON" - "$work/cimnet.json" "$work/pytorch.json" <<'PY'
import json, sys
c, p = (json.load(open(f)) for f in sys.argv[1:3])
assert c["train_utterances"] == p["train_utterances"], "the two sides trained on different data"
ratio = c["best_epoch_seconds"] / p["best_epoch_seconds"]
print(json.dumps({"cimnet": {"adapter": c["adapter"], "epoch_seconds": c["epoch_seconds"]},
                  "pytorch": {"device": p["device"], "implementation": p["implementation"], "epoch_seconds": p["epoch_seconds"]},
                  "data": c["data"], "batch": c["batch"], "train_utterances": c["train_utterances"],
                  "ratio_cimnet_over_pytorch": ratio}))
print(f"cimnet {c['best_epoch_seconds']:.2f} s/epoch ({c['adapter']}) vs PyTorch {p['best_epoch_seconds']:.2f} s/epoch "
      f"({p['device']}): ratio {ratio:.2f}x", file=sys.stderr)
PY
