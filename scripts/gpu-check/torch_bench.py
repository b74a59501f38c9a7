"""PyTorch side of scripts/gpu-check.sh: the same models (tools/pytorch/models.py), the same
inputs (detinit.sin_input) and the same step as bench/pytorch/bench_models.py (BCE + Dice, SGD
momentum 0.9 wd 1e-4), fp32, on the CUDA device. Each call is timed twice: by wall clock between
torch.cuda.synchronize() calls (what scripts/gpu-check/models.ts reports for scalpel) and by
torch.cuda.Event pairs. Writes JSON to --out after every model; honours GPU_CHECK_DEADLINE_MS.
  python3 scripts/gpu-check/torch_bench.py --out FILE [--models a,b] [--size N]
"""
import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "pytorch"))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import models  # noqa: E402
from detinit import det_init, sin_input  # noqa: E402

SIZE = {"nexnet": 224, "nexnet-ssl": 224, "nexnet-ae": 224}
DEADLINE = float(os.environ.get("GPU_CHECK_DEADLINE_MS") or "inf") / 1e3


def bce_dice(logits, t):
    bce = F.binary_cross_entropy_with_logits(logits, t)
    p = torch.sigmoid(logits)
    return bce + 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)


def timed(fn, warmup=3, runs=20, budget_s=1.5):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    wall, ev = [], []
    start = time.perf_counter()
    while len(wall) < 5 or (len(wall) < runs and time.perf_counter() - start < budget_s):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        wall.append((time.perf_counter() - t0) * 1e3)
        ev.append(a.elapsed_time(b))
    r = lambda x: round(x, 3)  # noqa: E731
    return {"median_ms": r(statistics.median(wall)), "min_ms": r(min(wall)),
            "events_median_ms": r(statistics.median(ev)), "runs": len(wall)}


def bench(name, size, train_batch):
    dev = torch.device("cuda")
    m = det_init(models.build(name)).to(dev)
    row = {"model": name, "size": size, "params": models.count_params(m)}
    m.eval()
    x = sin_input([1, 3, size, size]).to(dev)
    with torch.no_grad():
        row["inference"] = timed(lambda: m(x))
    m.train()
    xb = sin_input([train_batch, 3, size, size]).to(dev)
    tb = (sin_input([train_batch, 1, size, size]) > 0.8).to(torch.float32).to(dev)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    ae = name == "nexnet-ae"

    def step():
        opt.zero_grad(set_to_none=True)
        out = m(xb)
        loss = F.mse_loss(out, xb) if ae else bce_dice(out, tb)
        loss.backward()
        opt.step()
    row["train_step"] = {**timed(step, warmup=2), "batch": train_batch}
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default=",".join(models.EXPECTED_PARAMS))
    ap.add_argument("--size", type=int, default=0)
    ap.add_argument("--train-batch", type=int, default=8)
    a = ap.parse_args()
    res = {"torch": torch.__version__, "available": torch.cuda.is_available(), "rows": [], "complete": False}

    def save():
        with open(a.out + ".tmp", "w") as f:
            json.dump(res, f, indent=1)
        os.replace(a.out + ".tmp", a.out)
    if not torch.cuda.is_available():
        res["error"] = "torch.cuda.is_available() is False"
        save()
        sys.exit(1)
    res["device"] = torch.cuda.get_device_name(0)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32, as scalpel computes
    torch.backends.cudnn.allow_tf32 = False
    failed = False
    for name in a.models.split(","):
        size = a.size or SIZE.get(name, 256)
        if time.time() > DEADLINE - 5:
            res["rows"].append({"model": name, "skipped": "time budget"})
            continue
        try:
            res["rows"].append(bench(name, size, a.train_batch))
        except Exception as e:  # one model's failure must not hide the others
            failed = True
            res["rows"].append({"model": name, "size": size, "error": repr(e)[:1000]})
        print(json.dumps(res["rows"][-1]), flush=True)
        torch.cuda.empty_cache()
        save()
    res["complete"] = True
    save()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
