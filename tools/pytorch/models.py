"""Reference PyTorch re-implementations of scalpel's segmentation networks.

Used ONLY to generate test fixtures and benchmark comparisons; scalpel never imports Python
at run time.  Written from /work/shared/design/models.md (NCHW; "conv k" = Conv2d with bias,
padding k//2; BN = BatchNorm2d(eps 1e-5, momentum 0.1); GELU = exact erf form).

State-dict naming schemes (the TypeScript models mirror these names AND this order exactly;
state_dict order = a module's own parameters, then its buffers, then its children in
registration order, recursively; BN entries are weight, bias, running_mean, running_var,
num_batches_tracked):

CMUNeXt (S / base / L) -- names of the authors' code (FengheTan9/CMUNeXt), so converted
checkpoints load; checked against /work/shared/reference/cmunext*.params.txt:
    stem.conv.{0: conv3 3->d0, 1: BN}                       (2 = ReLU)
    encoder{s}  s = 1..5, stage s-1 of models.md:
        encoder{s}.block.{b}            b = 0..depth-1, one CMUNeXt block (a Sequential):
            .0.fn.0  depthwise conv k (groups C)   .0.fn.2  BN    (.0 = Residual, fn.1 = GELU)
            .1 conv1x1 C->4C   .3 BN   .4 conv1x1 4C->C   .6 BN  (.2/.5 = GELU)
        encoder{s}.up.conv.{0: conv3 Cin->Cout, 1: BN}      (2 = ReLU)
    Up{u} u = 5,4,3,2: Up{u}.up.{1: conv3 d(u-1)->d(u-2), 2: BN}   (0 = Upsample, 3 = ReLU)
    Up_conv{u}: Up_conv{u}.conv.{0: grouped conv3 2c->2c g=2, 2: BN, 3: conv1x1 2c->4c, 5: BN,
                                 6: conv1x1 4c->c, 8: BN}  with c = d(u-2)
    Conv_1x1 conv1x1 d0 -> classes
    Registration order: stem, encoder1..5, Up5, Up_conv5, Up4, Up_conv4, Up3, Up_conv3, Up2,
    Up_conv2, Conv_1x1.

Shared building blocks of NExNet / UNet (our own, regular names):
    DoubleConv(in, out, mid=out):  conv1 (conv3 in->mid), bn1, conv2 (conv3 mid->out), bn2
        forward: relu(bn2(conv2(relu(bn1(conv1(x)))))) [-> Dropout2d(p) if p > 0]
        [-> masa (if with MaSA): masa.q, masa.k, masa.v, each Linear(out, out)]
    TPEN(C, order=3):  a1, a2, a3 (each shape [C]), then mix (conv1x1 3C -> C, with bias)
        forward: mix(cat([a1*x, a2*x^2, a3*x^3], dim=1)); a_i broadcast as [1, C, 1, 1].

NExNet Seg  (NExNetSeg(ssl=False); filters F = [32, 64, 128, 256, 256, 512]):
    enc.{i}  i = 0..5, NEx block F_in -> F[i] (F_in = 3 for i = 0, else F[i-1]):
        enc.i.bn    BN(F_in)
        enc.i.conv  conv3 F_in -> F[i], dilation 2, padding 2
        enc.i.tpen  TPEN(F[i])                       y = tpen(relu(conv(bn(x))))
        enc.i.att   DoubleConv(F[i], F[i]) with MaSA  att = att(y)
        MaxPool 2x2 on y between blocks.
    dec.{j}  j = 0..4, DoubleConv(in_j, W[j]), W = [256, 256, 128, 64, 32]; stage j:
        h = dec.j(cat([bilinear_x2_align_corners_true(h), att_{4-j}], dim=1))
        with first h = y_5 (the last NEx block's main output; its att branch is unused in
        the non-SSL model but its parameters are counted, as in the authors' code), and
        dec.4 has Dropout2d(dropout, default 0).
    head     conv1x1 32 -> classes (logits)
NExNet Seg SSL (NExNetSeg(ssl=True)): same names as above, plus the autoencoder registered
    last as `ae.*`; the first decoder input is cat([att_5, ae.embed(x)]) (512 + 1024 ch), so
    dec.0 is DoubleConv(512 + 1024 + 256, 256).
NExNet denoising autoencoder (NExNetAE), widths L = [32, 64, 128, 256, 512]:
    enc.{l}  l = 0..4, DoubleConv(prev, L[l]) (plain path; MaxPool 2x2 after each level)
    att.{l}  l = 0..2, DoubleConv(prev, L[l]) with MaSA on the same input as enc.l (skip)
    bottleneck.conv  conv3 512 -> 1024,  bottleneck.bn  BN(1024)   (then ReLU)
    dec.{j}  j = 0..4, DoubleConv(prev + skip, [512, 256, 128, 64, 32][j]); skip of level
             4-j = att.(4-j) for levels 0..2, enc.(4-j)'s output for levels 3, 4;
             concat order cat([up, skip]); up = bilinear x2 align_corners=True
    head     conv1x1 32 -> 3, then sigmoid
    Registration order: enc, att, bottleneck, dec, head.

UNet (UNet(bilinear=False|True)), 64 base filters, concat order cat([skip, up]):
    enc.{l}  l = 0..4, DoubleConv: 3->64, 64->128, 128->256, 256->512, 512->1024
             (bilinear: the last is 512->512, "halved bottleneck"); MaxPool before enc.1..4
    transposed:  up.{i} i = 0..3, ConvTranspose2d(c, c/2, 2, stride 2) for c = 1024,512,256,128
                 dec.{i} DoubleConv(c, c/2)
    bilinear:    (no up.*; bilinear x2 align_corners=True)
                 dec.{i} DoubleConv(c, out, mid=c/2) with (c, out) = (1024,256), (512,128),
                 (256,64), (128,64)
    head     conv1x1 64 -> classes
    Registration order: enc, up (transposed only), dec, head.

MaSA (decomposed, the paper's form; single head, gamma is a constant, not a parameter):
    X = x.permute(0, 2, 3, 1)                      # [B, H, W, d], channel vector per pixel
    row pass:    q, k, v = q(X), k(X), v(X)        # Linear(d, d), over the last axis
                 A = softmax(q k^T / sqrt(d), over W) * D_W,  D_W[i, j] = gamma^|i - j|
                 R = A @ v                           (attention among the W pixels of a row)
    column pass: the same on R, within each column (length H), with the same q/k/v layers:
                 Rt = R.transpose(1, 2)  [B, W, H, d];  C = softmax(q(Rt) k(Rt)^T/sqrt(d)) * D_H
                 @ v(Rt);  out = C.permute(0, 3, 2, 1)  -> [B, d, H, W]
    full MaSA:   one softmax over all H*W positions (row-major n = y*W + x), times
                 D[n, m] = gamma^(|y_n - y_m| + |x_n - x_m|), @ v.
"""
import math
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F


