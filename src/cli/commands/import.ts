import { importToFile } from "../../io/formats/index.js";
import { UsageError, flag, required, type Values } from "../args.js";
import type { Command } from "../command.js";

export const importCommand: Command = {
  name: "import",
  summary: "read vectors from a .pt (torch.save, as MELBO saves them), .npy or .safetensors file into a melbo vectors file",
  positionals: true,
  operands: "FILE",
  options: {
    out: { type: "string", value: "FILE.safetensors", required: true, help: "the melbo vectors file written: `vectors` [n, d] float32" },
    force: { type: "boolean", help: "replace --out when it exists" },
  },
  notes: [
    "FILE: torch.save of an [n, d] or [d] tensor or of a list or tuple of [d] tensors (zip format, float32/64/16 or bfloat16);",
    "  np.save of a (d,) or (n, d) array ('<f4', '<f8' or '<f2', C order); or a .safetensors file (F32, F64, F16 or BF16).",
    "  The format is decided by the content. Nothing in a .pt file is run: libtorch reads its tensors, and other objects are refused.",
    "The metadata melbo.importedFrom records the source file and what it held.",
  ],
  async run(v: Values, positionals: string[]) {
    const out = required(v, "out");
    const file = positionals[0];
    if (file === undefined || positionals.length !== 1) throw new UsageError("import takes exactly one FILE");
    const got = await importToFile(file, out, { force: flag(v, "force") });
    process.stderr.write(`imported ${got.n} vector${got.n === 1 ? "" : "s"} of length ${got.d} from ${got.file} (${got.description}) → ${out}\n`);
  },
};
