"""Deterministic weights, identical in PyTorch and in scalpel's TypeScript tests.

det_init(model) overwrites every entry of model.state_dict() in place.  Exact rule:

  Let the state-dict entries be listed in order (model.state_dict().items(), i.e. PyTorch's
  registration order; num_batches_tracked entries DO count), p = 0, 1, 2, ... the entry's
  position, and i = 0 .. numel-1 the flat (row-major / C-order) element index inside it.
  In IEEE float64, with Math.sin / numpy.sin:

      t = (0.7 * i + 1.3 * p) + 0.1          (evaluated in exactly this order, float64)
      s = sin(t)

  and the element's value, computed in float64 and then rounded ONCE to float32
  (round-to-nearest-even, Math.fround), is:

    - name ends with "num_batches_tracked":        0 (int64; left untouched)
    - name ends with ".running_mean":              0.05 * s
    - name ends with ".running_var":               1 + 0.5 * (s * s)
    - ndim >= 2 (conv / linear / conv-transpose weights):
          scale * s,  scale = 1 / sqrt(fan_in),  fan_in = numel / shape[0]
          (sqrt and the division in float64; for ConvTranspose2d weights [in, out, kh, kw]
           this is out*kh*kw, by the same formula)
    - ndim == 1 and name ends with ".weight" (in these models every 1-D ".weight" is a
      BatchNorm weight):                            1 + 0.1 * s
    - any other 1-D entry (".bias" of conv / linear / BN, T-PEN coefficient vectors
      ".a1", ".a2", ".a3"):                         0.1 * s
    - 0-D float entries (none in these models):     0.1 * s

Fixture inputs use the same style:  x[i] = float32(sin(0.37 * i) * 0.5 + 0.5) (float64 math).
"""
import math

import numpy as np
import torch


def det_values(p, shape, name):
    n = int(np.prod(shape)) if len(shape) else 1
    i = np.arange(n, dtype=np.float64)
    s = np.sin((0.7 * i + 1.3 * float(p)) + 0.1)
    if name.endswith(".running_mean"):
        v = 0.05 * s
    elif name.endswith(".running_var"):
        v = 1.0 + 0.5 * (s * s)
    elif len(shape) >= 2:
        fan_in = n / shape[0]
        v = (1.0 / math.sqrt(fan_in)) * s
    elif len(shape) == 1 and name.endswith(".weight"):
        v = 1.0 + 0.1 * s
    else:
        v = 0.1 * s
    return v.astype(np.float32).reshape(shape)


@torch.no_grad()
def det_init(model):
    sd = model.state_dict()
    for p, (name, t) in enumerate(sd.items()):
        if name.endswith("num_batches_tracked") or not t.is_floating_point():
            continue
        t.copy_(torch.from_numpy(det_values(p, list(t.shape), name)))
    return model


def sin_input(shape, a=0.37, mul=0.5, add=0.5):
    """float32(sin(a * i) * mul + add) over the flat index i (float64 math)."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.float64)
    return torch.from_numpy((np.sin(a * i) * mul + add).astype(np.float32).reshape(shape))