# ----------------------------------------------------------------------------- CMUNeXt

class _Residual(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x) + x


class _ConvBNReLU(nn.Module):
    """`conv.0` conv3, `conv.1` BN, `conv.2` ReLU."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout),
                                  nn.ReLU())

    def forward(self, x):
        return self.conv(x)


def _cmunext_block(c, k):
    return nn.Sequential(
        _Residual(nn.Sequential(nn.Conv2d(c, c, k, groups=c, padding=k // 2), nn.GELU(),
                                nn.BatchNorm2d(c))),
        nn.Conv2d(c, 4 * c, 1), nn.GELU(), nn.BatchNorm2d(4 * c),
        nn.Conv2d(4 * c, c, 1), nn.GELU(), nn.BatchNorm2d(c))


class _CMUNeXtStage(nn.Module):
    def __init__(self, cin, cout, depth, k):
        super().__init__()
        self.block = nn.Sequential(*[_cmunext_block(cin, k) for _ in range(depth)])
        self.up = _ConvBNReLU(cin, cout)

    def forward(self, x):
        return self.up(self.block(x))


class _Upsample(nn.Module):
    def __init__(self, align_corners):
        super().__init__()
        self.align_corners = align_corners

    def forward(self, x):
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=self.align_corners)


class _CMUNeXtUp(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.up = nn.Sequential(_Upsample(False), nn.Conv2d(cin, cout, 3, padding=1),
                                nn.BatchNorm2d(cout), nn.ReLU())

    def forward(self, x):
        return self.up(x)


class _CMUNeXtFusion(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(cin, cin, 3, padding=1, groups=2), nn.GELU(), nn.BatchNorm2d(cin),
            nn.Conv2d(cin, 4 * cout, 1), nn.GELU(), nn.BatchNorm2d(4 * cout),
            nn.Conv2d(4 * cout, cout, 1), nn.GELU(), nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.conv(x)


CMUNEXT_VARIANTS = {
    "cmunext-s": dict(dims=[8, 16, 32, 64, 128], depths=[1, 1, 1, 1, 1], kernels=[3, 3, 7, 7, 9]),
    "cmunext": dict(dims=[16, 32, 128, 160, 256], depths=[1, 1, 1, 3, 1], kernels=[3, 3, 7, 7, 7]),
    "cmunext-l": dict(dims=[32, 64, 128, 256, 512], depths=[1, 1, 1, 6, 3], kernels=[3, 3, 7, 7, 7]),
}


class CMUNeXt(nn.Module):
    def __init__(self, in_ch=3, classes=1, dims=(16, 32, 128, 160, 256), depths=(1, 1, 1, 3, 1),
                 kernels=(3, 3, 7, 7, 7)):
        super().__init__()
        d = list(dims)
        self.stem = _ConvBNReLU(in_ch, d[0])
        self.encoder1 = _CMUNeXtStage(d[0], d[0], depths[0], kernels[0])
        self.encoder2 = _CMUNeXtStage(d[0], d[1], depths[1], kernels[1])
        self.encoder3 = _CMUNeXtStage(d[1], d[2], depths[2], kernels[2])
        self.encoder4 = _CMUNeXtStage(d[2], d[3], depths[3], kernels[3])
        self.encoder5 = _CMUNeXtStage(d[3], d[4], depths[4], kernels[4])
        self.Up5 = _CMUNeXtUp(d[4], d[3])
        self.Up_conv5 = _CMUNeXtFusion(2 * d[3], d[3])
        self.Up4 = _CMUNeXtUp(d[3], d[2])
        self.Up_conv4 = _CMUNeXtFusion(2 * d[2], d[2])
        self.Up3 = _CMUNeXtUp(d[2], d[1])
        self.Up_conv3 = _CMUNeXtFusion(2 * d[1], d[1])
        self.Up2 = _CMUNeXtUp(d[1], d[0])
        self.Up_conv2 = _CMUNeXtFusion(2 * d[0], d[0])
        self.Conv_1x1 = nn.Conv2d(d[0], classes, 1)

    def forward(self, x):
        x1 = self.encoder1(self.stem(x))
        x2 = self.encoder2(F.max_pool2d(x1, 2))
        x3 = self.encoder3(F.max_pool2d(x2, 2))
        x4 = self.encoder4(F.max_pool2d(x3, 2))
        x5 = self.encoder5(F.max_pool2d(x4, 2))
        d = self.Up_conv5(torch.cat([x4, self.Up5(x5)], 1))
        d = self.Up_conv4(torch.cat([x3, self.Up4(d)], 1))
        d = self.Up_conv3(torch.cat([x2, self.Up3(d)], 1))
        d = self.Up_conv2(torch.cat([x1, self.Up2(d)], 1))
        return self.Conv_1x1(d)


# ----------------------------------------------------------------------------- MaSA, T-PEN

def decay_1d(n, gamma, dtype=torch.float32, device=None):
    i = torch.arange(n, device=device)
    return (gamma ** (i[:, None] - i[None, :]).abs().to(torch.float64)).to(dtype)


def decay_2d(h, w, gamma, dtype=torch.float32, device=None):
    n = torch.arange(h * w, device=device)
    y, x = n // w, n % w
    dist = (y[:, None] - y[None, :]).abs() + (x[:, None] - x[None, :]).abs()
    return (gamma ** dist.to(torch.float64)).to(dtype)


class MaSA(nn.Module):
    """Manhattan self-attention, single head; `q`, `k`, `v` = Linear(d, d)."""

    def __init__(self, d, gamma=0.9, decomposed=True):
        super().__init__()
        self.d, self.gamma, self.decomposed = d, gamma, decomposed
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)

    def _attend(self, t, decay):
        # t: [..., L, d]; attention among the L tokens of the second-to-last axis.
        q, k, v = self.q(t), self.k(t), self.v(t)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.d), dim=-1) * decay
        return a @ v

    def forward(self, x):
        b, c, h, w = x.shape
        t = x.permute(0, 2, 3, 1)                                   # [B, H, W, d]
        if self.decomposed:
            r = self._attend(t, decay_1d(w, self.gamma, x.dtype, x.device))       # rows
            col = self._attend(r.transpose(1, 2), decay_1d(h, self.gamma, x.dtype, x.device))
            return col.permute(0, 3, 2, 1)                          # [B, W, H, d] -> [B, d, H, W]
        t = t.reshape(b, h * w, c)
        o = self._attend(t, decay_2d(h, w, self.gamma, x.dtype, x.device))
        return o.reshape(b, h, w, c).permute(0, 3, 1, 2)


class TPEN(nn.Module):
    """Trainable progressively expanded neuron: mix(cat[a1 x, a2 x^2, a3 x^3])."""

    def __init__(self, c, order=3):
        super().__init__()
        self.order = order
        for n in range(1, order + 1):
            # Maclaurin coefficients of ln(1 + x): 1, -1/2, 1/3, ...
            setattr(self, f"a{n}", nn.Parameter(torch.full((c,), (-1.0) ** (n + 1) / n)))
        self.mix = nn.Conv2d(order * c, c, 1)

    def forward(self, x):
        terms = [getattr(self, f"a{n}").view(1, -1, 1, 1) * x ** n
                 for n in range(1, self.order + 1)]
        return self.mix(torch.cat(terms, 1))


class DoubleConv(nn.Module):
    def __init__(self, cin, cout, mid=None, masa=False, gamma=0.9, dropout=0.0):
        super().__init__()
        mid = cout if mid is None else mid
        self.conv1 = nn.Conv2d(cin, mid, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else None
        self.masa = MaSA(cout, gamma) if masa else None

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        if self.dropout is not None:
            x = self.dropout(x)
        if self.masa is not None:
            x = self.masa(x)
        return x


def _up2(x):
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


# ----------------------------------------------------------------------------- NExNet

class NExBlock(nn.Module):
    def __init__(self, cin, cout, gamma=0.9):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, cout, 3, padding=2, dilation=2)
        self.tpen = TPEN(cout)
        self.att = DoubleConv(cout, cout, masa=True, gamma=gamma)

    def forward(self, x, need_att=True):
        y = self.tpen(F.relu(self.conv(self.bn(x))))
        return y, (self.att(y) if need_att else None)


class _BNConvReLU(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class NExNetAE(nn.Module):
    """Denoising U-Net autoencoder of the NExNet SSL recipe (forward -> (sigmoid image, embedding))."""

    def __init__(self, in_ch=3, gamma=0.9):
        super().__init__()
        L = [32, 64, 128, 256, 512]
        ins = [in_ch] + L[:-1]
        self.enc = nn.ModuleList(DoubleConv(i, o) for i, o in zip(ins, L))
        self.att = nn.ModuleList(DoubleConv(i, o, masa=True, gamma=gamma)
                                 for i, o in zip(ins[:3], L[:3]))
        self.bottleneck = _BNConvReLU(512, 1024)
        dec, prev = [], 1024
        for w in [512, 256, 128, 64, 32]:
            dec.append(DoubleConv(prev + w, w))
            prev = w
        self.dec = nn.ModuleList(dec)
        self.head = nn.Conv2d(32, in_ch, 1)

    def embed(self, x):
        for e in self.enc:
            x = F.max_pool2d(e(x), 2)
        return self.bottleneck(x)

    def forward(self, x):
        skips, h = [], x
        for l, e in enumerate(self.enc):
            o = e(h)
            skips.append(self.att[l](h) if l < len(self.att) else o)
            h = F.max_pool2d(o, 2)
        emb = self.bottleneck(h)
        h = emb
        for j, d in enumerate(self.dec):
            h = d(torch.cat([_up2(h), skips[4 - j]], 1))
        return torch.sigmoid(self.head(h)), emb


class NExNetSeg(nn.Module):
    def __init__(self, in_ch=3, classes=1, gamma=0.9, dropout=0.0, ssl=False, freeze_ae=True):
        super().__init__()
        Fs = [32, 64, 128, 256, 256, 512]
        ins = [in_ch] + Fs[:-1]
        self.ssl, self.freeze_ae = ssl, freeze_ae
        self.enc = nn.ModuleList(NExBlock(i, o, gamma) for i, o in zip(ins, Fs))
        W = [256, 256, 128, 64, 32]
        skips = [Fs[4], Fs[3], Fs[2], Fs[1], Fs[0]]
        dec, prev = [], Fs[5] + (1024 if ssl else 0)
        for j, (w, s) in enumerate(zip(W, skips)):
            dec.append(DoubleConv(prev + s, w, dropout=dropout if j == 4 else 0.0))
            prev = w
        self.dec = nn.ModuleList(dec)
        self.head = nn.Conv2d(32, classes, 1)
        self.ae = NExNetAE(in_ch, gamma) if ssl else None

    def forward(self, x):
        atts, h = [], x
        for i, blk in enumerate(self.enc):
            last = i == len(self.enc) - 1
            y, a = blk(h, need_att=(not last) or self.ssl)
            atts.append(a)
            h = y if last else F.max_pool2d(y, 2)
        if self.ssl:
            if self.freeze_ae:
                with torch.no_grad():
                    emb = self.ae.embed(x)
            else:
                emb = self.ae.embed(x)
            h = torch.cat([atts[5], emb], 1)
        for j, d in enumerate(self.dec):
            h = d(torch.cat([_up2(h), atts[4 - j]], 1))
        return self.head(h)


# ----------------------------------------------------------------------------- UNet

class UNet(nn.Module):
    def __init__(self, in_ch=3, classes=1, bilinear=False):
        super().__init__()
        self.bilinear = bilinear
        f = 2 if bilinear else 1
        self.enc = nn.ModuleList([DoubleConv(in_ch, 64), DoubleConv(64, 128), DoubleConv(128, 256),
                                  DoubleConv(256, 512), DoubleConv(512, 1024 // f)])
        chans = [1024, 512, 256, 128]
        if bilinear:
            self.dec = nn.ModuleList(DoubleConv(c, o, mid=c // 2)
                                     for c, o in zip(chans, [256, 128, 64, 64]))
        else:
            self.up = nn.ModuleList(nn.ConvTranspose2d(c, c // 2, 2, stride=2) for c in chans)
            self.dec = nn.ModuleList(DoubleConv(c, c // 2) for c in chans)
        self.head = nn.Conv2d(64, classes, 1)

    def forward(self, x):
        skips, h = [], x
        for l, e in enumerate(self.enc):
            h = e(h if l == 0 else F.max_pool2d(h, 2))
            skips.append(h)
        for i, d in enumerate(self.dec):
            s = skips[3 - i]
            u = _up2(h) if self.bilinear else self.up[i](h)
            dy, dx = s.shape[2] - u.shape[2], s.shape[3] - u.shape[3]
            if dy or dx:
                u = F.pad(u, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
            h = d(torch.cat([s, u], 1))
        return self.head(h)


# ----------------------------------------------------------------------------- registry

# UNeXt (jeya-maria-jose/UNeXt-pytorch archs.py `UNext`, identical in FengheTan9/Medical-Image-
# Segmentation-Benchmarks src/network/conv_based/UNeXt.py): encoder1..3 conv3 16/32/128 + ebn1..3,
# norm3/norm4/dnorm3/dnorm4 LayerNorms, block1/block2/dblock1/dblock2 shifted blocks (norm2,
# mlp.fc1, mlp.dwconv.dwconv, mlp.fc2; hidden = C), patch_embed3/4 (proj conv3 stride 2, norm),
# decoder1..5, dbn1..4, final. Shift: torch.chunk(5) over channels, chunk j moved by j - 2 with
# zero fill (pad 2, roll, crop) along H before fc1 and along W before fc2. Written here.

class _DW(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dwconv = nn.Conv2d(c, c, 3, 1, 1, groups=c)

    def forward(self, x, h, w):
        b, n, c = x.shape
        y = self.dwconv(x.transpose(1, 2).reshape(b, c, h, w))
        return y.flatten(2).transpose(1, 2)


def shift_tokens(x, h, w, dim, shift_size=5):
    """Zero-fill shift of channel chunk j by j - pad along dim (2 = H, 3 = W) of the map."""
    b, n, c = x.shape
    pad = shift_size // 2
    m = x.transpose(1, 2).reshape(b, c, h, w)
    m = F.pad(m, (pad, pad, pad, pad))
    parts = torch.chunk(m, shift_size, 1)
    m = torch.cat([torch.roll(p, s, dim) for p, s in zip(parts, range(-pad, pad + 1))], 1)
    m = m[:, :, pad:pad + h, pad:pad + w]
    return m.reshape(b, c, h * w).transpose(1, 2)


class _ShiftMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc1 = nn.Linear(c, c)
        self.dwconv = _DW(c)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(c, c)
        self.drop = nn.Dropout(0.0)

    def forward(self, x, h, w):
        x = self.fc1(shift_tokens(x, h, w, 2))
        x = self.act(self.dwconv(x, h, w))
        return self.fc2(shift_tokens(x, h, w, 3))


class _ShiftedBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.drop_path = nn.Identity()
        self.norm2 = nn.LayerNorm(c)
        self.mlp = _ShiftMLP(c)

    def forward(self, x, h, w):
        return x + self.mlp(self.norm2(x), h, w)


class _PatchEmbed(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(cout)

    def forward(self, x):
        x = self.proj(x)
        _, _, h, w = x.shape
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class UNeXt(nn.Module):
    def __init__(self, in_channels=3, num_classes=1):
        super().__init__()
        self.encoder1 = nn.Conv2d(in_channels, 16, 3, padding=1)
        self.encoder2 = nn.Conv2d(16, 32, 3, padding=1)
        self.encoder3 = nn.Conv2d(32, 128, 3, padding=1)
        self.ebn1, self.ebn2, self.ebn3 = nn.BatchNorm2d(16), nn.BatchNorm2d(32), nn.BatchNorm2d(128)
        self.norm3, self.norm4 = nn.LayerNorm(160), nn.LayerNorm(256)
        self.dnorm3, self.dnorm4 = nn.LayerNorm(160), nn.LayerNorm(128)
        self.block1 = nn.ModuleList([_ShiftedBlock(160)])
        self.block2 = nn.ModuleList([_ShiftedBlock(256)])
        self.dblock1 = nn.ModuleList([_ShiftedBlock(160)])
        self.dblock2 = nn.ModuleList([_ShiftedBlock(128)])
        self.patch_embed3 = _PatchEmbed(128, 160)
        self.patch_embed4 = _PatchEmbed(160, 256)
        for i, (a, b) in enumerate([(256, 160), (160, 128), (128, 32), (32, 16), (16, 16)]):
            setattr(self, f"decoder{i + 1}", nn.Conv2d(a, b, 3, padding=1))
        for i, c in enumerate([160, 128, 32, 16]):
            setattr(self, f"dbn{i + 1}", nn.BatchNorm2d(c))
        self.final = nn.Conv2d(16, num_classes, 1)

    @staticmethod
    def _to_map(t, h, w):
        return t.reshape(t.shape[0], h, w, -1).permute(0, 3, 1, 2)

    def forward(self, x):
        up = lambda t: F.interpolate(t, scale_factor=(2, 2), mode="bilinear")  # noqa: E731
        t1 = out = F.relu(F.max_pool2d(self.ebn1(self.encoder1(x)), 2, 2))
        t2 = out = F.relu(F.max_pool2d(self.ebn2(self.encoder2(out)), 2, 2))
        t3 = out = F.relu(F.max_pool2d(self.ebn3(self.encoder3(out)), 2, 2))
        out, h, w = self.patch_embed3(out)
        out = self.block1[0](out, h, w)
        t4 = out = self._to_map(self.norm3(out), h, w)
        out, h, w = self.patch_embed4(out)
        out = self.block2[0](out, h, w)
        out = self._to_map(self.norm4(out), h, w)
        out = F.relu(up(self.dbn1(self.decoder1(out)))) + t4
        h, w = out.shape[2:]
        out = self.dblock1[0](out.flatten(2).transpose(1, 2), h, w)
        out = self._to_map(self.dnorm3(out), h, w)
        out = F.relu(up(self.dbn2(self.decoder2(out)))) + t3
        h, w = out.shape[2:]
        out = self.dblock2[0](out.flatten(2).transpose(1, 2), h, w)
        out = self._to_map(self.dnorm4(out), h, w)
        out = F.relu(up(self.dbn3(self.decoder3(out)))) + t2
        out = F.relu(up(self.dbn4(self.decoder4(out)))) + t1
        out = F.relu(up(self.decoder5(out)))
        return self.final(out)


# Attention U-Net as FengheTan9/Medical-Image-Segmentation-Benchmarks defines it
# (src/network/conv_based/AttU_Net.py): Conv1..Conv5 conv_block (conv.0 conv3, conv.1 BN, conv.3
# conv3, conv.4 BN) 64..1024; per level k = 5..2: Up<k> (up.0 nearest x2, up.1 conv3, up.2 BN,
# ReLU), Att<k> (W_g.0/.1, W_x.0/.1 conv1x1 + BN to F_int = c/2, psi.0 conv1x1 -> 1, psi.1 BN,
# sigmoid; x * psi), Up_conv<k> conv_block; Conv_1x1. Written here from reading that code.

class _ConvBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                                  nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())

    def forward(self, x):
        return self.conv(x)


class _UpConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.up = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(cin, cout, 3, padding=1),
                                nn.BatchNorm2d(cout), nn.ReLU())

    def forward(self, x):
        return self.up(x)


class _AttGate(nn.Module):
    def __init__(self, fg, fl, fint):
        super().__init__()
        self.W_g = nn.Sequential(nn.Conv2d(fg, fint, 1), nn.BatchNorm2d(fint))
        self.W_x = nn.Sequential(nn.Conv2d(fl, fint, 1), nn.BatchNorm2d(fint))
        self.psi = nn.Sequential(nn.Conv2d(fint, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())
        self.relu = nn.ReLU()

    def forward(self, g, x):
        return x * self.psi(self.relu(self.W_g(g) + self.W_x(x)))


class AttUNet(nn.Module):
    def __init__(self, in_channels=3, num_classes=1):
        super().__init__()
        self.Maxpool = nn.MaxPool2d(2, 2)
        f = [64, 128, 256, 512, 1024]
        prev = in_channels
        for i, c in enumerate(f):
            setattr(self, f"Conv{i + 1}", _ConvBlock(prev, c))
            prev = c
        for k in (5, 4, 3, 2):
            c = f[k - 2]
            setattr(self, f"Up{k}", _UpConv(2 * c, c))
            setattr(self, f"Att{k}", _AttGate(c, c, c // 2))
            setattr(self, f"Up_conv{k}", _ConvBlock(2 * c, c))
        self.Conv_1x1 = nn.Conv2d(64, num_classes, 1)

    def forward(self, x):
        xs = [self.Conv1(x)]
        for i in range(2, 6):
            xs.append(getattr(self, f"Conv{i}")(self.Maxpool(xs[-1])))
        d = xs[4]
        for k in (5, 4, 3, 2):
            d = getattr(self, f"Up{k}")(d)
            s = getattr(self, f"Att{k}")(g=d, x=xs[k - 2])
            d = getattr(self, f"Up_conv{k}")(torch.cat((s, d), 1))
        return self.Conv_1x1(d)


# MedNeXt v1 in 2-D (MIC-DKFZ/MedNeXt mednextv1/MedNextV1.py + blocks.py, dim '2d', do_res and
# do_res_up_down True, GroupNorm(C, C), 32 channels, sizes of create_mednext_v1.py). dummy_tensor
# is a root parameter (first in the state dict). upkern: the authors' UpKern weight transfer
# (nnunet_mednext/run/load_pretrained_weights.py, 2-D). Written here from reading that code.

MEDNEXT_SIZES = {
    "S": dict(exp=[2] * 9, blocks=[2] * 9),
    "B": dict(exp=[2, 3, 4, 4, 4, 4, 4, 3, 2], blocks=[2] * 9),
    "M": dict(exp=[2, 3, 4, 4, 4, 4, 4, 3, 2], blocks=[3, 4, 4, 4, 4, 4, 4, 4, 3]),
    "L": dict(exp=[3, 4, 8, 8, 8, 8, 8, 4, 3], blocks=[3, 4, 8, 8, 8, 8, 8, 4, 3]),
}


class _MedNeXtBlock(nn.Module):
    def __init__(self, cin, cout, r, k, do_res=True):
        super().__init__()
        self.do_res = do_res
        self.conv1 = nn.Conv2d(cin, cin, k, padding=k // 2, groups=cin)
        self.norm = nn.GroupNorm(cin, cin)
        self.conv2 = nn.Conv2d(cin, r * cin, 1)
        self.act = nn.GELU()
        self.conv3 = nn.Conv2d(r * cin, cout, 1)

    def forward(self, x):
        y = self.conv3(self.act(self.conv2(self.norm(self.conv1(x)))))
        return x + y if self.do_res else y


class _MedNeXtDown(_MedNeXtBlock):
    def __init__(self, cin, cout, r, k):
        super().__init__(cin, cout, r, k, do_res=False)
        self.res_conv = nn.Conv2d(cin, cout, 1, stride=2)
        self.conv1 = nn.Conv2d(cin, cin, k, stride=2, padding=k // 2, groups=cin)  # keeps its slot

    def forward(self, x):
        return super().forward(x) + self.res_conv(x)


class _MedNeXtUp(_MedNeXtBlock):
    def __init__(self, cin, cout, r, k):
        super().__init__(cin, cout, r, k, do_res=False)
        self.res_conv = nn.ConvTranspose2d(cin, cout, 1, stride=2)
        self.conv1 = nn.ConvTranspose2d(cin, cin, k, stride=2, padding=k // 2, groups=cin)

    def forward(self, x):
        return F.pad(super().forward(x), (1, 0, 1, 0)) + F.pad(self.res_conv(x), (1, 0, 1, 0))


class _OutBlock(nn.Module):
    def __init__(self, cin, n):
        super().__init__()
        self.conv_out = nn.ConvTranspose2d(cin, n, 1)

    def forward(self, x):
        return self.conv_out(x)


class MedNeXt(nn.Module):
    def __init__(self, in_channels=3, num_classes=1, size="S", kernel_size=3, deep_supervision=False):
        super().__init__()
        cfg = MEDNEXT_SIZES[size]
        e, nb, k, c = cfg["exp"], cfg["blocks"], kernel_size, 32
        self.do_ds = deep_supervision
        self.stem = nn.Conv2d(in_channels, c, 1)
        seq = lambda width, i: nn.Sequential(*[_MedNeXtBlock(width, width, e[i], k) for _ in range(nb[i])])  # noqa: E731
        for i in range(4):
            setattr(self, f"enc_block_{i}", seq(c << i, i))
            setattr(self, f"down_{i}", _MedNeXtDown(c << i, c << (i + 1), e[i + 1], k))
        self.bottleneck = seq(c << 4, 4)
        for j, i in enumerate((3, 2, 1, 0)):
            setattr(self, f"up_{i}", _MedNeXtUp(c << (i + 1), c << i, e[5 + j], k))
            setattr(self, f"dec_block_{i}", seq(c << i, 5 + j))
        self.out_0 = _OutBlock(c, num_classes)
        self.dummy_tensor = nn.Parameter(torch.tensor([1.0]))
        if deep_supervision:
            for i in range(1, 5):
                setattr(self, f"out_{i}", _OutBlock(c << i, num_classes))

    def forward(self, x):
        x = self.stem(x)
        skips = []
        for i in range(4):
            x = getattr(self, f"enc_block_{i}")(x)
            skips.append(x)
            x = getattr(self, f"down_{i}")(x)
        x = self.bottleneck(x)
        ds = [self.out_4(x)] if self.do_ds else []
        for i in (3, 2, 1, 0):
            x = getattr(self, f"dec_block_{i}")(skips[i] + getattr(self, f"up_{i}")(x))
            if self.do_ds and i > 0:
                ds.insert(0, getattr(self, f"out_{i}")(x))
        x = self.out_0(x)
        return [x] + ds if self.do_ds else x


def upkern(dst, src):
    """MedNeXt UpKern (nnunet_mednext/run/load_pretrained_weights.py, 2-D branch): keys with
    'bias', 'norm' or 'dummy' copied; other keys copied when the shapes agree, else resized
    with F.interpolate(mode='bilinear') (align_corners False) to the destination's kernel."""
    s, d = src.state_dict(), dst.state_dict()
    for k in d:
        if k not in s:
            continue
        if "bias" in k or "norm" in k or "dummy" in k or s[k].shape == d[k].shape:
            d[k] = s[k]
        else:
            d[k] = F.interpolate(s[k], size=list(d[k].shape[2:]), mode="bilinear")
    dst.load_state_dict(d)
    return dst


