/**
 * Dataset layout detection and train/val/test id lists.
 *
 * Supported layouts (all need `<root>/images/`):
 *  - 'cmunext': `<root>/masks/0/<id>.<ext>` (CMUNeXt / UNeXt style, one class folder)
 *  - 'busbra':  flat images/ + masks/ plus a fold CSV (`5-fold-cv.csv` or `10-fold-cv.csv`)
 *               in the root; train/val/test come from the CSV for the chosen fold.
 *  - 'flat':    `<root>/masks/<id>.<ext>` or `<root>/masks/<id>_mask.<ext>`; for original
 *               BUS-BRA file names, `bus_XXXX` images pair with `mask_XXXX` masks.
 * For 'flat' and 'cmunext', split files `<root>/[<name>_]train.txt`, `val.txt` and
 * optionally `test.txt` list ids one per line. When there are none, a split is made in
 * memory with the same algorithm and seed as writeSplit (so writeSplit + openDataset
 * and openDataset alone agree), and `splitSource` says so.
 *
 * List files given by name (`trainList` / `valList` / `testList`, as CMUNeXt's README runs it:
 * `--train-list busi_train.txt --val-list busi_val.txt`) take the place of all of the above, in
 * any layout: paths relative to the root (or absolute), one id per line, with or without the
 * image's extension, spaces and parentheses allowed (`benign (10).png`). Only the listed ids need
 * a mask then, and an id without an image or a mask is an error naming the list file and line.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DataError, IMAGE_EXTENSIONS, writeFileAtomicSync } from './decode';
import { Rng } from './augment';

export type Layout = 'flat' | 'cmunext' | 'busbra';

export interface SplitIds {
  train: string[];
  val: string[];
  test?: string[];
}

export interface Dataset {
  root: string;
  layout: Layout;
  /** Where the split came from ('lists': the list files named in OpenDatasetOptions). */
  splitSource: 'files' | 'generated' | 'fold-csv' | 'lists';
  /** The list files read (absolute paths), for the splits that came from one. */
  listFiles?: Partial<Record<keyof SplitIds, string>>;
  ids: SplitIds;
  /** Every paired id in the dataset, sorted. */
  allIds: string[];
  imagePath(id: string): string;
  maskPath(id: string): string;
  /** BUS-BRA only: the fold used and the CSV it came from. */
  fold?: number;
  foldFile?: string;
}

export interface OpenDatasetOptions {
  /** BUS-BRA fold number (1-based). Defaults to 1 when a fold CSV is present. */
  fold?: number;
  /** Fold CSV file name inside root (default: '5-fold-cv.csv', else '10-fold-cv.csv'). */
  foldFile?: string;
  /** Split-file prefix: reads `<name>_train.txt` etc. instead of `train.txt`. */
  splitName?: string;
  /**
   * Split list files by name, relative to root (or absolute): these splits come from them and
   * nothing else (no fold CSV, no split files, no generated split). A split without a list is empty.
   */
  trainList?: string;
  valList?: string;
  testList?: string;
  /** Force a layout instead of detecting it. */
  layout?: Layout;
  /** In-memory split when no split files exist: fractions and seed (defaults 0.2, 0, 0). */
  val?: number;
  test?: number;
  seed?: number;
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/** Map id -> file name for supported files in a folder; duplicates (a.png + a.jpg) are an error. */
function listById(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of fs.readdirSync(dir).sort()) {
    if (name.startsWith('.')) continue; // hidden and temporary files
    const ext = path.extname(name).slice(1).toLowerCase();
    if (!IMAGE_EXTENSIONS.includes(ext)) continue;
    const id = name.slice(0, name.length - ext.length - 1);
    const prev = out.get(id);
    if (prev !== undefined) {
      throw new DataError(`${dir}: ambiguous id '${id}': both ${prev} and ${name} exist`, 'layout', path.join(dir, name));
    }
    out.set(id, name);
  }
  return out;
}

/** Candidate mask ids for an image id in the flat layout, in order of preference. */
function flatMaskCandidates(id: string): string[] {
  const c = [id, `${id}_mask`];
  const m = /^bus_(.*)$/.exec(id);
  if (m) c.push(`mask_${m[1]}`); // original BUS-BRA release names masks mask_XXXX-s
  return c;
}

