// The compiled code (dist/) that CLI and end-to-end tests run: built only when it is missing or older than its
// sources. `npm test` builds before vitest runs, so inside the suite this is a few hundred stats, not a compile
// (a compile is 20-40 s of CPU on this machine, once per test file that asked for one).
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** the folders tsconfig.json compiles */
const SOURCES = ["agent", "provider", "dev"];

/** true when some compiled .ts source has no dist/ output or an output older than itself */
export function distStale(): boolean {
  const walk = (dir: string): boolean => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) {
        if (walk(p)) return true;
      } else if (e.name.endsWith(".ts") && !e.name.endsWith(".d.ts")) {
        const out = join(ROOT, "dist", relative(ROOT, p)).replace(/\.ts$/, ".js");
        if (!existsSync(out) || statSync(out).mtimeMs < statSync(p).mtimeMs) return true;
      }
    }
    return false;
  };
  return SOURCES.some((d) => walk(join(ROOT, d)));
}

/** `tsc -p tsconfig.json` when dist/ is missing or older than any of its sources */
export function ensureBuilt(): void {
  if (!distStale()) return;
  const r = spawnSync(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", join(ROOT, "tsconfig.json")], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`build failed:\n${r.stdout}${r.stderr}`);
}
