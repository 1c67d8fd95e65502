import { EXPORT_FORMATS, exportVectors, type ExportFormat } from "../../io/formats/index.js";
import { UsageError, flag, int, num, oneOf, required, str, type Values } from "../args.js";
import { defaultOf, type Command, type OptionTable } from "../command.js";

const exportOptions = {
  format: { type: "string", value: EXPORT_FORMATS.join("|"), required: true, help: "gguf (llama.cpp control vector), npy, pt (torch.load) or safetensors" },
  out: { type: "string", value: "FILE", required: true, help: "the file written" },
  at: {
    type: "string",
    value: "S",
    defaultText: "none; needed for gguf",
    help: "block whose output the vector is added to (0-based): gguf writes direction.S; safetensors records it; npy and pt ignore it",
  },
  scale: { type: "string", value: "X", default: 1, help: "multiply every vector by X (negative flips it)" },
  "model-hint": { type: "string", value: "TYPE", defaultText: "the vectors file's model type, else qwen2", help: "gguf controlvector.model_hint" },
  force: { type: "boolean", help: "replace --out when it exists" },
} satisfies OptionTable;

export const exportCommand: Command = {
  name: "export",
  summary: "write vectors as a llama.cpp control vector (GGUF), .npy, .pt or .safetensors file",
  positionals: true,
  operands: "FILE[:rows]",
  options: exportOptions,
  notes: [
    "FILE[:rows]: a melbo vectors file, all rows or some: FILE:3, FILE:0,3,10-19 (rows in the order written).",
    "gguf: one row (FILE:ROW) as tensor direction.S, which llama.cpp (--control-vector FILE) adds to the output of block S,",
    "  the block melbo's --at S steers; S = 0 cannot be written (llama.cpp has no direction for block 0).",
    "npy: '<f4' (n, d); pt: torch.save of an [n, d] float32 tensor; safetensors: F32 `vectors` [n, d] with the source, rows, scale and --at.",
  ],
  async run(v: Values, positionals: string[]) {
    required(v, "format");
    const format: ExportFormat = oneOf(v, "format", EXPORT_FORMATS, "gguf");
    const out = required(v, "out");
    const ref = positionals[0];
    if (ref === undefined || positionals.length !== 1) throw new UsageError("export takes exactly one FILE[:rows]");
    const at = str(v, "at") === undefined ? undefined : int(v, "at", 0, 0);
    const modelHint = str(v, "model-hint");
    const result = await exportVectors(ref, {
      format,
      out,
      ...(at !== undefined ? { at } : {}),
      scale: num(v, "scale", defaultOf(exportOptions, "scale")),
      force: flag(v, "force"),
      ...(modelHint !== undefined ? { modelHint } : {}),
    });
    const what = result.tensor !== undefined ? ` as ${result.tensor}` : "";
    process.stderr.write(`wrote ${result.file}: ${result.n} vector${result.n === 1 ? "" : "s"} of length ${result.d}${what} (${format})\n`);
  },
};