# SegFormer MiT-B0/B1/B2 (Xie et al., NeurIPS 2021) with the state-dict names of NVlabs/SegFormer
# (mmseg/models/backbones/mix_transformer.py, decode_heads/segformer_head.py, configs
# local_configs/segformer/B0..B2), written here from reading that code:
#   backbone.patch_embed{s}  s = 1..4: proj (conv 7x7 s4 p3 for s = 1, else 3x3 s2 p1), norm
#                            (LayerNorm, eps 1e-5: the authors' OverlapPatchEmbed uses the default)
#   backbone.block{s}.{j}    norm1 (LN eps 1e-6), attn.q (Linear C->C), attn.kv (Linear C->2C),
#                            attn.proj, [attn.sr (conv r x r stride r), attn.norm (LN eps 1e-5)
#                            when r > 1], norm2 (LN eps 1e-6), mlp.fc1 (C->4C), mlp.dwconv.dwconv
#                            (depthwise 3x3), mlp.fc2 (4C->C)
#   backbone.norm{s}         LN eps 1e-6 after each stage
#   decode_head.linear_c{4,3,2,1}.proj (Linear C_s -> E), linear_fuse.conv (1x1, 4E->E, no bias),
#   linear_fuse.bn (BN), linear_pred (1x1 E->classes).
# The authors' BaseDecodeHead also registers conv_seg (1x1 128 -> classes), which SegFormerHead
# never uses; it is left out here (and in scalpel), so it has no parameters to train or count.
# Forward: per stage tokens -> blocks -> norm -> map; head: per-stage Linear, bilinear
# (align_corners False) to 1/4, cat([c4, c3, c2, c1]), conv+BN+ReLU, Dropout2d(0.1), linear_pred;
# the 1/4 logits are resized bilinearly (align_corners False) to the input size as the authors'
# EncoderDecoder does. Drop path rates rise linearly from 0 to 0.1 over all blocks.

