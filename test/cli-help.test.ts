// `melbo CMD --help` comes from each command's option table: every flag parseArgs accepts is
// listed with its default (or "required"), and the defaults shown are the values the code uses.
// Runs the CLI in-process (main()), capturing what it writes.

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { commands, main } from "../src/cli/main.js";
import { defaultInWords, defaultOf, parseArgsOptions, usageLine, type Command } from "../src/cli/command.js";
import { writeVectors } from "../src/io/vectors.js";
import { readSafetensorsHeader } from "../src/model/safetensors.js";
import { Rng } from "../src/util/rng.js";
import { testModel } from "./helpers/models.js";

// One thread: the machine is shared; set before the native addon loads.
process.env["MELBO_THREADS"] ??= "1";
/** The model of cli.test.ts (shared through the test-model cache). */
const SHAPE = { layers: 4, hidden: 64, heads: 4, intermediate: 176, seed: 11 };

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(argv: string[]): Promise<Run> {
  let stdout = "", stderr = "";
  const write = { out: process.stdout.write, err: process.stderr.write };
  process.stdout.write = ((chunk: string | Uint8Array) => ((stdout += String(chunk)), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => ((stderr += String(chunk)), true)) as typeof process.stderr.write;
  try {
    const code = await main(argv);
    return { code, stdout, stderr };
  } finally {
    process.stdout.write = write.out;
    process.stderr.write = write.err;
  }
}

function command(name: string): Command {
  const c = commands.find((x) => x.name === name);
  assert.ok(c, `no command ${name}`);
  return c;
}

/** Runs `body` with the table defaults of some flags replaced, then restores them. */
async function withDefaults<T>(c: Command, values: Record<string, number | string>, body: () => Promise<T>): Promise<T> {
  const saved = Object.keys(values).map((key) => [c.options[key]!, c.options[key]!.default] as const);
  for (const [key, value] of Object.entries(values)) c.options[key]!.default = value;
  try {
    return await body();
  } finally {
    for (const [o, value] of saved) o.default = value;
  }
}

function pick(o: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((k) => [k, o[k]]));
}

/** The help line of `--name`. */
function helpLine(help: string, name: string): string {
  const line = help.split("\n").find((l) => new RegExp(`^  --${name}( |$)`).test(l));
  assert.ok(line, `--help does not list --${name}:\n${help}`);
  return line;
}

const missing = join(tmpdir(), `melbo-cli-help-missing-${process.pid}`);

