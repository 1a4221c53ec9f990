#!/usr/bin/env python3
"""An independent PyTorch implementation of the model in MODEL.md, for honest
side-by-side timing and accuracy against cimnet. cimnet does not depend on it.

It reads cimnet's native .npz (docs/data-formats.md), batches the training
split the way cimnet does (length-bucketed: shuffle, windows of 100 batches
sorted by length, batches shuffled; see src/data/batching.rs; same scheme,
not the same random stream), and trains with MODEL.md's defaults: bidirectional
GRUs (packed sequences; cuDNN's kernel on CUDA), dropout 0.3, dense 100 with
ReLU, the CIM attention with padded utterances masked, masked-mean losses,
Adam (lr 1e-3, eps 1e-7), batch 16 videos, early stopping on validation loss
(patience 20), the checkpoint with the lowest validation loss kept, emotion
thresholds chosen on validation and applied to test.

Prints one line per epoch (time, losses) on stderr and a JSON object on stdout.

    python3 benches/baseline/baseline.py --data data/mosi.npz
    python3 benches/baseline/baseline.py --data synth.npz --epochs 2 --no-eval
"""

import argparse
import copy
import json
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

SPLITS = ("train", "valid", "test")
MODALITIES = {"T": "text", "A": "audio", "V": "video"}
WINDOW_BATCHES = 100  # src/data/batching.rs
EMOTIONS = 6


def load_npz(path):
    """Splits of the native format: per split, lengths, features per modality, labels."""
    z = np.load(path, allow_pickle=False)
    out = {}
    for s in SPLITS:
        lens = z[f"{s}_len"].astype(np.int64)
        if lens.size == 0 or lens.min() < 1:
            sys.exit(f"{path}: split {s}: every video needs at least one utterance")
        d = {"len": lens, "sentiment": z[f"{s}_sentiment"].astype(np.float32).reshape(len(lens), -1)}
        for m in MODALITIES.values():
            if f"{s}_{m}" in z:
                d[m] = z[f"{s}_{m}"].astype(np.float32)
        if f"{s}_emotion" in z:
            d["emotion"] = z[f"{s}_emotion"].astype(np.float32)
        out[s] = d
    return out


def make_batches(lens, batch, rng):
    """cimnet's bucketed batching (same scheme; numpy's random stream, not ChaCha8)."""
    order = rng.permutation(len(lens))
    batches = []
    for w in range(0, len(order), batch * WINDOW_BATCHES):
        window = order[w : w + batch * WINDOW_BATCHES]
        window = window[np.argsort(-lens[window], kind="stable")]
        batches.extend(window[i : i + batch] for i in range(0, len(window), batch))
    return [batches[i] for i in rng.permutation(len(batches))]


def eval_batches(lens, batch):
    """Evaluation batches: sorted by length, no shuffling (the order does not change the metrics)."""
    order = np.argsort(-lens, kind="stable")
    return [order[i : i + batch] for i in range(0, len(order), batch)]


def attend(x, y, mask):
    """att(X, Y) of MODEL.md: softmax over j of X Y^T (j >= len masked), times Y, gated by X."""
    m = torch.bmm(x, y.transpose(1, 2))
    m = m.masked_fill(~mask[:, None, :], float("-inf"))
    return torch.bmm(torch.softmax(m, dim=-1), y) * x * mask[:, :, None]


class Model(nn.Module):
    def __init__(self, dims, modalities, attention, tasks, hidden, dense, dropout):
        super().__init__()
        self.order = [MODALITIES[c] for c in "TVA" if c in modalities]
        self.attention, self.tasks, self.p = attention, tasks, dropout
        self.gru = nn.ModuleDict()
        self.dense = nn.ModuleDict()
        for m in self.order:
            self.gru[m] = nn.GRU(dims[m], hidden, batch_first=True, bidirectional=True)
            self.dense[m] = nn.Linear(2 * hidden, dense)
        k = len(self.order)
        width = {"cim": {1: 2, 2: 4, 3: 9}[k], "self": 2 * k, "none": k}[attention] * dense
        self.sentiment = nn.Linear(width, 2) if tasks in ("mtl", "sentiment") else None
        self.emotion = nn.Linear(width, EMOTIONS + 1) if tasks in ("mtl", "emotion") else None
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                nn.init.xavier_uniform_(mod.weight)
                nn.init.zeros_(mod.bias)
            elif isinstance(mod, nn.GRU):
                for name, w in mod.named_parameters():
                    if name.startswith("weight_ih"):
                        nn.init.xavier_uniform_(w)
                    elif name.startswith("weight_hh"):
                        nn.init.orthogonal_(w)  # the whole [3H, H] matrix
                    else:
                        nn.init.zeros_(w)

    def forward(self, feats, lens, mask):
        u = mask.shape[1]
        h = {}
        for m in self.order:
            packed = pack_padded_sequence(feats[m], lens.cpu(), batch_first=True, enforce_sorted=False)
            out, _ = self.gru[m](packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=u)
            x = F.dropout(out, self.p, self.training)
            x = F.dropout(F.relu(self.dense[m](x)), self.p, self.training)
            h[m] = x * mask[:, :, None]
        parts, tail = [], [h[m] for m in self.order]
        if self.attention == "cim" and len(self.order) == 1:
            parts = [attend(tail[0], tail[0], mask)]
        elif self.attention == "cim":
            # MODEL.md's pairs (X, Y) in order; a bimodal R ends with X, Y.
            pairs = [(x, y) for x, y in (("text", "video"), ("audio", "video"), ("text", "audio")) if x in h and y in h]
            for x, y in pairs:
                parts += [attend(h[x], h[y], mask), attend(h[y], h[x], mask)]
            if len(pairs) == 1:
                tail = [h[pairs[0][0]], h[pairs[0][1]]]
        elif self.attention == "self":
            parts = [attend(h[m], h[m], mask) for m in self.order]
        r = torch.cat(parts + tail, dim=-1)
        sent = self.sentiment(r) if self.sentiment is not None else None
        emo = self.emotion(r) if self.emotion is not None else None
        return sent, emo


