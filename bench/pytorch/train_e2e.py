"""End-to-end training in PyTorch with the recipe of `scalpel train --recipe cmunext`, for
`npm run bench:e2e` (bench/e2e.ts), which runs both under the same wall-clock budget.

    /usr/bin/python3 bench/pytorch/train_e2e.py --manifest M.json --model cmunext-s --size 128 \
        --batch 8 --epochs 48 --time-limit 10 --seed 0 --threads 2

The manifest (written by bench/e2e.ts from scalpel's own openDataset) lists the train and val
(image, mask) files, so both engines see exactly the same split. The pipeline is what a careful
PyTorch user writes for a dataset that fits in memory: PIL decode and resize once (bilinear
images, nearest masks, as scalpel's loader), per-channel mean/std of the training images,
per-sample flips + rot90 (p = 0.5 each, k in 1..3) in numpy, SGD momentum 0.9, wd 1e-4,
lr 0.01 with poly (0.9) decay per iteration, BCE-with-logits + soft Dice (smooth 1, over the
batch), validation every epoch (global Dice at 0.5). It stops after the last epoch that fits
the budget, with scalpel's rule (elapsed + mean epoch time > budget). Prints one JSON line.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "pytorch"))
import models  # noqa: E402


def load(pairs, size, channels):
    imgs = np.empty((len(pairs), channels, size, size), np.float32)
    masks = np.empty((len(pairs), 1, size, size), np.float32)
    for i, (ip, mp) in enumerate(pairs):
        im = Image.open(ip).convert("RGB" if channels == 3 else "L").resize((size, size), Image.BILINEAR)
        a = np.asarray(im, np.float32) / 255.0
        imgs[i] = a.transpose(2, 0, 1) if channels == 3 else a[None]
        m = Image.open(mp).convert("L").resize((size, size), Image.NEAREST)
        masks[i, 0] = (np.asarray(m) >= 128).astype(np.float32)
    return imgs, masks


def augment(rng, x, m):
    if rng.random() < 0.5:
        x, m = x[:, :, ::-1], m[:, :, ::-1]
    if rng.random() < 0.5:
        x, m = x[:, ::-1, :], m[:, ::-1, :]
    if rng.random() < 0.5:
        k = int(rng.integers(1, 4))
        x, m = np.rot90(x, k, (1, 2)), np.rot90(m, k, (1, 2))
    return np.ascontiguousarray(x), np.ascontiguousarray(m)


def loss_fn(logits, target):
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    return F.binary_cross_entropy_with_logits(logits, target) + dice


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--model", default="cmunext-s")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=48)
    ap.add_argument("--time-limit", type=float, default=10.0, help="minutes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    t0 = time.perf_counter()
    man = json.load(open(a.manifest))
    tx, tm = load(man["train"], a.size, 3)
    vx, vm = load(man["val"], a.size, 3)
    mean = tx.mean(axis=(0, 2, 3), keepdims=True)
    std = tx.std(axis=(0, 2, 3), keepdims=True) + 1e-6
    tx = (tx - mean) / std
    vx = (vx - mean) / std
    decode_s = time.perf_counter() - t0

    model = models.build(a.model)  # 3 input channels, as scalpel's default
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    n = len(tx)
    nb = n // a.batch if n > a.batch else 1
    total_it = a.epochs * nb
    it = 0
    history = []
    best = -1.0
    budget = a.time_limit * 60
    train_images = 0
    for epoch in range(a.epochs):
        e0 = time.perf_counter()
        model.train()
        order = rng.permutation(n)
        seen, loss_sum = 0, 0.0
        for b in range(nb):
            idx = order[b * a.batch:(b + 1) * a.batch]
            pairs = [augment(rng, tx[i], tm[i]) for i in idx]
            x = torch.from_numpy(np.stack([p[0] for p in pairs]))
            y = torch.from_numpy(np.stack([p[1] for p in pairs]))
            for g in opt.param_groups:
                g["lr"] = 0.01 * (1 - it / total_it) ** 0.9
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            it += 1
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
        train_s = time.perf_counter() - e0
        train_images += seen
        v0 = time.perf_counter()
        model.eval()
        inter = total = 0.0
        with torch.no_grad():
            for b in range(0, len(vx), a.batch):
                pred = (model(torch.from_numpy(vx[b:b + a.batch])) > 0).float()
                t = torch.from_numpy(vm[b:b + a.batch])
                inter += float((pred * t).sum())
                total += float(pred.sum() + t.sum())
        dice = 2 * inter / total if total > 0 else 1.0
        val_s = time.perf_counter() - v0
        best = max(best, dice)
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / seen, "dice": dice, "train_s": train_s, "val_s": val_s, "img_s": seen / train_s})
        elapsed = time.perf_counter() - t0
        mean_epoch = (elapsed - decode_s) / (epoch + 1)
        if epoch + 1 < a.epochs and elapsed + mean_epoch > budget:
            break
    print(json.dumps({
        "engine": "pytorch", "torch": torch.__version__, "threads": a.threads, "model": a.model, "size": a.size, "batch": a.batch,
        "epochs": len(history), "train_images": train_images, "decode_s": decode_s, "wall_s": time.perf_counter() - t0,
        "best_dice": best, "history": history,
    }))


if __name__ == "__main__":
    main()
