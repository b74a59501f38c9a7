#!/usr/bin/python3
"""PyTorch CPU timings of the convolution cases of bench/kernels.ts (comparison only).

    /usr/bin/python3 bench/pytorch/bench_kernels.py --threads 2 < cases.json

stdin: JSON list of {"name", "kind": "fwd"|"bwd-data"|"bwd-weight", "x": [N,C,H,W], "w": [OC,Cg,k,k],
"stride", "padding", "dilation", "groups"}. Prints one JSON line per case: {"name", "median_ms",
"runs"}; the backward kinds use aten::convolution_backward with the matching output mask (the
same call autograd makes), so they time the same work as scalpel's dedicated kernels.
"""
import argparse
import json
import statistics
import sys
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget-ms", type=float, default=300)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cases = json.load(sys.stdin)
    print(json.dumps({"header": True, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "mkldnn": torch.backends.mkldnn.is_available()}), flush=True)
    torch.manual_seed(0)
    with torch.no_grad():
        for c in cases:
            x = torch.rand(c["x"]) * 2 - 1
            w = torch.rand(c["w"]) * 2 - 1
            b = torch.rand([c["w"][0]])
            s, p, d, g = c["stride"], c["padding"], c["dilation"], c["groups"]
            y = torch.nn.functional.conv2d(x, w, b, s, p, d, g)
            gy = torch.rand(y.shape)
            if c["kind"] == "fwd":
                fn = lambda: torch.nn.functional.conv2d(x, w, b, s, p, d, g)  # noqa: E731
            else:
                mask = [True, False, False] if c["kind"] == "bwd-data" else [False, True, True]
                fn = lambda: torch.ops.aten.convolution_backward(  # noqa: E731
                    gy, x, w, [w.shape[0]], [s, s], [p, p], [d, d], False, [0, 0], g, mask)
            fn()
            ts = []
            t_end = time.perf_counter() + args.budget_ms / 1e3
            while len(ts) < 3 or (len(ts) < 30 and time.perf_counter() < t_end):
                t0 = time.perf_counter()
                fn()
                ts.append((time.perf_counter() - t0) * 1e3)
            print(json.dumps({"name": c["name"], "median_ms": statistics.median(ts), "runs": len(ts)}), flush=True)


if __name__ == "__main__":
    main()
