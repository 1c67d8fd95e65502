// melbo as a dependency of another TypeScript project: `npm pack` this checkout, `npm ci` the
// tarball into a temporary project without the network (the dependencies come from the npm
// cache that this checkout's `npm ci` filled; under `unshare -n` when the machine allows it, so
// nothing can reach the network), which builds the native addon through melbo's install script
// (a real, complete build: minutes); then the README's API examples, taken from README.md as
// they are, compile with `tsc --strict` against the installed package and run on a tiny model.
// The addon build dominates: ~7.5 CPU-minutes for the whole test, so ~4 min on two idle cores
// (an estimate: measured 2026-12-02 only on the shared 2-core VM at load 6–8, 13–16 min wall).
// MELBO_KEEP_PACKAGE_TEST=1 keeps the temporary project.

import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { consumerLock, type PackageLock } from "./helpers/package-lock.js";
import { codeBlocks } from "./helpers/readme.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
const run = promisify(execFile);

/**
 * The environment without the variables an `npm test` around this test sets (its project, prefix,
 * lifecycle): they must not configure the inner npm. The npm cache it names is kept.
 */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if ((/^npm_/i.test(k) && k.toLowerCase() !== "npm_config_cache") || k === "INIT_CWD") continue;
    if (k === "MELBO_ADDON") continue; // the installed addon, not another build (src/native.ts)
    env[k] = v;
  }
  return { ...env, ...extra };
}

/** `unshare -n` (no network at all) when this machine lets us create a network namespace. */
const noNetwork: string[] = spawnSync("unshare", ["-n", "true"]).status === 0 ? ["unshare", "-n"] : [];


