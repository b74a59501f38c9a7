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

/** Renames staged temporaries over their targets (in order), then syncs the folder. */
export function commitStaged(staged: [tmp: string, file: string][]): void {
  for (const [tmp, file] of staged) fs.renameSync(tmp, file);
  const dirs = new Set(staged.map(([, f]) => path.dirname(path.resolve(f))));
  for (const dir of dirs) {
    try {
      const dfd = fs.openSync(dir, 'r');
      fs.fsyncSync(dfd);
      fs.closeSync(dfd);
    } catch {
      // Some filesystems do not support fsync on directories; the rename is still atomic.
    }
  }
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
