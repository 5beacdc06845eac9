// Runs `node bin/datasync.js plan …` against the COMPILED code (building it when missing or older than
// the sources: ./build.ts) and makes throwaway Pulumi projects for the plan's end-to-end tests.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import YAML from "yaml";
import { ensureBuilt, ROOT } from "./build.js";

export { ensureBuilt, ROOT };
export const DIST_PROGRAM = join(ROOT, "dist/provider/program.js");

export interface PlanRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function plan(args: string[], cwd = ROOT): Promise<PlanRun> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [join(ROOT, "bin/datasync.js"), "plan", ...args], { cwd });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("error", reject);
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** the committed dev stack's config, parsed, for variations */
export function devConfig(): Record<string, any> {
  return YAML.parse(readFileSync(join(ROOT, "Pulumi.dev.yaml"), "utf8")).config;
}

/**
 * A Pulumi project in a temp dir: Pulumi.yaml whose main is `program` (a file written there) or the
 * compiled root program, and one stack file per entry of `stacks`.
 */
/** one directory per test process for the projects it writes (under the run's DATASYNC_TEST_TMP in vitest, removed when the run ends; elsewhere removed when the process exits) */
let projectRoot: string | null = null;

export function project(stacks: Record<string, Record<string, unknown>>, program?: string): string {
  if (!projectRoot) {
    const root = mkdtempSync(join(process.env.DATASYNC_TEST_TMP ?? tmpdir(), "datasync-plan-test-"));
    projectRoot = root;
    process.once("exit", () => rmSync(root, { recursive: true, force: true }));
  }
  const dir = mkdtempSync(join(projectRoot, "p-"));
  writeFileSync(join(dir, "Pulumi.yaml"), YAML.stringify({ name: "datasync", runtime: "nodejs", main: program ? "program.mjs" : DIST_PROGRAM }));
  if (program) writeFileSync(join(dir, "program.mjs"), program);
  for (const [s, config] of Object.entries(stacks)) writeFileSync(join(dir, `Pulumi.${s}.yaml`), YAML.stringify({ config }));
  return dir;
}

export function git(dir: string, ...args: string[]): string {
  const r = spawnSync("git", ["-c", "user.email=plan@test", "-c", "user.name=plan test", "-c", "init.defaultBranch=main", ...args], { cwd: dir, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}
