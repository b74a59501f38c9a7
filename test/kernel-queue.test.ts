// The kernel queue (native/addon.cc): CPU kernel calls are checked when made and run in batches.
// What a user can observe must not change: results, errors (named, thrown), memory given back
// while calls are queued, values seen through zero-copy views, the peak memory.
import { strict as assert } from 'node:assert';
import ndarray from 'ndarray';
import * as sc from '../src';
import { native } from '../src/native';

/** Runs fn with the queue at `depth`, restoring the previous depth. */
function withQueue<T>(depth: number, fn: () => T): T {
  const prev = sc.getKernelQueue();
  sc.setKernelQueue(depth);
  try {
    return fn();
  } finally {
    sc.setKernelQueue(prev);
  }
}

/** Three SGD steps of a small CMUNeXt-S at 32 px; the losses and the final parameters. */
function trainThreeSteps(): { losses: number[]; params: Float32Array[] } {
  sc.manualSeed(7);
  const model = sc.models.create('cmunext-s');
  const x = sc.rand([2, 3, 32, 32]);
  const t = sc.tidy(() => sc.rand([2, 1, 32, 32]).gt(0.7).to('float32'));
  const opt = new sc.optim.SGD(model.parameters(), { lr: 0.05, momentum: 0.9 });
  const losses: number[] = [];
  for (let i = 0; i < 3; i++) {
    opt.zeroGrad();
    sc.tidy(() => {
      const y = model.forward(x) as sc.Tensor;
      const l = sc.F.add(sc.F.bceWithLogits(y, t), sc.F.diceLoss(y, t));
      l.backward();
      losses.push(l.item());
    });
    opt.step();
  }
  const params = model.parameters().map((p) => Float32Array.from(p.toArray() as number[]));
  x.dispose();
  t.dispose();
  return { losses, params };
}

