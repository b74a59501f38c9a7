// Training API: seed repeatability, exact resume, logs/plots/overlays, checkpoint atomicity.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as sc from '../src';
import { fit, FitOptions, ensureSyntheticData, loadTrainState } from '../src/train';
import { saveCheckpoint, loadModelFile } from '../src/train/checkpoint';
import { createModel } from '../src/train/models';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-train-'));
const dataDir = path.join(tmp, 'data');

function base(out: string, extra: FitOptions = {}): FitOptions {
  return {
    model: 'tiny', modelOptions: { width: 6 }, data: dataDir, size: 32, batch: 4, epochs: 2, optimizer: 'sgd', lr: 0.05,
    momentum: 0.9, schedule: 'poly', workers: 0, seed: 7, out: path.join(tmp, out), overlays: 2, verbose: false, progress: false, ...extra,
  };
}

function weights(file: string): Record<string, Float32Array> {
  const { tensors } = sc.loadSafetensors(file);
  const out: Record<string, Float32Array> = {};
  for (const [k, t] of Object.entries(tensors)) {
    out[k] = t.toArray() as Float32Array;
    t.dispose();
  }
  return out;
}

function assertSameWeights(a: string, b: string): void {
  const wa = weights(a), wb = weights(b);
  assert.deepEqual(Object.keys(wa), Object.keys(wb));
  for (const k of Object.keys(wa)) assert.ok(Buffer.from(wa[k].buffer).equals(Buffer.from(wb[k].buffer)), `tensor ${k} differs`);
}