SEGFORMER_VARIANTS = {
    "segformer-b0": dict(dims=(32, 64, 160, 256), depths=(2, 2, 2, 2), embed=256),
    "segformer-b1": dict(dims=(64, 128, 320, 512), depths=(2, 2, 2, 2), embed=256),
    "segformer-b2": dict(dims=(64, 128, 320, 512), depths=(3, 4, 6, 3), embed=768),
}
SEGFORMER_HEADS = (1, 2, 5, 8)
SEGFORMER_SR = (8, 4, 2, 1)


def _drop_path(x, p, training):
    if p == 0.0 or not training:
        return x
    keep = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), dtype=x.dtype, device=x.device) < (1 - p)
    return x * keep.to(x.dtype) / (1 - p)


class _SRAttention(nn.Module):
    def __init__(self, c, heads, sr):
        super().__init__()
        self.heads, self.sr_ratio = heads, sr
        self.q = nn.Linear(c, c)
        self.kv = nn.Linear(c, 2 * c)
        self.proj = nn.Linear(c, c)
        if sr > 1:
            self.sr = nn.Conv2d(c, c, sr, stride=sr)
            self.norm = nn.LayerNorm(c)

    def forward(self, x, h, w):
        b, n, c = x.shape
        d = c // self.heads
        q = self.q(x).reshape(b, n, self.heads, d).transpose(1, 2)
        src = x
        if self.sr_ratio > 1:
            m = self.sr(x.transpose(1, 2).reshape(b, c, h, w))
            src = self.norm(m.flatten(2).transpose(1, 2))
        kv = self.kv(src).reshape(b, -1, 2, self.heads, d).permute(2, 0, 3, 1, 4)
        a = torch.softmax((q @ kv[0].transpose(-2, -1)) * d ** -0.5, dim=-1)
        return self.proj((a @ kv[1]).transpose(1, 2).reshape(b, n, c))


