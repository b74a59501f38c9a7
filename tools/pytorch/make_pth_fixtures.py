#!/usr/bin/python3
"""Write the .pth fixtures of test/pth.test.ts to test/fixtures/pth/ (deterministic, each small).

    /usr/bin/python3 tools/pytorch/make_pth_fixtures.py [--out test/fixtures/pth]

basic.pth        torch.save of an OrderedDict: float32 / float64 / float16 / bfloat16 / int64 /
                 int32 / int16 / int8 / uint8 / bool tensors, a 0-d tensor, an nn.Parameter, and
                 views sharing one storage: 'base' [3, 4], 'base_t' = base.t() (non-contiguous),
                 'base_row' = base[1, 1:] (storage offset 5), 'base_col' = base[:, 2] (offset 2,
                 stride 4).  Expected values (tolist(), bool as 0/1, float16/bfloat16 widened exactly)
                 go to expected.json.
cmunext_tiny.pth the state dict of models.CMUNeXt(in_ch=1, classes=1, dims=[2, 2, 4, 4, 4],
                 depths=[1, 1, 1, 1, 1], kernels=[3, 3, 3, 3, 3]) (the cmunext-s architecture with
                 narrow stages, so the file is a few KB) after det_init; expected.json holds its eval
                 forward on x[i] = float32(sin(0.37 i) * 0.5 + 0.5), shape [1, 1, 16, 16].
wrapped.pth      {'state_dict': <small's state dict>, 'epoch': 7, 'best_dice': 0.5,
                 'optimizer': {'state': {}, 'param_groups': [{'lr': 0.01, 'params': [0, 1]}]}},
                 small = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)) after det_init with
                 num_batches_tracked = 5; expected.json holds its entries' values.
module_prefix.pth  small's state dict with every key prefixed 'module.' (DataParallel).
tiny_seg.pth     {'model': <state dict with 'module.' prefixes>, 'epoch': 3} of scalpel's built-in 'tiny'
                 segmentation net at width 4 (src/train/models.ts tinySegNet, same layer indices:
                 Conv2d / ConvTranspose2d at 0, 2, 4, 6, 8, 10, 12, 14, ReLUs between) after det_init,
                 for `train --init-weights`; expected.json holds each entry's first values and sum.
legacy.pth       basic's first two tensors saved with _use_new_zipfile_serialization=False.
malicious.pth    a torch.save-shaped ZIP whose data.pkl calls os.system('echo pwned') via GLOBAL +
                 REDUCE, written opcode by opcode here (never unpickled by this script).
Truncated and damaged variants are made by the test from these files.
"""
import argparse
import collections
import json
import math
import os
import struct
import sys
import zipfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402
from detinit import det_init, sin_input  # noqa: E402


def values(t):
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.to(torch.float32)  # exact: every half / bfloat16 value is a float32 value
    vals = [v if not isinstance(v, float) or math.isfinite(v) else str(v) for v in t.contiguous().view(-1).tolist()]
    # JSON has no inf / nan: those are written as the strings "inf", "-inf", "nan".
    return {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape), "values": vals}


def basic():
    base = torch.arange(12, dtype=torch.float32).view(3, 4) * 0.5 - 1.0
    sd = collections.OrderedDict()
    sd["f32"] = torch.tensor([[1.5, -2.25, 3.0], [0.1, 1e-8, -7e5]], dtype=torch.float32)
    sd["f64"] = torch.tensor([3.141592653589793, -1e-300, 2.5], dtype=torch.float64)
    sd["f16"] = torch.tensor([1.0, -0.5, 65504.0, 6.1e-5, 0.1, 5.96e-8, float("inf"), -0.0], dtype=torch.float16)
    sd["bf16"] = torch.tensor([1.0, -3.140625, 1e30, 1e-30, 0.1], dtype=torch.bfloat16)
    sd["num_batches_tracked"] = torch.tensor(123456789012, dtype=torch.int64)
    sd["i64"] = torch.tensor([-(2 ** 40), 0, 2 ** 40 + 7], dtype=torch.int64)
    sd["i32"] = torch.tensor([[-2147483648, 5], [7, 2147483647]], dtype=torch.int32)
    sd["i16"] = torch.tensor([-32768, 12, 32767], dtype=torch.int16)
    sd["i8"] = torch.tensor([-128, 3, 127], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 1, 200, 255, 17], dtype=torch.uint8)
    sd["mask"] = torch.tensor([True, False, False, True], dtype=torch.bool)
    sd["scalar"] = torch.tensor(2.75, dtype=torch.float32)
    sd["empty"] = torch.zeros(0, 3, dtype=torch.float32)
    sd["param"] = torch.nn.Parameter(torch.tensor([[0.25, -0.75]], dtype=torch.float32))
    sd["base"] = base
    sd["base_t"] = base.t()
    sd["base_row"] = base[1, 1:]
    sd["base_col"] = base[:, 2]
    assert not sd["base_t"].is_contiguous() and sd["base_row"].storage_offset() == 5
    return sd


