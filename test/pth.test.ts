// sc.loadPth: PyTorch checkpoints (torch.save ZIP format) read without Python. Fixtures come from
// tools/pytorch/make_pth_fixtures.py (PyTorch 1.13); damaged and hostile files are built here.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import * as sc from '../src';
import { crc32, readZipDirectory } from '../src/io/zip';
import { fit, ensureSyntheticData, loadModelCheckpoint, UserError } from '../src/train';

const DIR = path.join(__dirname, 'fixtures', 'pth');
const fx = (name: string) => path.join(DIR, name);
const EXPECTED = JSON.parse(fs.readFileSync(fx('expected.json'), 'utf8'));
const DT: Record<string, string> = { float32: 'float32', float64: 'float64', int64: 'int64', int32: 'int32', uint8: 'uint8' };

function num(v: number | string): number {
  return typeof v === 'string' ? Number(v.replace('inf', 'Infinity')) : v;
}

/** A stored (uncompressed) ZIP of the given entries, as torch.save writes (no alignment padding). */
function makeZip(entries: [string, Buffer][]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let off = 0;
  for (const [name, data] of entries) {
    const n = Buffer.from(name);
    const crc = crc32(data);
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(data.length, 18);
    lh.writeUInt32LE(data.length, 22);
    lh.writeUInt16LE(n.length, 26);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(20, 4);
    ch.writeUInt16LE(20, 6);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(data.length, 20);
    ch.writeUInt32LE(data.length, 24);
    ch.writeUInt16LE(n.length, 28);
    ch.writeUInt32LE(off, 42);
    locals.push(lh, n, data);
    centrals.push(ch, n);
    off += 30 + n.length + data.length;
  }
  const cd = Buffer.concat(centrals);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(entries.length, 8);
  eocd.writeUInt16LE(entries.length, 10);
  eocd.writeUInt32LE(cd.length, 12);
  eocd.writeUInt32LE(off, 16);
  return Buffer.concat([...locals, cd, eocd]);
}

// Pickle opcodes, written by hand (protocol 2, as torch.save).
const P = {
  str: (s: string) => {
    const b = Buffer.from(s);
    const h = Buffer.alloc(5);
    h[0] = 0x58; // BINUNICODE
    h.writeUInt32LE(b.length, 1);
    return Buffer.concat([h, b]);
  },
  int: (v: number) => Buffer.from([0x4b, v]), // BININT1
  global: (m: string, n: string) => Buffer.from(`c${m}\n${n}\n`),
  tuple: (...items: Buffer[]) => Buffer.concat([Buffer.from([0x28]), ...items, Buffer.from([0x74])]),
};
const PROTO = Buffer.from([0x80, 0x02]);
const STOP = Buffer.from([0x2e]);

/** data.pkl of OrderedDict({'w': tensor}) over storage '0' of `type` with `numel` elements. */
function tensorPickle({ type = 'FloatStorage', numel = 4, offset = 0, size = [4], stride = [1] } = {}): Buffer {
  const pid = P.tuple(P.str('storage'), P.global('torch', type), P.str('0'), P.str('cpu'), P.int(numel));
  const args = P.tuple(Buffer.concat([pid, Buffer.from([0x51])]), P.int(offset), P.tuple(...size.map(P.int)), P.tuple(...stride.map(P.int)),
    Buffer.from([0x89, 0x4e])); // requires_grad False, backward_hooks None
  return Buffer.concat([PROTO, P.global('collections', 'OrderedDict'), Buffer.from([0x29, 0x52, 0x28]), P.str('w'),
    P.global('torch._utils', '_rebuild_tensor_v2'), args, Buffer.from([0x52, 0x75]), STOP]);
}

function f32le(vals: number[], bigEndian = false): Buffer {
  const b = Buffer.alloc(vals.length * 4);
  vals.forEach((v, i) => (bigEndian ? b.writeFloatBE(v, i * 4) : b.writeFloatLE(v, i * 4)));
  return b;
}