describe('kernel queue', () => {
  it('is on by default: ops queue their kernels until something reads a value', () => {
    assert.ok(sc.getKernelQueue() > 1, `default depth ${sc.getKernelQueue()}`);
    // An allocation that makes the allocator give cached blocks back runs the queue first; with
    // nothing cached (earlier tests leave blocks of all sizes) none of these does.
    sc.emptyCache();
    const x = sc.ones([64, 64]);
    const y = x.mul(2).add(1).relu();
    assert.ok(native.queued() >= 3, `${native.queued()} calls queued`);
    assert.equal(y.sum().item(), 3 * 64 * 64);
    assert.equal(native.queued(), 0);
    x.dispose();
    y.dispose();
  });

  it('setKernelQueue checks its argument; depth 0 runs each call at once', () => {
    assert.throws(() => sc.setKernelQueue(-1), /setKernelQueue: expected a non-negative integer, got -1/);
    assert.throws(() => sc.setKernelQueue(2.5), /non-negative integer/);
    withQueue(0, () => {
      const y = sc.ones([16]).mul(2);
      assert.equal(native.queued(), 0);
      y.dispose();
    });
  });

  it('training steps give bit-identical losses and parameters queued and unqueued', function () {
    this.timeout(60000);
    const plain = withQueue(0, trainThreeSteps);
    const queued = withQueue(256, trainThreeSteps);
    assert.deepEqual(queued.losses, plain.losses);
    assert.equal(queued.params.length, plain.params.length);
    queued.params.forEach((p, i) => assert.ok(Buffer.from(p.buffer).equals(Buffer.from(plain.params[i].buffer)), `parameter ${i} differs`));
  });

  it('a failing queued kernel throws at the next flush, names the kernel, and drops what was queued after it', () => {
    withQueue(256, () => {
      const a = sc.zeros([4]), b = sc.zeros([4]);
      try {
        // 'fill' without its value attribute: the arguments are valid, the kernel throws when it runs.
        native.run('fill', 0, [], [a.nativeArg()], {});
        native.run('fill', 0, [], [b.nativeArg()], { value: 5 });
        assert.throws(() => native.flush(), /fill: .*value.*\(a queued kernel call; the 1 calls queued after it were dropped\)/);
        native.flush(); // the failure is thrown once
        assert.deepEqual(Array.from(b.toArray() as number[]), [0, 0, 0, 0]);
        // Reading values runs the queue, so the same failure surfaces from a read.
        native.run('fill', 0, [], [a.nativeArg()], {});
        assert.throws(() => b.toArray(), /fill: .*queued kernel call\)/);
      } finally {
        a.dispose();
        b.dispose();
      }
    });
  });

  it('argument errors are still thrown by the call that makes them', () => {
    withQueue(256, () => {
      const a = sc.zeros([4]);
      const h = a.nativeArg();
      a.dispose();
      assert.throws(() => native.run('fill', 0, [], [h], { value: 1 }), /fill: output 0|already released|used after dispose/);
    });
  });

  it('memory given back to the system while calls are queued is given back after they run', () => {
    // A cache limit of 0 unmaps every freed block at once: the queue must run the kernels that
    // still read such a block first (the allocator's hook), or they would read unmapped memory.
    withQueue(256, () => {
      sc.setCacheLimit(0);
      try {
        const want: number[] = [];
        const got = sc.tidy(() => {
          let x = sc.ones([512, 1024]); // 2 MB: a mapping of its own
          for (let i = 0; i < 20; i++) {
            const y = x.mul(2).add(1);
            x.dispose(); // freed (and unmapped) while the kernels reading it are still queued
            x = y.div(3);
            y.dispose();
          }
          return Array.from(x.flatten().slice(0, 0, 4).toArray() as number[]);
        });
        let v = 1;
        for (let i = 0; i < 20; i++) v = Math.fround(Math.fround(Math.fround(v * 2) + 1) / 3);
        for (let i = 0; i < 4; i++) want.push(v);
        assert.deepEqual(got, want);
      } finally {
        sc.setCacheLimit(null);
      }
    });
  });

  it('a zero-copy view (toNdarray) sees every op asked for before it is read', () => {
    withQueue(256, () => {
      const t = sc.zeros([8]);
      const view = sc.toNdarray(t);
      // A kernel writing the viewed memory runs at once (as the optimisers' in-place updates do).
      native.run('fill', 0, [], [t.nativeArg()], { value: 3 });
      assert.equal(native.queued(), 0);
      assert.equal(view.get(5), 3);
      t.dispose();
    });
  });

  it('an op on a wrapped ArrayBuffer (fromNdarray) reads it when asked, not later', () => {
    withQueue(256, () => {
      const data = new Float32Array([1, 2, 3, 4]);
      const src = sc.fromNdarray(ndarray(data, [4]));
      const doubled = src.mul(2);
      data.fill(100); // the caller's array changes after the op was asked for
      assert.deepEqual(Array.from(doubled.toArray() as number[]), [2, 4, 6, 8]);
      src.dispose();
      doubled.dispose();
    });
  });

  it('the peak memory of a training step is the same queued and unqueued', function () {
    this.timeout(60000);
    // One model for both: the peak counts from what is in use when it is reset.
    const model = sc.models.create('cmunext-s');
    const x = sc.rand([2, 3, 64, 64]);
    const t = sc.tidy(() => sc.rand([2, 1, 64, 64]).gt(0.7).to('float32'));
    const opt = new sc.optim.SGD(model.parameters(), { lr: 0.05, momentum: 0.9 });
    const step = () => {
      opt.zeroGrad();
      sc.tidy(() => {
        const y = model.forward(x) as sc.Tensor;
        sc.F.add(sc.F.bceWithLogits(y, t), sc.F.diceLoss(y, t)).backward();
      });
      opt.step();
    };
    const peak = (depth: number) => withQueue(depth, () => {
      step(); // settle the allocator's cache
      sc.resetPeakMemory();
      step();
      return sc.memory().cpu.peakBytesInUse;
    });
    const queued = peak(256), plain = peak(0);
    assert.ok(plain > 10e6, `peak ${plain}`);
    assert.equal(queued, plain);
    x.dispose();
    t.dispose();
  });

  it('synchronize() and the memory statistics run what is queued', () => {
    withQueue(256, () => {
      const t = sc.zeros([4]);
      sc.synchronize();
      native.run('fill', 0, [], [t.nativeArg()], { value: 2 });
      assert.equal(native.queued(), 1);
      sc.synchronize();
      assert.equal(native.queued(), 0);
      native.run('fill', 0, [], [t.nativeArg()], { value: 3 });
      sc.memory();
      assert.equal(native.queued(), 0);
      assert.deepEqual(Array.from(t.toArray() as number[]), [3, 3, 3, 3]);
      t.dispose();
    });
  });
});
