// numpy .npy files (np.save): magic "\x93NUMPY", version major.minor, a header length (u16 for
// 1.0, u32 for 2.0 and 3.0), a header that is a Python dict literal
// {'descr': '<f4', 'fortran_order': False, 'shape': (n, d), } padded with spaces and ended by
// "\n", then the raw array in C order. Format: numpy/lib/format.py (NEP 1).
//
// Read: versions 1.0, 2.0, 3.0; dtypes '<f4', '<f8' and '<f2' (little-endian float32, float64,
// float16; all become float32); C order; shape (d,) or (n, d). Everything else is refused with
// what was found: other dtypes ('<i4', big-endian '>f4', structured dtypes …), Fortran order,
// other shapes, data shorter or longer than the header says.
// Written: version 1.0, '<f4', C order, shape (n, d).

import { MelboError } from "../../errors.js";
import { f16ToF32 } from "../../util/half.js";

export const NPY_MAGIC = Uint8Array.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // "\x93NUMPY"

const DTYPES: Record<string, { size: number; name: string }> = {
  "<f4": { size: 4, name: "float32" },
  "<f8": { size: 8, name: "float64" },
  "<f2": { size: 2, name: "float16" },
};

export interface NpyVectors {
  /** [n * d] float32, row-major. */
  data: Float32Array;
  n: number;
  d: number;
  /** The stored dtype: float32, float64 or float16. */
  dtype: string;
  /** The stored shape, as the header gives it. */
  shape: number[];
}

export function hasNpyMagic(bytes: Uint8Array): boolean {
  return bytes.length >= NPY_MAGIC.length && NPY_MAGIC.every((b, i) => bytes[i] === b);
}

// ---------------------------------------------------------------- the header's dict literal

type PyValue = string | number | boolean | PyValue[] | { tuple: PyValue[] } | Map<string, PyValue>;

/** The subset of Python literals numpy writes in a header: dict, tuple, list, str, int, True/False. */
class LiteralParser {
  private pos = 0;
  constructor(
    private readonly text: string,
    private readonly file: string,
  ) {}

  private fail(what: string): never {
    const near = this.text.slice(Math.max(0, this.pos - 10), this.pos + 20).replace(/\n/g, "\\n");
    throw new MelboError(`npy header: ${what} at character ${this.pos} (near "${near}")`, { file: this.file });
  }
  private space(): void {
    while (this.pos < this.text.length && " \t\r\n".includes(this.text[this.pos]!)) this.pos++;
  }
  private peek(): string {
    this.space();
    return this.text[this.pos] ?? "";
  }
  private expect(c: string): void {
    if (this.peek() !== c) this.fail(`expected "${c}"`);
    this.pos++;
  }

  parseAll(): PyValue {
    const v = this.value(0);
    this.space();
    if (this.pos !== this.text.length) this.fail("unexpected text after the dict");
    return v;
  }