function detectLayout(root: string, opts: OpenDatasetOptions): { layout: Layout; foldFile?: string } {
  if (opts.layout) {
    if (opts.layout === 'busbra') return { layout: 'busbra', foldFile: opts.foldFile ?? findFoldFile(root) };
    return { layout: opts.layout };
  }
  if (isDir(path.join(root, 'masks', '0'))) return { layout: 'cmunext' };
  if (opts.foldFile !== undefined) return { layout: 'busbra', foldFile: opts.foldFile };
  const ff = findFoldFile(root);
  if (ff !== undefined) return { layout: 'busbra', foldFile: ff };
  if (opts.fold !== undefined) {
    throw new DataError(`${root}: fold ${opts.fold} requested but no fold CSV (5-fold-cv.csv / 10-fold-cv.csv) found`, 'missing', path.join(root, '5-fold-cv.csv'));
  }
  return { layout: 'flat' };
}

function findFoldFile(root: string): string | undefined {
  for (const f of ['5-fold-cv.csv', '10-fold-cv.csv']) if (isFile(path.join(root, f))) return f;
  return undefined;
}

/**
 * Pair every image with its mask; throws naming the images that have none, unless `lenient`
 * (list files name the ids in use: only those must have a mask, which the caller checks).
 */
function pairFiles(root: string, layout: Layout, lenient = false): { images: Map<string, string>; masks: Map<string, string>; maskDir: string } {
  const imageDir = path.join(root, 'images');
  const maskDir = layout === 'cmunext' ? path.join(root, 'masks', '0') : path.join(root, 'masks');
  if (!isDir(imageDir)) throw new DataError(`${root}: missing folder images/`, 'missing', imageDir);
  if (!isDir(maskDir)) throw new DataError(`${root}: missing folder ${path.relative(root, maskDir)}/`, 'missing', maskDir);
  const images = listById(imageDir);
  if (images.size === 0) throw new DataError(`${imageDir}: no images (${IMAGE_EXTENSIONS.join('/')})`, 'missing', imageDir);
  const maskFiles = listById(maskDir);
  const masks = new Map<string, string>();
  const unpaired: string[] = [];
  for (const id of images.keys()) {
    const cands = layout === 'cmunext' ? [id] : flatMaskCandidates(id);
    const hit = cands.find((c) => maskFiles.has(c));
    if (hit === undefined) unpaired.push(id);
    else masks.set(id, maskFiles.get(hit)!);
  }
  if (unpaired.length > 0 && !lenient) {
    const first = path.join(imageDir, images.get(unpaired[0])!);
    const list = unpaired.slice(0, 5).map((id) => images.get(id)).join(', ');
    throw new DataError(
      `${first}: image without mask in ${maskDir} (${unpaired.length} unpaired: ${list}${unpaired.length > 5 ? ', ...' : ''})`,
      'missing',
      first,
    );
  }
  return { images, masks, maskDir };
}

function splitFileName(kind: 'train' | 'val' | 'test', name?: string): string {
  return name ? `${name}_${kind}.txt` : `${kind}.txt`;
}

/**
 * Read an id list: one id per line, with or without an image extension (CMUNeXt's split.py
 * variants write both), surrounding whitespace ignored; a line starting with '#' that is not an id
 * is a comment, and so is ' #...' at the end of a line that is not itself an id (file names may
 * hold '#').
 * Returns each id with its 1-based line number.
 */