class Data:
    """A split's arrays on the device; `batch` slices a padded batch."""

    def __init__(self, split, order, device):
        self.lens = split["len"]
        self.feats = {m: torch.from_numpy(split[m]).to(device) for m in order}
        self.sent = torch.from_numpy((split["sentiment"] >= 0).astype(np.int64)).to(device)
        self.emo = None
        if "emotion" in split:
            e = split["emotion"] > 0
            none = ~e.any(axis=-1, keepdims=True)
            self.emo = torch.from_numpy(np.concatenate([e, none], axis=-1).astype(np.float32)).to(device)
        self.device = device

    def batch(self, idx):
        u = int(self.lens[idx].max())
        i = torch.from_numpy(np.asarray(idx)).to(self.device)
        lens = torch.from_numpy(self.lens[idx]).to(self.device)
        mask = torch.arange(u, device=self.device)[None, :] < lens[:, None]
        feats = {m: f.index_select(0, i)[:, :u] for m, f in self.feats.items()}
        sent = self.sent.index_select(0, i)[:, :u]
        emo = self.emo.index_select(0, i)[:, :u] if self.emo is not None else None
        return feats, lens, mask, sent, emo


def losses(sent_logits, emo_logits, mask, sent, emo):
    """Sums over real utterances: (sentiment CE, mean-over-labels emotion BCE)."""
    ls = le = torch.zeros((), device=mask.device)
    if sent_logits is not None:
        ls = (F.cross_entropy(sent_logits.transpose(1, 2), sent, reduction="none") * mask).sum()
    if emo_logits is not None:
        bce = F.binary_cross_entropy_with_logits(emo_logits, emo, reduction="none").mean(-1)
        le = (bce * mask).sum()
    return ls, le


def weighted_f1(tp, fp, tn, fn):
    p, n = tp + fn, tn + fp
    f1p = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0
    f1n = 2 * tn / (2 * tn + fn + fp) if 2 * tn + fn + fp else 0.0
    return (p * f1p + n * f1n) / (p + n) if p + n else 0.0


def confusion(truth, pred):
    return [int(np.sum(truth & pred)), int(np.sum(~truth & pred)), int(np.sum(~truth & ~pred)), int(np.sum(truth & ~pred))]


def emotion_at(probs, targets, t):
    """Mean over the 7 labels of weighted F1, accuracy and WA (labels without one left out)."""
    f1s, accs, was = [], [], []
    for k in range(probs.shape[1]):
        tp, fp, tn, fn = confusion(targets[:, k], probs[:, k] >= t)
        f1s.append(weighted_f1(tp, fp, tn, fn))
        accs.append((tp + tn) / max(1, tp + fp + tn + fn))
        p, n = tp + fn, tn + fp
        if p and n:
            was.append((tp * n / p + tn) / (2 * n))
    return float(np.mean(f1s)), float(np.mean(accs)), float(np.mean(was)) if was else None


THRESHOLDS = [i * 0.05 for i in range(1, 20)]


