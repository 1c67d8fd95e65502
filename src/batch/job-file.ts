// The batch job file (docs/batch.md): JSON listing train, ortho and eval jobs, their settings (the
// command's own flags), output folders and dependencies. Everything is checked here, before any
// job starts, with errors that name the file and the job: a typo found after hours of searches
// would cost the batch.
//
// JSON, not YAML: melbo has no YAML parser among its dependencies, and the file is small enough
// to write by hand in JSON.

import { readFile } from "node:fs/promises";
import { basename, dirname, extname, join, resolve } from "node:path";
import { MelboError, describeError } from "../errors.js";
import type { OptionSpec, OptionTable } from "../cli/command.js";
import { evalCommand } from "../cli/commands/eval.js";
import { orthoCommand } from "../cli/commands/ortho.js";
import { trainCommand } from "../cli/commands/train.js";

export const BATCH_FORMAT = 1;
export const JOB_COMMANDS = ["train", "ortho", "eval"] as const;
export type JobCommand = (typeof JOB_COMMANDS)[number];

/** A setting as the command line takes it: a flag's value, a boolean flag, or a repeatable flag's values. */
export type SettingValue = string | boolean | string[];

/** Where an ortho job's θ0 or an eval job's vectors come from: a file, or another job's run. */
export type VectorSource = { kind: "file"; ref: string } | { kind: "job"; job: string; rows: string | undefined };

export interface Job {
  id: string;
  /** Position in the file: the Slurm array task index. */
  index: number;
  command: JobCommand;
  /** Absolute run folder of the job (its --out). */
  out: string;
  /** The command's flags (without --), defaults merged in, paths made absolute. */
  settings: Record<string, SettingValue>;
  /** ortho: θ0; eval: the vectors. */
  input: VectorSource | undefined;
  /** Every job this one waits for: the `after` list and the job named by `theta` / `vectors`. */
  after: string[];
}

export interface Batch {
  /** Absolute path of the job file. */
  file: string;
  /** Absolute batch folder: logs, job records, summary.json, the Slurm script. */
  folder: string;
  /** A short name for the batch (Slurm job names): the job file's name without its extension. */
  name: string;
  jobs: Job[];
}

export const COMMAND_OPTIONS: Record<JobCommand, OptionTable> = {
  train: trainCommand.options,
  ortho: orthoCommand.options,
  eval: evalCommand.options,
};

/** Flags the batch sets itself, and where each belongs instead. */
const RESERVED: Record<string, string> = {
  out: 'the job\'s "out"',
  resume: "the batch (it always continues a job's run)",
  force: "the batch (it never replaces a run; delete the folder to start again)",
  device: "the batch's --devices",
  threads: "the batch's --job-threads",
  theta: 'the job\'s "theta" (a "FILE:row" or {"job": ID, "row": N})',
  vectors: 'the job\'s "vectors" (a "FILE[:rows]" or {"job": ID, "rows": "…"})',
  help: "nowhere: it is not a setting",
};

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const JOB_KEYS = new Set(["id", "command", "out", "settings", "theta", "vectors", "after"]);
const TOP_KEYS = new Set(["format", "folder", "defaults", "jobs"]);

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function isObject(x: unknown): x is Record<string, Json> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** Reads and checks a job file; every problem is a MelboError naming the file and the job. */
export async function readBatchFile(path: string, folderOverride?: string): Promise<Batch> {
  const file = resolve(path);
  const text = await readFile(file, "utf8").catch((e: unknown) => {
    throw new MelboError(`cannot read the job file: ${describeError(e)}`, { file });
  });
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new MelboError(`is not valid JSON: ${describeError(e)} (the job file is JSON: docs/batch.md)`, { file });
  }
  return parseBatch(doc, file, folderOverride);
}

