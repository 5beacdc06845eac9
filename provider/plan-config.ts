// Plan-config owns what `datasync plan` reads before running anything: the Pulumi project (Pulumi.yaml,
// its `main`), the stack file, and the stack's config as the Pulumi runtime would see it — with every
// `secure:` value replaced by an opaque placeholder (the plan never decrypts, and never needs to).
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { extname, join, resolve } from "node:path";
import YAML from "yaml";

/** What a `secure:` config value becomes under `datasync plan`. */
export const SECRET_PLACEHOLDER = "[secret]";

/** A problem that keeps the plan from running (exit 2); the message names the problem and the fix. */
export class PlanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PlanError";
  }
}

export interface Project {
  dir: string;
  name: string;
  /** absolute path of the JavaScript program the Pulumi runtime would run */
  main: string;
  /** the `main` as written (or the default used), for messages */
  mainDeclared: string;
}

/** Stacks with a committed `Pulumi.<stack>.yaml` in the project directory. */
export function availableStacks(dir: string): string[] {
  let files: string[] = [];
  try {
    files = readdirSync(dir);
  } catch {}
  return files
    .map((f) => /^Pulumi\.(.+)\.ya?ml$/.exec(f)?.[1])
    .filter((s): s is string => s !== undefined)
    .sort();
}

/** Read Pulumi.yaml and resolve the program like the Node.js runtime does (main, package.json main, index.js). */
export function loadProject(dir: string, programOverride?: string): Project {
  const file = ["Pulumi.yaml", "Pulumi.yml"].map((f) => join(dir, f)).find((f) => existsSync(f));
  if (!file) throw new PlanError(`no Pulumi.yaml in ${dir}; run datasync plan from the project directory or pass --cwd <dir with Pulumi.yaml>.`);
  let doc: any;
  try {
    doc = YAML.parse(readFileSync(file, "utf8")) ?? {};
  } catch (e) {
    throw new PlanError(`${file} is not valid YAML (${(e as Error).message}); fix the file.`);
  }
  if (typeof doc.name !== "string" || doc.name === "") throw new PlanError(`${file}: the project has no name; add \`name: <project>\`.`);
  const runtime = typeof doc.runtime === "string" ? doc.runtime : doc.runtime?.name;
  if (runtime !== undefined && runtime !== "nodejs") throw new PlanError(`${file}: runtime ${runtime} is not supported by datasync plan (it runs Node.js programs); use a nodejs project.`);
  const declared: string = programOverride ?? (typeof doc.main === "string" ? doc.main : ".");
  let main = resolve(programOverride ? process.cwd() : dir, declared);
  if (existsSync(main) && statSync(main).isDirectory()) {
    const pkg = join(main, "package.json");
    const pkgMain = existsSync(pkg) ? (JSON.parse(readFileSync(pkg, "utf8")).main as string | undefined) : undefined;
    main = resolve(main, pkgMain ?? "index.js");
  }
  if ([".ts", ".mts", ".cts"].includes(extname(main))) {
    throw new PlanError(`the program ${declared} is TypeScript; datasync plan runs compiled JavaScript in plain node. Compile it (tsc) and point Pulumi.yaml main (or --program) at the .js file.`);
  }
  if (!existsSync(main)) {
    const build = /(^|\/)dist\//.test(main) ? " Build it first: npm run build (or npm ci, which builds through prepare)." : " Check Pulumi.yaml main (or --program).";
    throw new PlanError(`the program ${main} does not exist.${build}`);
  }
  return { dir, name: doc.name, main, mainDeclared: declared };
}

export function stackFile(dir: string, stack: string): string {
  for (const ext of ["yaml", "yml"]) {
    const f = join(dir, `Pulumi.${stack}.${ext}`);
    if (existsSync(f)) return f;
  }
  const have = availableStacks(dir);
  throw new PlanError(
    `unknown stack "${stack}": there is no Pulumi.${stack}.yaml in ${dir}. ` +
      (have.length ? `Available stacks: ${have.join(", ")}; pass one with --stack.` : "No Pulumi.<stack>.yaml exists there; create one (pulumi stack init, pulumi config set) or pass --cwd."),
  );
}

export interface RuntimeConfig {
  /** PULUMI_CONFIG: `namespace:key` → text (objects and lists as JSON) */
  config: Record<string, string>;
  /** keys holding a secure value anywhere inside (PULUMI_CONFIG_SECRET_KEYS) */
  secretKeys: string[];
}

function isSecure(v: unknown): boolean {
  return !!v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length === 1 && typeof (v as any).secure === "string";
}

/** Replace every `{ secure: … }` by the placeholder; reports whether one was found. */
function opaque(v: unknown, found: { secret: boolean }): unknown {
  if (isSecure(v)) {
    found.secret = true;
    return SECRET_PLACEHOLDER;
  }
  if (Array.isArray(v)) return v.map((x) => opaque(x, found));
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, opaque(x, found)]));
  return v;
}

/**
 * The config of a stack file as the Node.js runtime receives it from the Pulumi CLI: keys without a
 * namespace get the project's, objects become JSON text, secure values become SECRET_PLACEHOLDER and
 * their keys are listed as secret. `source` names the file (or `REF:file`) in messages.
 */
export function runtimeConfig(project: string, yamlText: string, source: string): RuntimeConfig {
  let doc: any;
  try {
    doc = YAML.parse(yamlText) ?? {};
  } catch (e) {
    throw new PlanError(`${source} is not valid YAML (${(e as Error).message}); fix the file.`);
  }
  if (typeof doc !== "object" || Array.isArray(doc)) throw new PlanError(`${source}: expected a mapping with a config: section.`);
  const raw = doc.config ?? {};
  if (typeof raw !== "object" || Array.isArray(raw)) throw new PlanError(`${source}: config: must be a mapping of namespace:key to values.`);
  const config: Record<string, string> = {};
  const secretKeys: string[] = [];
  for (const [k, v] of Object.entries(raw)) {
    const key = k.includes(":") ? k : `${project}:${k}`;
    const found = { secret: false };
    const value = opaque(v, found);
    if (found.secret) secretKeys.push(key);
    if (value === null || value === undefined) continue;
    config[key] = typeof value === "string" ? value : typeof value === "object" ? JSON.stringify(value) : String(value);
  }
  return { config, secretKeys };
}

