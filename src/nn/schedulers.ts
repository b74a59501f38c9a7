// Learning-rate schedules. step() is called once per iteration (poly, cosine, warm-up) or once
// per epoch with the monitored metric (ReduceLROnPlateau); each sets lr on every param group.
import type { Optimizer } from './optim';

export abstract class LRScheduler {
  protected readonly baseLrs: number[];
  /** Number of step() calls so far. */
  lastStep = 0;
  constructor(readonly optimizer: Optimizer) {
    this.baseLrs = optimizer.paramGroups.map((g) => g.lr);
  }
  protected abstract factorAt(step: number): number;
  step(): void {
    this.lastStep++;
    this.apply();
  }
  protected apply(): void {
    const f = this.factorAt(this.lastStep);
    this.optimizer.paramGroups.forEach((g, i) => (g.lr = this.baseLrs[i] * f));
  }
  get lr(): number {
    return this.optimizer.paramGroups[0].lr;
  }
  stateDict(): Record<string, unknown> {
    return { lastStep: this.lastStep, baseLrs: this.baseLrs.slice() };
  }
  loadStateDict(s: Record<string, unknown>): void {
    this.lastStep = s.lastStep as number;
    (s.baseLrs as number[]).forEach((v, i) => (this.baseLrs[i] = v));
    this.apply();
  }
}

/** CMUNeXt's poly decay: lr = base * (1 - step / maxSteps)^power. */
export class PolyLR extends LRScheduler {
  constructor(opt: Optimizer, readonly maxSteps: number, readonly power = 0.9) {
    super(opt);
    if (!(maxSteps > 0)) throw new Error(`PolyLR: maxSteps must be positive, got ${maxSteps}`);
  }
  protected factorAt(step: number): number {
    return Math.pow(Math.max(0, 1 - step / this.maxSteps), this.power);
  }
}

/** Cosine annealing from base to minLr over maxSteps. */
export class CosineLR extends LRScheduler {
  constructor(opt: Optimizer, readonly maxSteps: number, readonly minFactor = 0) {
    super(opt);
    if (!(maxSteps > 0)) throw new Error(`CosineLR: maxSteps must be positive, got ${maxSteps}`);
  }
  protected factorAt(step: number): number {
    const t = Math.min(1, step / this.maxSteps);
    return this.minFactor + (1 - this.minFactor) * 0.5 * (1 + Math.cos(Math.PI * t));
  }
}

/** Linear warm-up over warmupSteps, then the wrapped schedule (or constant). */
export class WarmupLR extends LRScheduler {
  constructor(opt: Optimizer, readonly warmupSteps: number, readonly after?: (step: number) => number) {
    super(opt);
    if (!(warmupSteps >= 0)) throw new Error(`WarmupLR: warmupSteps must be >= 0, got ${warmupSteps}`);
    this.apply();
  }
  protected factorAt(step: number): number {
    if (step < this.warmupSteps) return (step + 1) / (this.warmupSteps + 1);
    return this.after ? this.after(step - this.warmupSteps) : 1;
  }
}

export interface PlateauOptions {
  mode?: 'min' | 'max';
  factor?: number;
  patience?: number;
  threshold?: number;
  minLr?: number;
}

/** Reduces lr by `factor` after `patience` epochs without improvement (NExNet's recipe). */
export class ReduceLROnPlateau {
  best: number;
  badEpochs = 0;
  readonly mode: 'min' | 'max';
  readonly factor: number;
  readonly patience: number;
  readonly threshold: number;
  readonly minLr: number;
  constructor(readonly optimizer: Optimizer, opts: PlateauOptions = {}) {
    this.mode = opts.mode ?? 'min';
    this.factor = opts.factor ?? 0.1;
    this.patience = opts.patience ?? 10;
    this.threshold = opts.threshold ?? 1e-4;
    this.minLr = opts.minLr ?? 0;
    if (!(this.factor > 0 && this.factor < 1)) throw new Error(`ReduceLROnPlateau: factor must be in (0, 1), got ${this.factor}`);
    this.best = this.mode === 'min' ? Infinity : -Infinity;
  }
  /** Call once per epoch with the monitored value; returns true when lr was reduced. */
  step(metric: number): boolean {
    if (!Number.isFinite(metric)) throw new Error(`ReduceLROnPlateau: metric must be finite, got ${metric}`);
    const better = this.mode === 'min' ? metric < this.best * (1 - this.threshold) : metric > this.best * (1 + this.threshold);
    if (better) {
      this.best = metric;
      this.badEpochs = 0;
      return false;
    }
    if (++this.badEpochs > this.patience) {
      this.badEpochs = 0;
      let changed = false;
      for (const g of this.optimizer.paramGroups) {
        const lr = Math.max(this.minLr, g.lr * this.factor);
        if (lr < g.lr) changed = true;
        g.lr = lr;
      }
      return changed;
    }
    return false;
  }
  get lr(): number {
    return this.optimizer.paramGroups[0].lr;
  }
  stateDict(): Record<string, unknown> {
    return { best: this.best, badEpochs: this.badEpochs };
  }
  loadStateDict(s: Record<string, unknown>): void {
    this.best = s.best as number;
    this.badEpochs = s.badEpochs as number;
  }
}
