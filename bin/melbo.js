#!/usr/bin/env node
// The `melbo` command: runs the compiled CLI (npm run build:ts, or scripts/setup.sh).
import { main } from "../dist/src/cli/main.js";

process.exitCode = await main(process.argv.slice(2));