/** Checks a parsed job file (`file`: its absolute path, for messages and relative paths). */
export function parseBatch(doc: unknown, file: string, folderOverride?: string): Batch {
  const fail = (where: string, message: string) => new MelboError(`${where}: ${message} (schema: docs/batch.md)`, { file });
  if (!isObject(doc)) throw fail("the top level", "must be an object with \"jobs\"");
  for (const key of Object.keys(doc)) if (!TOP_KEYS.has(key)) throw fail(`"${key}"`, `unknown key; the top level has ${[...TOP_KEYS].join(", ")}`);
  if (doc["format"] !== undefined && doc["format"] !== BATCH_FORMAT) throw fail('"format"', `must be ${BATCH_FORMAT}, got ${JSON.stringify(doc["format"])}`);
  const base = dirname(file);
  const name = basename(file, extname(file)).replace(/[^A-Za-z0-9._-]/g, "_") || "batch";
  let folder: string;
  if (folderOverride !== undefined) folder = resolve(folderOverride);
  else if (doc["folder"] === undefined) folder = join(base, `${name}.batch`);
  else if (typeof doc["folder"] === "string" && doc["folder"] !== "") folder = resolve(base, doc["folder"]);
  else throw fail('"folder"', "must be a folder name");

  const defaults = doc["defaults"] ?? {};
  if (!isObject(defaults)) throw fail('"defaults"', "must be an object of settings");
  for (const key of Object.keys(defaults)) {
    if (RESERVED[key]) throw fail(`defaults."${key}"`, `is set by ${RESERVED[key]}`);
    if (!JOB_COMMANDS.some((c) => COMMAND_OPTIONS[c][key])) throw fail(`defaults."${key}"`, `is not a flag of train, ortho or eval`);
  }

  const list = doc["jobs"];
  if (!Array.isArray(list) || list.length === 0) throw fail('"jobs"', "must be a non-empty list of jobs");
  const jobs: Job[] = [];
  const ids = new Map<string, number>();
  const outs = new Map<string, string>();
  list.forEach((raw, index) => {
    const at = isObject(raw) && typeof raw["id"] === "string" ? `job ${JSON.stringify(raw["id"])} (jobs[${index}])` : `jobs[${index}]`;
    if (!isObject(raw)) throw fail(at, "must be an object");
    for (const key of Object.keys(raw)) if (!JOB_KEYS.has(key)) throw fail(at, `unknown key "${key}"; a job has ${[...JOB_KEYS].join(", ")}`);
    const id = raw["id"];
    if (typeof id !== "string" || !ID.test(id)) throw fail(at, 'needs an "id": letters, digits, ".", "_", "-" (at most 64, not starting with a dot or dash)');
    if (ids.has(id)) throw fail(at, `the id is used twice (also jobs[${ids.get(id)}])`);
    ids.set(id, index);
    const command = raw["command"];
    if (typeof command !== "string" || !(JOB_COMMANDS as readonly string[]).includes(command)) {
      throw fail(at, `"command" must be one of ${JOB_COMMANDS.join(", ")}, got ${JSON.stringify(command)}`);
    }
    const cmd = command as JobCommand;
    const table = COMMAND_OPTIONS[cmd];

    const outRaw = raw["out"];
    if (outRaw !== undefined && (typeof outRaw !== "string" || outRaw === "")) throw fail(at, '"out" must be a folder name');
    const out = outRaw === undefined ? join(folder, "runs", id) : resolve(base, outRaw);
    if (outs.has(out)) throw fail(at, `"out" ${out} is also job ${JSON.stringify(outs.get(out))}'s: two jobs cannot write one folder`);
    outs.set(out, id);

    const settingsRaw = raw["settings"] ?? {};
    if (!isObject(settingsRaw)) throw fail(at, '"settings" must be an object of the command\'s flags');
    const settings: Record<string, SettingValue> = {};
    // Defaults first (only those the command takes: "model" goes to all three, "count" only where it exists), then the job's own.
    for (const [key, value] of Object.entries(defaults)) if (table[key]) settings[key] = setting(value, key, table[key]!, base, (m) => fail(`defaults."${key}"`, m));
    for (const [key, value] of Object.entries(settingsRaw)) {
      if (RESERVED[key]) throw fail(at, `settings."${key}" is set by ${RESERVED[key]}`);
      const spec = table[key];
      if (!spec) throw fail(at, `settings."${key}" is not a flag of melbo ${cmd} (melbo ${cmd} --help lists them)`);
      settings[key] = setting(value, key, spec, base, (m) => fail(`${at} settings."${key}"`, m));
    }

    let input: VectorSource | undefined;
    const inputKey = cmd === "ortho" ? "theta" : cmd === "eval" ? "vectors" : undefined;
    for (const key of ["theta", "vectors"]) {
      if (raw[key] !== undefined && key !== inputKey) throw fail(at, `"${key}" is for ${key === "theta" ? "ortho" : "eval"} jobs, not ${cmd}`);
    }
    if (inputKey !== undefined) {
      const src = raw[inputKey];
      if (src === undefined) throw fail(at, `${cmd} needs "${inputKey}": a "FILE${cmd === "ortho" ? ":row" : "[:rows]"}" or {"job": ID, "${cmd === "ortho" ? "row" : "rows"}": …}`);
      input = vectorSource(src, cmd, base, (m) => fail(`${at} "${inputKey}"`, m));
    }

    for (const [key, spec] of Object.entries(table)) {
      if (spec.required && !RESERVED[key] && settings[key] === undefined) throw fail(at, `melbo ${cmd} needs settings."${key}" (${spec.help})`);
    }

    const afterRaw = raw["after"] ?? [];
    if (!Array.isArray(afterRaw) || afterRaw.some((a) => typeof a !== "string")) throw fail(at, '"after" must be a list of job ids');
    const after = [...new Set([...(afterRaw as string[]), ...(input?.kind === "job" ? [input.job] : [])])];
    jobs.push({ id, index, command: cmd, out, settings, input, after });
  });

  for (const job of jobs) {
    const at = `job ${JSON.stringify(job.id)} (jobs[${job.index}])`;
    for (const dep of job.after) {
      if (!ids.has(dep)) throw fail(at, `depends on ${JSON.stringify(dep)}, which is not a job of this file`);
      if (dep === job.id) throw fail(at, "depends on itself");
    }
    if (job.input?.kind === "job") {
      const from = jobs[ids.get(job.input.job)!]!;
      if (from.command === "eval") throw fail(at, `takes vectors from ${JSON.stringify(from.id)}, an eval job: it writes no vectors`);
    }
  }
  const cycle = findCycle(jobs);
  if (cycle) throw fail("the dependencies", `form a cycle: ${cycle.join(" → ")}`);
  return { file, folder, name, jobs };
}