const decode = (buf: Buffer, opts: sc.LoadPthOptions = {}) => sc.decodePth(buf, { source: 'crafted.pth', ...opts });

describe('loadPth: PyTorch checkpoints', function () {
  this.timeout(60000);

  it('reads every dtype torch.save writes, with views copied contiguous', () => {
    const sd = sc.loadPth(fx('basic.pth'));
    const want = EXPECTED.basic as Record<string, { dtype: string; shape: number[]; values: (number | string)[] }>;
    assert.deepEqual(Object.keys(sd), Object.keys(want), 'names in file order');
    // float16 / bfloat16 widen to float32, int16 / int8 to int32, bool to uint8.
    const dtypeOf: Record<string, string> = { f16: 'float32', bf16: 'float32', i16: 'int32', i8: 'int32', mask: 'uint8' };
    for (const [k, w] of Object.entries(want)) {
      const t = sd[k];
      assert.equal(t.dtype, dtypeOf[k] ?? DT[w.dtype], k);
      assert.deepEqual(t.shape, w.shape, k);
      assert.ok(t.isContiguous(), `${k} is contiguous`);
      const got = Array.from(t.toArray() as ArrayLike<number | bigint>, Number);
      const exp = w.values.map(num);
      if (t.dtype === 'float32') assert.deepEqual(got, exp.map(Math.fround), k);
      else assert.deepEqual(got, exp, k);
    }
    // int64 beyond 2^32 survives exactly.
    assert.equal(sd.num_batches_tracked.toArray()[0], 123456789012n);
    // Views of one storage: the transpose, a row with offset 5 and a strided column.
    assert.deepEqual(Array.from(sd.base_t.toArray() as Float32Array), [-1, 1, 3, -0.5, 1.5, 3.5, 0, 2, 4, 0.5, 2.5, 4.5]);
    assert.deepEqual(Array.from(sd.base_row.toArray() as Float32Array), [1.5, 2, 2.5]);
    assert.deepEqual(Array.from(sd.base_col.toArray() as Float32Array), [0, 2, 4]);
    // A subnormal and the infinity of float16 are converted exactly.
    assert.deepEqual(Array.from(sd.f16.toArray() as Float32Array).slice(5, 8), [2 ** -24, Infinity, -0]);
    sc.dispose(sd);
  });

  it("a real model's state dict: model.loadStateDict(sc.loadPth(f)) gives PyTorch's output", () => {
    const ref = EXPECTED.cmunext_tiny;
    const sd = sc.loadPth(fx('cmunext_tiny.pth'));
    // The cmunext-s architecture with narrow stages (a few KB of weights).
    const m = new sc.models.CMUNeXt(1, 1, { dims: [2, 2, 4, 4, 4], depths: [1, 1, 1, 1, 1], kernels: [3, 3, 3, 3, 3] });
    assert.deepEqual(Object.entries(sd).map(([k, t]) => [k, t.shape, t.dtype]), ref.entries);
    assert.deepEqual(Object.keys(m.stateDict()), Object.keys(sd));
    const report = m.loadStateDict(sd);
    assert.deepEqual(report, { missing: [], unexpected: [], mismatched: [] });
    m.eval();
    const n = 16 * 16;
    const x = sc.tensor(Array.from({ length: n }, (_, i) => Math.fround(Math.sin(0.37 * i) * 0.5 + 0.5)), [1, 1, 16, 16]);
    const y = sc.noGrad(() => m.forward(x) as sc.Tensor);
    assert.deepEqual(y.shape, ref.output.shape);
    const got = Array.from(y.toArray() as Float32Array);
    const want = ref.output.values as number[];
    const maxAbs = Math.max(...want.map(Math.abs));
    const err = Math.max(...got.map((v, i) => Math.abs(v - want[i])));
    assert.ok(err < 1e-5 * Math.max(1, maxAbs), `max error ${err}`);
    // Weights that differ from the file's give another output (the comparison can fail).
    const other = new sc.models.CMUNeXt(1, 1, { dims: [2, 2, 4, 4, 4], depths: [1, 1, 1, 1, 1], kernels: [3, 3, 3, 3, 3] }).eval();
    const y2 = Array.from((sc.noGrad(() => other.forward(x) as sc.Tensor)).toArray() as Float32Array);
    assert.ok(Math.max(...y2.map((v, i) => Math.abs(v - want[i]))) > 1e-3);
    sc.dispose(sd);
    m.dispose();
    other.dispose();
  });

  it("unwraps {'state_dict': ...} (with a note) and strips 'module.' on request", () => {
    const small = () => new sc.nn.Sequential(new sc.nn.Conv2d(1, 2, 3), new sc.nn.BatchNorm2d(2));
    const want = EXPECTED.small as Record<string, { values: number[] }>;
    const notes: string[] = [];
    const sd = sc.loadPth(fx('wrapped.pth'), { onNote: (n) => notes.push(n) });
    assert.equal(notes.length, 1);
    assert.match(notes[0], /wrapped\.pth: using the checkpoint's 'state_dict' entry as the state dict \(other keys: epoch, best_dice, optimizer\)/);
    const m = small();
    m.loadStateDict(sd);
    assert.deepEqual(Array.from(m.stateDict()['0.weight'].toArray() as Float32Array), want['0.weight'].values.map(Math.fround));
    assert.equal(m.stateDict()['1.num_batches_tracked'].toArray()[0], 5n);
    // The explicit key gives the same; a key that is not a state dict or is absent is an error.
    const same = sc.loadPth(fx('wrapped.pth'), { key: 'state_dict' });
    assert.deepEqual(Object.keys(same), Object.keys(sd));
    assert.throws(() => sc.loadPth(fx('wrapped.pth'), { key: 'optimizer' }), /wrapped\.pth: the checkpoint's 'optimizer' is not a dict of name -> tensor \(state: dict \(0 entries\), param_groups: list \(1\)\)/);
    assert.throws(() => sc.loadPth(fx('wrapped.pth'), { key: 'ema' }), /wrapped\.pth: the checkpoint has no key 'ema' \(its keys: state_dict: dict \(7 entries\), epoch: number 7, best_dice: number 0\.5, optimizer: dict \(2 entries\)\)/);

    // DataParallel's 'module.' prefix: kept (with a hint) unless stripPrefix asks.
    const hints: string[] = [];
    const pre = sc.loadPth(fx('module_prefix.pth'), { onNote: (n) => hints.push(n) });
    assert.ok(Object.keys(pre).every((k) => k.startsWith('module.')));
    assert.match(hints[0], /every name starts with 'module\.' \(saved from DataParallel\); pass stripPrefix: 'module\.'/);
    assert.throws(() => small().loadStateDict(pre), /unexpected: module\.0\.weight/);
    const stripped = sc.loadPth(fx('module_prefix.pth'), { stripPrefix: 'module.' });
    small().loadStateDict(stripped);
    assert.deepEqual(Object.keys(stripped), Object.keys(want));
    sc.dispose([...Object.values(sd), ...Object.values(same), ...Object.values(pre), ...Object.values(stripped)]);
  });

  it('refuses a pickle that names os.system, without running anything', () => {
    assert.throws(() => sc.loadPth(fx('malicious.pth')),
      /malicious\.pth: malicious\/data\.pkl: refusing to load: the pickle names the global 'os\.system', which is not on the allow-list .*No code from the file was executed/);
    // Other ways of naming code: STACK_GLOBAL, the Python 2 builtins, a class for NEWOBJ.
    const marker = path.join(os.tmpdir(), `scalpel-pth-pwned-${process.pid}`);
    const cmd = P.str(`touch ${marker}`);
    const stackGlobal = Buffer.concat([PROTO, P.str('builtins'), P.str('eval'), Buffer.from([0x93]), cmd, Buffer.from([0x85, 0x52]), STOP]);
    assert.throws(() => decode(makeZip([['a/data.pkl', stackGlobal]])), /crafted\.pth: a\/data\.pkl: refusing to load: the pickle names the global 'builtins\.eval'/);
    const py2 = Buffer.concat([PROTO, P.global('__builtin__', 'eval'), cmd, Buffer.from([0x85, 0x52]), STOP]);
    assert.throws(() => decode(makeZip([['a/data.pkl', py2]])), /the global '__builtin__\.eval'/);
    const sub = Buffer.concat([PROTO, P.global('subprocess', 'Popen'), Buffer.from([0x29, 0x81]), STOP]);
    assert.throws(() => decode(makeZip([['a/data.pkl', sub]])), /the global 'subprocess\.Popen'/);
    // INST names a class inline (protocol 0): refused as an opcode torch.save never writes.
    const inst = Buffer.concat([PROTO, Buffer.from('(ios\nsystem\n'), STOP]);
    assert.throws(() => decode(makeZip([['a/data.pkl', inst]])), /unsupported pickle opcode INST \(0x69\)/);
    // An allow-listed storage type cannot be called either.
    const callStorage = Buffer.concat([PROTO, P.global('torch', 'FloatStorage'), Buffer.from([0x29, 0x52]), STOP]);
    assert.throws(() => decode(makeZip([['a/data.pkl', callStorage]])), /torch\.FloatStorage cannot be applied/);
    // Names from the file are printed with control characters escaped (no terminal escapes).
    const esc = Buffer.concat([PROTO, P.global('os\x1b[2J', 'system'), STOP]);
    assert.throws(() => decode(makeZip([['a/data.pkl', esc]])), (e: Error) => e.message.includes("the global 'os\\x1b[2J.system'") && !e.message.includes('\x1b'));
    assert.ok(!fs.existsSync(marker));
  });

  it('legacy, wrong-magic, truncated and damaged files are clear errors naming the file', () => {
    assert.throws(() => sc.loadPth(fx('legacy.pth')), /legacy\.pth: a legacy \(pre-1\.6, non-ZIP\) PyTorch checkpoint, which is not supported: load it with torch\.load in PyTorch >= 1\.6 and re-save it/);
    assert.throws(() => sc.loadPth(fx('expected.json')), /expected\.json: not a PyTorch checkpoint: torch\.save \(PyTorch >= 1\.6\) writes a ZIP archive starting with 50 4b 03 04 \('PK'\), this file starts with 7b 22 64 6f/);
    assert.throws(() => decode(Buffer.alloc(0)), /crafted\.pth: not a PyTorch checkpoint: .*starts with nothing \(empty file\)/);
    assert.throws(() => sc.loadPth(fx('nope.pth')), /cannot read .*nope\.pth: no such file/);
    const basic = fs.readFileSync(fx('basic.pth'));
    assert.throws(() => decode(basic.subarray(0, basic.length >> 1)), /crafted\.pth: damaged ZIP archive: no end-of-central-directory record \(the file is truncated or not a ZIP archive\)/);
    // A flipped byte in a tensor's data fails that entry's CRC-32.
    const dir = readZipDirectory(basic, 'basic.pth');
    const e = dir.get('basic/data/0')!;
    const flipped = Buffer.from(basic);
    flipped[e.dataOffset + 1] ^= 0x40;
    assert.throws(() => decode(flipped), /crafted\.pth: damaged ZIP archive: entry 'basic\/data\/0' \(\d+ bytes at offset \d+\) fails its CRC-32 check/);
    // A torch.jit.save archive.
    assert.throws(() => decode(makeZip([['m/constants.pkl', Buffer.from([0x80, 2, 0x29, 0x2e])], ['m/code/m.py', Buffer.from('x')]])), /a TorchScript archive \(torch\.jit\.save\)/);
    assert.throws(() => decode(makeZip([['m/other.txt', Buffer.from('x')]])), /not a torch\.save archive: expected one '<archive>\/data\.pkl' entry, found 0 \(entries: m\/other\.txt\)/);
  });

  it('every truncation and (unchecked) byte flip of a real file is an Error naming it, never a crash or hang', () => {
    const basic = fs.readFileSync(fx('basic.pth'));
    const t0 = Date.now();
    let ok = 0;
    let failed = 0;
    const check = (buf: Buffer, what: string, verifyChecksums: boolean) => {
      try {
        sc.dispose(decode(buf, { verifyChecksums }));
        ok++;
      } catch (e) {
        assert.ok(e instanceof Error && e.message.startsWith('crafted.pth: '), `${what}: ${(e as Error).stack}`);
        failed++;
      }
    };
    for (let len = 0; len < basic.length; len += 7) check(basic.subarray(0, len), `truncated to ${len}`, true);
    // Flips with the CRC check off reach the ZIP structures and the pickle parser.
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (let k = 0; k < 400; k++) {
      const b = Buffer.from(basic);
      const at = Math.floor(rnd() * b.length);
      b[at] = Math.floor(rnd() * 256);
      check(b, `byte ${at} set`, false);
    }
    assert.ok(failed > basic.length / 7, `${failed} failures`);
    assert.ok(ok > 0, 'some flips land in data bytes and still load');
    assert.ok(Date.now() - t0 < 30000);
  });

  it('hand-built pickles: bounds of views, storages and the unpickler', () => {
    const file = (pkl: Buffer, data: Buffer | null = f32le([1, 2, 3, 4]), extra: [string, Buffer][] = []) =>
      makeZip([['a/data.pkl', pkl], ...(data ? [['a/data/0', data] as [string, Buffer]] : []), ...extra]);
    // A well-formed one loads (the helpers are right), then each fault is named.
    assert.deepEqual(Array.from(decode(file(tensorPickle())).w.toArray() as Float32Array), [1, 2, 3, 4]);
    assert.deepEqual(Array.from(decode(file(tensorPickle({ offset: 1, size: [2, 2], stride: [0, 2] }))).w.toArray() as Float32Array), [2, 4, 2, 4]);
    assert.throws(() => decode(file(tensorPickle({ size: [5] }))), /crafted\.pth: tensor 'w' \(size \[5\], stride \[1\], offset 0\) reaches element 4 of storage '0', which has 4/);
    assert.throws(() => decode(file(tensorPickle({ offset: 2, size: [2, 2], stride: [1, 1] }))), /reaches element 4 of storage '0'/);
    assert.throws(() => decode(file(tensorPickle({ numel: 5 }))), /persistent id at offset \d+: entry 'a\/data\/0' holds 16 bytes but storage '0' is 5 x float32 \(20 bytes\)/);
    assert.throws(() => decode(file(tensorPickle(), null)), /storage '0' has no entry 'a\/data\/0' in the archive/);
    assert.throws(() => decode(file(tensorPickle({ type: 'QUInt8Storage' }))), /the global 'torch\.QUInt8Storage', which is not on the allow-list/);
    // Big-endian data with a byteorder entry is swapped; an unknown byte order is an error.
    assert.deepEqual(Array.from(decode(file(tensorPickle(), f32le([1, -2, 3.5, 4], true), [['a/byteorder', Buffer.from('big')]])).w.toArray() as Float32Array), [1, -2, 3.5, 4]);
    assert.throws(() => decode(file(tensorPickle(), undefined, [['a/byteorder', Buffer.from('middle')]])), /entry 'a\/byteorder' says the byte order is "middle"/);
    // The unpickler: truncation, an oversized length, the memo, the stack and MARK depth.
    const good = tensorPickle();
    assert.throws(() => decode(file(good.subarray(0, good.length - 1))), /a\/data\.pkl: the pickle ends without a STOP opcode \(truncated\?\)/);
    assert.throws(() => decode(file(good.subarray(0, 33))), /a\/data\.pkl: the pickle ends inside an opcode's argument/);
    assert.throws(() => decode(file(Buffer.concat([PROTO, Buffer.from([0x58, 0xff, 0xff, 0xff, 0xff, 0x41]), STOP]))), /ends inside an opcode's argument \(needs 4294967295 bytes at offset 7, 2 left/);
    assert.throws(() => decode(file(Buffer.concat([PROTO, Buffer.from([0x68, 7]), STOP]))), /memo entry 7 is read before it is written \(opcode at offset 2\)/);
    assert.throws(() => decode(file(Buffer.concat([PROTO, Buffer.from([0x30]), STOP]))), /stack underflow \(opcode at offset 2\)/);
    assert.throws(() => decode(file(Buffer.concat([PROTO, Buffer.alloc(70000, 0x28), STOP]))), /more than 65536 nested MARKs/);
    assert.throws(() => decode(file(Buffer.concat([PROTO, Buffer.from([0x4e]), Buffer.alloc((1 << 20) + 1, 0x32), STOP]))), /the stack exceeds 1048576 items/);
    assert.throws(() => decode(file(Buffer.concat([PROTO, Buffer.from([0xff]), STOP]))), /unknown pickle opcode 0xff/);
    assert.throws(() => decode(file(Buffer.concat([PROTO, Buffer.from([0x5d]), STOP]))), /crafted\.pth: the checkpoint holds a list \(0\), not a dict of tensors/);
    assert.throws(() => decode(file(Buffer.concat([PROTO, Buffer.from([0x7d, 0x28]), P.str('epoch'), P.int(3), Buffer.from([0x75]), STOP]))),
      /the checkpoint is a dict that is not a state dict \(name -> tensor\) and has none of the keys state_dict, model_state_dict, model, net holding one \(its keys: epoch: number 3\)/);
  });

  describe('train --init-weights and scalpel convert', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-pth-'));
    const data = path.join(tmp, 'data');
    before(async () => {
      await ensureSyntheticData(data, 8, 32);
    });
    after(() => fs.rmSync(tmp, { recursive: true, force: true }));
    const base = { model: 'tiny', modelOptions: { width: 4 }, data, size: 32, batch: 4, epochs: 1, workers: 0, overlays: 0, progress: false, verbose: true } as const;

    it('fit starts from a .pth (wrapper key and prefix handled) and from a .safetensors', async () => {
      const lines: string[] = [];
      // lr 1e-30 (plain SGD, no decay): steps far below float32 resolution, so the checkpoint keeps the initial weights.
      const opts = { ...base, optimizer: 'sgd' as const, lr: 1e-30, momentum: 0, weightDecay: 0, schedule: 'constant' };
      await fit({ ...opts, initWeights: fx('tiny_seg.pth'), initStripPrefix: 'module.', out: path.join(tmp, 'pth'), log: (l) => lines.push(l) });
      assert.ok(lines.some((l) => /init-weights: .*tiny_seg\.pth: using the checkpoint's 'model' entry as the state dict \(other keys: epoch\)/.test(l)), lines.join('\n'));
      assert.ok(lines.some((l) => /init-weights: initialised tiny from .*tiny_seg\.pth \(16 tensors\)/.test(l)), lines.join('\n'));
      const { model } = loadModelCheckpoint(path.join(tmp, 'pth', 'best.safetensors'));
      const sd = model.stateDict();
      for (const [k, w] of Object.entries(EXPECTED.tiny_seg as Record<string, { shape: number[]; head: number[]; sum: number }>)) {
        assert.deepEqual(sd[k].shape, w.shape, k);
        assert.deepEqual(Array.from(sd[k].toArray() as Float32Array).slice(0, 4), w.head.map(Math.fround), k);
        const sum = Array.from(sd[k].toArray() as Float32Array).reduce((a, b) => a + b, 0);
        assert.ok(Math.abs(sum - w.sum) < 1e-5 * Math.max(1, Math.abs(w.sum)), `${k}: ${sum} vs ${w.sum}`);
      }
      // The same weights from .safetensors (scalpel convert's output format).
      const st = path.join(tmp, 'tiny.safetensors');
      sc.saveSafetensors(st, sd);
      await fit({ ...opts, initWeights: st, out: path.join(tmp, 'st'), log: () => {} });
      const again = loadModelCheckpoint(path.join(tmp, 'st', 'best.safetensors')).model.stateDict();
      assert.deepEqual(Array.from(again['14.weight'].toArray() as Float32Array), Array.from(sd['14.weight'].toArray() as Float32Array));
      // A file for another network, a missing prefix strip, and conflicting flags are errors.
      await assert.rejects(fit({ ...base, initWeights: fx('cmunext_tiny.pth'), out: path.join(tmp, 'bad1') }),
        (e: Error) => e instanceof UserError && /cmunext_tiny\.pth: loadStateDict: the state dict does not match the model \(missing: 0\.weight/.test(e.message));
      await assert.rejects(fit({ ...base, initWeights: fx('tiny_seg.pth'), out: path.join(tmp, 'bad2') }),
        (e: Error) => e instanceof UserError && /unexpected: module\.0\.weight.*every name starts with 'module\.'/.test(e.message));
      await assert.rejects(fit({ ...base, initWeights: fx('malicious.pth'), out: path.join(tmp, 'bad3') }),
        (e: Error) => e instanceof UserError && /the global 'os\.system'/.test(e.message));
      await assert.rejects(fit({ ...base, initWeights: st, initKey: 'model', out: path.join(tmp, 'bad4') }), /--init-key and --init-strip-prefix apply to PyTorch checkpoints/);
      model.dispose();
    });

    it('scalpel convert writes the state dict as .safetensors; a hostile file is one error line', () => {
      const cli = (...args: string[]) => {
        const r = spawnSync('npx', ['tsx', 'src/cli/main.ts', ...args], { cwd: path.resolve(__dirname, '..'), encoding: 'utf8', env: { ...process.env, SCALPEL_DEBUG: '' } });
        return { code: r.status, stdout: r.stdout, stderr: (r.stderr ?? '').split('\n').filter((l) => l && !l.startsWith('npm warn')).join('\n') };
      };
      const out = path.join(tmp, 'small.safetensors');
      const r = cli('convert', '--pth', fx('wrapped.pth'), '--out', out);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /wrote .*small\.safetensors: 7 tensors, 29 values \(float32, int64\)/);
      assert.match(r.stderr, /^scalpel: note: .*wrapped\.pth: using the checkpoint's 'state_dict' entry/);
      const { tensors, metadata } = sc.loadSafetensors(out);
      assert.deepEqual(metadata, { format: 'pt', source: 'wrapped.pth' });
      const ref = sc.loadPth(fx('wrapped.pth'));
      assert.deepEqual(Object.keys(tensors), Object.keys(ref));
      for (const k of Object.keys(ref)) assert.deepEqual(Array.from(tensors[k].toArray() as ArrayLike<unknown>), Array.from(ref[k].toArray() as ArrayLike<unknown>), k);
      const bad = cli('convert', '--pth', fx('malicious.pth'), '--out', path.join(tmp, 'never.safetensors'));
      assert.equal(bad.code, 1);
      assert.equal(bad.stderr.split('\n').length, 1, bad.stderr);
      assert.match(bad.stderr, /^scalpel: .*malicious\.pth: malicious\/data\.pkl: refusing to load: the pickle names the global 'os\.system'/);
      assert.ok(!fs.existsSync(path.join(tmp, 'never.safetensors')));
      const flags = cli('train', '--init-strip-prefix', 'module.', '--epochs', '1');
      assert.equal(flags.code, 2);
      assert.match(flags.stderr, /^scalpel: --init-key and --init-strip-prefix need --init-weights <file>$/);
    });
  });
});
