// PyTorch .pth / .pt checkpoints (torch.save since 1.6: a ZIP of stored entries, <archive>/data.pkl
// plus one <archive>/data/<key> entry per storage) read without Python, and safely.
//
// data.pkl is a pickle. A general unpickler calls whatever function the file names (a .pth can
// run `os.system`), so this one is restricted: it implements only the opcodes torch.save emits
// and resolves only an explicit allow-list of globals (OrderedDict, the tensor / parameter
// rebuild functions, the storage types). Any other global is an error naming it, raised when the
// global is read, before anything could be called; nothing from the file is ever executed: the
// allowed "calls" are interpreted here (build a dict, describe a tensor). Every read is
// bounds-checked, the stack, memo and mark depth are capped, and each tensor's view (offset,
// size, stride) is checked against its storage, so a damaged or hostile file is an error naming
// the file, the entry and the offset, never a crash, a hang or a huge allocation.
import * as fs from 'fs';
import { Tensor } from '../tensor/tensor';
import { DType, TypedArray } from '../tensor/dtype';
import { fromTyped } from '../tensor/create';
import { Device, checkDevice } from '../tensor/device';
import { ZipEntry, ZipError, readZipDirectory, zipEntryData } from '../io/zip';

// ------------------------------------------------------------------ pickle values

class PyTuple {
  constructor(readonly items: PyValue[]) {}
}
class PyList {
  constructor(readonly items: PyValue[]) {}
}
/** dict / OrderedDict: insertion-ordered entries; keys compared by a canonical string. */
class PyDict {
  readonly entries = new Map<string, [PyValue, PyValue]>();
  set(k: PyValue, v: PyValue): void {
    this.entries.set(keyOf(k), [k, v]);
  }
}
class PyGlobal {
  constructor(readonly qualname: string) {}
}
interface StorageRef {
  kind: 'storage';
  key: string;
  type: StorageType;
  numel: number;
}
class TensorRef {
  constructor(readonly storage: StorageRef, readonly offset: number, readonly size: number[], readonly stride: number[]) {}
}
type PyValue = null | boolean | number | bigint | string | Uint8Array | PyTuple | PyList | PyDict | PyGlobal | StorageRef | TensorRef;

function keyOf(k: PyValue): string {
  if (typeof k === 'string') return `s${k}`;
  if (typeof k === 'number' || typeof k === 'bigint') return `n${k}`;
  if (typeof k === 'boolean') return `n${k ? 1 : 0}`; // Python: True == 1 as a dict key
  if (k === null) return 'None';
  if (k instanceof PyTuple) return `t(${k.items.map(keyOf).join(',')})`;
  throw new Error(`unhashable dict key (${describe(k)})`);
}