class _DWWrap(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dwconv = nn.Conv2d(c, c, 3, 1, 1, groups=c)


class _MixFFN(nn.Module):
    def __init__(self, c, hidden):
        super().__init__()
        self.fc1 = nn.Linear(c, hidden)
        self.dwconv = _DWWrap(hidden)
        self.fc2 = nn.Linear(hidden, c)

    def forward(self, x, h, w):
        y = self.fc1(x)
        b, n, k = y.shape
        y = self.dwconv.dwconv(y.transpose(1, 2).reshape(b, k, h, w)).flatten(2).transpose(1, 2)
        return self.fc2(F.gelu(y))


class _MiTBlock(nn.Module):
    def __init__(self, c, heads, sr, drop_path):
        super().__init__()
        self.drop_path = drop_path
        self.norm1 = nn.LayerNorm(c, eps=1e-6)
        self.attn = _SRAttention(c, heads, sr)
        self.norm2 = nn.LayerNorm(c, eps=1e-6)
        self.mlp = _MixFFN(c, 4 * c)

    def forward(self, x, h, w):
        x = x + _drop_path(self.attn(self.norm1(x), h, w), self.drop_path, self.training)
        return x + _drop_path(self.mlp(self.norm2(x), h, w), self.drop_path, self.training)


class _OverlapEmbed(nn.Module):
    def __init__(self, cin, cout, k, stride):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)
        self.norm = nn.LayerNorm(cout)

    def forward(self, x):
        m = self.proj(x)
        return self.norm(m.flatten(2).transpose(1, 2)), m.shape[2], m.shape[3]


