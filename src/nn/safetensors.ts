// The safetensors format (8-byte little-endian header length, JSON header, raw little-endian
// data), so weights move between scalpel and PyTorch both ways. Writes are atomic (src/io).
import * as fs from 'fs';
import { writeFileAtomic } from '../io/atomic';
import { Tensor } from '../tensor/tensor';
import { DType, DTYPES } from '../tensor/dtype';
import { fromTyped } from '../tensor/create';
import { Device, checkDevice } from '../tensor/device';
import { numel, shapeStr } from '../tensor/shape';

const TO_ST: Record<DType, string> = { float32: 'F32', float64: 'F64', int32: 'I32', uint8: 'U8', int64: 'I64' };
const FROM_ST: Record<string, DType> = { F32: 'float32', F64: 'float64', I32: 'int32', U8: 'uint8', I64: 'int64', BOOL: 'uint8' };

/** Serialises tensors (in the given order) and optional string metadata to safetensors bytes. */
export function encodeSafetensors(dict: Record<string, Tensor>, metadata?: Record<string, string>): Buffer {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const chunks: Uint8Array[] = [];
  let off = 0;
  for (const [name, t] of Object.entries(dict)) {
    if (!(t instanceof Tensor)) throw new Error(`saveSafetensors: entry '${name}' is not a tensor`);
    t.assertAlive(`saveSafetensors('${name}')`);
    const arr = t.toArray();
    const bytes = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
    header[name] = { dtype: TO_ST[t.dtype], shape: t.shape, data_offsets: [off, off + bytes.length] };
    chunks.push(bytes);
    off += bytes.length;
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces so the data starts 8-byte aligned (as the reference writer does).
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const hbytes = Buffer.from(json);
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(BigInt(hbytes.length));
  return Buffer.concat([lenBuf, hbytes, ...chunks]);
}

export function saveSafetensors(file: string, dict: Record<string, Tensor>, metadata?: Record<string, string>): void {
  writeFileAtomic(file, encodeSafetensors(dict, metadata));
}

export interface LoadedSafetensors {
  tensors: Record<string, Tensor>;
  metadata: Record<string, string>;
}

/** Parses safetensors bytes; every error names the file and the entry. */
export function decodeSafetensors(buf: Buffer, { device = 'cpu', source = '<buffer>' }: { device?: Device | string; source?: string } = {}): LoadedSafetensors {
  const dev = checkDevice(device, 'loadSafetensors');
  const bad = (m: string) => new Error(`${source}: not a valid safetensors file: ${m}`);
  if (buf.length < 8) throw bad('shorter than the 8-byte header length');
  const hlen = Number(buf.readBigUInt64LE(0));
  if (hlen > buf.length - 8 || hlen > 100 * 1024 * 1024) throw bad(`header length ${hlen} exceeds the file size ${buf.length}`);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + hlen).toString('utf8'));
  } catch (e) {
    throw bad(`header is not JSON (${(e as Error).message})`);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw bad('header is not a JSON object');
  const dataStart = 8 + hlen;
  const dataBytes = buf.length - dataStart;
  const metadata = (header.__metadata__ as Record<string, string>) ?? {};
  if (typeof metadata !== 'object' || Array.isArray(metadata) || !Object.values(metadata).every((v) => typeof v === 'string')) {
    throw bad('__metadata__ must map names to strings');
  }
  // Validate every entry first, as the format specifies: offsets are non-negative integers, each
  // entry's span matches its dtype and shape, and the spans, in order, tile the data region
  // exactly (no gap, no overlap, nothing after the last). Anything else is a damaged or forged
  // file whose tensors would alias or miss bytes.
  interface Entry { name: string; dtype: string; dt: DType; shape: number[]; b: number; e: number }
  const entries: Entry[] = [];
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const { dtype, shape, data_offsets } = (info ?? {}) as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const dt = FROM_ST[dtype];
    if (!dt) throw bad(`entry '${name}' has unsupported dtype ${dtype}`);
    if (!Array.isArray(shape) || !shape.every((s) => Number.isInteger(s) && s >= 0)) throw bad(`entry '${name}' has an invalid shape`);
    const [b, e] = Array.isArray(data_offsets) && data_offsets.length === 2 ? data_offsets : [NaN, NaN];
    const nbytes = numel(shape) * DTYPES[dt].bytes;
    if (!Number.isInteger(b) || !Number.isInteger(e) || b < 0 || e - b !== nbytes || e > dataBytes) {
      throw bad(`entry '${name}' (${dtype} ${shapeStr(shape)}) has data offsets [${b}, ${e}] that do not match its size ${nbytes} or the data region (${dataBytes} bytes)`);
    }
    entries.push({ name, dtype, dt, shape, b, e });
  }
  const byOffset = [...entries].sort((x, y) => x.b - y.b || x.e - y.e);
  let end = 0;
  for (const en of byOffset) {
    if (en.b !== end) {
      throw bad(en.b > end
        ? `entry '${en.name}' starts at ${en.b}, leaving bytes ${end}..${en.b} of the data region unused (entries must be contiguous)`
        : `entry '${en.name}' [${en.b}, ${en.e}] overlaps the entry before it (which ends at ${end})`);
    }
    end = en.e;
  }
  if (end !== dataBytes) throw bad(`the entries cover ${end} bytes of data but the data region holds ${dataBytes} (trailing bytes)`);

  const tensors: Record<string, Tensor> = {};
  try {
    for (const { name, dt, shape, b, e } of entries) {
      const nbytes = e - b;
      // Copy into an aligned buffer: the data region need not be aligned for the typed array.
      const copy = new Uint8Array(nbytes);
      copy.set(buf.subarray(dataStart + b, dataStart + e));
      const arr = new DTYPES[dt].array(copy.buffer);
      tensors[name] = fromTyped(arr, shape.slice(), dt, dev);
    }
  } catch (e) {
    for (const t of Object.values(tensors)) t.dispose();
    throw e;
  }
  return { tensors, metadata };
}

export function loadSafetensors(file: string, opts: { device?: Device | string } = {}): LoadedSafetensors {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    throw new Error(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  return decodeSafetensors(buf, { ...opts, source: file });
}
