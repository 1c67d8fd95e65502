// A package-lock.json for a project that depends on a packed melbo, built from this checkout's
// lock file: every package it names is one `npm ci` here already put in the npm cache (by
// integrity), so `npm ci --offline` in that project needs no registry at all. (`npm install
// --offline` without a lock file would need the registry's package metadata, which `npm ci`
// never fetches.)

interface LockEntry {
  version?: string;
  resolved?: string;
  integrity?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  dev?: boolean;
  devOptional?: boolean;
  [key: string]: unknown;
}

export interface PackageLock {
  name: string;
  version: string;
  lockfileVersion: number;
  requires?: boolean;
  packages: Record<string, LockEntry>;
}

export interface ConsumerLockOptions {
  /** The consumer project's name and version (as in its package.json). */
  name: string;
  version: string;
  /** melbo's package.json (the packed one) and the tarball: `resolved` as the consumer writes it ("file:melbo-0.1.0.tgz"). */
  melbo: { packageJson: Record<string, unknown>; resolved: string; integrity: string };
  /** Dev dependencies of the consumer, taken with their dependencies from the checkout's lock at its versions. */
  devDependencies: string[];
}

/** The lock entry key node's resolution finds for `name` required from the package at `from` ("" = the root). */
function resolveKey(lock: PackageLock, from: string, name: string): string {
  let dir = from;
  for (;;) {
    const key = dir === "" ? `node_modules/${name}` : `${dir}/node_modules/${name}`;
    if (lock.packages[key]) return key;
    if (dir === "") throw new Error(`the lock file has no package ${name} reachable from ${from || "the root"}`);
    const cut = dir.lastIndexOf("/node_modules/");
    dir = cut < 0 ? "" : dir.slice(0, cut);
  }
}

/** Keys of every package reachable from `names` required at `from` (the checkout's layout). */
function closure(lock: PackageLock, from: string, names: string[]): Set<string> {
  const seen = new Set<string>();
  const visit = (at: string, name: string, optional: boolean): void => {
    let key: string;
    try {
      key = resolveKey(lock, at, name);
    } catch (e) {
      if (optional) return; // an optional dependency this platform did not install
      throw e;
    }
    if (seen.has(key)) return;
    seen.add(key);
    const entry = lock.packages[key]!;
    for (const dep of Object.keys(entry.dependencies ?? {})) visit(key, dep, false);
    for (const dep of Object.keys(entry.optionalDependencies ?? {})) visit(key, dep, true);
  };
  for (const name of names) visit(from, name, false);
  return seen;
}

export function consumerLock(checkout: PackageLock, o: ConsumerLockOptions): PackageLock {
  const melboDeps = (o.melbo.packageJson.dependencies ?? {}) as Record<string, string>;
  const root = checkout.packages[""] ?? {};
  const rootDev = (root["devDependencies"] ?? {}) as Record<string, string>;
  // melbo's dependencies sit at the checkout's top level, as they will in the consumer's.
  const prod = closure(checkout, "", Object.keys(melboDeps));
  const dev = closure(checkout, "", o.devDependencies);
  for (const key of prod) dev.delete(key);

  const packages: Record<string, LockEntry> = {
    "": {
      name: o.name,
      version: o.version,
      dependencies: { melbo: o.melbo.resolved },
      devDependencies: Object.fromEntries(
        o.devDependencies.map((n) => {
          const v = rootDev[n];
          if (v === undefined) throw new Error(`${n} is not a dev dependency of this checkout`);
          return [n, v];
        }),
      ),
    },
    "node_modules/melbo": {
      version: o.melbo.packageJson.version as string,
      resolved: o.melbo.resolved,
      integrity: o.melbo.integrity,
      hasInstallScript: true,
      license: o.melbo.packageJson.license,
      dependencies: melboDeps,
      bin: o.melbo.packageJson.bin,
      engines: o.melbo.packageJson.engines,
    },
  };
  for (const [set, isDev] of [[prod, false], [dev, true]] as const) {
    for (const key of [...set].sort()) {
      const { dev: _d, devOptional: _o, ...entry } = checkout.packages[key]!;
      packages[key] = isDev ? { ...entry, dev: true } : entry;
    }
  }
  return { name: o.name, version: o.version, lockfileVersion: 3, requires: true, packages };
}
