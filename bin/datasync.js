#!/usr/bin/env node
// Entry point of the `datasync` CLI (compiled by `npm ci` through `prepare`). `plan` runs Pulumi code,
// so it lives on the provider side; every other command is the agent's (which never loads Pulumi).
const cmd = process.argv[2];
const target = cmd === "plan" ? "../dist/provider/plan-cli.js" : "../dist/agent/cli.js";
import(target).catch((err) => {
  if (err && err.code === "ERR_MODULE_NOT_FOUND" && String(err.message).includes("dist")) {
    console.error("datasync: the compiled code is missing; run `npm ci` (or `npm run build`) in the repository first.");
  } else {
    console.error(err);
  }
  process.exit(2);
});
