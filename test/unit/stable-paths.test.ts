// The module paths that deployed stacks load (issue 16): a Pulumi dynamic provider's code is frozen in the
// stack's state, and it loads `datasync/agent/{config,db,preflight,rules}` by the package name at run time
// (provider/live.ts agentModule), from whatever datasync version the project has installed. Moving one of these
// files, or dropping one of the names below, breaks `pulumi up`/`destroy` of every stack deployed before the
// move. Keep the four in place (or as permanent re-exports) with these names. Needs `npx tsc -p tsconfig.json`
// first (the package export points at dist/).
import { describe, it, expect } from "vitest";
import { createRequire } from "node:module";
import { existsSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { pathToFileURL } from "node:url";

const root = join(import.meta.dirname, "..", "..");

/** the names each module's serialized callers use (provider/live.ts, replicaServer.ts, syncGroup.ts, any version) */
const used: Record<"config" | "db" | "preflight" | "rules", string[]> = {
  config: ["validateConfig"],
  db: ["connect", "describeConnError", "quoteId"],
  preflight: ["preflight", "preflightReplica"],
  rules: [
    "checkDeclaredVersion", "parseVersion", "REPLICA_SCHEMA_PRIVILEGES", "BOOKKEEPING_PRIVILEGES", "BOOKKEEPING_SCHEMA",
    "checkBinlogRetention", "binlogRetentionSeconds", "makeTableFilter", "checkLowerCaseTableNames", "isAzureMySqlHost", "checkStorageEngines",
  ],
};

describe("paths deployed providers import", () => {
  it("package.json exports ./agent/* as ./dist/agent/*.js", () => {
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
    expect(pkg.exports["./agent/*"]).toBe("./dist/agent/*.js");
  });

  for (const [name, names] of Object.entries(used)) {
    it(`datasync/agent/${name} resolves to dist/agent/${name}.js and exports ${names.join(", ")}`, async () => {
      expect(existsSync(join(root, "agent", `${name}.ts`)), `agent/${name}.ts must stay in place (or become a re-export)`).toBe(true);
      const file = createRequire(join(root, "__datasync__.js")).resolve(`datasync/agent/${name}`);
      expect(relative(root, file).split("\\").join("/")).toBe(`dist/agent/${name}.js`);
      const mod = await import(pathToFileURL(file).href);
      for (const n of names) expect(mod[n], `datasync/agent/${name} must export ${n}`).toBeDefined();
    });
  }
});
