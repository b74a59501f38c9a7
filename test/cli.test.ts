// The `scalpel` CLI end to end (train -> evaluate -> predict on a tiny synthetic set) and its errors.
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ensureSyntheticData } from '../src/train';

const root = path.resolve(__dirname, '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-cli-'));

function scalpel(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync('npx', ['tsx', 'src/cli/main.ts', ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, SCALPEL_DEBUG: '' } });
  // npx itself may print configuration warnings; they are not ours.
  const stderr = (r.stderr ?? '').split('\n').filter((l) => l && !l.startsWith('npm warn')).join('\n');
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr };
}

function assertOneLineError(r: { code: number; stderr: string }, code: number, re: RegExp): void {
  assert.equal(r.code, code, `exit code (stderr: ${r.stderr})`);
  const lines = r.stderr.split('\n').filter((l) => l.trim() && !/^\(add --help/.test(l));
  assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`);
  assert.match(lines[0], re);
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
}

describe('cli', function () {
  this.timeout(90000);
  const run = path.join(tmp, 'run');
  const data = path.join(tmp, 'data');
  before(async () => {
    await ensureSyntheticData(data, 16, 32);
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('train --model segformer-b0 for 1 epoch at 32 px, then evaluate the rebuilt checkpoint', () => {
    const segRun = path.join(tmp, 'segformer');
    const t = scalpel('train', '--model', 'segformer-b0', '--data', data, '--size', '32', '--epochs', '1', '--batch', '4', '--workers', '0', '--out', segRun, '--no-progress');
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /training segformer-b0 \(3\.714 M params\)/);
    assert.match(t.stdout, /epoch 1\/1 .*val dice/);
    const e = scalpel('evaluate', '--checkpoint', segRun, '--data', data, '--split', 'val', '--json', path.join(tmp, 'seg-eval.json'));
    assert.equal(e.code, 0, e.stderr);
    assert.ok(JSON.parse(fs.readFileSync(path.join(tmp, 'seg-eval.json'), 'utf8')).count > 0);
  });

  it('train 1 epoch, then evaluate and predict with the checkpoint', () => {
    const t = scalpel('train', '--model', 'tiny', '--model-opts', '{"width":4}', '--data', data, '--size', '32', '--epochs', '1', '--batch', '4', '--workers', '0', '--out', run, '--no-progress');
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /epoch 1\/1 .*val dice/);
    assert.match(t.stdout, /data wait/);
    for (const f of ['best.safetensors', 'last.json', 'log.jsonl', 'log.csv', 'curves.png']) assert.ok(fs.existsSync(path.join(run, f)), f);

    const e = scalpel('evaluate', '--checkpoint', path.join(run, 'best.safetensors'), '--data', data, '--split', 'val', '--json', path.join(tmp, 'eval.json'));
    assert.equal(e.code, 0, e.stderr);
    assert.match(e.stdout, /dice\s+\d\.\d{4}\s+\d\.\d{4}/);
    const j = JSON.parse(fs.readFileSync(path.join(tmp, 'eval.json'), 'utf8'));
    assert.equal(j.split, 'val');
    assert.ok(j.global.dice >= 0 && j.perImage.dice >= 0 && j.count > 0);
    // ASSD / NSD in the summary with sample stds, and the per-case CSV next to the JSON by default.
    assert.equal(j.nsdTolerance, 2);
    assert.ok(Number.isFinite(j.perImage.assd) && Number.isFinite(j.global.nsd) && Number.isFinite(j.perImageStd.dice));
    const rows = fs.readFileSync(path.join(tmp, 'eval.csv'), 'utf8').trimEnd().split('\n');
    assert.equal(rows[0], 'id,dice,iou,precision,recall,hd95,assd,nsd');
    assert.equal(rows.length, j.count + 1);
    assert.match(rows[1], /^syn_\d{4},/);
    const e2 = scalpel('evaluate', '--checkpoint', run, '--data', data, '--split', 'val', '--json', path.join(tmp, 'eval2.json'), '--csv', path.join(tmp, 'cases', 'c.csv'), '--nsd-tolerance', '0.5');
    assert.equal(e2.code, 0, e2.stderr);
    assert.match(e2.stdout, /nsd@0\.5px/);
    assert.equal(fs.readFileSync(path.join(tmp, 'cases', 'c.csv'), 'utf8').trimEnd().split('\n').length, j.count + 1);
    assertOneLineError(scalpel('evaluate', '--checkpoint', run, '--data', data, '--nsd-tolerance', '-1'), 2, /--nsd-tolerance must be a number >= 0, got '-1'/);

    const pred = path.join(tmp, 'pred');
    const p = scalpel('predict', '--checkpoint', run, '--input', path.join(data, 'images'), '--out', pred);
    assert.equal(p.code, 0, p.stderr);
    const files = fs.readdirSync(pred);
    assert.equal(files.length, 32);
    assert.ok(files.includes('syn_0000.png') && files.includes('syn_0000_overlay.png'));
  });

  it('split writes split files', () => {
    const d = path.join(tmp, 'splitdata');
    fs.cpSync(data, d, { recursive: true });
    const r = scalpel('split', d, '--val', '0.25', '--test', '0.25', '--seed', '3');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /train 8, val 4, test 4/);
    assert.ok(fs.existsSync(path.join(d, 'test.txt')));
  });

  it('bad flags: one line, exit code 2', () => {
    assertOneLineError(scalpel('train', '--epochs', 'abc'), 2, /--epochs must be an integer/);
    assertOneLineError(scalpel('train', '--frobnicate'), 2, /unknown option '--frobnicate'/);
    assertOneLineError(scalpel('train', '--augment', '{"gamma":{"range":[2,1]}}'), 2, /--augment.*gamma\.range must be \[lo, hi\] with 0 < lo <= hi, got \[2,1\]/);
    assertOneLineError(scalpel('evaluate', '--data', data), 2, /required option '--checkpoint <file>'/);
  });

  it('user errors: one line naming the file, exit code 1, nothing written', () => {
    const out = path.join(tmp, 'never');
    assertOneLineError(scalpel('train', '--data', path.join(tmp, 'missing'), '--out', out, '--no-progress'), 1, /missing: dataset folder not found/);
    assertOneLineError(scalpel('evaluate', '--checkpoint', path.join(tmp, 'nope.safetensors'), '--data', data), 1, /nope\.safetensors: no such file/);
    // Image without mask.
    const bad = path.join(tmp, 'nomask');
    fs.cpSync(data, bad, { recursive: true });
    fs.rmSync(path.join(bad, 'masks', 'syn_0003.png'));
    assertOneLineError(scalpel('train', '--data', bad, '--out', out, '--no-progress'), 1, /syn_0003\.png: image without mask/);
    // Corrupt image.
    const corrupt = path.join(tmp, 'corrupt');
    fs.cpSync(data, corrupt, { recursive: true });
    fs.writeFileSync(path.join(corrupt, 'images', 'syn_0005.png'), 'not a png');
    assertOneLineError(scalpel('train', '--data', corrupt, '--out', out, '--size', '32', '--epochs', '1', '--workers', '0', '--no-progress'), 1, /syn_0005\.png/);
    assert.ok(!fs.existsSync(path.join(out, 'best.safetensors')));
  });
});
