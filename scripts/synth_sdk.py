#!/usr/bin/env python3
"""Write a full-size, CMU-MOSEI-shaped set of SDK computational sequences
(.csd) with random values, to measure `cimnet data prepare-mosei` on.

    pip install h5py numpy
    python3 scripts/synth_sdk.py --out /tmp/mosei-sdk [--dtype float32|float64] [--scale 1.0]

Layout as the SDK's writeCSD makes it (h5py, one group per video under
/<root>/data, vlen-string metadata). Sizes at scale 1: the 3,228 fold videos
(ids from data/mosei_folds.json), ~23,000 labelled segments, ~450,000 words
(300-d), ~2.3e7 COVAREP frames (74-d, 100 Hz), ~7e6 FACET frames (35-d, 30 Hz).
At float32 the files take ~8.4 GB. Nothing here is committed.
"""
import argparse
import json
import os

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def write_metadata(root, name):
    md = root.create_group("metadata")
    for k in ["root name", "computational sequence description", "computational sequence version",
              "alignment compatible", "dataset name", "dataset version", "creator", "contact",
              "featureset bib citation", "dataset bib citation"]:
        md.create_dataset(k, (1,), dtype=h5py.special_dtype(vlen=str))
        md[k][0] = name if k == "root name" else "synthetic (scripts/synth_sdk.py)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--scale", type=float, default=1.0, help="share of the 3,228 videos to write")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    folds = json.load(open(os.path.join(HERE, "..", "data", "mosei_folds.json")))
    ids = folds["train"] + folds["valid"] + folds["test"]
    ids = ids[: max(1, int(round(len(ids) * a.scale)))]
    rng = np.random.default_rng(a.seed)
    dt = np.dtype(a.dtype)
    specs = [  # file, root, dim, rows per second (words: ~2 per second of speech)
        ("CMU_MOSEI_TimestampedWordVectors.csd", "glove_vectors", 300, 1.93),
        ("CMU_MOSEI_COVAREP.csd", "COVAREP", 74, 100.0),
        ("CMU_MOSEI_VisualFacet42.csd", "FACET 4.2", 35, 30.0),
    ]
    handles = []
    for fname, root, dim, rate in specs:
        f = h5py.File(os.path.join(a.out, fname), "w")
        r = f.create_group(root)
        handles.append((f, r, r.create_group("data"), dim, rate))
    lf = h5py.File(os.path.join(a.out, "CMU_MOSEI_Labels.csd"), "w")
    lroot = lf.create_group("All Labels")
    ldata = lroot.create_group("data")
    totals = np.zeros(4, dtype=np.int64)
    for vid in ids:
        n_seg = 1 + rng.poisson(6.1)
        lengths = rng.uniform(6.0, 13.4, size=n_seg)
        starts = np.concatenate([[0.0], np.cumsum(lengths + 0.5)[:-1]]) + 0.2
        seg = np.stack([starts, starts + lengths], axis=1)
        order = rng.permutation(n_seg)  # real label files are not always sorted
        labels = np.concatenate([rng.uniform(-3, 3, (n_seg, 1)), rng.uniform(0, 3, (n_seg, 6))], axis=1)
        g = ldata.create_group(vid)
        g.create_dataset("features", data=labels[order])
        g.create_dataset("intervals", data=seg[order])
        duration = seg[-1, 1] + 0.3
        totals[0] += n_seg
        for k, (_, _, data, dim, rate) in enumerate(handles):
            if k == 0:  # words: random spans inside the segments
                n = max(1, int(rng.poisson(rate * duration)))
                s = np.sort(rng.uniform(0, duration, n))
                iv = np.stack([s, s + rng.uniform(0.1, 0.6, n)], axis=1)
            else:  # frames back to back
                n = int(duration * rate)
                t = np.arange(n) / rate
                iv = np.stack([t, t + 1.0 / rate], axis=1)
            feats = rng.standard_normal((n, dim), dtype=np.float32)
            if k == 1:
                feats[rng.random(n) < 0.001, 0] = -np.inf  # COVAREP's -inf
            g = data.create_group(vid)
            g.create_dataset("features", data=feats.astype(dt, copy=False))
            g.create_dataset("intervals", data=iv)
            totals[k + 1] += n
    for (f, r, _, _, _), (_, root, _, _) in zip(handles, specs):
        write_metadata(r, root)
        f.close()
    write_metadata(lroot, "All Labels")
    lf.close()
    print(f"{len(ids)} videos, {totals[0]} segments, {totals[1]} words, {totals[2]} COVAREP frames, "
          f"{totals[3]} FACET frames -> {a.out}")


if __name__ == "__main__":
    main()