/** Text from the file, made safe to print (control characters escaped: no terminal escapes). */
function printable(s: string): string {
  return s.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

function describe(v: PyValue): string {
  if (v === null) return 'None';
  if (typeof v === 'string') return `str ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v)}`;
  if (typeof v === 'number' || typeof v === 'bigint') return `number ${v}`;
  if (typeof v === 'boolean') return `bool ${v}`;
  if (v instanceof Uint8Array) return `bytes (${v.length})`;
  if (v instanceof PyTuple) return `tuple (${v.items.length})`;
  if (v instanceof PyList) return `list (${v.items.length})`;
  if (v instanceof PyDict) return `dict (${v.entries.size} entries)`;
  if (v instanceof PyGlobal) return `global ${v.qualname}`;
  if (v instanceof TensorRef) return `tensor [${v.size.join(', ')}]`;
  return 'storage';
}

// ------------------------------------------------------------------ allow-list

/** Storage classes: element size, how to read an element, and the scalpel dtype it becomes. */
type StorageType = 'FloatStorage' | 'DoubleStorage' | 'HalfStorage' | 'BFloat16Storage' | 'LongStorage' | 'IntStorage' | 'ShortStorage' | 'CharStorage' | 'ByteStorage' | 'BoolStorage';
const STORAGES: Record<StorageType, { bytes: number; dtype: DType; torch: string }> = {
  FloatStorage: { bytes: 4, dtype: 'float32', torch: 'float32' },
  DoubleStorage: { bytes: 8, dtype: 'float64', torch: 'float64' },
  // float16 / bfloat16 widen exactly to float32 (scalpel has no 16-bit floats).
  HalfStorage: { bytes: 2, dtype: 'float32', torch: 'float16' },
  BFloat16Storage: { bytes: 2, dtype: 'float32', torch: 'bfloat16' },
  LongStorage: { bytes: 8, dtype: 'int64', torch: 'int64' },
  IntStorage: { bytes: 4, dtype: 'int32', torch: 'int32' },
  // int16 / int8 widen exactly to int32.
  ShortStorage: { bytes: 2, dtype: 'int32', torch: 'int16' },
  CharStorage: { bytes: 1, dtype: 'int32', torch: 'int8' },
  ByteStorage: { bytes: 1, dtype: 'uint8', torch: 'uint8' },
  // bool becomes uint8 0 / 1.
  BoolStorage: { bytes: 1, dtype: 'uint8', torch: 'bool' },
};

const REBUILD_TENSOR = 'torch._utils._rebuild_tensor_v2';
const REBUILD_PARAMETER = 'torch._utils._rebuild_parameter';
const REBUILD_PARAMETER_STATE = 'torch._utils._rebuild_parameter_with_state';
const ORDERED_DICT = 'collections.OrderedDict';
/** The only globals a checkpoint may name. */
export const PTH_ALLOWED_GLOBALS: readonly string[] = [ORDERED_DICT, REBUILD_TENSOR, REBUILD_PARAMETER, REBUILD_PARAMETER_STATE, ...Object.keys(STORAGES).map((s) => `torch.${s}`)];

// ------------------------------------------------------------------ the unpickler

/** Caps on what a pickle may build (far above any checkpoint; a forged file hits them, not RAM). */
const MAX_STACK = 1 << 20;
const MAX_MARKS = 1 << 16;
const MAX_MEMO = 1 << 22;
const MAX_NDIM = 8;

const OPNAMES: Record<number, string> = {
  0x49: 'INT', 0x4c: 'LONG', 0x53: 'STRING', 0x56: 'UNICODE', 0x46: 'FLOAT', 0x70: 'PUT', 0x67: 'GET', 0x50: 'PERSID',
  0x69: 'INST', 0x6f: 'OBJ', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x92: 'NEWOBJ_EX', 0x8f: 'EMPTY_SET', 0x90: 'ADDITEMS',
  0x91: 'FROZENSET', 0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

class PickleError extends Error {}

/**
 * Runs the restricted unpickler over `pkl` and returns the top object. `where` names the file
 * and entry in errors; persistent ids go through `persistentLoad`.
 */
function unpickle(pkl: Uint8Array, where: string, persistentLoad: (pid: PyValue, at: number) => PyValue): PyValue {
  const view = new DataView(pkl.buffer, pkl.byteOffset, pkl.byteLength);
  const n = pkl.length;
  const stack: PyValue[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PyValue>();
  let pos = 0;
  let opAt = 0;
  const fail = (m: string) => new PickleError(`${where}: ${m} (opcode at offset ${opAt})`);
  const need = (k: number) => {
    if (k < 0 || pos + k > n) throw fail(`the pickle ends inside an opcode's argument (needs ${k} bytes at offset ${pos}, ${n - pos} left; truncated?)`);
  };
  const u8 = () => (need(1), pkl[pos++]);
  const u16 = () => (need(2), (pos += 2), view.getUint16(pos - 2, true));
  const u32 = () => (need(4), (pos += 4), view.getUint32(pos - 4, true));
  const i32 = () => (need(4), (pos += 4), view.getInt32(pos - 4, true));
  const u64 = () => {
    need(8);
    const v = view.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(n)) throw fail(`length ${v} exceeds the pickle (${n} bytes)`);
    return Number(v);
  };
  const bytes = (len: number) => {
    need(len);
    pos += len;
    return pkl.subarray(pos - len, pos);
  };
  const utf8 = (len: number) => Buffer.from(bytes(len)).toString('utf8');
  const line = () => {
    // GLOBAL's module and name: newline-terminated, at most 256 bytes each.
    const end = pkl.indexOf(0x0a, pos);
    if (end < 0 || end - pos > 256) throw fail('GLOBAL without a newline-terminated module / name');
    const s = Buffer.from(pkl.subarray(pos, end)).toString('latin1');
    pos = end + 1;
    return s;
  };
  const push = (v: PyValue) => {
    if (stack.length >= MAX_STACK) throw fail(`the stack exceeds ${MAX_STACK} items`);
    stack.push(v);
  };
  const pop = (): PyValue => {
    const floor = marks.length ? marks[marks.length - 1] : 0;
    if (stack.length <= floor) throw fail('stack underflow');
    return stack.pop()!;
  };
  const top = (): PyValue => {
    const floor = marks.length ? marks[marks.length - 1] : 0;
    if (stack.length <= floor) throw fail('stack underflow');
    return stack[stack.length - 1];
  };
  const popMark = (): PyValue[] => {
    if (!marks.length) throw fail('no MARK to pop to');
    return stack.splice(marks.pop()!);
  };
  const put = (i: number) => {
    if (!memo.has(i) && memo.size >= MAX_MEMO) throw fail(`the memo exceeds ${MAX_MEMO} entries`);
    memo.set(i, top());
  };
  const get = (i: number) => {
    if (!memo.has(i)) throw fail(`memo entry ${i} is read before it is written`);
    push(memo.get(i)!);
  };
  const int = (b: bigint): number | bigint => (b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b);
  const long = (len: number) => {
    // Little-endian two's complement; checkpoints hold small ints, so 64 bytes is plenty.
    if (len > 64) throw fail(`integer of ${len} bytes`);
    const b = bytes(len);
    let v = 0n;
    for (let i = len - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (len && b[len - 1] & 0x80) v -= 1n << BigInt(8 * len);
    return int(v);
  };
  const dictOf = (v: PyValue, op: string): PyDict => {
    if (!(v instanceof PyDict)) throw fail(`${op} on a ${describe(v)}, not a dict`);
    return v;
  };
  const listOf = (v: PyValue, op: string): PyList => {
    if (!(v instanceof PyList)) throw fail(`${op} on a ${describe(v)}, not a list`);
    return v;
  };
  const setItems = (d: PyDict, items: PyValue[]) => {
    if (items.length % 2) throw fail('SETITEMS with an odd number of items');
    try {
      for (let i = 0; i < items.length; i += 2) d.set(items[i], items[i + 1]);
    } catch (e) {
      throw fail((e as Error).message);
    }
  };
  const global = (module: string, name: string): PyGlobal => {
    const q = `${module}.${name}`;
    if (!PTH_ALLOWED_GLOBALS.includes(q)) {
      throw fail(`refusing to load: the pickle names the global '${printable(q)}', which is not on the allow-list of a weights file ` +
        `(${PTH_ALLOWED_GLOBALS.slice(0, 4).join(', ')}, torch.*Storage). No code from the file was executed. ` +
        'If the file is yours, load it in PyTorch and re-save its state_dict() (tensors only)');
    }
    return new PyGlobal(q);
  };
  /** REDUCE / NEWOBJ of an allowed global: interpreted here, nothing is called. */
  const call = (fn: PyValue, args: PyValue): PyValue => {
    if (!(fn instanceof PyGlobal)) throw fail(`REDUCE of a ${describe(fn)} (only allow-listed globals can be applied)`);
    if (!(args instanceof PyTuple)) throw fail(`REDUCE of ${fn.qualname} with ${describe(args)} instead of an argument tuple`);
    const a = args.items;
    switch (fn.qualname) {
      case ORDERED_DICT: {
        const d = new PyDict();
        if (a.length === 0) return d;
        // OrderedDict([(k, v), ...]).
        if (a.length === 1 && (a[0] instanceof PyList || a[0] instanceof PyTuple)) {
          for (const kv of a[0].items) {
            if (!(kv instanceof PyTuple) || kv.items.length !== 2) throw fail('OrderedDict(...) of something other than (key, value) pairs');
            setItems(d, kv.items);
          }
          return d;
        }
        throw fail(`OrderedDict called with ${a.length} arguments`);
      }
      case REBUILD_TENSOR: {
        // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        if (a.length < 4) throw fail(`${REBUILD_TENSOR} with ${a.length} arguments (expected at least 4)`);
        const [storage, offset, size, stride] = a;
        if (!storage || (storage as StorageRef).kind !== 'storage') throw fail(`${REBUILD_TENSOR}: the first argument is a ${describe(storage)}, not a storage`);
        const ints = (v: PyValue, what: string): number[] => {
          if (!(v instanceof PyTuple) || v.items.length > MAX_NDIM || !v.items.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0)) {
            throw fail(`${REBUILD_TENSOR}: ${what} must be a tuple of at most ${MAX_NDIM} non-negative integers, got ${describe(v)}`);
          }
          return v.items as number[];
        };
        const sz = ints(size, 'size');
        const st = ints(stride, 'stride');
        if (sz.length !== st.length) throw fail(`${REBUILD_TENSOR}: size has ${sz.length} dimensions but stride ${st.length}`);
        if (typeof offset !== 'number' || !Number.isInteger(offset) || offset < 0) throw fail(`${REBUILD_TENSOR}: storage offset ${describe(offset)}`);
        return new TensorRef(storage as StorageRef, offset, sz, st);
      }
      case REBUILD_PARAMETER:
      case REBUILD_PARAMETER_STATE:
        // (data, requires_grad, backward_hooks[, state]): a parameter is its tensor here.
        if (!(a[0] instanceof TensorRef)) throw fail(`${fn.qualname}: the first argument is a ${describe(a[0])}, not a tensor`);
        return a[0];
      default:
        throw fail(`${fn.qualname} cannot be applied (it is only valid as a storage type)`);
    }
  };

  while (true) {
    opAt = pos;
    if (pos >= n) throw fail('the pickle ends without a STOP opcode (truncated?)');
    const op = pkl[pos++];
    switch (op) {
      case 0x80: { // PROTO
        const v = u8();
        if (v < 2 || v > 5) throw fail(`unsupported pickle protocol ${v}`);
        break;
      }
      case 0x95: u64(); break; // FRAME: a length hint only
      case 0x2e: { // STOP
        const v = pop();
        if (stack.length || marks.length) throw fail(`STOP with ${stack.length} items left on the stack`);
        return v;
      }
      case 0x28: // MARK
        if (marks.length >= MAX_MARKS) throw fail(`more than ${MAX_MARKS} nested MARKs`);
        marks.push(stack.length);
        break;
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: push(top()); break; // DUP
      case 0x4e: push(null); break; // NONE
      case 0x88: push(true); break; // NEWTRUE
      case 0x89: push(false); break; // NEWFALSE
      case 0x4b: push(u8()); break; // BININT1
      case 0x4d: push(u16()); break; // BININT2
      case 0x4a: push(i32()); break; // BININT
      case 0x8a: push(long(u8())); break; // LONG1
      case 0x8b: { // LONG4
        const len = i32();
        if (len < 0) throw fail('LONG4 with a negative length');
        push(long(len));
        break;
      }
      case 0x47: need(8); push(view.getFloat64(pos, false)); pos += 8; break; // BINFLOAT (big-endian)
      case 0x58: push(utf8(u32())); break; // BINUNICODE
      case 0x8c: push(utf8(u8())); break; // SHORT_BINUNICODE
      case 0x8d: push(utf8(u64())); break; // BINUNICODE8
      case 0x54: { // BINSTRING (Python 2 str)
        const len = i32();
        if (len < 0) throw fail('BINSTRING with a negative length');
        push(Buffer.from(bytes(len)).toString('latin1'));
        break;
      }
      case 0x55: push(Buffer.from(bytes(u8())).toString('latin1')); break; // SHORT_BINSTRING
      case 0x42: push(bytes(u32()).slice()); break; // BINBYTES
      case 0x43: push(bytes(u8()).slice()); break; // SHORT_BINBYTES
      case 0x8e: push(bytes(u64()).slice()); break; // BINBYTES8
      case 0x7d: push(new PyDict()); break; // EMPTY_DICT
      case 0x5d: push(new PyList([])); break; // EMPTY_LIST
      case 0x29: push(new PyTuple([])); break; // EMPTY_TUPLE
      case 0x74: push(new PyTuple(popMark())); break; // TUPLE
      case 0x85: push(new PyTuple([pop()])); break; // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); push(new PyTuple([a, b])); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); push(new PyTuple([a, b, c])); break; } // TUPLE3
      case 0x6c: push(new PyList(popMark())); break; // LIST
      case 0x64: { const d = new PyDict(); setItems(d, popMark()); push(d); break; } // DICT
      case 0x61: { const v = pop(); listOf(top(), 'APPEND').items.push(v); break; } // APPEND
      case 0x65: { const items = popMark(); listOf(top(), 'APPENDS').items.push(...items); break; } // APPENDS
      case 0x73: { const v = pop(); const k = pop(); setItems(dictOf(top(), 'SETITEM'), [k, v]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(dictOf(top(), 'SETITEMS'), items); break; } // SETITEMS
      case 0x71: put(u8()); break; // BINPUT
      case 0x72: put(u32()); break; // LONG_BINPUT
      case 0x94: put(memo.size); break; // MEMOIZE
      case 0x68: get(u8()); break; // BINGET
      case 0x6a: get(u32()); break; // LONG_BINGET
      case 0x63: { const module = line(); push(global(module, line())); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw fail('STACK_GLOBAL of non-strings');
        push(global(module, name));
        break;
      }
      case 0x52: { const args = pop(); const fn = pop(); push(call(fn, args)); break; } // REDUCE
      case 0x81: { const args = pop(); const cls = pop(); push(call(cls, args)); break; } // NEWOBJ (cls.__new__(cls, *args))
      case 0x62: { // BUILD: sets attributes (an OrderedDict's _metadata, a parameter's state); not needed
        const state = pop();
        const obj = top();
        if (!(obj instanceof PyDict || obj instanceof TensorRef)) throw fail(`BUILD on a ${describe(obj)}`);
        void state;
        break;
      }
      case 0x51: { const pid = pop(); push(persistentLoad(pid, opAt)); break; } // BINPERSID
      default: {
        const name = OPNAMES[op];
        throw fail(name
          ? `unsupported pickle opcode ${name} (0x${op.toString(16)}); torch.save does not write it. No code from the file was executed`
          : `unknown pickle opcode 0x${op.toString(16)} (damaged file?)`);
      }
    }
  }
}

// ------------------------------------------------------------------ tensors from storages

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** The storage's elements in a typed array of its own element type (little-endian, aligned). */
function storageArray(bytes: Buffer, type: StorageType, bigEndian: boolean): TypedArray | Int16Array | Int8Array | Uint16Array {
  const { bytes: w } = STORAGES[type];
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  if (bigEndian && w > 1) for (let i = 0; i < copy.length; i += w) copy.subarray(i, i + w).reverse();
  const b = copy.buffer;
  switch (type) {
    case 'FloatStorage': return new Float32Array(b);
    case 'DoubleStorage': return new Float64Array(b);
    case 'HalfStorage': case 'BFloat16Storage': return new Uint16Array(b);
    case 'LongStorage': return new BigInt64Array(b);
    case 'IntStorage': return new Int32Array(b);
    case 'ShortStorage': return new Int16Array(b);
    case 'CharStorage': return new Int8Array(b);
    default: return copy;
  }
}

/** Largest element count a view may have beyond its storage's (a stride-0 expand); caps allocation. */
const MAX_EXPANDED = 1 << 24;

function materialise(name: string, t: TensorRef, storage: ReturnType<typeof storageArray>, where: string, device: Device): Tensor {
  const { dtype } = STORAGES[t.storage.type];
  const count = t.size.reduce((a, b) => a * b, 1);
  if (count > 0) {
    const last = t.offset + t.size.reduce((a, s, d) => a + (s - 1) * t.stride[d], 0);
    if (last >= storage.length) {
      throw new Error(`${where}: tensor '${name}' (size [${t.size.join(', ')}], stride [${t.stride.join(', ')}], offset ${t.offset}) reaches element ${last} of storage '${t.storage.key}', which has ${storage.length}`);
    }
    if (count > storage.length && count > MAX_EXPANDED) {
      throw new Error(`${where}: tensor '${name}' has ${count} elements, more than its storage '${t.storage.key}' (${storage.length}) and than ${MAX_EXPANDED}`);
    }
  }
  // 1. Gather the view's elements, in row-major order, into an array of the storage's own type:
  //    a contiguous view is one block copy (the usual case); any other view (a transpose, a
  //    column) is walked with an odometer over the dimensions and so becomes contiguous.
  type Raw = Float32Array; // every storage array is indexed alike; the alias keeps the loops monomorphic to read
  const src = storage as unknown as Raw;
  const Ctor = src.constructor as new (n: number) => Raw;
  const contiguous = t.size.every((s, d) => s === 1 || t.stride[d] === t.size.slice(d + 1).reduce((a, b) => a * b, 1));
  let raw: Raw;
  if (contiguous) raw = src.slice(t.offset, t.offset + count);
  else {
    raw = new Ctor(count);
    const nd = t.size.length;
    const idx = new Array<number>(nd).fill(0);
    let p = t.offset;
    for (let j = 0; j < count; j++) {
      raw[j] = src[p];
      for (let d = nd - 1; d >= 0; d--) {
        if (++idx[d] < t.size[d]) {
          p += t.stride[d];
          break;
        }
        p -= (t.size[d] - 1) * t.stride[d];
        idx[d] = 0;
      }
    }
  }
  // 2. Convert to the scalpel dtype (float16 through a 65536-entry table, bfloat16 by a shift into
  //    the float32 bit pattern, bool to 0 / 1, int8 / int16 widened by TypedArray.set).
  let out: TypedArray;
  switch (t.storage.type) {
    case 'HalfStorage': {
      const table = halfTable();
      const o = new Float32Array(count);
      for (let j = 0; j < count; j++) o[j] = table[raw[j]];
      out = o;
      break;
    }
    case 'BFloat16Storage': {
      const o = new Uint32Array(count);
      for (let j = 0; j < count; j++) o[j] = raw[j] << 16;
      out = new Float32Array(o.buffer);
      break;
    }
    case 'BoolStorage': {
      const o = new Uint8Array(count);
      for (let j = 0; j < count; j++) o[j] = raw[j] ? 1 : 0;
      out = o;
      break;
    }
    case 'ShortStorage': case 'CharStorage': {
      const o = new Int32Array(count);
      o.set(raw);
      out = o;
      break;
    }
    default:
      out = raw as unknown as TypedArray;
  }
  return fromTyped(out, t.size.slice(), dtype, device);
}

let HALF_TABLE: Float32Array | null = null;
function halfTable(): Float32Array {
  if (!HALF_TABLE) {
    HALF_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) HALF_TABLE[h] = halfToFloat(h);
  }
  return HALF_TABLE;
}

// ------------------------------------------------------------------ the checkpoint

export interface LoadPthOptions {
  device?: Device | string;
  /**
   * Which entry of a wrapping dict holds the state dict (e.g. 'state_dict'). Default: the file's
   * top-level dict when all its values are tensors, else the first of state_dict,
   * model_state_dict, model, net that is a dict of tensors (reported through onNote).
   */
  key?: string;
  /** Remove this prefix from the names that start with it (e.g. 'module.' of DataParallel). */
  stripPrefix?: string;
  /** Receives notes on choices made (which wrapper key was used, a prefix that was seen). */
  onNote?: (note: string) => void;
  /** Check each entry's CRC-32 (default true). */
  verifyChecksums?: boolean;
}

export const PTH_WRAPPER_KEYS = ['state_dict', 'model_state_dict', 'model', 'net'];

const LEGACY_MAGIC = Buffer.from([0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);

/** Parses torch.save bytes into a name -> tensor dict; `source` names the file in errors. */
export function decodePth(buf: Buffer, opts: LoadPthOptions & { source?: string } = {}): Record<string, Tensor> {
  const source = opts.source ?? '<buffer>';
  const device = checkDevice(opts.device ?? 'cpu', 'loadPth');
  if (buf.length && buf[0] === 0x80) {
    // The legacy format is a pickle stream starting with the protocol and a magic number.
    throw new Error(buf.subarray(0, 32).indexOf(LEGACY_MAGIC) >= 0
      ? `${source}: a legacy (pre-1.6, non-ZIP) PyTorch checkpoint, which is not supported: load it with torch.load in PyTorch >= 1.6 and re-save it with torch.save (the default ZIP format since 1.6)`
      : `${source}: a bare pickle, not a torch.save checkpoint (a ZIP archive): re-save the weights with torch.save(model.state_dict(), file) from PyTorch >= 1.6`);
  }
  if (buf.length >= 262 && buf.toString('latin1', 257, 262) === 'ustar') {
    throw new Error(`${source}: a legacy tar-format PyTorch checkpoint (PyTorch < 0.4), which is not supported: load it with an old torch and re-save it with torch.save from PyTorch >= 1.6`);
  }
  if (buf.length < 4 || buf.readUInt32LE(0) !== 0x04034b50) {
    const head = [...buf.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new Error(`${source}: not a PyTorch checkpoint: torch.save (PyTorch >= 1.6) writes a ZIP archive starting with 50 4b 03 04 ('PK'), this file starts with ${head || 'nothing (empty file)'}`);
  }
  const verify = opts.verifyChecksums ?? true;
  let entries: Map<string, ZipEntry>;
  try {
    entries = readZipDirectory(buf, source);
  } catch (e) {
    if (e instanceof ZipError) throw new Error(e.message);
    throw e;
  }
  const names = [...entries.keys()];
  const pkls = names.filter((k) => /^[^/]+\/data\.pkl$/.test(k));
  if (pkls.length !== 1) {
    const ts = names.some((k) => /^[^/]+\/(constants\.pkl|code\/)/.test(k));
    throw new Error(ts
      ? `${source}: a TorchScript archive (torch.jit.save), not a torch.save checkpoint: load it in PyTorch and torch.save(model.state_dict())`
      : `${source}: not a torch.save archive: expected one '<archive>/data.pkl' entry, found ${pkls.length} (entries: ${names.slice(0, 6).join(', ')}${names.length > 6 ? ', ...' : ''})`);
  }
  const prefix = pkls[0].slice(0, -'data.pkl'.length);
  const read = (e: ZipEntry) => {
    try {
      return zipEntryData(buf, e, source, verify);
    } catch (err) {
      throw new Error((err as Error).message);
    }
  };
  let bigEndian = false;
  const bo = entries.get(`${prefix}byteorder`);
  if (bo) {
    const v = read(bo).toString('latin1').trim();
    if (v !== 'little' && v !== 'big') throw new Error(`${source}: entry '${bo.name}' says the byte order is ${JSON.stringify(v)} (expected little or big)`);
    bigEndian = v === 'big';
  }

  const storages = new Map<string, StorageRef>();
  const persistentLoad = (pid: PyValue, at: number): PyValue => {
    const bad = (m: string) => new Error(`${source}: ${pkls[0]}: persistent id at offset ${at}: ${m}`);
    if (!(pid instanceof PyTuple) || pid.items[0] !== 'storage' || pid.items.length !== 5) throw bad(`expected ('storage', type, key, location, numel), got ${describe(pid)}`);
    const [, type, key, , numel] = pid.items;
    if (!(type instanceof PyGlobal) || !type.qualname.startsWith('torch.') || !(type.qualname.slice(6) in STORAGES)) throw bad(`storage type ${describe(type)} is not a known storage class`);
    if (typeof key !== 'string') throw bad(`storage key ${describe(key)} is not a string`);
    if (typeof numel !== 'number' || !Number.isInteger(numel) || numel < 0) throw bad(`storage '${key}' has element count ${describe(numel)}`);
    const st = type.qualname.slice(6) as StorageType;
    const seen = storages.get(key);
    if (seen) {
      if (seen.type !== st) throw bad(`storage '${key}' is referenced as ${seen.type} and as ${st}`);
      return seen;
    }
    const entry = entries.get(`${prefix}data/${key}`);
    if (!entry) throw bad(`storage '${key}' has no entry '${prefix}data/${key}' in the archive`);
    if (entry.size !== numel * STORAGES[st].bytes) throw bad(`entry '${entry.name}' holds ${entry.size} bytes but storage '${key}' is ${numel} x ${STORAGES[st].torch} (${numel * STORAGES[st].bytes} bytes)`);
    const ref: StorageRef = { kind: 'storage', key, type: st, numel };
    storages.set(key, ref);
    return ref;
  };
  let obj: PyValue;
  try {
    obj = unpickle(read(entries.get(pkls[0])!), `${source}: ${pkls[0]}`, persistentLoad);
  } catch (e) {
    if (e instanceof PickleError) throw new Error(e.message);
    throw e;
  }

  const dict = selectStateDict(obj, source, opts);
  // Tensors: each storage is read (and CRC-checked) once, however many views share it.
  const arrays = new Map<string, ReturnType<typeof storageArray>>();
  const out: Record<string, Tensor> = {};
  try {
    for (const [name, t] of dict) {
      let arr = arrays.get(t.storage.key);
      if (!arr) arrays.set(t.storage.key, (arr = storageArray(read(entries.get(`${prefix}data/${t.storage.key}`)!), t.storage.type, bigEndian)));
      out[name] = materialise(name, t, arr, source, device);
    }
  } catch (e) {
    for (const t of Object.values(out)) t.dispose();
    throw e;
  }
  return out;
}

/** The name -> tensor entries the options select (wrapper key, prefix), in file order. */
function selectStateDict(obj: PyValue, source: string, opts: LoadPthOptions): [string, TensorRef][] {
  const note = opts.onNote ?? (() => {});
  const tensorsOf = (d: PyDict): [string, TensorRef][] | null => {
    const out: [string, TensorRef][] = [];
    for (const [k, v] of d.entries.values()) {
      if (typeof k !== 'string' || !(v instanceof TensorRef)) return null;
      out.push([k, v]);
    }
    return out;
  };
  const listing = (d: PyDict) => [...d.entries.values()].slice(0, 8).map(([k, v]) => `${typeof k === 'string' ? printable(k) : describe(k)}: ${describe(v)}`).join(', ') + (d.entries.size > 8 ? ', ...' : '');
  if (!(obj instanceof PyDict)) throw new Error(`${source}: the checkpoint holds a ${describe(obj)}, not a dict of tensors (a state_dict)`);
  let chosen: [string, TensorRef][] | null;
  if (opts.key !== undefined) {
    const e = obj.entries.get(keyOf(opts.key));
    if (!e) throw new Error(`${source}: the checkpoint has no key '${opts.key}' (its keys: ${listing(obj)})`);
    if (!(e[1] instanceof PyDict) || !(chosen = tensorsOf(e[1]))) {
      throw new Error(`${source}: the checkpoint's '${opts.key}' is not a dict of name -> tensor (${e[1] instanceof PyDict ? listing(e[1]) : describe(e[1])})`);
    }
  } else if (!(chosen = tensorsOf(obj))) {
    const k = PTH_WRAPPER_KEYS.find((w) => {
      const e = obj.entries.get(keyOf(w));
      return e && e[1] instanceof PyDict && tensorsOf(e[1]);
    });
    if (!k) {
      throw new Error(`${source}: the checkpoint is a dict that is not a state dict (name -> tensor) and has none of the keys ${PTH_WRAPPER_KEYS.join(', ')} holding one ` +
        `(its keys: ${listing(obj)}); choose the entry with the key option (--key)`);
    }
    chosen = tensorsOf(obj.entries.get(keyOf(k))![1] as PyDict)!;
    const others = [...obj.entries.values()].map(([kk]) => String(kk)).filter((kk) => kk !== k).map(printable);
    note(`${source}: using the checkpoint's '${k}' entry as the state dict${others.length ? ` (other keys: ${others.slice(0, 8).join(', ')}${others.length > 8 ? ', ...' : ''})` : ''}`);
  }
  if (opts.stripPrefix) {
    const p = opts.stripPrefix;
    const hits = chosen.filter(([k]) => k.startsWith(p)).length;
    if (!hits) note(`${source}: no name starts with '${p}'; nothing stripped`);
    chosen = chosen.map(([k, v]) => [k.startsWith(p) ? k.slice(p.length) : k, v]);
    const seen = new Set<string>();
    for (const [k] of chosen) {
      if (seen.has(k)) throw new Error(`${source}: stripping '${p}' makes two entries named '${printable(k)}'`);
      seen.add(k);
    }
  } else if (chosen.length && chosen.every(([k]) => k.startsWith('module.'))) {
    note(`${source}: every name starts with 'module.' (saved from DataParallel); pass stripPrefix: 'module.' (--strip-prefix module.) to remove it`);
  }
  return chosen;
}

/**
 * Reads a PyTorch checkpoint (torch.save, PyTorch >= 1.6) into a name -> tensor dict for
 * model.loadStateDict(sc.loadPth(file)). float16 / bfloat16 become float32, int16 / int8 int32,
 * bool uint8; views are copied contiguous. Only tensors, dicts and the allow-listed PyTorch
 * rebuild functions are accepted: a file naming any other Python global is refused unread.
 */
export function loadPth(file: string, opts: LoadPthOptions = {}): Record<string, Tensor> {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    throw new Error(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  return decodePth(buf, { ...opts, source: file });
}