function readIdLines(file: string, known: Map<string, string>, imageDir?: string): { id: string; line: number; text: string }[] {
  const text = fs.readFileSync(file, 'utf8').replace(/^\uFEFF/, '');
  const out: { id: string; line: number; text: string }[] = [];
  const resolve = (raw: string): string | undefined => {
    if (known.has(raw)) return raw;
    const ext = path.extname(raw).slice(1).toLowerCase();
    if (IMAGE_EXTENSIONS.includes(ext)) {
      const bare = raw.slice(0, raw.length - ext.length - 1);
      if (known.has(bare)) return bare;
    }
    return undefined;
  };
  text.split(/\r?\n/).forEach((line, i) => {
    const raw = line.trim();
    if (raw === '') return;
    // An id is an id even when it starts with '#' (lists written by `scalpel cv` hold any id).
    let id = resolve(raw);
    if (id === undefined && raw.startsWith('#')) return;
    if (id === undefined && /\s#/.test(raw)) id = resolve(raw.replace(/\s+#.*$/, ''));
    if (id === undefined) {
      const shown = raw.replace(/\s+#.*$/, '');
      throw new DataError(`${file}:${i + 1}: unknown id '${shown}' (${imageDir ? `no image of that name in ${imageDir}` : 'no such image'})`, 'split', file);
    }
    out.push({ id, line: i + 1, text: raw });
  });
  return out;
}

function readIdList(file: string, known: Map<string, string>): string[] {
  return readIdLines(file, known).map((l) => l.id);
}

/** Parse a simple CSV (no quoted commas needed for the fold files, but quotes are handled). */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === '') continue;
    const cells: string[] = [];
    let cur = '';
    let q = false;
    for (let i = 0; i < line.length; i++) {
      const ch = line[i];
      if (q) {
        if (ch === '"' && line[i + 1] === '"') { cur += '"'; i++; }
        else if (ch === '"') q = false;
        else cur += ch;
      } else if (ch === '"') q = true;
      else if (ch === ',') { cells.push(cur); cur = ''; }
      else cur += ch;
    }
    cells.push(cur);
    rows.push(cells.map((c) => c.trim()));
  }
  return rows;
}

/**
 * Read a BUS-BRA fold CSV. `kFold` is each image's test fold; for fold k the column
 * `valid_k` is NaN for the test images, 1 for training and 0 for validation.
 */
export function readFoldCsv(file: string, fold: number): Required<SplitIds> & { folds: number } {
  if (!isFile(file)) throw new DataError(`${file}: fold CSV not found`, 'missing', file);
  const rows = parseCsv(fs.readFileSync(file, 'utf8'));
  if (rows.length < 2) throw new DataError(`${file}: empty fold CSV`, 'split', file);
  const header = rows[0];
  const idCol = header.indexOf('ID');
  const validCols = header.filter((h) => /^valid_\d+$/.test(h)).map((h) => Number(h.slice(6)));
  if (idCol < 0 || validCols.length === 0) throw new DataError(`${file}: expected columns ID and valid_1..valid_K`, 'split', file);
  const folds = Math.max(...validCols);
  if (!Number.isInteger(fold) || !validCols.includes(fold)) {
    throw new DataError(`${file}: unknown fold ${fold} (this file has folds 1..${folds})`, 'split', file);
  }
  const col = header.indexOf(`valid_${fold}`);
  const kCol = header.indexOf('kFold');
  const train: string[] = [];
  const val: string[] = [];
  const test: string[] = [];
  for (let r = 1; r < rows.length; r++) {
    const row = rows[r];
    const id = row[idCol];
    const v = (row[col] ?? '').toLowerCase();
    if (v === 'nan' || v === '') test.push(id);
    else if (Number(v) === 1) train.push(id);
    else if (Number(v) === 0) val.push(id);
    else throw new DataError(`${file}:${r + 1}: bad value '${row[col]}' in valid_${fold} for ${id}`, 'split', file);
    // Cross-check the documented meaning so a differently-encoded file is caught early.
    if (kCol >= 0 && (v === 'nan' || v === '') !== (Number(row[kCol]) === fold)) {
      throw new DataError(`${file}:${r + 1}: ${id} has kFold=${row[kCol]} but valid_${fold}='${row[col]}'`, 'split', file);
    }
  }
  return { train, val, test, folds };
}

function checkNonEmpty(root: string, ids: SplitIds, where: string): void {
  for (const k of ['train', 'val'] as const) {
    if (ids[k].length === 0) throw new DataError(`${root}: empty ${k} split (${where})`, 'split', root);
  }
}