  private value(depth: number): PyValue {
    if (depth > 8) this.fail("nested too deeply");
    const c = this.peek();
    if (c === "{") return this.dict(depth);
    if (c === "(" || c === "[") return this.sequence(depth, c);
    if (c === "'" || c === '"') return this.string();
    if (/[0-9-]/.test(c)) return this.integer();
    for (const [word, v] of [["True", true], ["False", false]] as const) {
      if (this.text.startsWith(word, this.pos)) {
        this.pos += word.length;
        return v;
      }
    }
    return this.fail("expected a value");
  }
  private dict(depth: number): Map<string, PyValue> {
    this.expect("{");
    const out = new Map<string, PyValue>();
    while (this.peek() !== "}") {
      const key = this.value(depth + 1);
      if (typeof key !== "string") this.fail("a dict key is not a string");
      if (out.has(key)) this.fail(`the key '${key}' is given twice`);
      this.expect(":");
      out.set(key, this.value(depth + 1));
      if (this.peek() === ",") this.pos++;
      else if (this.peek() !== "}") this.fail('expected "," or "}"');
    }
    this.pos++;
    return out;
  }
  private sequence(depth: number, open: string): PyValue {
    const close = open === "(" ? ")" : "]";
    this.expect(open);
    const items: PyValue[] = [];
    let commas = 0;
    while (this.peek() !== close) {
      items.push(this.value(depth + 1));
      if (this.peek() === ",") {
        this.pos++;
        commas++;
      } else if (this.peek() !== close) this.fail(`expected "," or "${close}"`);
    }
    this.pos++;
    // "(3)" is the int 3 in Python, not a tuple; numpy writes "(3,)".
    if (open === "(" && items.length === 1 && commas === 0) return items[0]!;
    return open === "(" ? { tuple: items } : items;
  }
  private string(): string {
    const q = this.text[this.pos]!;
    const end = this.text.indexOf(q, this.pos + 1);
    if (end < 0) this.fail("unterminated string");
    const s = this.text.slice(this.pos + 1, end);
    if (s.includes("\\")) this.fail("escapes in strings are not read");
    this.pos = end + 1;
    return s;
  }
  private integer(): number {
    const m = /^-?[0-9]+/.exec(this.text.slice(this.pos, this.pos + 40));
    if (!m) this.fail("expected an integer");
    this.pos += m[0].length;
    // Python 2 longs ("3L") appear in very old files.
    if (this.text[this.pos] === "L") this.pos++;
    const n = Number(m[0]);
    if (!Number.isSafeInteger(n)) this.fail(`the integer ${m[0]} is too large`);
    return n;
  }
}

function show(v: PyValue): string {
  if (typeof v === "string") return `'${v}'`;
  if (typeof v === "boolean") return v ? "True" : "False";
  if (typeof v === "number") return String(v);
  if (Array.isArray(v)) return `[${v.map(show).join(", ")}]`;
  if (v instanceof Map) return `{${[...v].map(([k, x]) => `'${k}': ${show(x)}`).join(", ")}}`;
  return `(${v.tuple.map(show).join(", ")}${v.tuple.length === 1 ? "," : ""})`;
}

// ---------------------------------------------------------------- reading

