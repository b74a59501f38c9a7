#!/usr/bin/python3
"""Print each model's parameter count and assert it equals models.md; assert the CMUNeXt
state-dict names and shapes equal the authors' lists in /work/shared/reference, in order.

Run:  /usr/bin/python3 tools/pytorch/check_counts.py [--reference-dir DIR] [--dump DIR]
(--dump writes `<model>.params.txt` in the reference-list format for every model.)"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402

REF = {"cmunext-s": "cmunext_s.params.txt", "cmunext": "cmunext.params.txt",
       "cmunext-l": "cmunext_l.params.txt"}


def entries(model):
    return [(k, list(v.shape)) for k, v in model.state_dict().items()]


def read_ref(path):
    out, total = [], None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                total = int(line.split(":")[1].split()[0])
                continue
            name, shape = line.split(" ", 1)
            shape = shape.strip("[]")
            out.append((name, [int(s) for s in shape.split(",")] if shape else []))
    return out, total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference-dir", default="/work/shared/reference")
    ap.add_argument("--dump", default=None)
    args = ap.parse_args()
    ok = True
    for name, expected in models.EXPECTED_PARAMS.items():
        m = models.build(name)
        n = models.count_params(m)
        good = n == expected
        ok &= good
        print(f"{name:14s} {n:>11,d}  expected {expected:>11,d}  {'OK' if good else 'MISMATCH'}")
        if args.dump:
            os.makedirs(args.dump, exist_ok=True)
            with open(os.path.join(args.dump, f"{name}.params.txt"), "w") as f:
                f.write(f"# {name}: {n} trainable parameters; state_dict entries (name shape) in order\n")
                for k, s in entries(m):
                    f.write(f"{k} [{', '.join(map(str, s))}]\n")
        if name in REF:
            path = os.path.join(args.reference_dir, REF[name])
            if not os.path.exists(path):
                print(f"  (reference {path} not found; name check skipped)")
                continue
            ref, total = read_ref(path)
            mine = entries(m)
            same = ref == mine and total == n
            ok &= same
            if not same:
                for i, (a, b) in enumerate(zip(ref, mine)):
                    if a != b:
                        print(f"  first difference at entry {i}: reference {a} vs ours {b}")
                        break
                print(f"  reference has {len(ref)} entries, ours {len(mine)}; totals {total} / {n}")
            print(f"  state_dict names/shapes vs {REF[name]}: {'identical' if same else 'DIFFERENT'}"
                  f" ({len(mine)} entries)")
    assert ok, "parameter count or state-dict mismatch"
    print("all checks passed")


if __name__ == "__main__":
    main()
