#!/usr/bin/python3
"""PyTorch CPU baseline for scalpel's model benchmarks (comparison only; never a dependency).

    /usr/bin/python3 bench/pytorch/bench_models.py --threads 2 [--models a,b] [--runs N]
        [--train-runs N] [--train-batch 8] [--no-train] [--export-onnx DIR]

Prints JSON lines: first a header (torch version, threads, BLAS / oneDNN configuration from
torch.__config__.show()), then one line per model and mode:
  {"model", "mode": "inference", "batch": 1, "size", "median_ms", "min_ms", "runs", "peak_rss_mb"}
  {"model", "mode": "train_step", "batch": 8, ..., "loss"}   forward + BCE-with-logits + soft
      Dice + backward + SGD(lr 0.01, momentum 0.9, wd 1e-4) step, model in train mode.
Inference: eval mode, torch.no_grad(), batch 1 at 256x256 (NExNet at 224x224).
peak_rss_mb = resource.getrusage(RUSAGE_SELF).ru_maxrss, the process-wide high-water mark so far
(models run in the order given, so it is monotone; run one model per process for isolated peaks).
"""
import argparse
import json
import math
import os
import platform
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "pytorch"))
import models  # noqa: E402
from detinit import det_init, sin_input  # noqa: E402

DEFAULT_MODELS = "cmunext-s,cmunext,cmunext-l,nexnet,unet"
SIZE = {"nexnet": 224, "nexnet-ssl": 224, "nexnet-ae": 224}


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def config_summary():
    text = torch.__config__.show()
    keep = []
    for line in text.splitlines():
        low = line.lower()
        if any(k in low for k in ("blas", "lapack", "mkl", "dnn", "openmp", "cpu capability")):
            keep.append(line.strip(" -"))
    # The build-settings line is long; extract the interesting keys from it.
    flags = {}
    for tok in text.replace("\n", " ").split(","):
        tok = tok.strip()
        if "Build settings:" in tok:
            tok = tok.split("Build settings:", 1)[1].strip()
        for key in ("BLAS_INFO", "LAPACK_INFO", "USE_MKLDNN", "USE_OPENMP", "USE_MKL",
                    "USE_NNPACK", "USE_CUDA"):
            if tok.startswith(key + "="):
                flags[key] = tok.split("=", 1)[1]
    keep = [k for k in keep if not k.startswith("Build settings")]
    flags["libblas.so.3"] = _resolved_blas()
    return keep, flags


def _resolved_blas():
    """Which shared library the generic BLAS_INFO build actually uses (Debian alternatives)."""
    try:
        with open("/proc/self/maps") as f:
            libs = sorted({ln.split()[-1] for ln in f if "blas" in ln.lower() and "/" in ln})
        return [os.path.realpath(x) for x in libs] or None
    except OSError:
        return None


def bce_dice(logits, t):
    bce = F.binary_cross_entropy_with_logits(logits, t)
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    return bce + dice


def timed(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return ts


def build_at(name, s):
    """The model for inputs of side s (TransUNet's position embedding is built for one size)."""
    return models.build(name, img_size=s) if name == "transunet" else models.build(name)


def bench_model(name, args):
    s = args.size or SIZE.get(name, 256)
    m = det_init(build_at(name, s))
    out = []
    # inference, at each batch size asked for
    m.eval()
    for b in [int(v) for v in args.inf_batches.split(",") if v]:
        x = sin_input([b, 3, s, s])
        with torch.no_grad():
            ts = timed(lambda: m(x), args.runs, args.warmup)
        out.append({"model": name, "mode": "inference", "batch": b, "size": s,
                    "params": models.count_params(m), "median_ms": round(statistics.median(ts), 2),
                    "min_ms": round(min(ts), 2), "runs": len(ts), "threads": torch.get_num_threads(),
                    "peak_rss_mb": round(peak_rss_mb(), 1)})
        print(json.dumps(out[-1]), flush=True)
    if not args.no_train:
        m.train()
        b = args.train_batch
        xb = sin_input([b, 3, s, s])
        tb = (sin_input([b, 1, s, s], ) > 0.8).to(torch.float32)
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        last = {}

        def step():
            opt.zero_grad(set_to_none=True)
            loss = bce_dice(m(xb), tb)
            loss.backward()
            opt.step()
            last["loss"] = float(loss)
        ts = timed(step, args.train_runs, 1)
        out.append({"model": name, "mode": "train_step", "batch": b, "size": s,
                    "median_ms": round(statistics.median(ts), 1), "min_ms": round(min(ts), 1),
                    "runs": len(ts), "threads": torch.get_num_threads(),
                    # JSON has no NaN: a diverged loss is null (the timing still stands).
                    "loss": round(last["loss"], 5) if math.isfinite(last["loss"]) else None,
                    "peak_rss_mb": round(peak_rss_mb(), 1)})
        print(json.dumps(out[-1]), flush=True)
    return m


def onnx_name(name, b, s):
    """One file per input shape: traced exports fix shape-derived constants (e.g. MaSA decay)."""
    return f"{name}-b{b}-s{s}.onnx"


def export_onnx(name, out_dir, size, b):
    s = size or SIZE.get(name, 256)
    m = det_init(build_at(name, s)).eval()
    path = os.path.join(out_dir, onnx_name(name, b, s))
    rec = {"model": name, "mode": "onnx_export", "opset": 13, "input_shape": [b, 3, s, s],
           "path": path}
    try:
        torch.onnx.export(m, sin_input([b, 3, s, s]), path, opset_version=13,
                          input_names=["input"], output_names=["logits"], do_constant_folding=True)
        rec["ok"] = True
        rec["bytes"] = os.path.getsize(path)
        try:
            import onnx  # noqa: F401
            onnx.checker.check_model(onnx.load(path))
            rec["onnx_checker"] = "passed"
        except ImportError:
            rec["onnx_checker"] = "skipped: python package 'onnx' is not installed"
    except Exception as e:  # noqa: BLE001
        rec["ok"] = False
        rec["error"] = f"{type(e).__name__}: {e}"[:500]
        try:
            import onnx  # noqa: F401
        except ImportError:
            rec["hint"] = "python package 'onnx' is not installed"
    print(json.dumps(rec), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--train-runs", type=int, default=3)
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=None, help="input side (default: the model's own)")
    ap.add_argument("--inf-batches", default="1", help="inference batch sizes, comma-separated")
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--no-bench", action="store_true", help="only export (with --export-onnx)")
    ap.add_argument("--export-onnx", default=None, metavar="DIR")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lines, flags = config_summary()
    print(json.dumps({"header": True, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "interop_threads": torch.get_num_interop_threads(),
                      "mkldnn_available": torch.backends.mkldnn.is_available(),
                      "mkl_available": torch.backends.mkl.is_available(),
                      "openmp_available": torch.backends.openmp.is_available(),
                      "build_flags": flags, "config": lines, "python": platform.python_version(),
                      "cpu": platform.processor() or platform.machine(),
                      "cpu_count": os.cpu_count()}), flush=True)
    names = [n for n in args.models.split(",") if n]
    if not args.no_bench:
        for n in names:
            bench_model(n, args)
    if args.export_onnx:
        os.makedirs(args.export_onnx, exist_ok=True)
        for n in names:
            for b in [int(v) for v in args.inf_batches.split(",") if v]:
                export_onnx(n, args.export_onnx, args.size, b)


if __name__ == "__main__":
    main()
