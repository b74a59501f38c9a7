// A minimal ZIP reader for PyTorch checkpoints (torch.save writes a ZIP of *stored*, i.e.
// uncompressed, entries since 1.6). It reads the central directory (ZIP64 included, as torch
// writes it for files over 4 GiB), then each entry's local header, because PyTorch pads the local
// headers' extra fields so the data is 64-byte aligned: the data offset differs from what the
// central directory alone suggests. Every offset and length is bounds-checked against the
// buffer, and a damaged archive is an error naming the file, the entry and the offset.
// Written here rather than taken from npm: the readers there inflate and stream, need callbacks
// or bring dependencies, while this needs ~150 lines and no decompression.

export interface ZipEntry {
  name: string;
  /** Offset of the entry's data in the archive (after its local header). */
  dataOffset: number;
  size: number;
  crc32: number;
}

const EOCD_SIG = 0x06054b50;
const EOCD64_LOCATOR_SIG = 0x07064b50;
const EOCD64_SIG = 0x06064b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;

export class ZipError extends Error {}

/** Reads the central directory of `buf`; `source` names the file in errors. */
export function readZipDirectory(buf: Buffer, source: string): Map<string, ZipEntry> {
  const bad = (m: string) => new ZipError(`${source}: damaged ZIP archive: ${m}`);
  const u16 = (o: number, what: string) => {
    if (o < 0 || o + 2 > buf.length) throw bad(`${what} at offset ${o} lies past the end of the file (${buf.length} bytes; truncated?)`);
    return buf.readUInt16LE(o);
  };
  const u32 = (o: number, what: string) => {
    if (o < 0 || o + 4 > buf.length) throw bad(`${what} at offset ${o} lies past the end of the file (${buf.length} bytes; truncated?)`);
    return buf.readUInt32LE(o);
  };
  const u64 = (o: number, what: string) => {
    if (o < 0 || o + 8 > buf.length) throw bad(`${what} at offset ${o} lies past the end of the file (${buf.length} bytes; truncated?)`);
    const v = buf.readBigUInt64LE(o);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`${what} at offset ${o} is ${v}, too large`);
    return Number(v);
  };

  // The end-of-central-directory record: the last 22 bytes plus a comment of up to 65535 bytes.
  let eocd = -1;
  for (let o = buf.length - 22; o >= Math.max(0, buf.length - 22 - 0xffff); o--) {
    if (buf.readUInt32LE(o) === EOCD_SIG) {
      eocd = o;
      break;
    }
  }
  if (eocd < 0) throw bad('no end-of-central-directory record (the file is truncated or not a ZIP archive)');
  let count = u16(eocd + 10, 'entry count');
  let cdSize = u32(eocd + 12, 'central directory size');
  let cdOffset = u32(eocd + 16, 'central directory offset');
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || u32(loc, 'ZIP64 locator') !== EOCD64_LOCATOR_SIG) throw bad('the ZIP64 end-of-central-directory locator is missing');
    const rec = u64(loc + 8, 'ZIP64 record offset');
    if (u32(rec, 'ZIP64 record') !== EOCD64_SIG) throw bad(`no ZIP64 end-of-central-directory record at offset ${rec}`);
    count = u64(rec + 32, 'ZIP64 entry count');
    cdSize = u64(rec + 40, 'ZIP64 central directory size');
    cdOffset = u64(rec + 48, 'ZIP64 central directory offset');
  }
  if (cdOffset + cdSize > buf.length) throw bad(`the central directory [${cdOffset}, ${cdOffset + cdSize}) lies past the end of the file (${buf.length} bytes; truncated?)`);
  // Each central record is at least 46 bytes: a forged count cannot make us loop for long.
  if (count * 46 > cdSize) throw bad(`${count} entries cannot fit in a central directory of ${cdSize} bytes`);

  const entries = new Map<string, ZipEntry>();
  let p = cdOffset;
  for (let k = 0; k < count; k++) {
    if (u32(p, `central directory entry ${k}`) !== CENTRAL_SIG) throw bad(`central directory entry ${k} at offset ${p} has a wrong signature`);
    const flags = u16(p + 8, 'flags');
    const method = u16(p + 10, 'compression method');
    const crc32 = u32(p + 16, 'CRC-32');
    let csize = u32(p + 20, 'compressed size');
    let size = u32(p + 24, 'size');
    const nlen = u16(p + 28, 'name length');
    const xlen = u16(p + 30, 'extra length');
    const clen = u16(p + 32, 'comment length');
    let local = u32(p + 42, 'local header offset');
    if (p + 46 + nlen + xlen + clen > cdOffset + cdSize) throw bad(`central directory entry ${k} at offset ${p} runs past the directory`);
    // Names come from the file and appear in error messages: control characters are escaped
    // (no terminal escapes); torch.save's names are plain ASCII, so nothing real is changed.
    const name = buf.toString('utf8', p + 46, p + 46 + nlen).replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
    // ZIP64 extra field (id 1): the 64-bit values of whichever fields are 0xffffffff, in order.
    for (let x = p + 46 + nlen; x + 4 <= p + 46 + nlen + xlen;) {
      const id = buf.readUInt16LE(x);
      const len = buf.readUInt16LE(x + 2);
      if (x + 4 + len > p + 46 + nlen + xlen) throw bad(`entry '${name}': extra field at offset ${x} runs past its record`);
      if (id === 1) {
        let q = x + 4;
        const take = (what: string) => {
          if (q + 8 > x + 4 + len) throw bad(`entry '${name}': the ZIP64 extra field lacks the ${what}`);
          const v = u64(q, `entry '${name}' ZIP64 ${what}`);
          q += 8;
          return v;
        };
        if (size === 0xffffffff) size = take('size');
        if (csize === 0xffffffff) csize = take('compressed size');
        if (local === 0xffffffff) local = take('local header offset');
      }
      x += 4 + len;
    }
    if (flags & 1) throw bad(`entry '${name}' is encrypted`);
    if (method !== 0) throw bad(`entry '${name}' is compressed (method ${method}); torch.save writes stored (uncompressed) entries, so the archive was repacked by another tool: re-save it with torch.save`);
    if (csize !== size) throw bad(`entry '${name}' is stored but its compressed size ${csize} differs from its size ${size}`);
    if (u32(local, `local header of '${name}'`) !== LOCAL_SIG) throw bad(`entry '${name}': no local header at offset ${local}`);
    const dataOffset = local + 30 + u16(local + 26, `local name length of '${name}'`) + u16(local + 28, `local extra length of '${name}'`);
    if (dataOffset + size > buf.length) {
      throw bad(`entry '${name}' (${size} bytes at offset ${dataOffset}) runs past the end of the file (${buf.length} bytes; truncated?)`);
    }
    if (entries.has(name)) throw bad(`entry '${name}' appears twice`);
    entries.set(name, { name, dataOffset, size, crc32 });
    p += 46 + nlen + xlen + clen;
  }
  return entries;
}

let crcTable: Int32Array | null = null;
/** CRC-32 (the ZIP polynomial 0xEDB88320), to detect damaged entry data. */
export function crc32(b: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c;
    }
  }
  const t = crcTable;
  let c = -1;
  for (let i = 0; i < b.length; i++) c = t[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

/** The bytes of `entry` (a view into buf), CRC-checked unless verify is false. */
export function zipEntryData(buf: Buffer, entry: ZipEntry, source: string, verify = true): Buffer {
  const data = buf.subarray(entry.dataOffset, entry.dataOffset + entry.size);
  if (verify) {
    const c = crc32(data);
    if (c !== entry.crc32) {
      throw new ZipError(`${source}: damaged ZIP archive: entry '${entry.name}' (${entry.size} bytes at offset ${entry.dataOffset}) fails its CRC-32 check (${c.toString(16)} instead of ${entry.crc32.toString(16)})`);
    }
  }
  return data;
}
