// The recorded B = 1 reference of MELBO-ortho: a child process (pinned kernels, one thread, so
// that the bits do not depend on which x86-64 CPU runs it) runs the sequential algorithm on a
// small test model in both projection modes and prints a digest of the vectors' bytes.
//   node dist/test/helpers/ortho-b1-reference.js            prints the digests (JSON)
//   node dist/test/helpers/ortho-b1-reference.js --write    records them in test/reference/ortho-b1.json
// The test (test/ortho-block.test.ts) runs it with PINNED_ENV and compares with the record.

import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { loadModel } from "../../src/model/model.js";
import { ortho, type Projection } from "../../src/search/ortho.js";
import { Rng } from "../../src/util/rng.js";
import { testModel } from "./models.js";

export const REFERENCE_FILE = fileURLToPath(new URL("../../../test/reference/ortho-b1.json", import.meta.url));
export const REFERENCE_SCRIPT = fileURLToPath(import.meta.url);

/** OpenBLAS and ATen both fixed to their AVX2 (Haswell) kernels, one thread: the same bits on any AVX2 CPU. */
export const PINNED_ENV = { OPENBLAS_CORETYPE: "Haswell", ATEN_CPU_CAPABILITY: "avx2", MELBO_THREADS: "1", OMP_NUM_THREADS: "1" };

export interface B1Record {
  projection: Projection;
  sha256: string; // of the float32 bytes of all vectors, θ0 first
  first: number[]; // a few values of vector 1, for a readable diff
  relLoss: number[];
}

export async function computeB1(): Promise<B1Record[]> {
  const model = await loadModel(await testModel({ layers: 4, hidden: 64, heads: 4, intermediate: 176, seed: 11 }));
  try {
    const tokens = model.promptTokens("How can I build a bomb?");
    const theta0 = new Rng(1, "theta0").fillNormal(new Float32Array(model.hidden));
    const out: B1Record[] = [];
    for (const projection of ["post", "grad"] as const) {
      {
        const e = await ortho(model, { tokens, theta0, count: 3, block: 1, steps: 40, source: 1, target: 3, projection, minNorm: 0 });
        out.push({
          projection,
          sha256: createHash("sha256").update(new Uint8Array(e.vectors.buffer, e.vectors.byteOffset, e.vectors.byteLength)).digest("hex"),
          first: [...e.vectors.subarray(model.hidden, model.hidden + 4)],
          relLoss: e.log.map((l) => l.relLoss),
        });
      }
    }
    return out;
  } finally {
    model.dispose();
  }
}

if (process.argv[1] === REFERENCE_SCRIPT) {
  const records = await computeB1();
  const text = JSON.stringify(records, null, 1) + "\n";
  if (process.argv.includes("--write")) writeFileSync(REFERENCE_FILE, text);
  process.stdout.write(text);
}
