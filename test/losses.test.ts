// Focal, Tversky, weighted BCE and OHEM BCE: values against hand-computed float64 numbers, their
// gradients, and their composition from a `--loss` spec (API and CLI).
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as sc from '../src';
import { gradcheck } from '../src/autograd/gradcheck';
import { fit, ensureSyntheticData, UserError } from '../src/train';
import { bceDiceTerms, buildLoss, formatLossTerms, parseLossSpec } from '../src/train/losses';

const F = sc.F;
const f64 = (v: number[], shape = [v.length]) => sc.tensor(Float64Array.from(v), shape, { dtype: 'float64' });
const softplus = (z: number) => Math.log(1 + Math.exp(z));
const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));
const close = (a: number, b: number, what: string, tol = 1e-12) => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);

describe('losses', () => {
  it('focal loss: alpha_t (1 - p_t)^gamma BCE by hand', () => {
    const x = f64([0, 2, -1.5]), t = f64([1, 0, 1]);
    // Pixel 0: p = 0.5, target 1: BCE ln 2, 1 - p_t = 0.5. Pixel 1: target 0, 1 - p_t = p = sigmoid(2).
    // Pixel 2: target 1, 1 - p_t = 1 - sigmoid(-1.5) = sigmoid(1.5), BCE = softplus(1.5).
    const e = [0.25 * 0.25 * Math.log(2), 0.75 * sigmoid(2) ** 2 * softplus(2), 0.25 * sigmoid(1.5) ** 2 * softplus(1.5)];
    const none = F.focalLoss(x, t, { gamma: 2, alpha: 0.25, reduction: 'none' }).toArray();
    e.forEach((v, i) => close(none[i], v, `focal[${i}]`));
    close(F.focalLoss(x, t, { gamma: 2, alpha: 0.25 }).item(), (e[0] + e[1] + e[2]) / 3, 'focal mean');
    // gamma 0 and no alpha: plain BCE.
    close(F.focalLoss(x, t, { gamma: 0 }).item(), F.bceWithLogits(x, t).item(), 'focal gamma 0');
    // Confident right pixels: the modulating factor (about e^-60) does not lose its value to cancellation.
    const conf = F.focalLoss(f64([30]), f64([1]), { gamma: 2, reduction: 'none' }).item();
    close(conf, sigmoid(-30) ** 2 * Math.log1p(Math.exp(-30)), 'focal logit 30', 1e-9);
    assert.ok(conf > 0);
    assert.throws(() => F.focalLoss(x, t, { gamma: -1 }), /gamma must be a non-negative number, got -1/);
    assert.throws(() => F.focalLoss(x, t, { alpha: 1.5 }), /alpha must be in \[0, 1\], got 1.5/);
    assert.throws(() => F.focalLoss(x, f64([1, 0]), {}), /target \[2\] must have the same shape as logits \[3\]/);
  });

  it('Tversky loss by hand; alpha = beta = 0.5 is the Dice loss with twice the smoothing', () => {
    const p = f64([0.9, 0.2, 0.6, 0.1]), t = f64([1, 0, 1, 1]);
    // TP = 1.6, FP = 0.2, FN = 1.4: 1 - 2.6 / (1.6 + 0.06 + 0.98 + 1) = 2/7.
    close(F.tverskyLoss(p, t, { fromLogits: false }).item(), 2 / 7, 'tversky');
    const x = f64([0.3, -1, 2, 0.5, -0.2, 1.1], [2, 3]), m = f64([1, 0, 1, 0, 0, 1], [2, 3]);
    for (const reduction of ['batch', 'per-image'] as const) {
      // (TP + s) / (TP + (FP + FN) / 2 + s) = (2 TP + 2 s) / (P + T + 2 s): Dice with smooth 2 s.
      close(F.tverskyLoss(x, m, { alpha: 0.5, beta: 0.5, reduction }).item(), F.diceLoss(x, m, { reduction, smooth: 2 }).item(), `tversky = dice (${reduction})`);
      close(F.tverskyLoss(x, m, { alpha: 0.5, beta: 0.5, smooth: 0, reduction }).item(), F.diceLoss(x, m, { reduction, smooth: 0 }).item(), `tversky = dice, smooth 0 (${reduction})`);
    }
    // Per image: image 0 (p = sigmoid(.3, -1, 2), t = 1 0 1), image 1 (sigmoid(.5, -.2, 1.1), t = 0 0 1), averaged.
    const img = (ps: number[], ts: number[]) => {
      const tp = ps.reduce((a, v, i) => a + v * ts[i], 0), fp = ps.reduce((a, v, i) => a + v * (1 - ts[i]), 0), fn = ps.reduce((a, v, i) => a + (1 - v) * ts[i], 0);
      return 1 - (tp + 1) / (tp + 0.2 * fp + 0.8 * fn + 1);
    };
    const want = (img([0.3, -1, 2].map(sigmoid), [1, 0, 1]) + img([0.5, -0.2, 1.1].map(sigmoid), [0, 0, 1])) / 2;
    close(F.tverskyLoss(x, m, { alpha: 0.2, beta: 0.8, reduction: 'per-image' }).item(), want, 'tversky per-image');
    assert.throws(() => F.tverskyLoss(x, m, { alpha: -0.1 }), /alpha must be a non-negative number/);
    assert.throws(() => F.tverskyLoss(x, m, { reduction: 'mean' as never }), /reduction must be 'batch' or 'per-image'/);
  });

  it('OHEM BCE: the mean of the k hardest pixels, gradients to those only', () => {
    // BCE per pixel: softplus(-3) (easy), softplus(1), softplus(0) = ln 2, softplus(2) (hardest).
    const x = sc.tensor(Float64Array.from([3, -1, 0, 2]), [4], { dtype: 'float64', requiresGrad: true });
    const t = f64([1, 1, 0, 0]);
    const l = F.ohemBce(x, t, { ratio: 0.5 });
    close(l.item(), (softplus(1) + softplus(2)) / 2, 'ohem 0.5');
    l.backward();
    const g = x.grad!.toArray();
    close(g[0], 0, 'grad easy');
    close(g[1], -sigmoid(1) / 2, 'grad pixel 1');
    close(g[2], 0, 'grad dropped');
    close(g[3], sigmoid(2) / 2, 'grad hardest');
    // k = ceil(0.3 * 4) = 2 as well; ratio 1 is the plain BCE; posWeight weighs the positive pixels.
    close(F.ohemBce(x, t, { ratio: 0.3 }).item(), (softplus(1) + softplus(2)) / 2, 'ohem 0.3');
    close(F.ohemBce(x, t, { ratio: 1 }).item(), F.bceWithLogits(x, t).item(), 'ohem 1');
    close(F.ohemBce(x, t, { ratio: 0.25, posWeight: 4 }).item(), 4 * softplus(1), 'ohem posWeight');
    // Ties at the cut-off: the first pixels in index order are kept.
    const z = sc.tensor(new Float64Array(4), [4], { dtype: 'float64', requiresGrad: true });
    F.ohemBce(z, f64([1, 1, 1, 1]), { ratio: 0.5 }).backward();
    assert.deepEqual(Array.from(z.grad!.toArray()).map((v) => v !== 0), [true, true, false, false]);
    assert.throws(() => F.ohemBce(x, t, { ratio: 0 }), /ratio must be in \(0, 1\], got 0/);
    assert.throws(() => F.ohemBce(x, t, { ratio: 1.5 }), /ratio must be in \(0, 1\], got 1.5/);
  });

  it('weighted BCE from a spec: pos-weight scales the positive term', () => {
    const loss = buildLoss(parseLossSpec('bce:pos-weight=3'));
    close(loss(f64([1, -1, 0.5]), f64([1, 1, 0])).item(), (3 * softplus(-1) + 3 * softplus(1) + softplus(0.5)) / 3, 'weighted bce');
    // Without its own pos-weight, a bce term takes the run's.
    close(buildLoss(parseLossSpec('bce'), { posWeight: 2 })(f64([1]), f64([1])).item(), 2 * softplus(-1), 'run pos-weight');
  });

  it('composes weighted terms; the default equals today\'s BCE + Dice; gradients check', () => {
    const x = f64([0.3, -1, 2, 0.5, -0.2, 1.1, 0.9, -2], [2, 1, 2, 2]), t = f64([1, 0, 1, 0, 0, 1, 1, 0], [2, 1, 2, 2]);
    const spec = 'focal:gamma=2,alpha=0.25+0.5*dice+2*tversky:alpha=0.4,beta=0.6+ohem:ratio=0.5';
    const got = buildLoss(parseLossSpec(spec))(x, t).item();
    const want = F.focalLoss(x, t, { gamma: 2, alpha: 0.25 }).item() + 0.5 * F.diceLoss(x, t).item() +
      2 * F.tverskyLoss(x, t, { alpha: 0.4, beta: 0.6 }).item() + F.ohemBce(x, t, { ratio: 0.5 }).item();
    close(got, want, 'composed');
    close(buildLoss(bceDiceTerms(1, 1), { posWeight: 1.5 })(x, t).item(), F.bceWithLogits(x, t, { posWeight: 1.5 }).item() + F.diceLoss(x, t).item(), 'default');
    const xg = sc.tensor(x.toArray() as Float64Array, x.shape, { dtype: 'float64', requiresGrad: true });
    const r = gradcheck((a) => buildLoss(parseLossSpec(spec))(a, t), [xg]);
    assert.ok(r.ok, `gradcheck: ${r.worst} (max error ${r.maxAbsError})`);
    assert.equal(formatLossTerms(parseLossSpec(spec)), 'focal:gamma=2,alpha=0.25+0.5*dice+2*tversky:alpha=0.4,beta=0.6+ohem:ratio=0.5');
  });

  it('bad specs: clear errors', () => {
    const bad: [string, RegExp][] = [
      ['', /expected a spec like 'bce\+dice'/],
      ['bce+', /empty term/],
      ['hinge', /unknown loss 'hinge' \(expected bce, dice, focal, tversky, ohem, ce\)/],
      ['focal:gamma=-1', /focal gamma must be a non-negative number, got '-1'/],
      ['focal:gamma=two', /focal gamma must be a non-negative number, got 'two'/],
      ['focal:alpha=2', /focal alpha must be a number in \[0, 1\], got '2'/],
      ['focal:beta=1', /focal has no parameter 'beta' \(it takes gamma, alpha\)/],
      ['tversky:alpha', /tversky alpha must be a non-negative number, got ''/],
      ['ohem:ratio=0', /ohem ratio must be a number in \(0, 1\], got '0'/],
      ['bce:pos-weight=0', /bce pos-weight must be a positive number/],
      ['bce:pos-weight=auto', /--pos-weight auto/],
      ['-1*dice', /weight '-1' of '-1\*dice' must be a positive number/],
      ['x*dice', /weight 'x'/],
      ['focal:gamma=1,gamma=2', /gamma is given twice/],
    ];
    for (const [spec, re] of bad) assert.throws(() => parseLossSpec(spec), (e: Error) => e instanceof UserError && re.test(e.message), spec);
    assert.throws(() => sc.train.resolveConfig({ loss: 'hinge' }), /unknown loss 'hinge'/);
    assert.throws(() => sc.train.resolveConfig({ bceWeight: 0, diceWeight: 0 }), /BCE and Dice weights are both 0/);
  });

  describe('training with --loss', function () {
    this.timeout(60000);
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-loss-'));
    const data = path.join(tmp, 'data');
    before(async () => {
      await ensureSyntheticData(data, 12, 32);
    });
    after(() => fs.rmSync(tmp, { recursive: true, force: true }));

    it('fit uses the spec (logged, kept in the state) and the CLI rejects bad ones', async () => {
      const lines: string[] = [];
      const opts = { model: 'tiny', modelOptions: { width: 4 }, data, size: 32, batch: 4, epochs: 1, workers: 0, overlays: 0, progress: false };
      const r = await fit({ ...opts, out: path.join(tmp, 'focal'), loss: 'focal:gamma=2+tversky', log: (l) => lines.push(l) });
      assert.match(lines[0], /loss focal:gamma=2\+tversky/);
      assert.ok(Number.isFinite(r.history[0].train_loss));
      assert.equal(r.config.loss, 'focal:gamma=2+tversky');
      const state = JSON.parse(fs.readFileSync(path.join(tmp, 'focal', 'last.json'), 'utf8'));
      assert.equal(state.config.loss, 'focal:gamma=2+tversky');
      // The same data and seed with the default loss train to a different loss value.
      const d = await fit({ ...opts, out: path.join(tmp, 'default'), verbose: false });
      assert.notEqual(d.history[0].train_loss, r.history[0].train_loss);

      const cli = (...args: string[]) => spawnSync('npx', ['tsx', 'src/cli/main.ts', 'train', ...args], { cwd: path.resolve(__dirname, '..'), encoding: 'utf8', env: { ...process.env, SCALPEL_DEBUG: '' } });
      const bad = cli('--loss', 'focal:gamma=x', '--out', path.join(tmp, 'never'));
      assert.equal(bad.status, 2, bad.stderr);
      assert.match(bad.stderr, /option '--loss <spec>' argument 'focal:gamma=x' is invalid.*focal gamma must be a non-negative number, got 'x'/);
      const both = cli('--loss', 'dice', '--bce-weight', '1', '--out', path.join(tmp, 'never'));
      assert.equal(both.status, 2, both.stderr);
      assert.match(both.stderr, /--loss replaces --bce-weight and --dice-weight/);
      assert.ok(!fs.existsSync(path.join(tmp, 'never')));
      assert.match(cli('--help').stdout, /--loss <spec>.*focal.*tversky.*ohem/s);
    });
  });
});

