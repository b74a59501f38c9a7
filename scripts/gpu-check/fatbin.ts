// Which GPU architectures a compiled addon carries, read from its CUDA fat binaries without
// cuobjdump (absent on the development machines). nvcc embeds one fat binary per .cu file: a
// 16-byte header (magic 0xBA55ED50, u16 version, u16 header size, u64 payload size) followed by
// entries, each with its own header: u16 kind (1 = PTX, 2 = ELF machine code), u16 version,
// u32 header size, u64 payload size, ... and at byte 28 the u32 architecture (80 = sm_80).
// The layout was checked against cuobjdump-free builds here (each .cu of this project gives PTX
// and ELF for 80 and 90) and, on the GPU machine, against `cuobjdump --list-elf` (gpu-check.sh
// records both).
import * as fs from 'fs';

export interface FatbinSummary {
  /** Fat binaries found (one per CUDA translation unit). */
  fatbins: number;
  /** Architectures with machine code (ELF), sorted: e.g. [80, 90]. */
  elfArchs: number[];
  /** Architectures with PTX. */
  ptxArchs: number[];
  /** Fat binaries per (kind, arch): "elf sm_90" -> 14. */
  entries: Record<string, number>;
}

const MAGIC = 0xba55ed50;

export function parseFatbins(buf: Buffer): FatbinSummary {
  const entries: Record<string, number> = {};
  const elf = new Set<number>();
  const ptx = new Set<number>();
  let fatbins = 0;
  const magic = Buffer.alloc(4);
  magic.writeUInt32LE(MAGIC);
  let pos = 0;
  for (;;) {
    const at = buf.indexOf(magic, pos);
    if (at < 0 || at + 16 > buf.length) break;
    const version = buf.readUInt16LE(at + 4);
    const headerSize = buf.readUInt16LE(at + 6);
    const size = Number(buf.readBigUInt64LE(at + 8));
    const end = at + headerSize + size;
    // Anything else is a stray occurrence of the magic bytes (e.g. inside machine code).
    if (version !== 1 || headerSize < 16 || end > buf.length) {
      pos = at + 4;
      continue;
    }
    let j = at + headerSize;
    let ok = true;
    const found: string[] = [];
    while (j + 32 <= end) {
      const kind = buf.readUInt16LE(j);
      const eh = buf.readUInt32LE(j + 4);
      const payload = Number(buf.readBigUInt64LE(j + 8));
      const arch = buf.readUInt32LE(j + 28);
      if ((kind !== 1 && kind !== 2) || eh < 32 || j + eh + payload > end) {
        ok = false;
        break;
      }
      found.push(`${kind === 2 ? 'elf' : 'ptx'} sm_${arch}`);
      (kind === 2 ? elf : ptx).add(arch);
      j += eh + payload;
    }
    if (ok && found.length) {
      fatbins += 1;
      for (const k of found) entries[k] = (entries[k] ?? 0) + 1;
      pos = end;
    } else {
      pos = at + 4;
    }
  }
  const sorted = (s: Set<number>) => [...s].sort((a, b) => a - b);
  return { fatbins, elfArchs: sorted(elf), ptxArchs: sorted(ptx), entries };
}

export function fatbinsOfFile(file: string): FatbinSummary {
  return parseFatbins(fs.readFileSync(file));
}

/** The architectures `cuobjdump --list-elf` names ("ELF file 1: scalpel.1.sm_90.cubin"). */
export function archsFromCuobjdump(text: string): number[] {
  const archs = new Set<number>();
  for (const m of text.matchAll(/\.sm_(\d+)a?\.cubin/g)) archs.add(Number(m[1]));
  return [...archs].sort((a, b) => a - b);
}