describe('train: fit', function () {
  this.timeout(60000);
  before(async () => {
    await ensureSyntheticData(dataDir, 20, 32);
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('writes checkpoints, JSONL/CSV logs, the curve plot and overlays; returns the best metrics', async () => {
    const r = await fit(base('files'));
    const out = path.join(tmp, 'files');
    for (const f of ['best.safetensors', 'best.optim.safetensors', 'best.json', 'last.safetensors', 'last.optim.safetensors', 'last.json', 'log.jsonl', 'log.csv', 'curves.png']) {
      assert.ok(fs.existsSync(path.join(out, f)), f);
    }
    assert.equal(fs.readdirSync(path.join(out, 'overlays')).length, 2);
    const lines = fs.readFileSync(path.join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines.length, 2);
    for (const k of ['epoch', 'lr', 'train_loss', 'val_loss', 'dice', 'iou', 'dice_img', 'iou_img', 'precision', 'recall', 'data_wait', 'img_s']) assert.ok(k in lines[0], k);
    const csv = fs.readFileSync(path.join(out, 'log.csv'), 'utf8').trim().split('\n');
    assert.equal(csv.length, 3);
    assert.ok(csv[0].split(',').includes('dice'));
    assert.ok(r.best.epoch >= 1 && r.best.metrics && Number.isFinite(r.best.metrics.dice));
    assert.equal(r.history.length, 2);
    const st = JSON.parse(fs.readFileSync(path.join(out, 'last.json'), 'utf8'));
    assert.equal(st.epoch, 2);
    assert.equal(st.config.model, 'tiny');
    assert.equal(st.generator.length, 5);
    assert.equal(st.rng.length, 4);
    assert.ok(st.scheduler && st.optimizer.groups.length === 1);
    const meta = loadModelFile(path.join(out, 'best.safetensors'));
    Object.values(meta.weights).forEach((t) => t.dispose());
    assert.equal(meta.meta.model, 'tiny');
    assert.deepEqual(meta.meta.modelOptions, { inChannels: 3, width: 6 });
    assert.ok(meta.meta.normalize && meta.meta.normalize.mean.length === 3);
  });

  it('is repeatable for a seed (and differs for another seed)', async () => {
    await fit(base('seedA', { epochs: 1, overlays: 0 }));
    await fit(base('seedB', { epochs: 1, overlays: 0 }));
    assertSameWeights(path.join(tmp, 'seedA', 'last.safetensors'), path.join(tmp, 'seedB', 'last.safetensors'));
    await fit(base('seedC', { epochs: 1, overlays: 0, seed: 8 }));
    assert.throws(() => assertSameWeights(path.join(tmp, 'seedA', 'last.safetensors'), path.join(tmp, 'seedC', 'last.safetensors')));
  });

  for (const [name, extra] of [
    ['sgd + poly', {}],
    ['adam + warmup+plateau + clip + pos_weight auto, batch norm + dropout', { modelOptions: { width: 6, bn: true, dropout: 0.2 }, optimizer: 'adam', lr: 0.01, schedule: 'warmup+plateau', warmupEpochs: 1, plateauPatience: 0, clip: 0.5, posWeight: 'auto' }],
  ] as [string, FitOptions][]) {
    it(`resumes exactly (${name}): 2 epochs == 1 epoch, stop, resume 1 epoch`, async () => {
      const a = `full-${name.length}`, b = `resumed-${name.length}`;
      await fit(base(a, { ...extra, epochs: 3, overlays: 0 }));
      const stopped = await fit(base(b, { ...extra, epochs: 3, overlays: 0, onEpochEnd: (r) => (r.epoch === 1 ? 'stop' : undefined) }));
      assert.equal(stopped.epochsRun, 1);
      const r = await fit({ resume: path.join(tmp, b), verbose: false, progress: false });
      assert.equal(r.epochsRun, 2);
      assertSameWeights(path.join(tmp, a, 'last.safetensors'), path.join(tmp, b, 'last.safetensors'));
      assertSameWeights(path.join(tmp, a, 'last.optim.safetensors'), path.join(tmp, b, 'last.optim.safetensors'));
      const la = fs.readFileSync(path.join(tmp, a, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      const lb = fs.readFileSync(path.join(tmp, b, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      assert.deepEqual(lb.map((x) => [x.epoch, x.lr, x.train_loss, x.dice]), la.map((x) => [x.epoch, x.lr, x.train_loss, x.dice]));
    });
  }

  it('stops at the wall-clock time limit and at early stopping', async () => {
    const r = await fit(base('timelimit', { epochs: 3, timeLimit: 1e-6, overlays: 0 }));
    assert.equal(r.epochsRun, 1);
    assert.ok(r.stoppedEarly);
    // lr ~ 0: validation Dice cannot improve after epoch 1, so patience 1 stops after epoch 2.
    const e = await fit(base('earlystop', { epochs: 4, earlyStop: 1, lr: 1e-12, momentum: 0, overlays: 0 }));
    assert.equal(e.epochsRun, 2);
    assert.ok(e.stoppedEarly);
    assert.equal(e.best.epoch, 1);
  });

  it('refuses a run folder locked by a live process and takes over a stale lock', async () => {
    const out = path.join(tmp, 'locked');
    fs.mkdirSync(out, { recursive: true });
    fs.writeFileSync(path.join(out, '.lock'), `${process.ppid}\n`);
    await assert.rejects(fit(base('locked', { epochs: 1, overlays: 0 })), /another training \(pid \d+\) is using this run folder/);
    fs.writeFileSync(path.join(out, '.lock'), '2147483000\n');
    await fit(base('locked', { epochs: 1, overlays: 0 }));
    assert.ok(!fs.existsSync(path.join(out, '.lock')));
  });

  it('pretrains a denoising autoencoder and trains an SSL model on its frozen weights', async () => {
    await fit(base('ae', { model: 'tiny-ae', modelOptions: { width: 4 }, task: 'autoencoder', normalize: 'none', optimizer: 'adam', lr: 1e-3, schedule: 'constant', epochs: 1, overlays: 0 }));
    const ae = weights(path.join(tmp, 'ae', 'best.safetensors'));
    const st = JSON.parse(fs.readFileSync(path.join(tmp, 'ae', 'last.json'), 'utf8'));
    assert.equal(st.model.task, 'autoencoder');
    assert.ok(Number.isFinite(st.history[0].mse));
    await fit(base('ssl', { model: 'tiny-ssl', modelOptions: { width: 4, aeWidth: 4 }, encoder: path.join(tmp, 'ae', 'best.safetensors'), freezeEncoder: true, epochs: 1, overlays: 0 }));
    const ssl = weights(path.join(tmp, 'ssl', 'last.safetensors'));
    for (const [k, v] of Object.entries(ae)) assert.ok(Buffer.from(ssl[`autoencoder.${k}`].buffer).equals(Buffer.from(v.buffer)), `frozen ${k}`);
  });

  describe('atomic checkpoints', () => {
    // Makes fs.writeSync fail half-way through writing any file whose name matches `re`.
    function failWrites(re: RegExp): () => void {
      // The CommonJS module object itself (an `import * as` namespace is a read-only copy).
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      const nodeFs = require('fs') as typeof fs;
      const realOpen = nodeFs.openSync, realWrite = nodeFs.writeSync;
      const doomed = new Set<number>();
      (nodeFs as { openSync: unknown }).openSync = (p: fs.PathLike, ...rest: unknown[]) => {
        const fd = (realOpen as (...a: unknown[]) => number)(p, ...rest);
        if (re.test(String(p))) doomed.add(fd);
        return fd;
      };
      (nodeFs as { writeSync: unknown }).writeSync = (fd: number, buf: Uint8Array, off?: number, len?: number, ...rest: unknown[]) => {
        if (doomed.has(fd)) {
          (realWrite as (...a: unknown[]) => number)(fd, buf, off ?? 0, Math.floor((len ?? buf.length) / 2));
          throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        }
        return (realWrite as (...a: unknown[]) => number)(fd, buf, off, len, ...rest);
      };
      return () => {
        (nodeFs as { openSync: unknown }).openSync = realOpen;
        (nodeFs as { writeSync: unknown }).writeSync = realWrite;
      };
    }

    it('a failure while writing the first best checkpoint leaves no best files and no temporary files', async () => {
      const out = path.join(tmp, 'fail-first');
      const restore = failWrites(/\.best\.safetensors\./);
      try {
        await assert.rejects(fit(base('fail-first', { epochs: 1 })), /ENOSPC/);
      } finally {
        restore();
      }
      const files = fs.readdirSync(out);
      assert.ok(!files.includes('best.safetensors') && !files.includes('best.json'), files.join(' '));
      assert.deepEqual(files.filter((f) => f.includes('.tmp')), []);
    });

    it('a failure while overwriting best keeps the previous best intact and loadable', async () => {
      const out = path.join(tmp, 'files');
      const before = fs.readFileSync(path.join(out, 'best.safetensors'));
      const beforeState = fs.readFileSync(path.join(out, 'best.json'));
      const model = createModel('tiny', { width: 6 });
      const st = loadTrainState(path.join(out, 'best.json'));
      Object.values(st.weights).forEach((t) => t.dispose());
      Object.values(st.optim).forEach((t) => t.dispose());
      const restore = failWrites(/\.best\.safetensors\./);
      try {
        assert.throws(() => saveCheckpoint(out, 'best', model, {}, { ...st.state, tag: 'new' }), /ENOSPC/);
      } finally {
        restore();
        model.dispose();
      }
      assert.ok(fs.readFileSync(path.join(out, 'best.safetensors')).equals(before));
      assert.ok(fs.readFileSync(path.join(out, 'best.json')).equals(beforeState));
      assert.deepEqual(fs.readdirSync(out).filter((f) => f.includes('.tmp')), []);
      const again = loadTrainState(path.join(out, 'best.json')); // still a consistent set
      Object.values(again.weights).forEach((t) => t.dispose());
      Object.values(again.optim).forEach((t) => t.dispose());
    });
  });
});