/** Seeded split used by writeSplit and by openDataset when no split files exist. */
export function makeSplit(ids: readonly string[], opts: { val?: number; test?: number; seed?: number } = {}): SplitIds {
  const valF = opts.val ?? 0.2;
  const testF = opts.test ?? 0;
  if (!(valF >= 0 && testF >= 0 && valF + testF < 1)) throw new DataError(`invalid split fractions val=${valF} test=${testF}`, 'split');
  // Sorting first makes the result independent of directory listing order.
  const shuffled = new Rng(opts.seed ?? 0).shuffle([...ids].sort());
  const nTest = Math.round(shuffled.length * testF);
  const nVal = Math.round(shuffled.length * valF);
  const test = shuffled.slice(0, nTest).sort();
  const val = shuffled.slice(nTest, nTest + nVal).sort();
  const train = shuffled.slice(nTest + nVal).sort();
  return testF > 0 ? { train, val, test } : { train, val };
}

/**
 * The splits named by list files: each file must exist and list at least one id, each id must
 * have an image and a mask, and no id may be listed twice (in one list or in two: a leak between
 * training and evaluation). Errors name the file and line.
 */
function readSplitLists(
  root: string, lists: Partial<Record<keyof SplitIds, string>>, images: Map<string, string>, masks: Map<string, string>, imageDir: string, maskDir: string,
): { ids: SplitIds; listFiles: Partial<Record<keyof SplitIds, string>> } {
  const ids: SplitIds = { train: [], val: [] };
  const listFiles: Partial<Record<keyof SplitIds, string>> = {};
  const seen = new Map<string, { file: string; line: number }>();
  for (const kind of ['train', 'val', 'test'] as const) {
    const name = lists[kind];
    if (name === undefined) continue;
    if (typeof name !== 'string' || name.trim() === '') throw new DataError(`${root}: the ${kind} list must be a file name, got '${String(name)}'`, 'split', root);
    const file = path.resolve(root, name);
    if (!isFile(file)) throw new DataError(`${file}: ${kind} list not found (list paths are relative to the dataset folder ${root})`, 'missing', file);
    const lines = readIdLines(file, images, imageDir);
    if (lines.length === 0) throw new DataError(`${file}: empty ${kind} list (no ids)`, 'split', file);
    for (const l of lines) {
      if (!masks.has(l.id)) throw new DataError(`${file}:${l.line}: '${l.text}' has an image (${images.get(l.id)}) but no mask in ${maskDir}`, 'missing', file);
      const prev = seen.get(l.id);
      if (prev) {
        const where = prev.file === file ? `line ${prev.line}` : `${path.basename(prev.file)}:${prev.line}`;
        throw new DataError(`${file}:${l.line}: '${l.text}' is listed twice (also at ${where})`, 'split', file);
      }
      seen.set(l.id, { file, line: l.line });
    }
    ids[kind] = lines.map((l) => l.id);
    listFiles[kind] = file;
  }
  return { ids, listFiles };
}

