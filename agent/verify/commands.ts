// Verify owns the `datasync verify` and `datasync repair` commands (DESIGN.md contract): options, the
// human and JSON reports, and the exit codes (verify: 0 identical, 1 different, 2 could not run;
// repair: 0 repaired, 1 differences remain, 2 could not run). The work is in verifier.ts and repair.ts.
import type { Config } from "../config.js";
import { jsonKey } from "./ranges.js";
import { runRepair, type RepairOutcome } from "./repair.js";
import { describeCounts, describeRange, exitCodeOf, runVerify, type RangeDiff, type ReplicaOutcome, type TableDiff, type VerifyOptions, type VerifyOutcome } from "./verifier.js";
import { VerifyError } from "../errors.js";

export { runVerify, runRepair, exitCodeOf, VerifyError };
export type { VerifyOutcome, RepairOutcome, VerifyOptions };

export interface VerifyCliOptions {
  replica?: string;
  tables?: string;
  json?: boolean;
  dryRun?: boolean;
}

const KEYS_IN_JSON = 100;
const n = (x: number) => x.toLocaleString("en-US");

function tableLines(t: TableDiff): string[] {
  switch (t.kind) {
    case "missing-table":
      return [`  ${t.table}: missing on the replica`];
    case "extra-table":
      return [`  ${t.table}: exists only on the replica (not on the source)`];
    case "schema":
      return [`  ${t.table}: schema differs: ${t.details.join("; ")}`];
    case "rows":
      return t.ranges.map((d) => `  ${t.table}: ${describeRange(d)}: ${describeCounts(d)}`);
  }
}

function replicaText(r: ReplicaOutcome): string {
  const lines: string[] = [];
  const tables = new Set(r.tables.map((t) => t.table)).size;
  if (r.error) lines.push(`replica ${r.label}: could not verify: ${r.error}`);
  else if (tables === 0) lines.push(`replica ${r.label}: identical (${r.compared} table${r.compared === 1 ? "" : "s"})`);
  else lines.push(`replica ${r.label}: ${tables} table${tables === 1 ? "" : "s"} differ${tables === 1 ? "s" : ""}`);
  for (const t of r.tables) lines.push(...tableLines(t));
  return lines.join("\n");
}

export function formatVerify(o: VerifyOutcome): string {
  const code = exitCodeOf(o);
  const head = `source ${o.source}: ${o.tables.length} table${o.tables.length === 1 ? "" : "s"}, ${n(o.sourceRows)} rows (${o.algo} checksums, ${(o.durationMs / 1000).toFixed(1)} s)`;
  const differing = o.replicas.filter((r) => r.tables.length > 0).length;
  const failed = o.replicas.filter((r) => r.error).length;
  const tail =
    code === 0
      ? `verify: all ${o.replicas.length} replica${o.replicas.length === 1 ? " is" : "s are"} identical to the source`
      : [differing ? `differences on ${differing} replica${differing === 1 ? "" : "s"}` : "", failed ? `${failed} replica${failed === 1 ? "" : "s"} could not be verified` : ""].filter(Boolean).join("; ");
  return [head, ...o.replicas.map(replicaText), code === 0 ? tail : `verify: ${tail} (exit ${code})`].join("\n") + "\n";
}

function rangeJson(d: RangeDiff) {
  const keys = (k: typeof d.missing) => k.slice(0, KEYS_IN_JSON).map(jsonKey);
  return {
    after: jsonKey(d.range.after),
    through: jsonKey(d.range.through),
    first: jsonKey(d.first),
    last: jsonKey(d.last),
    changed: d.changed.length,
    missing: d.missing.length,
    extra: d.extra.length,
    ...(d.unnarrowed ? { unnarrowed: d.unnarrowed } : {}),
    keys: { changed: keys(d.changed), missing: keys(d.missing), extra: keys(d.extra) },
  };
}