/** Parses a whole .npy file held in memory; `file` names it in messages. */
export function parseNpy(bytes: Uint8Array, file: string): NpyVectors {
  if (!hasNpyMagic(bytes)) throw new MelboError('not a .npy file: it does not start with "\\x93NUMPY"', { file });
  if (bytes.length < 10) throw new MelboError(`the .npy file ends after ${bytes.length} bytes, inside its preamble: it is truncated`, { file });
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6]!, minor = bytes[7]!;
  if (!((major === 1 || major === 2 || major === 3) && minor === 0)) {
    throw new MelboError(`numpy format version ${major}.${minor} is not read (versions 1.0, 2.0 and 3.0 are)`, { file });
  }
  const lengthBytes = major === 1 ? 2 : 4;
  if (bytes.length < 8 + lengthBytes) throw new MelboError(`the .npy file ends after ${bytes.length} bytes, inside its preamble: it is truncated`, { file });
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const headerStart = 8 + lengthBytes;
  const dataStart = headerStart + headerLength;
  if (dataStart > bytes.length) {
    throw new MelboError(`the .npy header is ${headerLength} bytes long but the file ends after ${bytes.length - headerStart} of them: it is truncated`, { file });
  }
  if (headerLength > 1 << 20) throw new MelboError(`the .npy header is ${headerLength} bytes long: too long for an array header`, { file });
  const headerBytes = bytes.subarray(headerStart, dataStart);
  let text: string;
  try {
    // Versions 1.0 and 2.0 are latin1, 3.0 is utf-8.
    text = new TextDecoder(major === 3 ? "utf-8" : "latin1", { fatal: true }).decode(headerBytes);
  } catch {
    throw new MelboError("the .npy header is not valid utf-8", { file });
  }
  if (!text.endsWith("\n")) throw new MelboError('the .npy header does not end with "\\n": the file is damaged', { file });
  const header = new LiteralParser(text, file).parseAll();
  if (!(header instanceof Map)) throw new MelboError(`the .npy header is not a dict: ${show(header).slice(0, 80)}`, { file });
  const keys = [...header.keys()].sort();
  if (keys.join(",") !== "descr,fortran_order,shape") {
    throw new MelboError(`the .npy header must have the keys 'descr', 'fortran_order' and 'shape', found ${keys.map((k) => `'${k}'`).join(", ") || "none"}`, { file });
  }
  const descr = header.get("descr")!, fortran = header.get("fortran_order")!, shapeValue = header.get("shape")!;

  if (typeof descr !== "string") {
    throw new MelboError(`the array has a structured dtype (${show(descr).slice(0, 80)}): only float arrays '<f4', '<f8' and '<f2' can be imported`, { file });
  }
  const dtype = DTYPES[descr];
  if (dtype === undefined) {
    const bigEndian = /^>f[248]$/.test(descr) ? `; it is big-endian: save arr.astype('<${descr.slice(1)}')` : "";
    throw new MelboError(`the array's dtype is '${descr}': only little-endian floats '<f4' (float32), '<f8' (float64) and '<f2' (float16) can be imported${bigEndian}`, { file });
  }
  if (typeof fortran !== "boolean") throw new MelboError(`'fortran_order' must be True or False, found ${show(fortran)}`, { file });
  if (fortran) throw new MelboError("the array is stored in Fortran order: save a C-ordered array (np.save(path, np.ascontiguousarray(arr)))", { file });
  if (typeof shapeValue !== "object" || !("tuple" in shapeValue) || !shapeValue.tuple.every((x) => typeof x === "number" && x >= 0)) {
    throw new MelboError(`'shape' must be a tuple of non-negative integers, found ${show(shapeValue)}`, { file });
  }
  const shape = shapeValue.tuple as number[];
  const shapeText = show(shapeValue);
  if (shape.length !== 1 && shape.length !== 2) throw new MelboError(`the array has shape ${shapeText}: vectors must be (d,) or (n, d)`, { file });
  const d = shape[shape.length - 1]!;
  const n = shape.length === 2 ? shape[0]! : 1;
  if (n === 0 || d === 0) throw new MelboError(`the array has shape ${shapeText}: no vectors to import`, { file });
  const count = n * d;
  const need = count * dtype.size;
  if (!Number.isSafeInteger(need)) throw new MelboError(`the array has shape ${shapeText}: too large`, { file });
  const have = bytes.length - dataStart;
  if (have < need) {
    throw new MelboError(`the array ${shapeText} of '${descr}' needs ${need} bytes of data, the file holds ${have}: it is truncated`, { file });
  }
  if (have > need) throw new MelboError(`the file holds ${have - need} bytes after the array ${shapeText} of '${descr}': it is damaged, or not one array`, { file });

  const data = new Float32Array(count);
  if (descr === "<f2") {
    const bits = new Uint16Array(count);
    for (let i = 0; i < count; i++) bits[i] = view.getUint16(dataStart + 2 * i, true);
    f16ToF32(bits, data);
  } else if (descr === "<f4") {
    for (let i = 0; i < count; i++) data[i] = view.getFloat32(dataStart + 4 * i, true);
  } else {
    for (let i = 0; i < count; i++) data[i] = view.getFloat64(dataStart + 8 * i, true);
  }
  return { data, n, d, dtype: dtype.name, shape: [...shape] };
}

// ---------------------------------------------------------------- writing

/** The bytes np.save writes for a float32 C-ordered array of shape (n, d): version 1.0, '<f4'. */
export function encodeNpy(data: Float32Array, n: number, d: number): Uint8Array {
  if (data.length !== n * d) throw new Error(`encodeNpy: ${data.length} values for shape (${n}, ${d})`);
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${n}, ${d}), }`;
  // numpy pads so that the data starts at a multiple of 64 bytes, the header ending with "\n".
  const preamble = 10;
  header += " ".repeat((64 - ((preamble + header.length + 1) % 64)) % 64) + "\n";
  const out = new Uint8Array(preamble + header.length + 4 * data.length);
  out.set(NPY_MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  const view = new DataView(out.buffer);
  view.setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[preamble + i] = header.charCodeAt(i);
  const start = preamble + header.length;
  for (let i = 0; i < data.length; i++) view.setFloat32(start + 4 * i, data[i]!, true);
  return out;
}