export function openDataset(root: string, opts: OpenDatasetOptions = {}): Dataset {
  root = path.resolve(root);
  if (!isDir(root)) throw new DataError(`${root}: dataset folder not found`, 'missing', root);
  const lists = { train: opts.trainList, val: opts.valList, test: opts.testList };
  const useLists = Object.values(lists).some((v) => v !== undefined);
  if (useLists && opts.fold !== undefined) {
    throw new DataError(`${root}: both a fold (${opts.fold}) and split list files were given; they choose the split in different ways, pass one of them`, 'split', root);
  }
  // With list files the fold CSV is not read, so a BUS-BRA folder pairs like the flat layout.
  const { layout, foldFile } = useLists ? { layout: opts.layout ?? (isDir(path.join(root, 'masks', '0')) ? 'cmunext' : 'flat') as Layout, foldFile: undefined } : detectLayout(root, opts);
  const { images, masks, maskDir } = pairFiles(root, layout, useLists);
  const imageDir = path.join(root, 'images');
  const allIds = [...images.keys()].filter((id) => masks.has(id)).sort();

  let ids: SplitIds;
  let splitSource: Dataset['splitSource'];
  let fold: number | undefined;
  let listFiles: Dataset['listFiles'];
  if (useLists) {
    ({ ids, listFiles } = readSplitLists(root, lists, images, masks, imageDir, maskDir));
    splitSource = 'lists';
  } else if (layout === 'busbra') {
    fold = opts.fold ?? 1;
    const csv = path.join(root, foldFile ?? '5-fold-cv.csv');
    const f = readFoldCsv(csv, fold);
    const missing = [...f.train, ...f.val, ...f.test].filter((id) => !images.has(id));
    if (missing.length > 0) {
      throw new DataError(`${csv}: ${missing.length} ids have no image in ${imageDir} (first: ${missing[0]})`, 'split', csv);
    }
    ids = { train: f.train, val: f.val, test: f.test };
    splitSource = 'fold-csv';
    checkNonEmpty(root, ids, `fold ${fold} of ${path.basename(csv)}`);
    if (f.test.length === 0) throw new DataError(`${csv}: empty test split for fold ${fold}`, 'split', csv);
  } else {
    const trainFile = path.join(root, splitFileName('train', opts.splitName));
    const valFile = path.join(root, splitFileName('val', opts.splitName));
    const testFile = path.join(root, splitFileName('test', opts.splitName));
    if (isFile(trainFile) || isFile(valFile)) {
      if (!isFile(trainFile)) throw new DataError(`${trainFile}: split file missing (found ${path.basename(valFile)})`, 'missing', trainFile);
      if (!isFile(valFile)) throw new DataError(`${valFile}: split file missing (found ${path.basename(trainFile)})`, 'missing', valFile);
      ids = { train: readIdList(trainFile, images), val: readIdList(valFile, images) };
      if (isFile(testFile)) ids.test = readIdList(testFile, images);
      splitSource = 'files';
      if (ids.train.length === 0) throw new DataError(`${trainFile}: empty train split`, 'split', trainFile);
      if (ids.val.length === 0) throw new DataError(`${valFile}: empty val split`, 'split', valFile);
    } else if (opts.splitName !== undefined) {
      throw new DataError(`${trainFile}: split files for '${opts.splitName}' not found`, 'missing', trainFile);
    } else {
      ids = makeSplit(allIds, opts);
      splitSource = 'generated';
      checkNonEmpty(root, ids, `generated split of ${allIds.length} images`);
    }
  }

  const resolveId = (id: string, map: Map<string, string>, dir: string, what: string): string => {
    const f = map.get(id);
    if (f === undefined) throw new DataError(`${root}: unknown ${what} id '${id}'`, 'missing', path.join(dir, id));
    return path.join(dir, f);
  };
  return {
    root,
    layout,
    splitSource,
    ids,
    allIds,
    listFiles,
    fold,
    foldFile: layout === 'busbra' && !useLists ? (foldFile ?? '5-fold-cv.csv') : undefined,
    imagePath: (id: string) => resolveId(id, images, imageDir, 'image'),
    maskPath: (id: string) => resolveId(id, masks, maskDir, 'mask'),
  };
}

export interface WriteSplitOptions {
  /** Validation fraction (default 0.2). */
  val?: number;
  /** Test fraction (default 0; no test.txt is written when 0). */
  test?: number;
  seed?: number;
  /** File prefix: writes `<name>_train.txt` etc. */
  name?: string;
}

/**
 * Write reproducible split files for a flat or CMUNeXt dataset, like CMUNeXt's
 * split.py: same ids + same seed => same files. Files are written atomically; a
 * stale test file from a previous split with test > 0 is removed when test is 0.
 */
export function writeSplit(root: string, opts: WriteSplitOptions = {}): SplitIds {
  root = path.resolve(root);
  if (!isDir(root)) throw new DataError(`${root}: dataset folder not found`, 'missing', root);
  const layout: Layout = isDir(path.join(root, 'masks', '0')) ? 'cmunext' : 'flat';
  const { images } = pairFiles(root, layout);
  const split = makeSplit([...images.keys()], opts);
  if (split.train.length === 0 || split.val.length === 0) {
    throw new DataError(`${root}: split of ${images.size} images leaves an empty ${split.train.length === 0 ? 'train' : 'val'} set`, 'split', root);
  }
  const write = (kind: 'train' | 'val' | 'test', list: string[]): void =>
    writeFileAtomicSync(path.join(root, splitFileName(kind, opts.name)), list.join('\n') + '\n');
  write('train', split.train);
  write('val', split.val);
  const testFile = path.join(root, splitFileName('test', opts.name));
  if (split.test) write('test', split.test);
  else if (isFile(testFile)) fs.unlinkSync(testFile);
  return split;
}