class _MiT(nn.Module):
    def __init__(self, in_channels, dims, depths):
        super().__init__()
        rates = torch.linspace(0, 0.1, sum(depths)).tolist()
        for s in range(4):
            cin = in_channels if s == 0 else dims[s - 1]
            k, st = (7, 4) if s == 0 else (3, 2)
            setattr(self, f"patch_embed{s + 1}", _OverlapEmbed(cin, dims[s], k, st))
        for s in range(4):
            first = sum(depths[:s])
            setattr(self, f"block{s + 1}", nn.ModuleList([
                _MiTBlock(dims[s], SEGFORMER_HEADS[s], SEGFORMER_SR[s], rates[first + j]) for j in range(depths[s])]))
            setattr(self, f"norm{s + 1}", nn.LayerNorm(dims[s], eps=1e-6))

    def forward(self, x):
        feats = []
        for s in range(1, 5):
            t, h, w = getattr(self, f"patch_embed{s}")(x)
            for blk in getattr(self, f"block{s}"):
                t = blk(t, h, w)
            t = getattr(self, f"norm{s}")(t)
            x = t.reshape(t.shape[0], h, w, -1).permute(0, 3, 1, 2)
            feats.append(x)
        return feats


class _LinearEmbed(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.proj = nn.Linear(cin, cout)


class _ConvBN(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)


class _SegFormerHead(nn.Module):
    def __init__(self, dims, embed, num_classes):
        super().__init__()
        for s in (4, 3, 2, 1):
            setattr(self, f"linear_c{s}", _LinearEmbed(dims[s - 1], embed))
        self.linear_fuse = _ConvBN(4 * embed, embed)
        self.linear_pred = nn.Conv2d(embed, num_classes, 1)

    def forward(self, feats):
        size = feats[0].shape[2:]
        ups = []
        for s in (4, 3, 2, 1):
            f = feats[s - 1]
            e = getattr(self, f"linear_c{s}").proj(f.flatten(2).transpose(1, 2))
            e = e.transpose(1, 2).reshape(f.shape[0], -1, f.shape[2], f.shape[3])
            ups.append(e if s == 1 else F.interpolate(e, size=size, mode="bilinear", align_corners=False))
        y = F.relu(self.linear_fuse.bn(self.linear_fuse.conv(torch.cat(ups, 1))))
        return self.linear_pred(F.dropout2d(y, 0.1, self.training))


class SegFormer(nn.Module):
    def __init__(self, variant="segformer-b0", in_channels=3, num_classes=1):
        super().__init__()
        v = SEGFORMER_VARIANTS[variant]
        self.backbone = _MiT(in_channels, v["dims"], v["depths"])
        self.decode_head = _SegFormerHead(v["dims"], v["embed"], num_classes)

    def forward(self, x):
        y = self.decode_head(self.backbone(x))
        return F.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=False)

