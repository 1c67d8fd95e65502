// `melbo info`: what a checkpoint is and how melbo will run it on this machine: the CPU features
// that decide the kernels, the activation dtype, and the kernel each matrix product of a block
// takes at the row counts of typical blocks (B vectors × the prompt's T tokens).

import { MelboError } from "../../errors.js";
import { getThreads } from "../../native.js";
import { kernelCpuFlags } from "../../util/cpu.js";
import { str, type Values } from "../args.js";
import { defaultString, modelOptions, type Command, type OptionTable } from "../command.js";
import { modelFromArgs } from "../common.js";

const infoOptions = {
  ...modelOptions,
  rows: { type: "string", value: "N1,N2,…", default: "26,104,416,1664", help: "row counts, B vectors × T tokens, to show the kernels at" },
} satisfies OptionTable;

export const infoCommand: Command = {
  name: "info",
  summary: "a checkpoint's shape, and the kernel each matrix product takes on this machine",
  options: infoOptions,
  async run(v: Values) {
    const rowsText = str(v, "rows") ?? defaultString(infoOptions, "rows");
    const rows = rowsText.split(",").map(Number);
    if (!rows.every((r) => Number.isInteger(r) && r >= 1)) throw new MelboError(`--rows must be positive integers, got "${rowsText}"`);
    const model = await modelFromArgs(v, { blocks: { from: 0, to: 0 }, embedding: false, head: false });
    try {
      const c = model.config;
      const info = model.info(rows);
      const out: string[] = [
        `model ${model.dir}: ${c.numLayers} blocks, d ${c.hiddenSize}, ${c.numHeads} heads (${c.numKvHeads} kv), intermediate ${c.intermediateSize}, vocab ${c.vocabSize}`,
        `weights ${info.dtype}, activations ${info.activations}, device ${info.device}, ${getThreads()} threads`,
        `CPU flags: ${kernelCpuFlags().join(" ") || "(none of avx2/fma/avx512 found)"}`,
        "",
        `kernel per product at B·T rows (26 = one vector of the 26-token prompt):`,
      ];
      const width = Math.max(...info.products.map((p) => `${p.name} [${p.out}×${p.in}]`.length));
      for (const [i, r] of info.rows.entries()) {
        out.push(`  ${r} rows:`);
        for (const p of info.products) out.push(`    ${`${p.name} [${p.out}×${p.in}]`.padEnd(width)}  ${p.paths[i]}`);
      }
      process.stdout.write(out.join("\n") + "\n");
    } finally {
      model.dispose();
    }
  },
};
