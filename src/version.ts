// melbo's version, read once from package.json (recorded in every output file).
import { readFileSync } from "node:fs";

const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
export const MELBO_VERSION: string = pkg.version;