export function verifyJson(o: VerifyOutcome) {
  const exitCode = exitCodeOf(o);
  return {
    ok: exitCode === 0,
    exitCode,
    source: o.source,
    algo: o.algo,
    tables: o.tables,
    sourceRows: o.sourceRows,
    durationMs: o.durationMs,
    replicas: o.replicas.map((r) => ({
      name: r.name,
      label: r.label,
      identical: !r.error && r.tables.length === 0,
      ...(r.error ? { error: r.error } : {}),
      compared: r.compared,
      differences: r.tables.map((t) => ({ table: t.table, kind: t.kind, details: t.details, ranges: t.ranges.map(rangeJson) })),
    })),
  };
}

function progressSink(): ((line: string) => void) | undefined {
  return process.stderr.isTTY ? (line) => process.stderr.write(`… ${line}\n`) : undefined;
}

/** `datasync verify`: exit 0 identical, 1 different, 2 could not run */
export async function verifyCommand(c: Config, o: VerifyCliOptions): Promise<number> {
  let out: VerifyOutcome;
  try {
    out = await runVerify(c, { replica: o.replica, tables: o.tables, progress: progressSink() });
  } catch (e: any) {
    if (!(e instanceof VerifyError)) throw e;
    if (o.json) process.stdout.write(JSON.stringify({ ok: false, exitCode: 2, error: e.message }, null, 2) + "\n");
    process.stderr.write(`datasync verify: ${e.message}\n`);
    return 2;
  }
  process.stdout.write(o.json ? JSON.stringify(verifyJson(out), null, 2) + "\n" : formatVerify(out));
  return exitCodeOf(out);
}

export function formatRepair(r: RepairOutcome, dryRun: boolean): string {
  const lines: string[] = [];
  const found = r.before.replicas.reduce((a, x) => a + x.tables.length, 0);
  const verb = dryRun ? "would write" : "wrote";
  lines.push(
    found === 0
      ? "repair: no differences found"
      : `repair: ${found} difference${found === 1 ? "" : "s"} found; ${verb} rows: ${n(r.inserted)} inserted, ${n(r.updated)} updated, ${n(r.deleted)} deleted${r.tablesCreated ? `, ${r.tablesCreated} table${r.tablesCreated === 1 ? "" : "s"} created` : ""}`,
  );
  for (const x of r.before.replicas) if (x.error) lines.push(`  could not repair replica ${x.label}: ${x.error}`);
  for (const u of r.unrepairable) lines.push(`  not repaired: ${u}`);
  for (const f of r.failures) lines.push(`  failed: ${f}`);
  if (r.after && r.after !== r.before) lines.push("verify after repair:", ...formatVerify(r.after).trimEnd().split("\n").map((l) => `  ${l}`));
  return lines.join("\n") + "\n";
}

/** `datasync repair`: exit 0 when the replicas are equal afterwards (or the dry run printed everything), 1 when
 *  differences remain (or cannot be repaired), 2 when it could not run */
export async function repairCommand(c: Config, o: VerifyCliOptions): Promise<number> {
  let r: RepairOutcome;
  try {
    r = await runRepair(c, { replica: o.replica, tables: o.tables, dryRun: o.dryRun, progress: progressSink() });
  } catch (e: any) {
    if (!(e instanceof VerifyError)) throw e;
    process.stderr.write(`datasync repair: ${e.message}\n`);
    return 2;
  }
  // a dry run keeps stdout pure SQL (it can be piped into a client); the account goes to stderr
  (o.dryRun ? process.stderr : process.stdout).write(formatRepair(r, !!o.dryRun));
  if (r.before.replicas.some((x) => x.error) || r.after?.replicas.some((x) => x.error)) return 2;
  if (r.failures.length || r.unrepairable.length) return 1;
  if (o.dryRun) return 0;
  return r.after ? (exitCodeOf(r.after) === 0 ? 0 : 1) : 1;
}
