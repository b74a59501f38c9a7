// Binary-mask post-processing (largest component, small-component removal, hole filling) and
// the `--post` spec parser.
import { strict as assert } from 'node:assert';
import { fillHoles, keepLargestComponent, labelComponents, parsePostSpec, postprocessMask, removeSmallComponents, formatPostSpec } from '../src/data';

/** A mask from rows of '#' (foreground) and '.' (background). */
function grid(rows: string[]): { m: Uint8Array; h: number; w: number } {
  const h = rows.length, w = rows[0].length;
  const m = new Uint8Array(h * w);
  rows.forEach((r, y) => [...r].forEach((c, x) => (m[y * w + x] = c === '#' ? 1 : 0)));
  return { m, h, w };
}
function show(m: ArrayLike<number>, w: number): string[] {
  const rows: string[] = [];
  for (let i = 0; i < m.length; i += w) rows.push(Array.from({ length: w }, (_, x) => (m[i + x] ? '#' : '.')).join(''));
  return rows;
}

describe('postprocess', () => {
  it('labels 8-connected foreground: diagonal neighbours join', () => {
    const { m, h, w } = grid([
      '#...#',
      '.#..#',
      '..#..',
      '.....',
      '##..#',
    ]);
    const r8 = labelComponents(m, h, w);
    assert.equal(r8.count, 4);
    assert.deepEqual(r8.areas, [3, 2, 2, 1]);
    const r4 = labelComponents(m, h, w, { connectivity: 4 });
    assert.equal(r4.count, 6);
  });

  it('keeps the largest component (first in raster order on ties), empty stays empty', () => {
    const { m, h, w } = grid([
      '##...',
      '#...#',
      '...##',
      '#..##',
    ]);
    assert.deepEqual(show(keepLargestComponent(m, h, w), w), [
      '.....',
      '....#',
      '...##',
      '...##',
    ]);
    const tie = grid(['##.##']);
    assert.deepEqual(show(keepLargestComponent(tie.m, tie.h, tie.w), tie.w), ['##...']);
    assert.deepEqual(Array.from(keepLargestComponent(new Uint8Array(6), 2, 3)), [0, 0, 0, 0, 0, 0]);
  });

  it('removes components below the area (an area equal to the limit stays)', () => {
    const { m, h, w } = grid([
      '#..##',
      '...##',
      '.#...',
      '#....',
    ]);
    // Areas: 1 (top-left), 4 (square), 2 (diagonal pair).
    assert.deepEqual(show(removeSmallComponents(m, h, w, 2), w), [
      '...##',
      '...##',
      '.#...',
      '#....',
    ]);
    assert.deepEqual(show(removeSmallComponents(m, h, w, 3), w), [
      '...##',
      '...##',
      '.....',
      '.....',
    ]);
    assert.deepEqual(show(removeSmallComponents(m, h, w, 1), w), show(m, w));
  });

  it('fills holes (4-connected background not reaching the border), not border-touching bays', () => {
    const { m, h, w } = grid([
      '#####..',
      '#...#..',
      '#.#.#..',
      '#####.#',
      '....#.#',
      '.####.#',
      '.#..#..',
    ]);
    // The enclosed region in rows 1-2 is filled; the bay at (6,2)-(6,3) touches the bottom
    // border and the channel in column 5 the top and bottom borders, so they stay.
    assert.deepEqual(show(fillHoles(m, h, w), w), [
      '#####..',
      '#####..',
      '#####..',
      '#####.#',
      '....#.#',
      '.####.#',
      '.#..#..',
    ]);
    // A hole that leaks out only through a diagonal gap is still a hole (4-connected background).
    const d = grid([
      '.#...',
      '#.#..',
      '.#...',
    ]);
    assert.deepEqual(show(fillHoles(d.m, d.h, d.w), d.w), [
      '.#...',
      '###..',
      '.#...',
    ]);
    assert.deepEqual(Array.from(fillHoles(new Uint8Array(4), 2, 2)), [0, 0, 0, 0]);
  });

  it('applies the steps in the order written and leaves the input unchanged', () => {
    const { m, h, w } = grid([
      '####...',
      '#..#...',
      '####.#.',
      '.......',
      '######.',
    ]);
    const before = Uint8Array.from(m);
    // lcc first: the ring (10 px) beats the bar (6 px), then fill closes its hole.
    assert.deepEqual(show(postprocessMask(m, h, w, 'lcc,fill'), w), [
      '####...',
      '####...',
      '####...',
      '.......',
      '.......',
    ]);
    // min-area=2 drops the single pixel only.
    assert.deepEqual(show(postprocessMask(m, h, w, parsePostSpec('min-area=2')), w), [
      '####...',
      '#..#...',
      '####...',
      '.......',
      '######.',
    ]);
    assert.deepEqual(m, before);
  });

  it('parses specs and rejects bad ones with clear errors', () => {
    assert.deepEqual(parsePostSpec('lcc,min-area=64,fill'), [{ op: 'lcc' }, { op: 'min-area', area: 64 }, { op: 'fill' }]);
    assert.deepEqual(parsePostSpec(' FILL , lcc '), [{ op: 'fill' }, { op: 'lcc' }]);
    assert.equal(formatPostSpec(parsePostSpec('lcc,min-area=64,fill')), 'lcc,min-area=64,fill');
    assert.throws(() => parsePostSpec('lcc,blur'), /unknown post-processing step 'blur'/);
    assert.throws(() => parsePostSpec('min-area=0'), /min-area must be a positive integer.*'0'/);
    assert.throws(() => parsePostSpec('min-area=-3'), /min-area must be a positive integer.*'-3'/);
    assert.throws(() => parsePostSpec('min-area=2.5'), /min-area must be a positive integer.*'2.5'/);
    assert.throws(() => parsePostSpec('min-area=abc'), /min-area must be a positive integer/);
    assert.throws(() => parsePostSpec('min-area'), /min-area' needs a value/);
    assert.throws(() => parsePostSpec('lcc=3'), /'lcc' takes no value/);
    assert.throws(() => parsePostSpec('lcc,,fill'), /empty step/);
    assert.throws(() => parsePostSpec(''), /empty step/);
    assert.throws(() => parsePostSpec('lcc,lcc'), /given twice/);
    assert.throws(() => postprocessMask(new Uint8Array(5), 2, 3, 'lcc'), /5 values, expected 2x3/);
  });
});