async function timed<T>(label: string, f: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  try {
    return await f();
  } finally {
    console.log(`# package.test: ${label}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
}

describe("melbo as a dependency", { timeout: 20 * 60_000 }, () => {
  let dir = "";
  let app = "";
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "melbo-package-"));
    app = join(dir, "app");
    await mkdir(app);
  });
  after(async () => {
    if (dir && !process.env.MELBO_KEEP_PACKAGE_TEST) await rm(dir, { recursive: true, force: true });
  });

  let tarball = "";
  let integrity = "";

  it("npm pack: what the build needs, nothing big", async () => {
    // --ignore-scripts: dist/ is already built (this test runs from it; scripts/setup.sh built it);
    // prepack would rebuild it while the suite runs. A release `npm pack` runs prepack (tsc).
    const { stdout } = await timed("npm pack", () =>
      run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", app], { cwd: root, env: cleanEnv() }),
    );
    const [info] = JSON.parse(stdout) as { filename: string; integrity: string; size: number; files: { path: string; size: number }[] }[];
    assert.ok(info);
    tarball = info.filename;
    integrity = info.integrity;
    const paths = info.files.map((f) => f.path);
    for (const needed of ["package.json", "CMakeLists.txt", "README.md", "bin/melbo.js", "scripts/install-addon.mjs",
      "native/addon.cpp", "native/qwen2.cpp", "native/cuda/projection_kernel.cu", "dist/src/index.js", "dist/src/index.d.ts",
      "dist/src/cli/main.js", "docs/architecture.md"]) {
      assert.ok(paths.includes(needed), `the tarball lacks ${needed}`);
    }
    const unwanted = paths.filter((p) => /^(build|models|test|bench|node_modules|src|dist\/test|dist\/bench|scratch|\.cache)\//.test(p) || p.endsWith(".map"));
    assert.deepEqual(unwanted, [], "the tarball holds files it should not");
    assert.ok(info.size < 1_000_000, `the tarball is ${info.size} bytes`);
    for (const f of info.files) assert.ok(f.size < 200_000, `${f.path} is ${f.size} bytes`);
  });

  it("npm ci --offline into a new project builds the addon", async () => {
    assert.ok(tarball, "npm pack failed");
    const pkg = JSON.parse(await readFile(join(root, "package.json"), "utf8")) as Record<string, unknown>;
    const checkoutLock = JSON.parse(await readFile(join(root, "package-lock.json"), "utf8")) as PackageLock;
    const name = "melbo-consumer";
    const devDependencies = ["typescript", "@types/node"];
    const lock = consumerLock(checkoutLock, {
      name,
      version: "1.0.0",
      melbo: { packageJson: pkg, resolved: `file:${tarball}`, integrity },
      devDependencies,
    });
    await writeFile(join(app, "package-lock.json"), JSON.stringify(lock, null, 2) + "\n");
    await writeFile(join(app, "package.json"), JSON.stringify({
      name, version: "1.0.0", private: true, type: "module",
      dependencies: lock.packages[""]!.dependencies,
      devDependencies: (lock.packages[""] as { devDependencies: Record<string, string> }).devDependencies,
    }, null, 2) + "\n");

    const npmCi = ["npm", "ci", "--offline", "--no-audit", "--no-fund", "--foreground-scripts"];
    const [cmd, ...args] = [...noNetwork, ...npmCi];
    const result = await timed(`npm ci --offline${noNetwork.length ? " (unshare -n)" : ""}, addon build included`, () =>
      run(cmd!, args, { cwd: app, env: cleanEnv(), maxBuffer: 64 << 20 }).catch((e: { stdout?: string; stderr?: string; message: string }) => {
        const hint = /ENOTCACHED/.test(`${e.stdout}${e.stderr}`)
          ? "the npm cache lacks a package of this checkout's lock file: run `npm ci` here (scripts/setup.sh), online, first\n"
          : "";
        assert.fail(`npm ci failed: ${hint}${e.message}\n${e.stdout ?? ""}\n${e.stderr ?? ""}`);
      }),
    );
    const output = `${result.stdout}\n${result.stderr}`;
    assert.match(output, /melbo install: built the native addon/, output);
    assert.ok(existsSync(join(app, "node_modules/melbo/build/Release/melbo_native.node")), output);
    // The CLI through the bin link, with the installed addon.
    const { stdout: version } = await run(join(app, "node_modules/.bin/melbo"), ["--version"], { cwd: app, env: cleanEnv() });
    assert.equal(version.trim(), `melbo ${pkg.version as string}`);
  });

  it("the README's API examples compile under tsc --strict and run", async () => {
    assert.ok(existsSync(join(app, "node_modules/melbo/build/Release/melbo_native.node")), "the install failed");
    // A tiny model with the default model's 24 blocks (the examples use blocks 8, 16 and 23).
    const model = join(app, "model");
    await timed("make-test-model", () =>
      run(join(app, "node_modules/.bin/melbo"), ["make-test-model", model, "--layers", "24", "--tied"], { cwd: app, env: cleanEnv() }),
    );

    const readme = await readFile(join(root, "README.md"), "utf8");
    const examples = codeBlocks(readme, "API");
    assert.equal(examples.length, 2, "the API section's two js examples");
    await mkdir(join(app, "src"));
    for (const [i, code] of examples.entries()) {
      assert.ok(code.includes('"models/default"'), `example ${i + 1} loads models/default`);
      await writeFile(join(app, "src", `example-${i + 1}.ts`), code.replaceAll('"models/default"', JSON.stringify(model)));
    }
    await writeFile(join(app, "tsconfig.json"), JSON.stringify({
      compilerOptions: {
        strict: true, target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext",
        // skipLibCheck as `tsc --init` writes it: the .d.ts files of @huggingface/jinja and
        // @huggingface/tokenizers (which melbo's declarations import) do not compile under NodeNext.
        outDir: "dist", rootDir: "src", types: ["node"], skipLibCheck: true,
      },
      include: ["src"],
    }, null, 2) + "\n");
    await timed("tsc --strict", () =>
      run(process.execPath, [join(app, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.json", "--strict"], { cwd: app, env: cleanEnv() })
        .catch((e: { stdout?: string; message: string }) => assert.fail(`the README examples do not compile:\n${e.stdout ?? e.message}`)),
    );

    const example = (i: number) =>
      timed(`example ${i}`, () => run(process.execPath, [join(app, "dist", `example-${i}.js`)], { cwd: app, env: cleanEnv({ MELBO_THREADS: "2" }) }));
    const first = (await example(1)).stdout;
    assert.match(first, /^\d+ positions of resid\(16\)$/m, first);
    assert.ok(first.trim().split("\n").length >= 3, first); // the positions line, then 2 continuations
    const second = (await example(2)).stdout;
    assert.match(second, /vector 1: r \d\.\d{3}, norm/, second);
    assert.match(second, /vector 2: r/, second);
    assert.match(second, /stopped \(count\), max \|cos\| /, second);
  });
});
