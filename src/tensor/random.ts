// Seedable random numbers: the xoshiro128** core (state: four uint32 words, so checkpoints can
// save and restore it exactly) and the Generator behind rand/randn/dropout and initialisers.

/** xoshiro128** seeded through splitmix32; the base of every generator in scalpel. */
export class Xoshiro128 {
  protected s = new Uint32Array(4);

  /** Spreads one 32-bit word over the four state words (never all zero). */
  protected seedWord(word: number): void {
    let x = word >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
    if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
  }

  /** Next raw 32-bit unsigned integer. */
  nextU32(): number {
    const s = this.s;
    const r = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return r;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextU32() / 4294967296;
  }

  protected words(): number[] {
    return Array.from(this.s);
  }

  protected setWords(w: readonly number[]): void {
    for (let i = 0; i < 4; i++) this.s[i] = w[i] >>> 0;
  }
}

export class Generator extends Xoshiro128 {
  private spare: number | null = null;

  constructor(seed = 0x5ca1e1) {
    super();
    this.seed(seed);
  }

  seed(seed: number): void {
    this.seedWord(seed);
    this.spare = null;
  }

  getState(): number[] {
    return [...this.words(), this.spare === null ? NaN : this.spare];
  }

  setState(st: number[]): void {
    if (!Array.isArray(st) || st.length !== 5) throw new Error('Generator.setState: expected the array from getState()');
    this.setWords(st);
    this.spare = Number.isNaN(st[4]) ? null : st[4];
  }

  /** Standard normal (Box-Muller; the second value is kept for the next call). */
  normal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
}

/** 32-bit rotate left. */
export function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

export const defaultGenerator = new Generator();

/** Seeds the default generator (rand, randn, dropout, parameter initialisation). */
export function manualSeed(seed: number): void {
  if (!Number.isFinite(seed)) throw new Error(`manualSeed: seed must be a finite number, got ${seed}`);
  defaultGenerator.seed(seed);
}
