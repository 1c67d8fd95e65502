import assert from "node:assert/strict";
import { readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { MelboError } from "../src/errors.js";
import {
  readSafetensorsHeader,
  readSafetensorsTensor,
  writeSafetensors,
  ALL_DTYPES,
} from "../src/model/safetensors.js";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../src/util/half.js";
import { rejectsMelbo, tempDir } from "./helpers/errors.js";

/** A raw .safetensors file: header (object or literal text), data bytes, optional length override. */
async function rawFile(dir: string, name: string, header: unknown, data: Uint8Array, headerLen?: bigint): Promise<string> {
  const text = typeof header === "string" ? header : JSON.stringify(header);
  const hb = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + hb.length + data.length);
  new DataView(out.buffer).setBigUint64(0, headerLen ?? BigInt(hb.length), true);
  out.set(hb, 8);
  out.set(data, 8 + hb.length);
  const path = join(dir, name);
  await writeFile(path, out);
  return path;
}

describe("writeSafetensors / readSafetensorsHeader round trip", () => {
  it("writes every dtype, aligned, contiguous and padded, and reads the values back", async () => {
    const dir = await tempDir();
    const path = join(dir, "all.safetensors");
    const f32 = Float32Array.from({ length: 6 }, (_, i) => i * 0.25 - 1);
    const bf = Float32Array.from([1, -2, 0.5, 3.140625]); // exactly representable in bf16
    const f16 = Float32Array.from([1, -2, 0.5, 65504, 2 ** -24, 0.1]);
    const i32 = Int32Array.from([151644, 8948, -7]);
    const f64 = Float64Array.from([Math.PI, -1e-300]);
    await writeSafetensors(
      path,
      [
        { name: "a.bf16", dtype: "BF16", shape: [2, 2], data: bf },
        { name: "b.f32", dtype: "F32", shape: [2, 3], data: f32 },
        { name: "c.i32", dtype: "I32", shape: [3], data: i32 },
        { name: "d.f16", dtype: "F16", shape: [6], data: f16 },
        { name: "e.f64", dtype: "F64", shape: [2], data: () => f64 }, // lazily produced
        { name: "f.i64", dtype: "I64", shape: [1, 2], data: Int32Array.from([5, -6]) },
        { name: "g.empty", dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
        { name: "h.scalar", dtype: "F32", shape: [], data: Float32Array.from([42]) },
      ],
      { format: "pt", note: "round trip" },
    );
    assert.deepEqual(await readdir(dir), ["all.safetensors"], "temporary file left behind");

    const h = await readSafetensorsHeader(path, { allowDtypes: ALL_DTYPES });
    assert.deepEqual(h.metadata, { format: "pt", note: "round trip" });
    assert.equal((h.dataOffset - 8) % 8, 0, "header length is not a multiple of 8");
    // What Python's safetensors demands: ranges sorted, contiguous from 0, ending at the file end.
    const ranges = h.tensors.map((t) => [t.offset - h.dataOffset, t.offset - h.dataOffset + t.nbytes] as const).sort((a, b) => a[0] - b[0]);
    let cursor = 0;
    for (const [b, e] of ranges) {
      assert.equal(b, cursor);
      cursor = e;
    }
    assert.equal(h.dataOffset + cursor, h.fileSize);
    for (const t of h.tensors) {
      const size = { F64: 8, I64: 8, F32: 4, I32: 4, F16: 2, BF16: 2 }[t.dtype];
      assert.equal(t.offset % size, 0, `${t.name} is not aligned to ${size}`);
    }
    const byName = new Map(h.tensors.map((t) => [t.name, t]));
    assert.deepEqual(byName.get("b.f32")?.shape, [2, 3]);
    assert.equal(byName.get("b.f32")?.nbytes, 24);
    assert.equal(byName.get("a.bf16")?.dtype, "BF16");

    const read = async (name: string) => (await readSafetensorsTensor(path, name)).data;
    assert.deepEqual(await read("b.f32"), f32);
    assert.deepEqual(await read("a.bf16"), bf);
    assert.deepEqual(await read("c.i32"), i32);
    assert.deepEqual(await read("e.f64"), f64);
    assert.deepEqual(await read("f.i64"), Int32Array.from([5, -6]));
    assert.deepEqual(await read("g.empty"), new Float32Array(0));
    assert.deepEqual(await read("h.scalar"), Float32Array.from([42]));
    const half = await read("d.f16");
    assert.deepEqual(Array.from(half.slice(0, 5)), [1, -2, 0.5, 65504, 2 ** -24]);
    assert.ok(Math.abs(half[5]! - 0.1) < 1e-4 && half[5] !== Math.fround(0.1), "0.1 should be rounded to f16");
    const t = await readSafetensorsTensor(path, "a.bf16");
    assert.equal(t.dtype, "BF16");
    assert.deepEqual(t.shape, [2, 2]);
  });

  it("reads only F32/F16/BF16 by default; I32 needs allowDtypes", async () => {
    const dir = await tempDir();
    const path = join(dir, "tokens.safetensors");
    await writeSafetensors(path, [{ name: "tokens", dtype: "I32", shape: [1, 2], data: Int32Array.from([1, 2]) }]);
    await rejectsMelbo(() => readSafetensorsHeader(path), path, `tensor "tokens"`, `unsupported dtype "I32"`);
    const h = await readSafetensorsHeader(path, { allowDtypes: ["I32"] });
    assert.equal(h.tensors[0]?.dtype, "I32");
  });

  it("replaces an existing file, and rejects data that doesn't fit the shape or dtype", async () => {
    const dir = await tempDir();
    const path = join(dir, "v.safetensors");
    await writeSafetensors(path, [{ name: "v", dtype: "F32", shape: [2], data: Float32Array.from([1, 2]) }]);
    await writeSafetensors(path, [{ name: "v", dtype: "F32", shape: [3], data: Float32Array.from([3, 4, 5]) }]);
    assert.deepEqual((await readSafetensorsTensor(path, "v")).data, Float32Array.from([3, 4, 5]));
    await rejectsMelbo(
      () => writeSafetensors(path, [{ name: "v", dtype: "F32", shape: [4], data: Float32Array.from([1, 2]) }]),
      path, "2 elements for shape [4]",
    );
    await rejectsMelbo(
      () => writeSafetensors(path, [{ name: "v", dtype: "I32", shape: [2], data: Float32Array.from([1, 2]) }]),
      path, "Float32Array cannot be written as I32",
    );
    await rejectsMelbo(
      () => writeSafetensors(path, [
        { name: "v", dtype: "F32", shape: [1], data: Float32Array.from([1]) },
        { name: "v", dtype: "F32", shape: [1], data: Float32Array.from([1]) },
      ]),
      path, `tensor "v" given twice`,
    );
    // Failed writes leave the previous file intact and no temporary file behind.
    assert.deepEqual(await readdir(dir), ["v.safetensors"]);
    assert.deepEqual((await readSafetensorsTensor(path, "v")).data, Float32Array.from([3, 4, 5]));
    await rejectsMelbo(() => readSafetensorsTensor(path, "w"), path, `no tensor "w"`, "found: v");
  });
});

describe("readSafetensorsHeader rejects corrupt headers, naming the file", () => {
  const ok = { w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };
  const data8 = new Uint8Array(8);

  it("accepts the well-formed baseline", async () => {
    const dir = await tempDir();
    const p = await rawFile(dir, "ok.safetensors", ok, data8);
    const h = await readSafetensorsHeader(p);
    assert.equal(h.tensors.length, 1);
    assert.equal(h.tensors[0]?.offset, 8 + JSON.stringify(ok).length);
    assert.equal(h.tensors[0]?.path, p);
  });

  const cases: [string, unknown, Uint8Array, bigint | undefined, string[]][] = [
    ["header length beyond the file size", ok, data8, 1000n, ["header length 1000 exceeds the file size"]],
    ["huge header length", ok, data8, 2n ** 63n, ["exceeds the file size"]],
    ["bad JSON", "{\"w\": {\"dtype\": \"F32\",", data8, undefined, ["header is not valid JSON"]],
    ["a JSON array", "[1,2,3]", data8, undefined, ["header is not a JSON object"]],
    ["offsets past the data", { w: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, data8, undefined,
      [`tensor "w"`, "data_offsets [0, 16] outside the data section (8 bytes)"]],
    ["begin after end", { w: { dtype: "F32", shape: [0], data_offsets: [8, 4] } }, data8, undefined, [`tensor "w"`, "outside the data section"]],
    ["negative offset", { w: { dtype: "F32", shape: [2], data_offsets: [-8, 0] } }, data8, undefined, [`tensor "w"`, "data_offsets must be [begin, end]"]],
    ["overlapping tensors", {
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "F32", shape: [1], data_offsets: [4, 8] },
    }, data8, undefined, [`"a" [0, 8] and "b" [4, 8] overlap`]],
    ["wrong element count", { w: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, data8, undefined,
      [`tensor "w"`, "8 bytes in data_offsets, but F32 [3] needs 12"]],
    ["wrong element size for BF16", { w: { dtype: "BF16", shape: [2], data_offsets: [0, 8] } }, data8, undefined, ["BF16 [2] needs 4"]],
    ["unknown dtype", { w: { dtype: "Q4_K", shape: [2], data_offsets: [0, 8] } }, data8, undefined, [`tensor "w"`, `unsupported dtype "Q4_K"`]],
    ["an I8 tensor in weights", { w: { dtype: "I8", shape: [8], data_offsets: [0, 8] } }, data8, undefined, [`tensor "w"`, `unsupported dtype "I8"`]],
    ["negative dimension", { w: { dtype: "F32", shape: [-2], data_offsets: [0, 8] } }, data8, undefined, [`tensor "w"`, "shape must be an array of non-negative integers"]],
    ["fractional dimension", { w: { dtype: "F32", shape: [1.5], data_offsets: [0, 8] } }, data8, undefined, ["shape must be"]],
    ["missing dtype", { w: { shape: [2], data_offsets: [0, 8] } }, data8, undefined, [`tensor "w": missing dtype`]],
    ["entry not an object", { w: [1, 2] }, data8, undefined, [`tensor "w": entry is not an object`]],
    ["non-string metadata", { __metadata__: { step: 3 }, ...ok }, data8, undefined, [`"__metadata__" entry "step" is not a string`]],
  ];
  for (const [what, header, data, len, fragments] of cases) {
    it(what, async () => {
      const dir = await tempDir();
      const p = await rawFile(dir, "bad.safetensors", header, data, len);
      await rejectsMelbo(() => readSafetensorsHeader(p), p, ...fragments);
    });
  }

  it("a file shorter than the length prefix, and a missing file", async () => {
    const dir = await tempDir();
    const p = join(dir, "short.safetensors");
    await writeFile(p, new Uint8Array(5));
    await rejectsMelbo(() => readSafetensorsHeader(p), p, "only 5 bytes");
    const missing = join(dir, "none.safetensors");
    await rejectsMelbo(() => readSafetensorsHeader(missing), missing, "file not found");
  });

  it("invalid UTF-8 in the header", async () => {
    const dir = await tempDir();
    const p = join(dir, "utf.safetensors");
    const bytes = new Uint8Array(8 + 4);
    new DataView(bytes.buffer).setBigUint64(0, 4n, true);
    bytes.set([0x7b, 0xff, 0xfe, 0x7d], 8); // "{", two invalid bytes, "}"
    await writeFile(p, bytes);
    const e = await rejectsMelbo(() => readSafetensorsHeader(p), p, "header is not valid JSON");
    assert.ok(e instanceof MelboError);
  });

  it("the header bytes are read without reading the data", async () => {
    // A 1-tensor file whose data section is 64 MB: reading the header must not need it all.
    const dir = await tempDir();
    const p = join(dir, "big.safetensors");
    const n = 16 * 1024 * 1024;
    await writeSafetensors(p, [{ name: "x", dtype: "F32", shape: [n], data: new Float32Array(n) }]);
    const before = process.memoryUsage().arrayBuffers;
    const h = await readSafetensorsHeader(p);
    assert.equal(h.tensors[0]?.nbytes, 4 * n);
    assert.ok(process.memoryUsage().arrayBuffers - before < 16 * 1024 * 1024, "header read allocated the data");
    assert.equal((await stat(p)).size, h.fileSize);
  });
});

describe("16-bit float conversions", () => {
  const bits32 = (x: number): number => new Uint32Array(Float32Array.from([x]).buffer)[0]!;

  it("f32 → bf16 rounds to nearest even and keeps NaN/Inf", () => {
    const one = 0x3f80;
    const cases: [number, number][] = [
      [1, one],
      [1 + 2 ** -8, one], // halfway, ties to even (down)
      [1 + 3 * 2 ** -8, one + 2], // halfway, ties to even (up)
      [1 + 2 ** -8 + 2 ** -20, one + 1], // just above halfway
      [-2, 0xc000],
      [Infinity, 0x7f80],
      [-Infinity, 0xff80],
      [3.4028234663852886e38, 0x7f80], // max f32 rounds up to Inf, as torch does
    ];
    for (const [x, expect] of cases) assert.equal(f32ToBf16(Float32Array.from([x]))[0], expect, `bf16(${x})`);
    const nan = f32ToBf16(Float32Array.from([NaN]))[0]!;
    assert.ok(Number.isNaN(bf16ToF32(Uint16Array.from([nan]))[0]));
    assert.equal(bf16ToF32(Uint16Array.from([0x3fc0]))[0], 1.5);
    assert.equal(bits32(bf16ToF32(Uint16Array.from([0x8000]))[0]!), 0x80000000, "-0 keeps its sign");
  });

  it("f32 → f16 rounds, overflows to Inf, keeps subnormals", () => {
    const cases: [number, number][] = [
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [65520, 0x7c00], // halfway to the next (nonexistent) value: rounds to Inf
      [65519, 0x7bff],
      [2 ** -24, 0x0001],
      [2 ** -25, 0x0000], // halfway between 0 and the smallest subnormal: ties to even (0)
      [3 * 2 ** -25, 0x0002], // 1.5 × smallest subnormal: ties to even (2)
      [2 ** -14, 0x0400], // smallest normal
      [1 + 2 ** -11, 0x3c00], // halfway: ties to even
      [1 + 3 * 2 ** -11, 0x3c02],
      [1e-10, 0x0000],
      [Infinity, 0x7c00],
    ];
    for (const [x, expect] of cases) assert.equal(f32ToF16(Float32Array.from([x]))[0], expect, `f16(${x})`);
    assert.ok(Number.isNaN(f16ToF32(f32ToF16(Float32Array.from([NaN])))[0]));
    // Every finite f16 survives f16 → f32 → f16.
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = f32ToF16(f16ToF32(all));
    for (let i = 0; i < 65536; i++) {
      const exp = (i >> 10) & 0x1f;
      if (exp === 31 && (i & 0x3ff) !== 0) continue; // NaN payloads need not survive
      assert.equal(back[i], i, `f16 bits ${i.toString(16)}`);
    }
  });
});