describe('bceWithLogits: the vectorised float32 path over several thread chunks', () => {
  it('matches the float64 kernel in loss and gradient at a training batch\'s size (mean, sum, posWeight)', () => {
    // 2 x 1 x 96 x 97 = 18,624 values: several 4,096-value chunks, 8-wide vectors and a tail.
    const g = new sc.Generator(11);
    const x64 = sc.randn([2, 1, 96, 97], { dtype: 'float64', generator: g }).mul(6);
    const t64 = sc.tidy(() => sc.rand([2, 1, 96, 97], { dtype: 'float64', generator: g }).gt(0.6).to('float64'));
    for (const opts of [{ reduction: 'mean' as const }, { reduction: 'sum' as const, posWeight: 2.5 }]) {
      const grads = (x: sc.Tensor, t: sc.Tensor) => {
        const xl = x.detach().requiresGrad_();
        const loss = sc.F.bceWithLogits(xl, t, opts);
        loss.backward();
        return { loss: loss.item(), grad: xl.grad!.to('float64').toArray() as Float64Array };
      };
      const a = grads(x64.to('float32'), t64.to('float32')), b = grads(x64, t64);
      assert.ok(Math.abs(a.loss - b.loss) <= 1e-5 * Math.abs(b.loss), `${opts.reduction}: loss ${a.loss} vs ${b.loss}`);
      let worst = 0;
      const scale = Math.max(...Array.from(b.grad, Math.abs));
      for (let i = 0; i < b.grad.length; i++) worst = Math.max(worst, Math.abs(a.grad[i] - b.grad[i]));
      assert.ok(worst <= 1e-5 * scale, `${opts.reduction}: gradient differs by ${worst} (largest ${scale})`);
    }
    sc.dispose([x64, t64]);
  });
});
