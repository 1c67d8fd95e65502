#!/usr/bin/env node
// npm "install" script: builds the native addon (cmake-js → build/Release/melbo_native.node) when
// melbo is installed as a dependency of another project (`npm install melbo-0.1.0.tgz`, or of this
// folder). It does nothing when this checkout is itself the project being installed (`npm ci` /
// `npm install` here, as scripts/setup.sh runs them): setup.sh installs the system packages first
// and then builds the addon itself (step 3), so building here too would only build it twice.
// We keep the install script rather than `npm ci --ignore-scripts` in setup.sh so that the
// install scripts of dependencies still run.
//
// The cmake output goes to build/cmake-js.log. When libtorch (or cmake, or a C++ compiler) is
// missing, the install fails with the message of scripts/setup.sh instead of CMake's.
// LIBTORCH=/path/to/libtorch picks another libtorch, as for setup.sh (CMakeLists.txt reads it).
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, realpathSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const say = (line) => process.stderr.write(`melbo install: ${line}\n`);
const real = (p) => {
  try {
    return realpathSync(p);
  } catch {
    return resolve(p);
  }
};

// The project npm was asked to install (npm sets npm_config_local_prefix; INIT_CWD is where it ran).
const project = process.env.npm_config_local_prefix ?? process.env.INIT_CWD;
if (project !== undefined && real(project) === real(root)) {
  say("this checkout is the project being installed: scripts/setup.sh (or `npm run build:native`) builds the addon");
  process.exit(0);
}

function missingToolchain(what = "libtorch, cmake or a C++17 compiler") {
  say(`${what} was not found: the native addon needs libtorch, cmake and a C++17 compiler.`);
  say("Debian/Ubuntu: sudo apt-get install libtorch-dev libopenblas0-openmp cmake g++ make ninja-build");
  say("elsewhere: install libtorch (and OpenBLAS), cmake, a C++17 compiler,");
  say("then run again with LIBTORCH=/path/to/libtorch (or a PyTorch's torch.utils.cmake_prefix_path),");
  say("e.g. `LIBTORCH=/path/to/libtorch npm rebuild melbo`.");
}

if (process.env.LIBTORCH && !existsSync(process.env.LIBTORCH)) {
  missingToolchain(`LIBTORCH=${process.env.LIBTORCH}`);
  process.exit(1);
}

let cmakeJs;
try {
  cmakeJs = createRequire(join(root, "package.json")).resolve("cmake-js/bin/cmake-js");
} catch {
  say("cmake-js (a dependency of melbo) is not installed next to it: run the install again.");
  process.exit(1);
}

// `cmake-js build` configures first when build/ is new (`compile` would retry a failed build from
// scratch, twice the minutes for nothing). The output is written to the log once it is done.
const logPath = join(root, "build", "cmake-js.log");
const output = [];
const started = Date.now();
const child = spawn(process.execPath, [cmakeJs, "build", "--out", "build"], {
  cwd: root,
  stdio: ["ignore", "pipe", "pipe"],
});
child.stdout.on("data", (b) => output.push(b));
child.stderr.on("data", (b) => output.push(b));
const code = await new Promise((done) => {
  child.on("error", (e) => {
    output.push(Buffer.from(`${e}\n`));
    done(1);
  });
  child.on("close", (c) => done(c ?? 1));
});
const text = Buffer.concat(output).toString("utf8");
mkdirSync(join(root, "build"), { recursive: true });
writeFileSync(logPath, text);

if (code === 0 && existsSync(join(root, "build", "Release", "melbo_native.node"))) {
  say(`built the native addon in ${((Date.now() - started) / 1000).toFixed(0)} s (log: ${logPath})`);
  process.exit(0);
}

const missing = [
  [/provided by\s+"Torch"|Torch_DIR/, "libtorch"], // find_package(Torch REQUIRED) failed
  [/CMake executable is not found|cmake: not found/i, "cmake"],
  [/Compiler toolset is not available|No CMAKE_CXX_COMPILER could be found|CMAKE_CXX_COMPILER not set/, "a C++ compiler"],
].find(([re]) => re.test(text));
if (missing) {
  missingToolchain(missing[1]);
} else {
  say("building the native addon failed; the end of the cmake-js output:");
  process.stderr.write(text.split("\n").slice(-40).join("\n") + "\n");
}
say(`full log: ${logPath}`);
process.exit(1);
