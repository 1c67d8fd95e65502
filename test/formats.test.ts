// `melbo import` and `melbo export`: every format is written or read back by an independent
// implementation. Python (Debian's python3-torch, python3-numpy) writes the .pt and .npy inputs
// and reads the .pt and .npy outputs; npm @huggingface/gguf reads the GGUF control vectors;
// safetensors outputs are read with melbo's reader. Bad input exits with code 2 and a reason.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile, mkdtemp, rm, readdir, writeFile, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { gguf, GGMLQuantizationType, GGUFValueType } from "@huggingface/gguf";
import { readVectors, writeVectors } from "../src/io/vectors.js";
import { importVectors } from "../src/io/formats/index.js";
import { encodeNpy, parseNpy } from "../src/io/formats/npy.js";
import { addonPath } from "../src/native.js";
import { MelboError } from "../src/errors.js";
import { writeSafetensors } from "../src/model/safetensors.js";
import { Rng } from "../src/util/rng.js";
import { f16ToF32, f32ToF16 } from "../src/util/half.js";
import { cli, type CliResult } from "./helpers/cli.js";
import { MAKE_FIXTURES, NUMPY_LOAD, TORCH_LOAD, python } from "./helpers/python-formats.js";

const D = 8;
const FUZZ_CASES = 150;

/** Float32 rows as plain numbers, for comparison with Python's lists. */
function rowsOf(data: Float32Array, d: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < data.length; i += d) out.push(Array.from(data.subarray(i, i + d)));
  return out;
}

function assertExit2(r: CliResult, message: RegExp): void {
  assert.equal(r.code, 2, `exit ${r.code}, stderr: ${r.stderr}`);
  assert.match(r.stderr, message);
  assert.doesNotMatch(r.stderr, /internal error/);
}

