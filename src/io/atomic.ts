// Atomic file writes: data goes to a temporary file in the target's folder (same filesystem,
// so the rename is atomic), is fsynced, then renamed over the target. Readers never see a
// half-written file; a failure (full disk, crash) leaves the previous file untouched and no
// temporary behind.
import * as fs from 'fs';
import * as path from 'path';

/** Writes data to a fsynced temporary file next to `file` and returns its path. */
export function stageFile(file: string, data: Buffer | Uint8Array | string): string {
  const dir = path.dirname(path.resolve(file));
  if (!fs.existsSync(dir)) throw new Error(`cannot write ${file}: folder ${dir} does not exist`);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  let fd: number | null = null;
  try {
    fd = fs.openSync(tmp, 'wx');
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    return tmp;
  } catch (e) {
    if (fd !== null) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw new Error(`cannot write ${file}: ${(e as Error).message}`);
  }
}

function syncDir(dir: string): void {
  try {
    const dfd = fs.openSync(dir, 'r');
    fs.fsyncSync(dfd);
    fs.closeSync(dfd);
  } catch {
    // Some filesystems do not support fsync on directories; the rename is still atomic.
  }
}

/** Renames staged temporaries over their targets (in order), then syncs the folder. */
export function commitStaged(staged: [tmp: string, file: string][]): void {
  for (const [tmp, file] of staged) fs.renameSync(tmp, file);
  for (const dir of new Set(staged.map(([, f]) => path.dirname(path.resolve(f))))) syncDir(dir);
}

// Fault injection for the crash-safety tests: SCALPEL_CRASH_AT="<point>#<n>" kills the process
// with SIGKILL the n-th time it reaches <point> (a kill -9 at an exact moment, no timer race).
const crashAt = /^(.+)#(\d+)$/.exec(process.env.SCALPEL_CRASH_AT ?? '');
let crashCount = 0;
export function crashPoint(point: string): void {
  if (crashAt && crashAt[1] === point && ++crashCount === Number(crashAt[2])) process.kill(process.pid, 'SIGKILL');
}

/**
 * Multi-file transactions (a checkpoint's weights, optimiser state and training state). The
 * files are staged in full, then a journal naming every rename is written atomically: that
 * rename is the single commit point. A crash before it leaves the previous set untouched (its
 * temporaries are removed by recoverTransactions); a crash after it is rolled forward by
 * recoverTransactions, which finishes the renames the journal names. Either way the files on
 * disk belong together.
 */
const JOURNAL = /^\.(.+)\.commit\.json$/;

export function commitTransaction(dir: string, name: string, staged: [tmp: string, file: string][]): void {
  for (const [, file] of staged) {
    if (path.dirname(path.resolve(file)) !== path.resolve(dir)) throw new Error(`commitTransaction: ${file} is not in ${dir}`);
  }
  const journal = path.join(dir, `.${name}.commit.json`);
  const entries = staged.map(([tmp, file]) => [path.basename(tmp), path.basename(file)]);
  const tmp = stageFile(journal, JSON.stringify({ format: 'scalpel-commit', renames: entries }) + '\n');
  crashPoint(`${name}:before-commit`);
  fs.renameSync(tmp, journal);
  syncDir(dir);
  staged.forEach(([tmpFile, file], i) => {
    crashPoint(`${name}:rename-${i}`);
    fs.renameSync(tmpFile, file);
  });
  syncDir(dir);
  fs.rmSync(journal, { force: true });
}

const TEMPORARY = /^\..+\.(\d+)\.[a-z0-9]+\.tmp$/;

/**
 * Finishes every committed transaction in `dir` and, with removeTemporaries, removes the
 * temporaries a crash left (only while holding the folder: those of another live writer would
 * go too). Returns one line per action, for the log.
 */
export function recoverTransactions(dir: string, { removeTemporaries = false } = {}): string[] {
  const done: string[] = [];
  if (!fs.existsSync(dir)) return done;
  for (const f of fs.readdirSync(dir)) {
    const m = JOURNAL.exec(f);
    if (!m) continue;
    let renames: [string, string][] = [];
    try {
      const j = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
      if (j?.format === 'scalpel-commit' && Array.isArray(j.renames)) renames = j.renames;
    } catch {
      // A journal is renamed into place only when complete, so this is not ours to replay.
    }
    let finished = 0;
    for (const [tmp, file] of renames) {
      if (typeof tmp !== 'string' || typeof file !== 'string' || tmp.includes('/') || file.includes('/')) continue;
      if (fs.existsSync(path.join(dir, tmp))) {
        fs.renameSync(path.join(dir, tmp), path.join(dir, file));
        finished++;
      }
    }
    syncDir(dir);
    fs.rmSync(path.join(dir, f), { force: true });
    if (renames.length) done.push(`finished the interrupted save of '${m[1]}' (${finished} of ${renames.length} files were still to be renamed)`);
  }
  let removed = 0, bytes = 0;
  for (const f of removeTemporaries ? fs.readdirSync(dir) : []) {
    const m = TEMPORARY.exec(f);
    if (!m || Number(m[1]) === process.pid) continue;
    try {
      bytes += fs.statSync(path.join(dir, f)).size;
      fs.rmSync(path.join(dir, f), { force: true });
      removed++;
    } catch {
      // Gone already.
    }
  }
  if (removed) done.push(`removed ${removed} temporary file(s) (${(bytes / 1e6).toFixed(1)} MB) left by an interrupted run`);
  return done;
}

/** Discards staged temporaries (after a failure part-way through a multi-file write). */
export function discardStaged(staged: [tmp: string, file: string][]): void {
  for (const [tmp] of staged) fs.rmSync(tmp, { force: true });
}

/** Writes `data` to `file` atomically. */
export function writeFileAtomic(file: string, data: Buffer | Uint8Array | string): void {
  const tmp = stageFile(file, data);
  try {
    commitStaged([[tmp, file]]);
  } catch (e) {
    discardStaged([[tmp, file]]);
    throw new Error(`cannot write ${file}: ${(e as Error).message}`);
  }
}

const WHY: Record<string, string> = {
  EROFS: 'is on a read-only file system (EROFS)',
  EACCES: 'is not writable: permission denied (EACCES)',
  EPERM: 'is not writable: operation not permitted (EPERM)',
  ENOSPC: 'is on a full disk (ENOSPC)',
};

/**
 * Creates `dir` (and its parents) for writing, or throws an error that says why it cannot: the
 * nearest existing ancestor and its problem (read-only, permission denied, a file in the way),
 * where mkdir alone reports e.g. ENOENT for a read-only parent.
 */
export function makeFolder(dir: string): void {
  const abs = path.resolve(dir);
  let cause: NodeJS.ErrnoException | null = null;
  try {
    fs.mkdirSync(abs, { recursive: true });
  } catch (e) {
    cause = e as NodeJS.ErrnoException;
  }
  let at = abs;
  while (!fs.existsSync(at) && path.dirname(at) !== at) at = path.dirname(at);
  if (!fs.statSync(at).isDirectory()) throw new Error(`cannot create folder ${abs}: ${at} is a file, not a folder`);
  try {
    fs.accessSync(at, fs.constants.W_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    throw new Error(at === abs ? `folder ${abs} ${WHY[code] ?? `is not writable (${code})`}` : `cannot create folder ${abs}: ${at} ${WHY[code] ?? `is not writable (${code})`}`);
  }
  if (cause) throw new Error(`cannot create folder ${abs}: ${WHY[cause.code ?? ''] ? `${at} ${WHY[cause.code!]}` : cause.message}`);
}
