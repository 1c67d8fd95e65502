// Opens a Hugging Face Qwen2 checkpoint directory: validates config.json, every safetensors
// header (single file or shards), and that every tensor the config implies exists with the
// right shape (the layout is qwen2-layout.ts). The native loader then trusts the files, shapes,
// dtypes and offsets it is given.

import { stat } from "node:fs/promises";
import { join, relative, resolve, isAbsolute } from "node:path";
import { MelboError } from "../errors.js";
import { checkRegularFile, readConfig } from "./config.js";
import { isJsonObject, readJsonObject } from "../util/json.js";
import { readSafetensorsHeader } from "./safetensors.js";
import { expectedTensorShapes } from "./qwen2-layout.js";
import type { Checkpoint, TensorEntry } from "./types.js";

export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** All tensors of the single-file layout. */
async function readSingle(file: string): Promise<Map<string, TensorEntry>> {
  const header = await readSafetensorsHeader(file);
  return new Map(header.tensors.map((t) => [t.name, t]));
}

/** All tensors named by a sharded index, each found in the shard the index names. */
async function readSharded(dir: string, indexFile: string): Promise<Map<string, TensorEntry>> {
  await checkRegularFile(indexFile, INDEX_FILE);
  const index = await readJsonObject(indexFile, INDEX_FILE);
  const weightMap = index["weight_map"];
  if (!isJsonObject(weightMap)) throw new MelboError(`missing object "weight_map"`, { file: indexFile });
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== "string" || shard.length === 0) {
      throw new MelboError(`weight_map entry "${name}" must be a file name, found ${JSON.stringify(shard)}`, { file: indexFile });
    }
    // The index is untrusted too: shards must stay inside the checkpoint directory.
    const rel = relative(dir, resolve(dir, shard));
    if (isAbsolute(shard) || rel.startsWith("..") || isAbsolute(rel)) {
      throw new MelboError(`weight_map entry "${name}": shard ${JSON.stringify(shard)} is outside the checkpoint directory`, { file: indexFile });
    }
    const list = byShard.get(shard) ?? [];
    list.push(name);
    byShard.set(shard, list);
  }
  const tensors = new Map<string, TensorEntry>();
  for (const [shard, names] of byShard) {
    const shardPath = join(dir, shard);
    if (!(await exists(shardPath))) throw new MelboError(`shard "${shard}" named in weight_map is missing`, { file: indexFile });
    const header = await readSafetensorsHeader(shardPath);
    const inShard = new Map(header.tensors.map((t) => [t.name, t]));
    for (const name of names) {
      const entry = inShard.get(name);
      if (entry === undefined) {
        throw new MelboError(`tensor "${name}" is missing (${INDEX_FILE} puts it in this shard)`, { file: header.path });
      }
      tensors.set(name, entry);
    }
  }
  return tensors;
}

function fmtShape(shape: readonly number[]): string {
  // A hostile header may give a tensor thousands of dimensions: the message shows the first few.
  return shape.length > 8 ? `[${shape.slice(0, 8).join(", ")}, … (${shape.length} dimensions)]` : `[${shape.join(", ")}]`;
}

/** Reads and validates a checkpoint directory (config, weights layout, names and shapes). */
export async function readCheckpoint(dir: string): Promise<Checkpoint> {
  const root = resolve(dir);
  let isDir = false;
  try {
    isDir = (await stat(root)).isDirectory();
  } catch {
    throw new MelboError("checkpoint directory not found", { file: root });
  }
  if (!isDir) throw new MelboError("not a directory (expected a checkpoint directory)", { file: root });

  const config = await readConfig(root);
  const single = join(root, SINGLE_FILE);
  const index = join(root, INDEX_FILE);
  let tensors: Map<string, TensorEntry>;
  // Like transformers, prefer the single file when both are present.
  if (await exists(single)) tensors = await readSingle(single);
  else if (await exists(index)) tensors = await readSharded(root, index);
  else throw new MelboError(`no weights: neither ${SINGLE_FILE} nor ${INDEX_FILE} is there`, { file: root });

  for (const [name, shape] of expectedTensorShapes(config)) {
    const entry = tensors.get(name);
    if (entry === undefined) {
      // Name the file(s) searched so the user knows where the tensor should have been.
      const where = (await exists(single)) ? single : index;
      throw new MelboError(`missing tensor "${name}" (required by config.json)`, { file: where });
    }
    if (entry.shape.length !== shape.length || entry.shape.some((n, i) => n !== shape[i])) {
      throw new MelboError(
        `tensor "${name}" has shape ${fmtShape(entry.shape)}, expected ${fmtShape(shape)} from config.json`,
        { file: entry.path },
      );
    }
  }
  return { dir: root, config, tensors };
}