describe("melbo CMD --help", () => {
  it("covers every command; `melbo --help` lists them", async () => {
    assert.deepEqual(commands.map((c) => c.name).sort(), ["batch", "calibrate", "demo", "eval", "export", "forward", "generate", "import", "info", "make-test-model", "ortho", "report", "train"]);
    const r = await run(["--help"]);
    assert.equal(r.code, 0);
    for (const c of commands) assert.match(r.stdout, new RegExp(`^  ${c.name} +${c.summary.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`, "m"));
  });

  for (const c of commands) {
    it(`${c.name}: every flag parseArgs accepts, with its default or "required"`, async () => {
      const r = await run([c.name, "--help"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, "");
      const help = r.stdout;
      assert.ok(help.startsWith(`${c.summary}\n`), help);
      assert.match(help, new RegExp(`^usage: ${usageLine(c).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`, "m"));
      // parseArgs gets exactly the table's flags, with only its own keys.
      const parsed = parseArgsOptions(c.options);
      assert.deepEqual(Object.keys(parsed), Object.keys(c.options));
      for (const [name, o] of Object.entries(parsed)) {
        for (const key of Object.keys(o)) assert.ok(["type", "multiple", "short"].includes(key), `--${name}: parseArgs gets "${key}"`);
        const spec = c.options[name]!;
        assert.ok(spec.help.trim().length > 0, `--${name} has no help text`);
        const line = helpLine(help, name);
        assert.ok(line.includes(spec.help), `--${name}: ${line}`);
        if (spec.type === "string") {
          assert.ok(spec.value, `--${name} has no value placeholder`);
          assert.ok(line.startsWith(`  --${name} ${spec.value} `), line);
        }
        if (spec.required) {
          assert.match(line, /\(required(, repeatable)?\)$/, line);
          assert.ok(usageLine(c).includes(`--${name} `), `the usage line lacks required --${name}`);
          assert.equal(spec.default, undefined, `--${name} is required and has a default`);
        } else {
          assert.doesNotMatch(line, /required/, line);
          assert.ok(!usageLine(c).includes(`--${name} `), `the usage line shows optional --${name}`);
          if (spec.type === "string") {
            const words = defaultInWords(spec);
            assert.ok(words, `optional --${name} has no default in its table`);
            assert.ok(line.endsWith(`(default: ${words})`) || line.endsWith(`(default: ${words}) (repeatable)`), line);
          } else {
            assert.doesNotMatch(line, /\(default:/, line);
          }
        }
      }
      // The model and prompt options come from their shared definitions, under their own headings.
      if ("threads" in c.options) assert.match(help, /\nmodel options:\n(  --.*\n)*  --threads N +CPU threads/);
      if ("raw" in c.options) assert.match(help, /\nprompt options:\n(  --.*\n)*  --raw +use the prompt/);
      // -h is the same.
      assert.equal((await run([c.name, "-h"])).stdout, help);
    });
  }

  it("the shared model options read the same everywhere", async () => {
    const lines = new Set<string>();
    for (const c of commands.filter((x) => "threads" in x.options)) {
      const help = (await run([c.name, "--help"])).stdout;
      lines.add(["model", "dtype", "device", "threads"].map((n) => helpLine(help, n).trim().replace(/ +/g, " ")).join("\n"));
    }
    assert.equal(lines.size, 1, [...lines].join("\n\n"));
    assert.match([...lines][0]!, /--device cpu\|cuda\|cuda:N where the model runs \(default: cpu\)/);
  });

  it("shows the defaults the code uses", async () => {
    const expected: Record<string, Record<string, number | string>> = {
      ortho: { count: 32, steps: 1000, source: 8, target: 16, block: 1, seed: 0, lr: 0.01, "min-norm": 0.1, patience: 10, projection: "post", "block-mode": "distinct" },
      train: { steps: 300, lr: 0.001, batch: 32, p: 2, seed: 0, positions: "all" },
      calibrate: { count: 8, steps: 100, "max-new-tokens": 16, show: 3 },
      generate: { "max-new-tokens": 50, "top-p": 1, seed: 0 },
      demo: { count: 32, block: 16, steps: 300, projection: "grad", samples: 8, "new-tokens": 32 },
      "make-test-model": { layers: 2, hidden: 64, heads: 4, intermediate: 176, seed: 0, dtype: "f32" },
      info: { rows: "26,104,416,1664", dtype: "f32", device: "cpu" },
    };
    for (const [name, defaults] of Object.entries(expected)) {
      const c = command(name);
      const help = (await run([name, "--help"])).stdout;
      for (const [key, value] of Object.entries(defaults)) {
        assert.equal(c.options[key]?.default, value, `${name} --${key}`);
        if (typeof value === "number") assert.equal(defaultOf(c.options, key), value);
        // make-test-model adds the --default model's value: "(default: 2; 24 with --default)".
        assert.match(helpLine(help, key), new RegExp(`\\(default: ${String(value).replace(".", "\\.")}[;)]`), helpLine(help, key));
      }
    }
    const train = (await run(["train", "--help"])).stdout;
    assert.ok(helpLine(train, "source").endsWith("(default: 7)"));
    assert.ok(helpLine(train, "target").endsWith("(default: L-9, L = the model's blocks)"));
    assert.ok(helpLine(train, "system").endsWith(`(default: "You are a helpful assistant.")`));
  });

  it("the code reads its defaults from the table: a changed default changes what runs", async () => {
    // Each command runs with its defaults replaced by other values and without the flags; what it
    // did (saved settings, config.json, output) shows the replaced values.
    const dir = await testModel(SHAPE);
    const work = await mkdtemp(join(tmpdir(), "melbo-cli-help-"));
    try {
      const theta = join(work, "theta.safetensors");
      await writeVectors(theta, new Rng(3, "cli-help-theta").fillNormal(new Float32Array(SHAPE.hidden)), 1, SHAPE.hidden, {});
      const settingsOf = async (out: string) =>
        JSON.parse((await readSafetensorsHeader(join(out, "vectors.safetensors"), { allowDtypes: ["F32"] })).metadata["melbo.settings"]!) as Record<string, unknown>;

      const orthoOut = join(work, "ortho");
      const ortho = { count: 2, source: 1, target: 3, block: 2, seed: 5, steps: 2, lr: 0.02, projection: "grad", "loss-tol": 0.5, "min-norm": 0.05, patience: 7 };
      const o = await withDefaults(command("ortho"), ortho, () => run(["ortho", "--model", dir, "--prompt", "a", "--theta", theta, "--out", orthoOut]));
      assert.equal(o.code, 0, o.stderr);
      assert.match(o.stdout, /projection grad, block 2, 2 steps: 2 vectors/);
      assert.deepEqual(
        pick(await settingsOf(orthoOut), ["source", "target", "block", "seed", "steps", "lr", "projection", "lossTolerance", "minNorm", "patience"]),
        { source: 1, target: 3, block: 2, seed: 5, steps: 2, lr: 0.02, projection: "grad", lossTolerance: 0.5, minNorm: 0.05, patience: 7 },
      );

      const trainOut = join(work, "train");
      const train = { steps: 2, lr: 0.005, p: 3, seed: 4, positions: "last:2" };
      const t = await withDefaults(command("train"), train, () =>
        run(["train", "--model", dir, "--prompt", "a", "--count", "1", "--radius", "1", "--source", "0", "--target", "2", "--out", trainOut]),
      );
      assert.equal(t.code, 0, t.stderr);
      assert.match(t.stdout, /p = 3, q = 3, blocks 0 → 2, 2 steps/);
      assert.deepEqual(pick(await settingsOf(trainOut), ["steps", "lr", "p", "q", "seed"]), { steps: 2, lr: 0.005, p: 3, q: 3, seed: 4 });

      const model = join(work, "made");
      const made = { layers: 1, hidden: 16, heads: 2, intermediate: 8, dtype: "bf16" };
      const m = await withDefaults(command("make-test-model"), made, () => run(["make-test-model", model]));
      assert.equal(m.code, 0, m.stderr);
      const config = JSON.parse(await readFile(join(model, "config.json"), "utf8")) as Record<string, unknown>;
      assert.deepEqual(pick(config, ["num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size", "torch_dtype"]), {
        num_hidden_layers: 1, hidden_size: 16, num_attention_heads: 2, num_key_value_heads: 2, intermediate_size: 8, torch_dtype: "bfloat16",
      });

      // The shared model options: one definition, read by common.ts for every command.
      const i = await withDefaults(command("info"), { rows: "5", dtype: "bf16" }, () => run(["info", "--model", dir]));
      assert.equal(i.code, 0, i.stderr);
      assert.match(i.stdout, /^weights bf16,/m);
      assert.match(i.stdout, /^  5 rows:$/m);

      const g = await withDefaults(command("generate"), { "max-new-tokens": 3 }, () => run(["generate", "--model", dir, "--prompt", "a"]));
      assert.equal(g.code, 0, g.stderr);
      assert.equal((JSON.parse(g.stdout) as { tokens: number[] }).tokens.length, 3);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
    // Checked before anything runs.
    const ortho = ["ortho", "--model", missing, "--prompt", "a", "--theta", `${missing}.safetensors:0`, "--out", missing];
    const swapped = await withDefaults(command("ortho"), { source: 16 }, () => run(ortho));
    assert.equal(swapped.code, 2);
    assert.match(swapped.stderr, /--source 16 must come before --target 16/);
    const bad = await withDefaults(command("ortho"), { projection: "sideways" }, () => run(ortho));
    assert.equal(bad.code, 1, "a default outside the allowed values is a bug");
    assert.match(bad.stderr, /the default of --projection, "sideways", is not one of post, grad/);
  });

  it("a missing required flag is a usage error that prints the short usage", async () => {
    for (const c of commands.filter((x) => Object.values(x.options).some((o) => o.required))) {
      const r = await run([c.name]);
      assert.equal(r.code, 2, `${c.name}: ${r.stderr}`);
      const m = /--([\w-]+) is required/.exec(r.stderr);
      assert.ok(m, `${c.name}: ${r.stderr}`);
      assert.equal(c.options[m[1]!]?.required, true, `${c.name}: --${m[1]} is required but not marked so`);
      assert.ok(r.stderr.includes(`\nusage: ${usageLine(c)}\n(melbo ${c.name} --help lists every option)\n`), r.stderr);
    }
  });
});
