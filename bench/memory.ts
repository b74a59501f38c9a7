// npx tsx bench/memory.ts --model cmunext --size 128 --batch 8 [--steps 3] [--checkpoint] [--keep-activations] [--by-op]
// Where a training step's memory goes: the allocator's peak bytes in use, what it caches, and the
// process's peak RSS, after each step (forward, BCE + Dice, backward, SGD), in one process.
// --by-op: after the last step, one more forward and what its graph keeps for backward, summed
// by the op that produced each tensor (and by op and shape), to find what to fuse or free.
import * as sc from '../src';

const arg = (k: string, d?: string) => {
  const i = process.argv.indexOf(`--${k}`);
  return i < 0 ? d : (process.argv[i + 1] && !process.argv[i + 1].startsWith('--') ? process.argv[i + 1] : 'true');
};
const name = arg('model', 'cmunext')!, s = Number(arg('size', '128')), batch = Number(arg('batch', '8')), steps = Number(arg('steps', '3'));
sc.setNumThreads(Number(arg('threads', '2')));
const model = sc.models.create(name);
model.train();
// --checkpoint: activation checkpointing of every stage (sc.nn.checkpointModules).
if (arg('checkpoint') === 'true') console.log(`checkpointed: ${sc.nn.checkpointModules(model).join(', ')}`);
// --keep-activations: backward without freeActivations (every activation held to the step's end).
const freeActivations = arg('keep-activations') !== 'true';
const n = batch * 3 * s * s, d = new Float32Array(n);
for (let i = 0; i < n; i++) d[i] = Math.sin(0.37 * i) * 0.5 + 0.5;
const x = sc.tensor(d, [batch, 3, s, s]);
const td = new Float32Array(batch * s * s);
for (let i = 0; i < td.length; i++) td[i] = Math.sin(0.37 * i) * 0.5 + 0.5 > 0.8 ? 1 : 0;
const target = sc.tensor(td, [batch, 1, s, s]);
const opt = new sc.optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 1e-4 });
const mb = (b: number) => (b / 2 ** 20).toFixed(0);
const paramBytes = model.parameters().reduce((a, p) => a + p.size * 4, 0);
console.log(`${name} ${s}px b${batch}: parameters ${mb(paramBytes)} MB`);
for (let i = 0; i < steps; i++) {
  const t0 = performance.now();
  opt.zeroGrad();
  let afterForward = 0;
  sc.tidy(() => {
    const logits = model.forward(x);
    const l = sc.F.add(sc.F.bceWithLogits(logits, target), sc.F.diceLoss(logits, target));
    afterForward = sc.memory().cpu.bytesInUse;
    l.backward(null, { freeActivations });
  });
  opt.step();
  const m = sc.memory();
  console.log(`step ${i + 1}: ${(performance.now() - t0).toFixed(0)} ms; in use after forward ${mb(afterForward)} MB, peak in use ${mb(m.cpu.peakBytesInUse)} MB, ` +
    `in use now ${mb(m.cpu.bytesInUse)} MB, cached ${mb(m.cpu.bytesCached)} MB, RSS ${mb(m.process.rssBytes)} MB, peak RSS ${mb(m.process.peakRssBytes)} MB`);
}

if (arg('by-op') === 'true') {
  const paramStorages = new Set(model.parameters().map((p) => p.storage));
  sc.tidy(() => {
    const out = model.forward(x) as sc.Tensor;
    const seen = new Set<unknown>(), nodes = new Set<unknown>();
    const byOp = new Map<string, number>(), byShape = new Map<string, number>();
    const stack = [out.gradFn];
    while (stack.length) {
      const node = stack.pop();
      if (!node || nodes.has(node)) continue;
      nodes.add(node);
      const saved = Object.values(node.saved).filter((v): v is sc.Tensor => v instanceof sc.Tensor);
      for (const t of [...node.inputs, ...node.outputs, ...saved]) {
        // Each storage once (views share it); parameters and released values are not activations.
        if (t.isDisposed || t.valuesReleased || seen.has(t.storage) || paramStorages.has(t.storage) || t === x) continue;
        seen.add(t.storage);
        const op = t.gradFn ? t.gradFn.op.name : saved.includes(t) ? `saved by ${node.op.name}` : 'input';
        byOp.set(op, (byOp.get(op) ?? 0) + t.storage.bytes);
        const key = `${op} [${t.shape.join(', ')}]`;
        byShape.set(key, (byShape.get(key) ?? 0) + t.storage.bytes);
      }
      for (const t of node.inputs) if (t.gradFn) stack.push(t.gradFn);
    }
    const total = [...byOp.values()].reduce((a, b) => a + b, 0);
    console.log(`kept for backward after a forward: ${mb(total)} MB in ${nodes.size} graph nodes, by producing op:`);
    for (const [k, v] of [...byOp].sort((a, b) => b[1] - a[1])) console.log(`  ${k.padEnd(36)} ${mb(v).padStart(6)} MB`);
    console.log('largest by op and shape:');
    for (const [k, v] of [...byShape].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${k.padEnd(50)} ${mb(v).padStart(6)} MB`);
  });
}
