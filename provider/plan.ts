// Plan owns one run of `datasync plan`: it finds the project and the stack file, runs the program in a
// child process under Pulumi mocks (plan-run) with the stack's config, builds the plan (plan-model),
// optionally evaluates the stack file at a git ref and compares (plan-diff), and renders (plan-render).
// Exit codes: 0 the rules pass; 1 a rule fails; 2 the plan could not run (the message names the fix).
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadProject, PlanError, runtimeConfig, stackFile, type Project } from "./plan-config.js";
import { buildPlan, planPasses, type Plan, type RecordedResource } from "./plan-model.js";
import { diffPlans, type PlanDiff } from "./plan-diff.js";
import { renderJson, renderMarkdown } from "./plan-render.js";

const RUNNER = fileURLToPath(new URL("./plan-run.js", import.meta.url));

export interface PlanOptions {
  stack: string;
  base?: string;
  format: "md" | "json";
  cwd: string;
  program?: string;
}

/** Run the program under mocks with one stack file's text; `source` names it in messages. */
export function evaluate(project: Project, stack: string, yamlText: string, source: string): Plan {
  const { config, secretKeys } = runtimeConfig(project.name, yamlText, source);
  const dir = mkdtempSync(join(tmpdir(), "datasync-plan-"));
  const out = join(dir, "result.json");
  try {
    const r = spawnSync(process.execPath, [RUNNER], {
      cwd: project.dir, // the Pulumi CLI runs a program from its project directory
      env: {
        ...process.env,
        PULUMI_CONFIG: JSON.stringify(config),
        PULUMI_CONFIG_SECRET_KEYS: JSON.stringify(secretKeys),
        DATASYNC_PLAN_PROGRAM: project.main,
        DATASYNC_PLAN_PROJECT: project.name,
        DATASYNC_PLAN_STACK: stack,
        DATASYNC_PLAN_OUT: out,
      },
      encoding: "utf8",
      timeout: 120_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    let result: { resources?: RecordedResource[]; error?: string } | undefined;
    try {
      result = JSON.parse(readFileSync(out, "utf8"));
    } catch {}
    if (!result?.resources) {
      const why = result?.error ?? (r.error ? r.error.message : (r.stderr || r.stdout || `exit code ${r.status}`).trim().split("\n").slice(-15).join("\n"));
      throw new PlanError(`the program ${relOrAbs(project, project.main)} failed with the config of ${source}:\n${why}`);
    }
    const target = config["datasync:target"];
    return buildPlan({ project: project.name, stack, program: relOrAbs(project, project.main), stackFile: source, target }, result.resources);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function relOrAbs(project: Project, file: string): string {
  const rel = relative(project.dir, file);
  return rel.startsWith("..") ? file : rel;
}

function git(dir: string, args: string[]): { ok: boolean; out: string; err: string } {
  const r = spawnSync("git", ["-C", dir, ...args], { encoding: "utf8" });
  return { ok: r.status === 0, out: r.stdout ?? "", err: (r.stderr ?? r.error?.message ?? "").trim() };
}

/** The base plan: the stack file at REF, evaluated with the current program (see the notes). */
function basePlan(project: Project, stack: string, file: string, ref: string): { plan?: Plan; notes: string[] } {
  if (!git(project.dir, ["rev-parse", "--show-toplevel"]).ok) throw new PlanError(`--base ${ref}: ${project.dir} is not in a git repository; run the plan inside the repository, or drop --base.`);
  if (!git(project.dir, ["rev-parse", "--verify", "--quiet", `${ref}^{commit}`]).ok) {
    throw new PlanError(`--base ${ref}: no such commit in this repository; fetch it first (in CI: actions/checkout with fetch-depth: 0, or git fetch origin <base branch>) or name another ref.`);
  }
  const name = basename(file);
  const notes = [
    `The base is \`${name}\` as of \`${ref}\`, evaluated with the current program (\`${relOrAbs(project, project.main)}\`): the program at \`${ref}\` is not rebuilt, so a change made only in the program's code shows in both sides, not in this diff.`,
  ];
  const changedCode = git(project.dir, ["diff", "--name-only", ref, "--", "."])
    .out.split("\n")
    // code the program may load; stack files, docs, tests and examples are not the program
    .filter((f) => f && /\.(m?[jt]s|c[jt]s|ya?ml|json)$/.test(f) && !/(^|\/)Pulumi\.[^/]+\.ya?ml$|(^|\/)(test|tests|examples)\/|\.test\.[mc]?[jt]s$/.test(f));
  if (changedCode.length) notes.push(`Program files changed since \`${ref}\` (not reflected in the base): ${changedCode.slice(0, 10).map((f) => `\`${f}\``).join(", ")}${changedCode.length > 10 ? ` and ${changedCode.length - 10} more` : ""}.`);
  const show = git(project.dir, ["show", `${ref}:./${name}`]);
  if (!show.ok) {
    notes.push(`\`${name}\` does not exist at \`${ref}\`: the whole stack is new.`);
    return { notes };
  }
  try {
    return { plan: evaluate(project, stack, show.out, `${ref}:${name}`), notes };
  } catch (e) {
    if (!(e instanceof PlanError)) throw e;
    notes.push(`The base could not be evaluated, so everything shows as added: ${e.message.split("\n").join(" ")}`);
    return { notes };
  }
}

/** Run a plan; returns the exit code. Output goes to `write`, problems to `error`. */
export function runPlan(o: PlanOptions, write: (s: string) => void, error: (s: string) => void): number {
  try {
    const dir = resolve(o.cwd);
    const file = stackFile(dir, o.stack);
    const project = loadProject(dir, o.program);
    const head = evaluate(project, o.stack, readFileSync(file, "utf8"), basename(file));
    let diff: PlanDiff | undefined;
    if (o.base) {
      const b = basePlan(project, o.stack, file, o.base);
      diff = diffPlans(b.plan, head, o.base, b.notes);
    }
    write(o.format === "json" ? renderJson(head, diff) : renderMarkdown(head, diff));
    if (planPasses(head)) return 0;
    for (const g of head.groups) for (const f of g.failures) error(`datasync plan: group ${g.group}: ${f.reason}`);
    return 1;
  } catch (e) {
    error(`datasync plan: ${e instanceof PlanError ? e.message : ((e as Error)?.stack ?? String(e))}`);
    return 2;
  }
}