def tiny_cmunext():
    torch.manual_seed(0)
    m = models.CMUNeXt(in_ch=1, classes=1, dims=[2, 2, 4, 4, 4], depths=[1, 1, 1, 1, 1], kernels=[3, 3, 3, 3, 3])
    det_init(m)
    m.eval()
    x = sin_input([1, 1, 16, 16])
    with torch.no_grad():
        y = m(x)
    return m.state_dict(), y


def write_malicious(path):
    """A ZIP shaped like torch.save's whose pickle is os.system('echo pwned'): PROTO 2,
    GLOBAL 'os system', BINUNICODE 'echo pwned', TUPLE1, REDUCE, STOP."""
    arg = b"echo pwned"
    pkl = (b"\x80\x02" + b"cos\nsystem\n" + b"q\x00" + b"X" + struct.pack("<I", len(arg)) + arg
           + b"\x85" + b"R" + b".")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in (("malicious/data.pkl", pkl), ("malicious/version", b"3\n")):
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)  # fixed time: same bytes every run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures", "pth"))
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    expected = {"doc": __doc__.strip(), "torch": torch.__version__}

    sd = basic()
    torch.save(sd, os.path.join(out, "basic.pth"))
    expected["basic"] = {k: values(v.detach()) for k, v in sd.items()}
    legacy = collections.OrderedDict(list(sd.items())[:2])
    torch.save(legacy, os.path.join(out, "legacy.pth"), _use_new_zipfile_serialization=False)

    tiny, y = tiny_cmunext()
    torch.save(tiny, os.path.join(out, "cmunext_tiny.pth"))
    expected["cmunext_tiny"] = {"entries": [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in tiny.items()],
                                "output": values(y)}
    small = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    det_init(small)
    small[1].num_batches_tracked.fill_(5)
    small_sd = small.state_dict()
    expected["small"] = {k: values(v) for k, v in small_sd.items()}
    torch.save({"state_dict": small_sd, "epoch": 7, "best_dice": 0.5,
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "params": [0, 1]}]}},
               os.path.join(out, "wrapped.pth"))
    torch.save(collections.OrderedDict((f"module.{k}", v) for k, v in small_sd.items()), os.path.join(out, "module_prefix.pth"))
    w = 4
    nn = torch.nn
    tiny_seg = nn.Sequential(
        nn.Conv2d(3, w, 3, padding=1), nn.ReLU(),
        nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(2 * w, 2 * w, 3, padding=2, dilation=2), nn.ReLU(),
        nn.Conv2d(2 * w, 2 * w, 3, padding=4, dilation=4), nn.ReLU(),
        nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(w, w, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(w, 1, 1))
    det_init(tiny_seg)
    # First values and the float64 sum of each entry (the full values would make the JSON large).
    expected["tiny_seg"] = {k: {"shape": list(v.shape), "head": v.view(-1)[:4].tolist(), "sum": v.double().sum().item()}
                            for k, v in tiny_seg.state_dict().items()}
    torch.save({"model": collections.OrderedDict((f"module.{k}", v) for k, v in tiny_seg.state_dict().items()), "epoch": 3},
               os.path.join(out, "tiny_seg.pth"))
    write_malicious(os.path.join(out, "malicious.pth"))

    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, separators=(",", ":"), allow_nan=False)
        f.write("\n")
    for name in sorted(os.listdir(out)):
        print(f"{name}: {os.path.getsize(os.path.join(out, name))} bytes")


if __name__ == "__main__":
    main()