# TransUNet R50-ViT-B/16 (Chen et al., 2021) as its authors define it (Beckschen/TransUNet
# networks/vit_seg_modeling.py, vit_seg_modeling_resnet_skip.py, vit_seg_configs.py
# get_r50_b16_config; the CMUNeXt benchmark repository FengheTan9/Medical-Image-Segmentation-
# Benchmarks carries the same three files unchanged and builds it with img_size 256, n_skip 3 and
# patches.grid = (256 / 16, 256 / 16)). Written here from reading that code. State-dict names:
#   transformer.embeddings.position_embeddings [1, (S/16)^2, 768]     (own parameter: first)
#   transformer.embeddings.hybrid_model.root.{conv: StdConv2d 3->64 k7 s2 p3, gn: GN(32, eps 1e-6)}
#   transformer.embeddings.hybrid_model.body.block{1,2,3}.unit{1..n}  n = 3, 4, 9 (PreActBottleneck:
#       gn1, conv1 (1x1), gn2, conv2 (3x3, stride on unit1 of blocks 2, 3), gn3, conv3 (1x1);
#       unit1 also downsample (1x1 StdConv2d) + gn_proj (GroupNorm(C, C), eps 1e-5))
#   transformer.embeddings.patch_embeddings  Conv2d 1024 -> 768, kernel = stride = S // 16 // grid = 1
#   transformer.encoder.layer.{0..11}.{attention_norm, ffn_norm, ffn.fc1, ffn.fc2,
#       attn.query, attn.key, attn.value, attn.out}   then transformer.encoder.encoder_norm
#   decoder.conv_more.{0: conv3 768->512 no bias, 1: BN}
#   decoder.blocks.{0..3}.conv{1,2}.{0: conv3 no bias, 1: BN}   (in 512/256/128/64 + skip
#       512/256/64/0 -> 256/128/64/16)
#   segmentation_head.0  conv3 16 -> classes (1 = Identity)

class StdConv2d(nn.Conv2d):
    """Conv2d with weight standardisation: per output channel, (w - mean) / sqrt(var + 1e-5)."""

    def forward(self, x):
        w = self.weight
        var, mean = torch.var_mean(w, dim=[1, 2, 3], keepdim=True, unbiased=False)
        return F.conv2d(x, (w - mean) / torch.sqrt(var + 1e-5), self.bias, self.stride,
                        self.padding, self.dilation, self.groups)


class _PreActBottleneck(nn.Module):
    def __init__(self, cin, cout, cmid, stride=1):
        super().__init__()
        self.gn1 = nn.GroupNorm(32, cmid, eps=1e-6)
        self.conv1 = StdConv2d(cin, cmid, 1, bias=False)
        self.gn2 = nn.GroupNorm(32, cmid, eps=1e-6)
        self.conv2 = StdConv2d(cmid, cmid, 3, stride=stride, padding=1, bias=False)
        self.gn3 = nn.GroupNorm(32, cout, eps=1e-6)
        self.conv3 = StdConv2d(cmid, cout, 1, bias=False)
        self.relu = nn.ReLU()
        if stride != 1 or cin != cout:
            self.downsample = StdConv2d(cin, cout, 1, stride=stride, bias=False)
            self.gn_proj = nn.GroupNorm(cout, cout)

    def forward(self, x):
        res = self.gn_proj(self.downsample(x)) if hasattr(self, "downsample") else x
        y = self.relu(self.gn1(self.conv1(x)))
        y = self.relu(self.gn2(self.conv2(y)))
        return self.relu(res + self.gn3(self.conv3(y)))


class _ResNetV2(nn.Module):
    def __init__(self, units=(3, 4, 9), width=64):
        super().__init__()
        self.width = width
        self.root = nn.Sequential(OrderedDict([
            ("conv", StdConv2d(3, width, 7, stride=2, padding=3, bias=False)),
            ("gn", nn.GroupNorm(32, width, eps=1e-6)), ("relu", nn.ReLU())]))
        blocks = []
        cin = width
        for b, (n, mult, stride) in enumerate(zip(units, (4, 8, 16), (1, 2, 2))):
            cout, cmid = width * mult, width * mult // 4
            us = [(f"unit{u}", _PreActBottleneck(cin if u == 1 else cout, cout, cmid, stride if u == 1 else 1))
                  for u in range(1, n + 1)]
            blocks.append((f"block{b + 1}", nn.Sequential(OrderedDict(us))))
            cin = cout
        self.body = nn.Sequential(OrderedDict(blocks))

    def forward(self, x):
        size = x.shape[2]
        feats = []
        x = self.root(x)
        feats.append(x)
        x = F.max_pool2d(x, 3, 2, 0)
        for i in range(len(self.body) - 1):
            x = self.body[i](x)
            want = int(size / 4 / (i + 1))
            # Zero-padded at the bottom / right to the expected size (the authors' quirk).
            feats.append(F.pad(x, (0, want - x.shape[3], 0, want - x.shape[2])) if x.shape[2] != want else x)
        return self.body[-1](x), feats[::-1]


