// Loaded into every node process of scripts/test-sanitize.sh (NODE_OPTIONS=--import=…): only
// node processes keep the preloaded ASan runtime. node passes its environment on to every program
// a test starts, LD_PRELOAD included, and the other programs (python3 of the parity references,
// nvcc and gcc of the CUDA compile test) are not melbo's: under the preloaded runtime,
// LeakSanitizer reports their own allocations at their exit and fails them. So every child
// process that is not this node binary is started without LD_PRELOAD. (ChildProcess.spawn is
// the one path of spawn, execFile, exec and fork; spawnSync is not covered: no native-facing
// test uses it.)

import { ChildProcess } from "node:child_process";

interface SpawnOptions {
  file: string;
  envPairs?: string[];
}

const proto = ChildProcess.prototype as unknown as { spawn(this: ChildProcess, options: SpawnOptions): unknown };
const spawn = proto.spawn;
proto.spawn = function (this: ChildProcess, options: SpawnOptions) {
  if (options.file !== process.execPath && options.envPairs) {
    options = { ...options, envPairs: options.envPairs.filter((pair) => !pair.startsWith("LD_PRELOAD=")) };
  }
  return spawn.call(this, options);
};