@torch.no_grad()
def evaluate(model, data, batch, thresholds=None):
    """Loss and the paper's metrics; emotion thresholds chosen here when not given (validation only)."""
    model.eval()
    tot = ls_sum = le_sum = 0.0
    s_truth, s_pred, e_probs, e_truth = [], [], [], []
    for idx in eval_batches(data.lens, batch):
        feats, lens, mask, sent, emo = data.batch(idx)
        sl, el = model(feats, lens, mask)
        ls, le = losses(sl, el, mask, sent, emo)
        ls_sum, le_sum, tot = ls_sum + float(ls), le_sum + float(le), tot + float(mask.sum())
        m = mask.cpu().numpy()
        if sl is not None:
            s_truth.append(sent.cpu().numpy()[m] == 1)
            s_pred.append((sl[..., 1] >= sl[..., 0]).cpu().numpy()[m])
        if el is not None:
            e_probs.append(torch.sigmoid(el).cpu().numpy()[m])
            e_truth.append(emo.cpu().numpy()[m] > 0.5)
    out = {"loss": (ls_sum + le_sum) / tot}
    if s_truth:
        tp, fp, tn, fn = confusion(np.concatenate(s_truth), np.concatenate(s_pred))
        out["sentiment_accuracy"] = (tp + tn) / (tp + fp + tn + fn)
        out["sentiment_weighted_f1"] = weighted_f1(tp, fp, tn, fn)
    if e_probs:
        probs, truth = np.concatenate(e_probs), np.concatenate(e_truth)
        if thresholds is None:
            f1_t = max(THRESHOLDS, key=lambda t: (emotion_at(probs, truth, t)[0], -t))
            wa_t = max(THRESHOLDS, key=lambda t: (emotion_at(probs, truth, t)[2] or -1.0, -t))
            thresholds = (f1_t, wa_t)
        f1, acc, _ = emotion_at(probs, truth, thresholds[0])
        wa = emotion_at(probs, truth, thresholds[1])[2]
        out.update(emotion_weighted_f1=f1, emotion_accuracy=acc, emotion_wa=wa, thresholds=list(thresholds))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a native cimnet .npz")
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--batch", type=int, default=16, help="videos per batch")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--patience", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--modalities", default="TAV")
    ap.add_argument("--attention", default="cim", choices=["cim", "self", "none"])
    ap.add_argument("--tasks", choices=["mtl", "sentiment", "emotion"], help="default: mtl if the data has emotions")
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--dense", type=int, default=100)
    ap.add_argument("--dropout", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    ap.add_argument("--no-eval", action="store_true", help="time training only: no validation or test")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if a.device == "auto" else a.device))
    splits = load_npz(a.data)
    order = [MODALITIES[c] for c in "TVA" if c in a.modalities.upper()]
    for m in order:
        if m not in splits["train"]:
            sys.exit(f"{a.data} has no {m} arrays but --modalities {a.modalities} uses them")
    has_emotion = "emotion" in splits["train"]
    tasks = a.tasks or ("mtl" if has_emotion else "sentiment")
    if tasks != "sentiment" and not has_emotion:
        sys.exit(f"--tasks {tasks} needs emotion labels, but {a.data} has none")
    dims = {m: splits["train"][m].shape[-1] for m in order}
    data = {s: Data(splits[s], order, device) for s in SPLITS}
    model = Model(dims, a.modalities.upper(), a.attention, tasks, a.hidden, a.dense, a.dropout).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-7)
    rng = np.random.default_rng(a.seed)
    train = data["train"]
    utterances = int(train.lens.sum())
    records, best, best_loss, since = [], None, float("inf"), 0
    for epoch in range(a.epochs):
        model.train()
        batches = make_batches(train.lens, a.batch, rng)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        total = torch.zeros((), device=device)
        for idx in batches:
            feats, lens, mask, sent, emo = train.batch(idx)
            sl, el = model(feats, lens, mask)
            ls, le = losses(sl, el, mask, sent, emo)
            loss = (ls + le) / mask.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += (ls + le).detach()
        train_loss = float(total) / utterances  # reads back: waits for the epoch
        seconds = time.perf_counter() - t0
        rec = {"epoch": epoch, "seconds": seconds, "train_loss": train_loss}
        if not a.no_eval:
            valid = evaluate(model, data["valid"], a.batch)
            rec["valid"] = valid
            if valid["loss"] < best_loss:
                best_loss, since, best = valid["loss"], 0, (epoch, copy.deepcopy(model.state_dict()))
            else:
                since += 1
        records.append(rec)
        msg = f"epoch {epoch + 1}/{a.epochs}  {seconds:.2f}s  train loss {train_loss:.4f}"
        if "valid" in rec:
            msg += f"  valid loss {rec['valid']['loss']:.4f}"
            if "sentiment_accuracy" in rec["valid"]:
                msg += f"  sent acc {100 * rec['valid']['sentiment_accuracy']:.2f}"
        print(msg, file=sys.stderr, flush=True)
        if since >= a.patience:
            break
    secs = [r["seconds"] for r in records]
    result = {
        "implementation": f"PyTorch {torch.__version__}",
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads",
        "data": a.data,
        "variant": f"{a.modalities.upper()}/{a.attention}/{tasks} H {a.hidden} D {a.dense}",
        "batch": a.batch,
        "train_videos": len(train.lens),
        "train_utterances": utterances,
        "steps_per_epoch": len(batches),
        "epoch_seconds": secs,
        "best_epoch_seconds": min(secs),
        "utterances_per_second": utterances / min(secs),
        "epochs": records,
    }
    if best is not None:
        model.load_state_dict(best[1])
        valid = evaluate(model, data["valid"], a.batch)
        result["best_epoch"] = best[0]
        result["valid"] = valid
        result["test"] = evaluate(model, data["test"], a.batch, valid.get("thresholds"))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
