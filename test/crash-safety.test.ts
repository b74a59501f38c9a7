// Nothing lost, nothing garbled (issue 13): a kill -9 at any point of a checkpoint save leaves a
// run that resumes exactly; a lock held by a zombie is taken over; mismatched masks, oversized
// flags and unwritable output folders are errors that name the problem.
import { strict as assert } from 'assert';
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import * as sc from '../src';
import { fit, FitOptions, ensureSyntheticData, resolveConfig } from '../src/train';

const root = path.resolve(__dirname, '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-crash-'));
const data = path.join(tmp, 'data');

function scalpel(args: string[], env: Record<string, string> = {}): { code: number | null; signal: string | null; stdout: string; stderr: string } {
  // node itself (tsx as a loader, no npx in between), so an injected SIGKILL is this child's signal.
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, SCALPEL_DEBUG: '', ...env } });
  return { code: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

const trainArgs = (out: string) => ['train', '--model', 'tiny', '--model-opts', '{"width":4}', '--data', data, '--size', '32', '--epochs', '3', '--batch', '4',
  '--workers', '0', '--seed', '3', '--overlays', '0', '--out', out, '--no-progress'];

function weightBytes(file: string): Map<string, Buffer> {
  const { tensors } = sc.loadSafetensors(file);
  const out = new Map<string, Buffer>();
  for (const [k, t] of Object.entries(tensors)) {
    const a = t.toArray() as Float32Array;
    out.set(k, Buffer.from(a.buffer, a.byteOffset, a.byteLength));
    t.dispose();
  }
  return out;
}

function assertSameWeights(a: string, b: string): void {
  const wa = weightBytes(a), wb = weightBytes(b);
  assert.deepEqual([...wa.keys()], [...wb.keys()]);
  for (const [k, v] of wa) assert.ok(v.equals(wb.get(k)!), `tensor ${k} differs`);
}

const temporaries = (dir: string) => fs.readdirSync(dir).filter((f) => f.endsWith('.tmp') || f.endsWith('.commit.json'));

describe('crash safety (issue 13)', function () {
  this.timeout(180000);
  before(async () => {
    await ensureSyntheticData(data, 12, 32);
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  describe('kill -9 inside a checkpoint save, then --resume', () => {
    const ref = path.join(tmp, 'ref');
    before(() => {
      const r = scalpel(trainArgs(ref));
      assert.equal(r.code, 0, r.stderr);
    });

    it('after the commit point (between two renames): the next run finishes the save and resumes exactly', () => {
      const out = path.join(tmp, 'after-commit');
      // The second save of 'last' (end of epoch 2), killed after its first rename.
      const killed = scalpel(trainArgs(out), { SCALPEL_CRASH_AT: 'last:rename-1#2' });
      assert.equal(killed.signal, 'SIGKILL', `expected the injected kill (stderr: ${killed.stderr})`);
      assert.ok(fs.existsSync(path.join(out, '.last.commit.json')), 'the interrupted save left its journal');
      const r = scalpel(['train', '--resume', out, '--no-progress']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /finished the interrupted save of 'last' \(2 of 3 files were still to be renamed\)/);
      assert.match(r.stdout, /epoch 3\/3/);
      assert.doesNotMatch(r.stdout, /epoch 2\/3/, 'epoch 2 was saved, so it is not trained again');
      assertSameWeights(path.join(out, 'last.safetensors'), path.join(ref, 'last.safetensors'));
      assert.deepEqual(temporaries(out), []);
    });

    it('before the commit point: the previous checkpoint is intact, temporaries are removed, resume is exact', () => {
      const out = path.join(tmp, 'before-commit');
      const killed = scalpel(trainArgs(out), { SCALPEL_CRASH_AT: 'last:before-commit#2' });
      assert.equal(killed.signal, 'SIGKILL', `expected the injected kill (stderr: ${killed.stderr})`);
      assert.ok(temporaries(out).length >= 3, `staged files expected, found ${temporaries(out).join(', ')}`);
      assert.equal(JSON.parse(fs.readFileSync(path.join(out, 'last.json'), 'utf8')).epoch, 1);
      const r = scalpel(['train', '--resume', out, '--no-progress']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /removed \d+ temporary file\(s\) \([\d.]+ MB\) left by an interrupted run/);
      assert.match(r.stdout, /epoch 2\/3/);
      assertSameWeights(path.join(out, 'last.safetensors'), path.join(ref, 'last.safetensors'));
      assert.deepEqual(temporaries(out), []);
    });
  });

  it('a lock held by a killed process that is still a zombie is taken over', async function () {
    if (process.platform !== 'linux') this.skip(); // zombies are read from /proc
    // `sh` starts a short child, then becomes `sleep 30`, which never reaps it: the child stays a zombie.
    const parent = spawn('sh', ['-c', 'sleep 0.1 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const pid = await new Promise<number>((resolve) => parent.stdout!.once('data', (d) => resolve(Number(String(d).trim()))));
      const state = () => fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
      for (let i = 0; i < 100 && state() !== 'Z'; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(state(), 'Z', 'the test needs a zombie');
      const out = path.join(tmp, 'zombie');
      fs.mkdirSync(out);
      fs.writeFileSync(path.join(out, '.lock'), `${pid}\n`);
      const opts: FitOptions = { model: 'tiny', modelOptions: { width: 4 }, data, size: 32, batch: 4, epochs: 1, workers: 0, overlays: 0, out, verbose: false, progress: false };
      await fit(opts);
      assert.ok(!fs.existsSync(path.join(out, '.lock')));
      // A live holder (this process's parent) still locks it, also when the lock has a start time.
      const stat = fs.readFileSync(`/proc/${process.ppid}/stat`, 'utf8');
      fs.writeFileSync(path.join(out, '.lock'), `${process.ppid} ${stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]}\n`);
      await assert.rejects(fit({ ...opts, resume: out }), /another training \(pid \d+\) is using this run folder/);
      // The same pid with another start time is a reused pid, not the holder.
      fs.writeFileSync(path.join(out, '.lock'), `${process.ppid} 1\n`);
      await fit({ ...opts, resume: out, epochs: 2 });
    } finally {
      parent.kill('SIGKILL');
    }
  });

  it('a mask whose size differs from its image is an error naming both files (--resize-masks allows it)', async () => {
    const d = path.join(tmp, 'mismatch');
    fs.cpSync(data, d, { recursive: true });
    const mask = path.join(d, 'masks', fs.readdirSync(path.join(d, 'masks')).sort()[3]);
    await sharp(Buffer.alloc(10 * 12, 255), { raw: { width: 10, height: 12, channels: 1 } }).png().toFile(mask + '.new.png');
    fs.renameSync(mask + '.new.png', mask);
    const opts: FitOptions = { model: 'tiny', modelOptions: { width: 4 }, data: d, size: 32, batch: 4, epochs: 1, workers: 0, overlays: 0, out: path.join(tmp, 'mm-run'), verbose: false, progress: false };
    await assert.rejects(fit(opts), (e: Error) => e.message.includes(mask) && /mask is 10x12 but its image .*\.png is 32x32/.test(e.message) && /--resize-masks/.test(e.message));
    await fit({ ...opts, resizeMasks: true });
  });

  it('flags that size memory are bounded, naming the flag and why', () => {
    const r = scalpel(['train', '--size', '100000']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--size 100000 is above the limit of 8192 \(each image is resized/);
    assert.doesNotMatch(r.stderr, /Invalid typed array length/);
    assert.match(scalpel(['train', '--batch', '1000000']).stderr, /--batch 1000000 is above the limit of 4096/);
    assert.match(scalpel(['train', '--workers', '100000']).stderr, /--workers must be between 0 and 256/);
    assert.throws(() => resolveConfig({ size: 8192, batch: 64 }), /a batch of 64 x 3 x 8192 x 8192 is 1\.29e\+10 values, above the 2e\+9/);
  });

  describe('an output folder that cannot be created', () => {
    const ro = path.join(tmp, 'ro');
    let how: 'mount' | 'chmod' | null = null;
    before(function () {
      fs.mkdirSync(ro);
      if (process.getuid?.() === 0) {
        // root writes through permission bits, so only a read-only mount makes the folder unwritable.
        if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', ro]).status === 0) how = 'mount';
      } else {
        fs.chmodSync(ro, 0o555);
        how = 'chmod';
      }
      if (!how) {
        console.log('      (skipped: needs a read-only mount, which this root user may not make here)');
        this.skip();
      }
    });
    after(() => {
      if (how === 'mount') spawnSync('umount', [ro]);
      if (how === 'chmod') fs.chmodSync(ro, 0o755);
    });

    it('train, predict and evaluate say which folder and why (EROFS / EACCES)', () => {
      const why = how === 'mount' ? /read-only file system \(EROFS\)/ : /permission denied \(EACCES\)/;
      const t = scalpel(['train', '--data', data, '--size', '32', '--epochs', '1', '--out', path.join(ro, 'run')]);
      assert.equal(t.code, 1, t.stderr);
      assert.match(t.stderr, new RegExp(`cannot create folder ${path.join(ro, 'run')}: ${ro} `));
      assert.match(t.stderr, why);
      assert.doesNotMatch(t.stderr, /ENOENT/);
      const run = path.join(tmp, 'ref');
      const p = scalpel(['predict', '--checkpoint', run, '--input', path.join(data, 'images'), '--out', path.join(ro, 'pred')]);
      assert.equal(p.code, 1, p.stderr);
      assert.match(p.stderr, why);
      const e = scalpel(['evaluate', '--checkpoint', run, '--data', data, '--split', 'val', '--json', path.join(ro, 'sub', 'eval.json')]);
      assert.equal(e.code, 1, e.stderr);
      assert.match(e.stderr, why);
    });
  });
});