describe("melbo import / export", () => {
  let work: string;
  let fx: string; // the fixtures Python wrote
  let expected: Record<string, number[][]>;
  after(() => rm(work, { recursive: true, force: true }));
  before(async () => {
    work = await mkdtemp(join(tmpdir(), "melbo-formats-"));
    fx = join(work, "fx");
    await python(MAKE_FIXTURES, [fx, String(FUZZ_CASES)]);
    expected = JSON.parse(await readFile(join(fx, "expected.json"), "utf8")) as Record<string, number[][]>;
  });

  it("imports torch.save files (tensor, vector, lists and tuples of f32/f64/bf16, f16, views, GPU-saved) and np.save files with their values", async () => {
    const names = ["matrix.pt", "vector.pt", "list-f32.pt", "list-f64.pt", "list-bf16.pt", "tuple-f64.pt", "matrix-f16.pt", "transposed.pt", "slice.pt", "cuda.pt", "crafted-ok.pt", "f4.npy", "f8.npy", "f4-1d.npy", "f2.npy"];
    // Through the CLI for two of them (what the user runs), through the API for the rest (no process per file).
    for (const name of ["list-f64.pt", "f8.npy"]) {
      const out = join(work, `${name}.safetensors`);
      const r = await cli(["import", join(fx, name), "--out", out]);
      assert.equal(r.code, 0, r.stderr);
      const set = await readVectors(out);
      assert.deepEqual(rowsOf(set.data, set.d), expected[name], name);
      assert.match(set.metadata["melbo.importedFrom"]!, new RegExp(`^${name.replace(".", "\\.")} \\((PyTorch torch\\.save: a list/tuple of 3 float64 vectors \\[8\\]|numpy \\.npy: float64 \\(2, 8\\))\\)$`));
    }
    for (const name of names) {
      const v = await importVectors(join(fx, name));
      assert.equal(v.d, D, name);
      assert.deepEqual(rowsOf(v.data, v.d), expected[name], name);
      assert.equal(v.format, name.endsWith(".npy") ? "npy" : "pt", name);
    }
  });

  it("imports F16 and F64 safetensors files as F32", async () => {
    const rows = new Rng(5, "formats-st").fillNormal(new Float32Array(2 * D));
    const wide = Float64Array.from(rows, (x) => x * 1.000000001);
    for (const [dtype, data, want] of [
      ["F16", rows, Array.from(f16ToF32(f32ToF16(rows)))],
      ["F64", wide, Array.from(Float32Array.from(wide))],
    ] as const) {
      const src = join(work, `st-${dtype}.safetensors`);
      await writeSafetensors(src, [{ name: "vectors", dtype, shape: [2, D], data }], { "melbo.model": '{"config":{"architecture":"Qwen2ForCausalLM","numLayers":4}}' });
      const out = join(work, `st-${dtype}-imported.safetensors`);
      const r = await cli(["import", src, "--out", out]);
      assert.equal(r.code, 0, r.stderr);
      const set = await readVectors(out);
      assert.deepEqual(Array.from(set.data), want, dtype);
      assert.equal(set.metadata["melbo.importedFrom"], `st-${dtype}.safetensors (safetensors: ${dtype} "vectors" [2, 8])`);
      assert.equal(set.metadata["melbo.model"], '{"config":{"architecture":"Qwen2ForCausalLM","numLayers":4}}');
    }
  });

  it("refuses bad imports with exit code 2 and what was found", async () => {
    const cases: [string, RegExp][] = [
      ["empty.pt", /holds an empty list: no vectors to import/],
      ["dict.pt", /holds a dict with 1 entry: expected a tensor, or a list or tuple of tensors/],
      ["string.pt", /holds a string: expected a tensor/],
      ["int.pt", /holds a tensor of dtype int32: only floating-point tensors/],
      ["3d.pt", /a tensor of shape \[2, 2, 8\]: vectors must be \[d\] or \[n, d\]/],
      ["ragged.pt", /item 1 of the file's list has length 9, item 0 has 8/],
      ["truncated.pt", /the zip archive has no end record: the file is truncated/],
      ["deflated.pt", /is compressed \(method 8\)/],
      ["legacy.pt", /legacy format \(a bare pickle/],
      ["i4.npy", /dtype is '<i4': only little-endian floats/],
      ["big-endian.npy", /dtype is '>f4'.*it is big-endian/],
      ["fortran.npy", /Fortran order/],
      ["3d.npy", /shape \(2, 2, 8\): vectors must be \(d,\) or \(n, d\)/],
      ["truncated.npy", /needs 96 bytes of data, the file holds 92: it is truncated/],
      ["storage-too-small.pt", /storage of 1000 float32 values \(4000 bytes\) whose record data\/0 holds only 64 bytes/],
      ["view-too-large.pt", /reaches past the end of its storage \(16 elements\)/],
      ["view-offset.pt", /reaches past the end of its storage/],
      ["no-mark.pt", /closes a MARK that was never opened/],
      ["empty-stack.pt", /empty stack/],
      ["deep.pt", /nests containers more than 64 levels deep/],
      ["self-append.pt", /puts a container into itself/],
      ["missing-record.pt", /names the record data\/0, which the zip archive does not hold/],
      ["os-system.pt", /refers to the Python object posix\.system, which is not a torch tensor/],
    ];
    for (const [name, message] of cases) {
      // Each file names itself in the message; through the API here, through the CLI below.
      await assert.rejects(importVectors(join(fx, name)), (e: unknown) => {
        assert.ok(e instanceof MelboError, `${name}: ${String(e)}`);
        assert.match(e.message, message, name);
        assert.ok(e.message.startsWith(join(fx, name) + ": "), e.message);
        return true;
      });
    }
    const junk = join(work, "junk.bin");
    await writeFile(junk, "hello, these are not vectors");
    for (const [file, message] of [
      [join(fx, "empty.pt"), /empty\.pt: cannot import this PyTorch file: it holds an empty list/],
      [join(fx, "i4.npy"), /i4\.npy: the array's dtype is '<i4'/],
      [join(fx, "truncated.pt"), /truncated\.pt: .*truncated/],
      [junk, /junk\.bin: named like a PyTorch file but not a zip archive/],
      [join(work, "missing.npy"), /missing\.npy: file not found/],
    ] as const) {
      assertExit2(await cli(["import", file, "--out", join(work, "never.safetensors")]), message);
    }
    await assert.rejects(stat(join(work, "never.safetensors")));
  });

  it("a crafted or damaged .pt never crashes the process: fuzzed pickles are read or refused", async () => {
    // A child process: a crash (a signal) must not take the test runner down with it.
    const files = (await readdir(join(fx, "fuzz"))).map((f) => join(fx, "fuzz", f));
    const script = `
      const addon = require(${JSON.stringify(addonPath())});
      const { readFileSync } = require("node:fs");
      let ok = 0, refused = 0;
      for (const f of JSON.parse(process.argv[1])) {
        try { addon.loadPt(readFileSync(f)); ok++; } catch (e) { if (!(e instanceof Error) || !e.message) throw e; refused++; }
      }
      console.log(JSON.stringify({ ok, refused }));`;
    const result = await new Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, ["-e", script, JSON.stringify(files)], { timeout: 60_000 }, (err, stdout, stderr) =>
        resolve({ code: child.exitCode, signal: child.signalCode ?? (err as { signal?: string } | null)?.signal ?? null, stdout, stderr }),
      );
    });
    assert.equal(result.signal, null, `the reader crashed: ${result.stderr}`);
    assert.equal(result.code, 0, result.stderr);
    const counts = JSON.parse(result.stdout) as { ok: number; refused: number };
    assert.equal(counts.ok + counts.refused, FUZZ_CASES);
    assert.ok(counts.refused > FUZZ_CASES / 2, JSON.stringify(counts));
  });

  describe("export", () => {
    const N = 5, WIDTH = 20; // 20 floats: the GGUF tensor is padded from 80 to 96 bytes
    let src: string;
    let rows: Float32Array;
    const model = JSON.stringify({ config: { architecture: "Qwen2ForCausalLM", numLayers: 24, hiddenSize: WIDTH } });
    before(async () => {
      src = join(work, "run.safetensors");
      rows = new Rng(9, "formats-export").fillNormal(new Float32Array(N * WIDTH));
      await writeVectors(src, rows, N, WIDTH, { "melbo.model": model });
    });
    const row = (r: number, scale = 1) => Array.from(rows.subarray(r * WIDTH, (r + 1) * WIDTH), (x) => Math.fround(x * scale));

    it("gguf: a llama.cpp control vector, read back with @huggingface/gguf", async () => {
      const out = join(work, "steer.gguf");
      const r = await cli(["export", `${src}:2`, "--format", "gguf", "--at", "8", "--scale", "-1.5", "--out", out]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /as direction\.8 \(gguf\)/);
      const parsed = await gguf(out, { allowLocalFile: true, typedMetadata: true });
      const meta = parsed.typedMetadata as unknown as Record<string, { value: unknown; type: GGUFValueType }>;
      assert.deepEqual(meta["version"], { value: 3, type: GGUFValueType.UINT32 });
      assert.deepEqual(meta["tensor_count"], { value: 1n, type: GGUFValueType.UINT64 });
      assert.deepEqual(meta["kv_count"], { value: 3n, type: GGUFValueType.UINT64 });
      assert.deepEqual(meta["general.architecture"], { value: "controlvector", type: GGUFValueType.STRING });
      assert.deepEqual(meta["controlvector.model_hint"], { value: "qwen2", type: GGUFValueType.STRING });
      assert.deepEqual(meta["controlvector.layer_count"], { value: 1, type: GGUFValueType.UINT32 });
      assert.equal(parsed.tensorInfos.length, 1);
      const t = parsed.tensorInfos[0]!;
      assert.deepEqual({ name: t.name, n_dims: t.n_dims, shape: t.shape, dtype: t.dtype, offset: t.offset }, { name: "direction.8", n_dims: 1, shape: [BigInt(WIDTH)], dtype: GGMLQuantizationType.F32, offset: 0n });
      const bytes = await readFile(out);
      const start = Number(parsed.tensorDataOffset);
      assert.equal(start % 32, 0);
      // llama.cpp reads the whole padded data section: the file ends after the padded tensor.
      assert.equal(bytes.length, start + 96);
      const values = Array.from({ length: WIDTH }, (_, i) => bytes.readFloatLE(start + 4 * i));
      assert.deepEqual(values, row(2, -1.5));
    });

    it("gguf refuses what it cannot hold: several rows, no --at, --at 0, --at past the model, a model hint that contradicts the file", async () => {
      const out = join(work, "refused.gguf");
      assertExit2(await cli(["export", `${src}:0,1`, "--format", "gguf", "--at", "3", "--out", out]), /holds one direction per layer, and 2 rows were named: pick one row \(FILE:ROW\)/);
      assertExit2(await cli(["export", src, "--format", "gguf", "--at", "3", "--out", out]), /5 rows were named/);
      assertExit2(await cli(["export", `${src}:0`, "--format", "gguf", "--out", out]), /--format gguf needs --at S/);
      assertExit2(await cli(["export", `${src}:0`, "--format", "gguf", "--at", "0", "--out", out]), /--at 0 cannot be written as a llama\.cpp control vector: .* never to block 0/);
      assertExit2(await cli(["export", `${src}:0`, "--format", "gguf", "--at", "24", "--out", out]), /--at 24 is past the last block .* \(24 blocks: 0\.\.23\)/);
      assertExit2(await cli(["export", `${src}:0`, "--format", "gguf", "--at", "3", "--model-hint", "llama", "--out", out]), /found on a qwen2 model/);
      await assert.rejects(stat(out));
    });

    it("npy: '<f4' (n, d) in C order, read back with numpy", async () => {
      const out = join(work, "rows.npy");
      const r = await cli(["export", `${src}:3,0`, "--format", "npy", "--out", out]);
      assert.equal(r.code, 0, r.stderr);
      const a = JSON.parse(await python(NUMPY_LOAD, [out], { torch: false })) as { dtype: string; shape: number[]; fortran: boolean; values: number[][] };
      assert.deepEqual(a, { dtype: "<f4", shape: [2, WIDTH], fortran: false, values: [row(3), row(0)] });
      // And melbo's own reader agrees with its writer.
      const back = parseNpy(await readFile(out), out);
      assert.deepEqual(rowsOf(back.data, back.d), [row(3), row(0)]);
    });

    it("pt: torch.load reads an [n, d] float32 tensor; melbo import reads it back", async () => {
      const out = join(work, "all.pt");
      const r = await cli(["export", src, "--format", "pt", "--scale", "2", "--at", "5", "--out", out]);
      assert.equal(r.code, 0, r.stderr);
      const t = JSON.parse(await python(TORCH_LOAD, [out])) as { type: string; dtype: string; shape: number[]; values: number[][] };
      const all = Array.from({ length: N }, (_, i) => row(i, 2));
      assert.deepEqual(t, { type: "Tensor", dtype: "torch.float32", shape: [N, WIDTH], values: all });
      const back = await importVectors(out);
      assert.deepEqual(rowsOf(back.data, back.d), all);
    });

    it("safetensors: F32 `vectors` with the source, rows, scale and --at in its metadata", async () => {
      const out = join(work, "some.safetensors");
      const r = await cli(["export", `${src}:1-3`, "--format", "safetensors", "--at", "5", "--scale", "0.5", "--out", out]);
      assert.equal(r.code, 0, r.stderr);
      const set = await readVectors(out);
      assert.deepEqual(rowsOf(set.data, set.d), [row(1, 0.5), row(2, 0.5), row(3, 0.5)]);
      assert.deepEqual(set.metadata, { "melbo.model": model, "melbo.exportedFrom": src, "melbo.rows": "1-3", "melbo.scale": "0.5", "melbo.at": "5" });
    });

    it("refuses rows out of range, an unknown format, and an existing --out without --force (which replaces it)", async () => {
      const out = join(work, "exists.npy");
      assertExit2(await cli(["export", `${src}:1,7`, "--format", "npy", "--out", out]), /row 7 does not exist \(the file has 5 vectors, rows 0\.\.4\)/);
      assertExit2(await cli(["export", src, "--format", "onnx", "--out", out]), /--format must be one of gguf, npy, pt, safetensors, got "onnx"/);
      assertExit2(await cli(["export", src, "--out", out]), /--format is required/);
      await writeFile(out, "keep me");
      assertExit2(await cli(["export", `${src}:0`, "--format", "npy", "--out", out]), /exists\.npy: --out already exists: give --force to replace it/);
      assert.equal(await readFile(out, "utf8"), "keep me");
      assertExit2(await cli(["import", join(fx, "matrix.pt"), "--out", out]), /--out already exists/);
      assert.equal(await readFile(out, "utf8"), "keep me");
      const r = await cli(["export", `${src}:0`, "--format", "npy", "--out", out, "--force"]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(parseNpy(await readFile(out), out).data, new Float32Array(row(0)));
      // No temporary files are left beside it.
      assert.deepEqual((await readdir(work)).filter((f) => f.includes(".tmp-")), []);
    });
  });

  it("npy writer and reader: header padding, versions 2.0 and 3.0, and the strict checks", () => {
    const data = Float32Array.from({ length: 6 }, (_, i) => i / 3);
    const bytes = encodeNpy(data, 2, 3);
    assert.equal((10 + new DataView(bytes.buffer).getUint16(8, true)) % 64, 0);
    assert.deepEqual(parseNpy(bytes, "x.npy").data, data);
    // Version 2.0 / 3.0: a u32 header length.
    const header = new TextDecoder().decode(bytes.subarray(10, 10 + new DataView(bytes.buffer).getUint16(8, true)));
    for (const major of [2, 3]) {
      const v2 = new Uint8Array(12 + header.length + 24);
      v2.set(bytes.subarray(0, 6));
      v2[6] = major;
      new DataView(v2.buffer).setUint32(8, header.length, true);
      v2.set(new TextEncoder().encode(header), 12);
      v2.set(bytes.subarray(10 + header.length), 12 + header.length);
      assert.deepEqual(parseNpy(v2, "v.npy").data, data);
    }
    const withHeader = (h: string) => {
      const text = h + " ".repeat((64 - ((10 + h.length + 1) % 64)) % 64) + "\n";
      const b = new Uint8Array(10 + text.length + 24);
      b.set(bytes.subarray(0, 8));
      new DataView(b.buffer).setUint16(8, text.length, true);
      b.set(new TextEncoder().encode(text), 10);
      return b;
    };
    const refused: [Uint8Array, RegExp][] = [
      [withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'extra': 1, }"), /must have the keys 'descr', 'fortran_order' and 'shape', found 'descr', 'extra'/],
      [withHeader("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 3), }"), /structured dtype/],
      [withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (6), }"), /'shape' must be a tuple/],
      [withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (), }"), /shape \(\): vectors must be/],
      [withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }"), /no vectors to import/],
      [withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }"), /12 bytes after the array/],
      [withHeader("{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3), }"), /'fortran_order' must be True or False/],
      [withHeader("{'descr': '<f4' 'fortran_order': False}"), /expected "," or "}"/],
      [Uint8Array.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 4, 0, 0, 0]), /version 4\.0 is not read/],
      [bytes.subarray(0, 40), /header is 118 bytes long but the file ends after 30 of them/],
      [Uint8Array.from([1, 2, 3]), /not a \.npy file/],
    ];
    for (const [b, message] of refused) assert.throws(() => parseNpy(b, "bad.npy"), (e: unknown) => e instanceof MelboError && message.test(e.message) && e.message.startsWith("bad.npy: "), String(message));
  });
});

