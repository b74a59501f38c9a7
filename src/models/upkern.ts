// MedNeXt's UpKern (Roy et al., 2023; the authors' load_pretrained_weights.py, 2-D branch):
// initialise a large-kernel network from a trained small-kernel one of the same layout. Every
// entry whose shape matches is copied; a convolution kernel whose spatial size differs is resampled
// to the destination's size with bilinear interpolation (align_corners false), as the authors do.
import { Tensor, tidy } from '../tensor/tensor';
import { noGrad } from '../autograd/engine';
import * as F from '../nn/functional';
import { Module, copyInto } from '../nn/module';

export interface UpKernReport {
  copied: string[];
  resampled: string[];
}

/**
 * Copies `source` (a module or a state dict) into `target`, resampling kernels (see above).
 * Entries must correspond one to one; anything else (a missing entry, a shape that differs in
 * more than the kernel size) is an error naming it.
 */
export function upkern(target: Module, source: Module | Record<string, Tensor>): UpKernReport {
  const src = source instanceof Module ? source.stateDict() : source;
  const dst = target.stateDict();
  const missing = Object.keys(dst).filter((k) => !(k in src));
  const extra = Object.keys(src).filter((k) => !(k in dst));
  if (missing.length || extra.length) {
    throw new Error(`upkern: the networks differ in layout (${[missing.length ? `missing in the source: ${missing.slice(0, 5).join(', ')}` : '', extra.length ? `not in the target: ${extra.slice(0, 5).join(', ')}` : ''].filter(Boolean).join('; ')})`);
  }
  const report: UpKernReport = { copied: [], resampled: [] };
  noGrad(() => {
    for (const [k, d] of Object.entries(dst)) {
      const s = src[k];
      const same = s.shape.length === d.shape.length && s.shape.every((v, i) => v === d.shape[i]);
      if (same) {
        copyInto(d, s);
        report.copied.push(k);
        continue;
      }
      if (s.ndim !== 4 || d.ndim !== 4 || s.shape[0] !== d.shape[0] || s.shape[1] !== d.shape[1]) {
        throw new Error(`upkern: '${k}' is [${s.shape.join(', ')}] in the source and [${d.shape.join(', ')}] in the target; only convolution kernel sizes may differ`);
      }
      tidy(() => copyInto(d, F.interpolate(s.to(d.dtype), { size: [d.shape[2], d.shape[3]], mode: 'bilinear', alignCorners: false })));
      report.resampled.push(k);
    }
  });
  for (const [, m] of target.namedModules()) m.dropInference();
  return report;
}
