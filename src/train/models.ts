/**
 * Model registry for training: the models of `src/models` (sc.models.create) when that module is
 * present, plus two tiny built-in networks made only of Conv2d + ReLU ('tiny' for segmentation,
 * 'tiny-ae' for the denoising-pretraining path) that tests and the default demo can always use.
 */
import { Module, Sequential, Conv2d, ConvTranspose2d, ReLU, Sigmoid, BatchNorm2d, Dropout2d } from '../nn';
import { UserError } from './errors';
import type { Tensor } from '../tensor';

export type ModelOptions = Record<string, unknown>;

interface ModelsModule {
  create(name: string, opts?: ModelOptions): Module;
  list?: () => { name: string; description?: string; options?: string[] }[];
}

let modelsModule: ModelsModule | null | undefined;
/** src/models, once the models branch has landed; null before. */
export function modelsApi(): ModelsModule | null {
  if (modelsModule !== undefined) return modelsModule;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const m = require('../models') as ModelsModule & { default?: ModelsModule };
    modelsModule = typeof m.create === 'function' ? m : m.default && typeof m.default.create === 'function' ? m.default : null;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'MODULE_NOT_FOUND') throw e;
    modelsModule = null;
  }
  return modelsModule;
}

/**
 * A small encoder-decoder of Conv2d / ConvTranspose2d + ReLU: two stride-2 convolutions down to
 * 1/4 resolution, two dilated convolutions there, two transposed convolutions back up, 1x1 head.
 */
export function tinySegNet(opts: ModelOptions = {}): Module {
  const inCh = Number(opts.inChannels ?? 3);
  const w = Number(opts.width ?? 16);
  const out = Number(opts.numClasses ?? 1);
  // Options bn / dropout add a BatchNorm2d and a Dropout2d (used by tests of resumable state).
  const extra: Module[] = [];
  if (opts.bn) extra.push(new BatchNorm2d(2 * w));
  if (opts.dropout) extra.push(Dropout2d(Number(opts.dropout)));
  return new Sequential(
    new Conv2d(inCh, w, 3, { padding: 1 }), ReLU(),
    new Conv2d(w, 2 * w, 3, { stride: 2, padding: 1 }), ...extra, ReLU(),
    new Conv2d(2 * w, 2 * w, 3, { stride: 2, padding: 1 }), ReLU(),
    new Conv2d(2 * w, 2 * w, 3, { padding: 2, dilation: 2 }), ReLU(),
    new Conv2d(2 * w, 2 * w, 3, { padding: 4, dilation: 4 }), ReLU(),
    new ConvTranspose2d(2 * w, w, 4, { stride: 2, padding: 1 }), ReLU(),
    new ConvTranspose2d(w, w, 4, { stride: 2, padding: 1 }), ReLU(),
    new Conv2d(w, out, 1),
  );
}

/** Tiny denoising autoencoder (Conv2d + ReLU, sigmoid output), a stand-in for nexnet-ae in tests. */
export function tinyAutoencoder(opts: ModelOptions = {}): Module {
  const inCh = Number(opts.inChannels ?? 3);
  const width = Number(opts.width ?? 8);
  return new Sequential(new Conv2d(inCh, width, 3, { padding: 1 }), ReLU(), new Conv2d(width, width, 3, { padding: 2, dilation: 2 }), ReLU(), new Conv2d(width, inCh, 1), Sigmoid());
}

/** 'tiny-ssl': a tiny-ae (sub-module 'autoencoder') whose output feeds a tiny segmentation net; for SSL tests. */
class TinySsl extends Module {
  readonly autoencoder: Module;
  readonly seg: Module;
  constructor(opts: ModelOptions) {
    super();
    this.autoencoder = this.add('autoencoder', tinyAutoencoder({ inChannels: opts.inChannels, width: opts.aeWidth }));
    this.seg = this.add('seg', tinySegNet(opts));
  }
  forward(x: Tensor): Tensor {
    return this.seg.forward(this.autoencoder.forward(x) as Tensor) as Tensor;
  }
}

const BUILTIN: Record<string, (opts: ModelOptions) => Module> = { tiny: tinySegNet, 'tiny-ae': tinyAutoencoder, 'tiny-ssl': (o) => new TinySsl(o) };

export function modelNames(): string[] {
  const api = modelsApi();
  let names: string[] = [];
  if (api?.list) names = api.list().map((m) => m.name);
  return [...names, ...Object.keys(BUILTIN)];
}

export function hasModel(name: string): boolean {
  if (name in BUILTIN) return true;
  const api = modelsApi();
  if (!api) return false;
  const names = modelNames();
  return names.length > Object.keys(BUILTIN).length ? names.includes(name) : true;
}

/** Builds a model by name; unknown names are a UserError listing the available ones. */
export function createModel(name: string, opts: ModelOptions = {}): Module {
  const b = BUILTIN[name];
  if (b) return b(opts);
  const api = modelsApi();
  if (!api) throw new UserError(`unknown model '${name}': the model zoo (src/models) is not available in this build; built-in models: ${Object.keys(BUILTIN).join(', ')}`);
  try {
    return api.create(name, opts);
  } catch (e) {
    const msg = (e as Error).message;
    if (/unknown model|unknown option|option '.*' must be/i.test(msg)) throw new UserError(msg);
    throw e;
  }
}

/**
 * Options with the input side filled in for a model whose size is fixed at construction (option
 * `imgSize`: TransUNet's position embedding) unless given: training at --size N builds it for N,
 * and the checkpoint's modelOptions record it so evaluate / predict / export rebuild the same.
 */
export function withImageSize(name: string, opts: ModelOptions, size: number): ModelOptions {
  const info = modelsApi()?.list?.().find((m) => m.name === name);
  return info?.options?.includes('imgSize') && opts.imgSize === undefined ? { ...opts, imgSize: size } : opts;
}

/** The default segmentation model of the built-in demo: CMUNeXt-S when available, else 'tiny'. */
export function defaultModelName(): string {
  return modelsApi() && hasModel('cmunext-s') ? 'cmunext-s' : 'tiny';
}

/** One line per model: name and description (for `scalpel summary --list`). */
export function describeModels(): string[] {
  const api = modelsApi();
  const zoo = api?.list ? api.list().map((m) => `${m.name.padEnd(14)} ${m.description ?? ''}`) : [];
  return [...zoo, `${'tiny'.padEnd(14)} built-in Conv2d/ConvTranspose2d + ReLU encoder-decoder (tests, demo fallback)`, `${'tiny-ae'.padEnd(14)} built-in tiny denoising autoencoder (tests)`, `${'tiny-ssl'.padEnd(14)} built-in tiny-ae + tiny (tests)`];
}