class _ViTAttention(nn.Module):
    def __init__(self, hidden, heads, attn_drop):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.attn_dropout = nn.Dropout(attn_drop)
        self.proj_dropout = nn.Dropout(attn_drop)

    def forward(self, x):
        b, n, c = x.shape
        d = c // self.heads
        split = lambda t: t.view(b, n, self.heads, d).permute(0, 2, 1, 3)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        p = self.attn_dropout(torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1))
        o = (p @ v).permute(0, 2, 1, 3).reshape(b, n, c)
        return self.proj_dropout(self.out(o))


class _ViTMlp(nn.Module):
    def __init__(self, hidden, mlp, drop):
        super().__init__()
        self.fc1 = nn.Linear(hidden, mlp)
        self.fc2 = nn.Linear(mlp, hidden)
        self.dropout = nn.Dropout(drop)
        for fc in (self.fc1, self.fc2):  # the authors' _init_weights
            nn.init.xavier_uniform_(fc.weight)
            nn.init.normal_(fc.bias, std=1e-6)

    def forward(self, x):
        return self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(x)))))


class _ViTBlock(nn.Module):
    def __init__(self, hidden, heads, mlp, drop, attn_drop):
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.ffn_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.ffn = _ViTMlp(hidden, mlp, drop)
        self.attn = _ViTAttention(hidden, heads, attn_drop)

    def forward(self, x):
        x = x + self.attn(self.attention_norm(x))
        return x + self.ffn(self.ffn_norm(x))


class _ViTEmbeddings(nn.Module):
    def __init__(self, img_size, hidden, drop):
        super().__init__()
        grid = img_size // 16                  # patches.grid = img_size / 16, as the benchmark sets it
        patch = img_size // 16 // grid         # = 1: one token per pixel of the ResNet's 1/16 map
        self.hybrid_model = _ResNetV2()
        self.patch_embeddings = nn.Conv2d(self.hybrid_model.width * 16, hidden, patch, stride=patch)
        self.position_embeddings = nn.Parameter(torch.zeros(1, grid * grid, hidden))
        self.dropout = nn.Dropout(drop)

    def forward(self, x):
        x, feats = self.hybrid_model(x)
        x = self.patch_embeddings(x).flatten(2).transpose(-1, -2)
        return self.dropout(x + self.position_embeddings), feats


class _ViTEncoder(nn.Module):
    def __init__(self, hidden, layers, heads, mlp, drop, attn_drop):
        super().__init__()
        self.layer = nn.ModuleList()
        self.encoder_norm = nn.LayerNorm(hidden, eps=1e-6)
        for _ in range(layers):
            self.layer.append(_ViTBlock(hidden, heads, mlp, drop, attn_drop))

    def forward(self, x):
        for blk in self.layer:
            x = blk(x)
        return self.encoder_norm(x)


class _ViTTransformer(nn.Module):
    def __init__(self, img_size, hidden=768, layers=12, heads=12, mlp=3072, drop=0.1, attn_drop=0.0):
        super().__init__()
        self.embeddings = _ViTEmbeddings(img_size, hidden, drop)
        self.encoder = _ViTEncoder(hidden, layers, heads, mlp, drop, attn_drop)

    def forward(self, x):
        e, feats = self.embeddings(x)
        return self.encoder(e), feats


def _conv2d_relu(cin, cout):
    """The authors' Conv2dReLU: conv3 without bias, BN, ReLU (a Sequential: 0, 1, 2)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class _TUDecoderBlock(nn.Module):
    def __init__(self, cin, cout, skip):
        super().__init__()
        self.conv1 = _conv2d_relu(cin + skip, cout)
        self.conv2 = _conv2d_relu(cout, cout)
        self.up = nn.UpsamplingBilinear2d(scale_factor=2)

    def forward(self, x, skip=None):
        x = self.up(x)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class _DecoderCup(nn.Module):
    def __init__(self, hidden=768, channels=(256, 128, 64, 16), skips=(512, 256, 64, 0), n_skip=3):
        super().__init__()
        self.n_skip = n_skip
        self.conv_more = _conv2d_relu(hidden, 512)
        ins = [512] + list(channels[:-1])
        self.blocks = nn.ModuleList([_TUDecoderBlock(i, o, s) for i, o, s in zip(ins, channels, skips)])

    def forward(self, h, feats):
        b, n, c = h.shape
        s = int(math.sqrt(n))
        x = self.conv_more(h.permute(0, 2, 1).contiguous().view(b, c, s, s))
        for i, blk in enumerate(self.blocks):
            x = blk(x, feats[i] if i < self.n_skip else None)
        return x


class TransUNet(nn.Module):
    """VisionTransformer(get_r50_b16_config(), img_size) with n_skip 3, grid img_size / 16."""

    def __init__(self, in_channels=3, num_classes=1, img_size=256):
        super().__init__()
        self.transformer = _ViTTransformer(img_size)
        self.decoder = _DecoderCup()
        self.segmentation_head = nn.Sequential(nn.Conv2d(16, num_classes, 3, padding=1), nn.Identity())

    def forward(self, x):
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        h, feats = self.transformer(x)
        return self.segmentation_head(self.decoder(h, feats))


EXPECTED_PARAMS = {
    "cmunext-s": 417505, "cmunext": 3149185, "cmunext-l": 8286721,
    "unet": 31043521, "unet-bilinear": 17267393,
    "nexnet": 17036999, "nexnet-ae": 22367619, "nexnet-ssl": 41763914,
    "attunet": 34878573, "unext": 1471921,
    "mednext-s": 5472034, "mednext-b": 10447426, "mednext-m": 17418242, "mednext-l": 61556386,
    # 3 input channels, 1 class; at 150 classes (ADE20K): 3,752,694 / 13,715,798 / 27,461,974.
    "segformer-b0": 3714401, "segformer-b1": 13677505, "segformer-b2": 27347393,
    # TransUNet R50-ViT-B/16 at 256 px: the CMUNeXt benchmark reports 105.32 M.
    "transunet": 105322001,
}


def build(name, **kw):
    if name in CMUNEXT_VARIANTS:
        return CMUNeXt(**CMUNEXT_VARIANTS[name], **kw)
    if name == "unet":
        return UNet(bilinear=False, **kw)
    if name == "unet-bilinear":
        return UNet(bilinear=True, **kw)
    if name == "nexnet":
        return NExNetSeg(ssl=False, **kw)
    if name == "nexnet-ssl":
        return NExNetSeg(ssl=True, **kw)
    if name == "nexnet-ae":
        return NExNetAE(**kw)
    if name == "attunet":
        return AttUNet(**kw)
    if name == "unext":
        return UNeXt(**kw)
    if name in SEGFORMER_VARIANTS:
        return SegFormer(name, **kw)
    if name.startswith("mednext-"):
        return MedNeXt(size=name[-1].upper(), **kw)
    if name == "transunet":
        return TransUNet(**kw)
    raise KeyError(name)


def count_params(m):
    return sum(p.numel() for p in m.parameters())
