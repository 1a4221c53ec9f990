#!/usr/bin/env bash
# The GPU check, for a machine with a GPU but no Rust toolchain (and no package
# registry). From the repository root, with a release binary built elsewhere:
#
#   cargo build --release            # on the build machine
#   scripts/gpu-check.sh             # on the GPU machine; OUT=dir to choose where results go
#
# Runs, each under `timeout` (about 7 minutes in all at most):
#   1. nvidia-smi / vulkaninfo summaries, if present;
#   2. cimnet check          -> check.txt   (every kernel against the f64 CPU reference);
#   3. cimnet bench --json   -> bench.json  (MOSEI-shaped synthetic data, 2 timed epochs; the same
#                                            data as `cimnet bench --synthetic`, written to an npz);
#   4. the PyTorch baseline on that npz -> pytorch.json (CUDA if torch sees it, else 2 CPU threads;
#                                            skipped with a message if torch is absent);
#   5. cimnet bench --models 1,7,21,105 --json -> models.json (K models side by side, grouped vs
#                                            one by one, on a quarter-size MOSEI-shaped set);
#   6. the paper's Table 4 as one grouped grid (21 runs, 1 epoch, quarter-size set) -> grid/, and
#      the PyTorch baseline's time for the same 21 runs one by one -> grid-pytorch.txt;
#   7. summary.txt: the per-epoch ratio cimnet / PyTorch and the grid times.
# Vulkan: if no libvulkan is installed and .gl/*.deb exist (see the device notes), they are
# unpacked first; NVIDIA's ICD is named explicitly when its file exists.
set -u
cd "$(dirname "$0")/.."
BIN=${CIMNET:-target/release/cimnet}
OUT=${OUT:-gpu-check-out}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
summary=$OUT/summary.txt
: >"$summary"
say() { echo "$*" | tee -a "$summary"; }
start=$(date +%s)
say "gpu-check $(date -u +%FT%TZ) on $(uname -m), $(nproc) cores; binary $BIN"
[ -x "$BIN" ] || { say "FAIL: no executable cimnet at $BIN (build it with cargo build --release and bring target/release/cimnet)"; exit 1; }

if ! ldconfig -p 2>/dev/null | grep -q libvulkan; then
    if ls .gl/*.deb >/dev/null 2>&1; then
        say "no libvulkan installed: unpacking .gl/*.deb"
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    else
        say "warning: no libvulkan found and no .gl/*.deb to unpack: wgpu may find no Vulkan adapter"
    fi
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ]; then export VK_DRIVER_FILES=$icd; fi
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
if [ -z "${__EGL_VENDOR_LIBRARY_FILENAMES:-}" ] && [ -f "$egl" ]; then export __EGL_VENDOR_LIBRARY_FILENAMES=$egl; fi
export WGPU_BACKEND=${WGPU_BACKEND:-vulkan}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg-gpu-check}
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

command -v nvidia-smi >/dev/null && timeout 15 nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
command -v vulkaninfo >/dev/null && timeout 15 vulkaninfo --summary >"$OUT/vulkaninfo.txt" 2>&1

timeout 90 "$BIN" check >"$OUT/check.txt" 2>&1
rc=$?
say "cimnet check: exit $rc ($(($(date +%s) - start)) s so far); $(grep -m1 '^adapter' "$OUT/check.txt")"
tail -3 "$OUT/check.txt" | tee -a "$summary"

data=${TMPDIR:-/tmp}/gpu-check-synth.npz
rm -f "$data"
timeout 40 "$BIN" data synth --out "$data" --seed 0 >/dev/null 2>"$OUT/synth.err" || say "FAIL: cimnet data synth: $(cat "$OUT/synth.err")"
timeout 90 "$BIN" bench --data "$data" --epochs 2 --cpu-batches 0 --json >"$OUT/bench.json" 2>"$OUT/bench.err"
say "cimnet bench: exit $? ($(($(date +%s) - start)) s so far)"

if "$PYTHON" -c 'import torch, numpy' 2>/dev/null; then
    timeout 90 "$PYTHON" benches/baseline/baseline.py --data "$data" --epochs 2 --no-eval --device auto \
        >"$OUT/pytorch.json" 2>"$OUT/pytorch.err"
    say "PyTorch baseline: exit $? ($(($(date +%s) - start)) s so far)"
    "$PYTHON" - "$OUT/bench.json" "$OUT/pytorch.json" <<'PY' 2>&1 | tee -a "$summary"
import json, sys
try:
    c, p = (json.load(open(f)) for f in sys.argv[1:3])
except Exception as e:
    sys.exit(f"no ratio: {e}")
print(f"cimnet {c['best_epoch_seconds']:.3f} s/epoch on {c['adapter']}; "
      f"PyTorch {p['best_epoch_seconds']:.3f} s/epoch on {p['device']}; "
      f"ratio cimnet / PyTorch {c['best_epoch_seconds'] / p['best_epoch_seconds']:.2f}x")
PY
else
    say "PyTorch baseline skipped: $PYTHON has no torch (or numpy)"
fi
rm -f "$data"

# Many models at once: K side by side, then Table 4 as one grouped grid.
small=${TMPDIR:-/tmp}/gpu-check-synth-quarter.npz
rm -rf "$small" "$OUT/grid"
timeout 20 "$BIN" data synth --out "$small" --seed 0 --scale 0.25 >/dev/null 2>>"$OUT/synth.err"
timeout 60 "$BIN" bench --data "$small" --models 1,7,21,105 --steps 3 --json >"$OUT/models.json" 2>"$OUT/models.err"
say "cimnet bench --models: exit $? ($(($(date +%s) - start)) s so far)"
t0=$(date +%s)
timeout 60 "$BIN" grid --data "$small" --epochs 1 --seeds 1 --out "$OUT/grid" >"$OUT/grid.txt" 2>&1
say "cimnet grid (Table 4, 21 runs grouped, 1 epoch): exit $?, $(($(date +%s) - t0)) s wall; $(grep -m1 'grouped training steps' "$OUT/grid.txt")"
if "$PYTHON" -c 'import torch, numpy' 2>/dev/null; then
    t0=$(date +%s)
    (
        for set in T A V TV TA AV TAV; do
            for tasks in sentiment emotion mtl; do
                timeout 20 "$PYTHON" benches/baseline/baseline.py --data "$small" --epochs 1 --modalities $set \
                    --tasks $tasks --device auto || echo "FAILED $set $tasks"
            done
        done
    ) >"$OUT/grid-pytorch.txt" 2>&1
    say "PyTorch baseline, the same 21 runs one by one (1 epoch each, with evaluation): $(($(date +%s) - t0)) s wall"
fi
rm -f "$small"
say "done in $(($(date +%s) - start)) s; results in $OUT"