/** One setting as the command line will take it, checked against the flag's kind. */
function setting(value: Json, key: string, spec: OptionSpec, base: string, fail: (m: string) => MelboError): SettingValue {
  const scalar = (x: Json): string => {
    if (typeof x === "number") {
      if (!Number.isFinite(x)) throw fail("must be a finite number");
      return String(x);
    }
    if (typeof x === "string") return isPath(spec) ? resolve(base, x) : x;
    throw fail(`must be a string or a number, got ${JSON.stringify(x)}`);
  };
  if (spec.type === "boolean") {
    if (typeof value !== "boolean") throw fail(`is a switch: true or false, got ${JSON.stringify(value)}`);
    return value;
  }
  if (Array.isArray(value)) {
    if (!spec.multiple) throw fail(`--${key} takes one value, got a list`);
    if (value.length === 0) throw fail("is an empty list");
    return value.map(scalar);
  }
  const one = scalar(value);
  return spec.multiple ? [one] : one;
}

/** Flags whose value is a file or folder: relative paths are taken from the job file's folder. */
function isPath(spec: OptionSpec): boolean {
  return spec.value === "DIR" || spec.value === "FILE";
}

function vectorSource(src: Json, cmd: JobCommand, base: string, fail: (m: string) => MelboError): VectorSource {
  if (typeof src === "string") {
    if (src === "") throw fail("is empty");
    // FILE[:rows]: only the file part is a path.
    const m = /^(.*?)(:[0-9][0-9,\s-]*)?$/.exec(src)!;
    return { kind: "file", ref: resolve(base, m[1]!) + (m[2] ?? "") };
  }
  if (!isObject(src)) throw fail('must be a "FILE:row" string or {"job": ID, …}');
  const rowKey = cmd === "ortho" ? "row" : "rows";
  for (const key of Object.keys(src)) if (key !== "job" && key !== rowKey) throw fail(`unknown key "${key}"; it has "job" and "${rowKey}"`);
  if (typeof src["job"] !== "string") throw fail('"job" must be the id of another job');
  const rows = src[rowKey];
  if (cmd === "ortho") {
    if (typeof rows !== "number" || !Number.isInteger(rows) || rows < 0) throw fail('"row" must be the row of θ0 in that job\'s vectors (0 = its first vector)');
    return { kind: "job", job: src["job"], rows: String(rows) };
  }
  if (rows !== undefined && (typeof rows !== "string" || !/^[0-9][0-9,\s-]*$/.test(rows))) throw fail('"rows" must be rows like "1-8" or "0,3,10-19"');
  return { kind: "job", job: src["job"], rows: rows === undefined ? undefined : rows };
}

/** A dependency cycle as ids (first = last), or null. */
function findCycle(jobs: Job[]): string[] | null {
  const byId = new Map(jobs.map((j) => [j.id, j]));
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (id: string): string[] | null => {
    if (state.get(id) === "done") return null;
    if (state.get(id) === "open") return [...path.slice(path.indexOf(id)), id];
    state.set(id, "open");
    path.push(id);
    for (const dep of byId.get(id)!.after) {
      const c = visit(dep);
      if (c) return c;
    }
    path.pop();
    state.set(id, "done");
    return null;
  };
  for (const j of jobs) {
    const c = visit(j.id);
    if (c) return c;
  }
  return null;
}

export function jobById(batch: Batch, id: string): Job {
  const job = batch.jobs.find((j) => j.id === id);
  if (!job) throw new MelboError(`has no job ${JSON.stringify(id)} (its jobs: ${batch.jobs.map((j) => j.id).join(", ")})`, { file: batch.file });
  return job;
}
