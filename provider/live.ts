// Live owns what the dynamic providers do against real servers: the create/update re-check (the agent's
// preflight plus declared-versus-live versions) and the `_datasync` bookkeeping of a group on a replica.
// These functions are captured by closure serialization: the agent modules and the driver are imported
// inside them (never a connection or pool in a closure), and found by the package name `datasync` from the
// program's directory, never by a path fixed at build time: the state must not hold this checkout's
// absolute path, or a `pulumi destroy` from another checkout or CI runner could not load them.
import type { Config, Endpoint } from "../agent/config.js";
import type { RuleFailure } from "../agent/rules.js";

/**
 * Import a compiled agent module through the package name: `datasync/agent/<name>` resolved from the
 * working directory, which the engine sets to the Pulumi project (its node_modules holds `datasync`, or
 * the project is this package itself: the package's `exports` self-reference). A plain `import()` of the
 * bare name is the last resort (it resolves from the provider host's own location).
 */
export async function agentModule(name: "config" | "db" | "preflight" | "rules"): Promise<any> {
  const { createRequire } = await import("node:module");
  const { pathToFileURL } = await import("node:url");
  const { join } = await import("node:path");
  const spec = `datasync/agent/${name}`;
  let file: string | undefined;
  try {
    file = createRequire(join(process.cwd(), "__datasync__.js")).resolve(spec);
  } catch {}
  if (file) return await import(pathToFileURL(file).href);
  try {
    return await import(spec);
  } catch (err: any) {
    throw new Error(`cannot load ${spec} from ${process.cwd()}: ${err?.message}. Run pulumi from the project directory whose node_modules holds the datasync package (npm install), or from the datasync repository itself after npm ci.`);
  }
}

/**
 * A failed live check: the message lists every failure, each naming server, setting, values and fix.
 * A plain Error (not a subclass): closure serialization turns classes into functions, and an Error
 * subclass called that way loses its message.
 */
export function liveCheckError(what: string, failures: RuleFailure[]): Error & { failures: RuleFailure[] } {
  const err = new Error(`${what}: ${failures.length} rule${failures.length > 1 ? "s fail" : " fails"} on the live servers:\n${failures.map((f) => `  - [rule ${f.rule}] ${f.message}`).join("\n")}`) as Error & { failures: RuleFailure[] };
  err.name = "LiveCheckError";
  err.failures = failures;
  return err;
}

export interface DeclaredVersions {
  primary: { version: string; flavor?: "mysql" | "mariadb" };
  replicas: { version: string; flavor?: "mysql" | "mariadb" }[];
}

export interface LiveVersions {
  primary?: string;
  replicas: Record<string, string | undefined>;
}

export interface LiveOptions {
  /** how long a replica or the agent may be away and still resume (binlog retention rule); default 86400 */
  tolerateOutageSeconds?: number;
}

/**
 * Every live rule for a group (agent preflight: reachability, versions, binlog settings, keys in scope,
 * privileges, replica parameters) plus each declared version against `SELECT VERSION()`, and the rules the
 * provider evaluates itself (lower_case_table_names 0 → 1, InnoDB only on Azure targets, binlog retention).
 * Throws LiveCheckError with all failures; returns the live versions.
 */
export async function liveCheck(cfg: Config, declared: DeclaredVersions, what: string, opts: LiveOptions = {}): Promise<LiveVersions> {
  const { preflight } = await agentModule("preflight");
  const { checkDeclaredVersion } = await agentModule("rules");
  const report = await preflight(cfg);
  // the preflight applies rule 6 too; the provider evaluates it once, with the tables it reads itself, as
  // DESIGN.md states it (0 → 1 allowed for lower-case names) in sourceAndTargetRules below
  const keep = (f: RuleFailure) => !f.code.startsWith("lower-case-table-names");
  const failures: RuleFailure[] = [...report.source.failures.filter(keep)];
  if (report.source.version) {
    failures.push(...checkDeclaredVersion("primary.version", report.source.label, declared.primary.version, declared.primary.flavor, report.source.version));
  }
  report.replicas.forEach((r: any, i: number) => {
    failures.push(...r.failures.filter(keep));
    if (r.version && declared.replicas[i]) {
      failures.push(...checkDeclaredVersion(`replicas[${i}].version`, r.label, declared.replicas[i].version, declared.replicas[i].flavor, r.version));
    }
  });
  if (report.source.reachable) failures.push(...(await sourceAndTargetRules(cfg, opts, report.replicas.map((r: any) => r.reachable))));
  if (failures.length) throw liveCheckError(what, failures);
  return {
    primary: report.source.version?.raw,
    replicas: Object.fromEntries(report.replicas.map((r: any) => [r.name, r.version?.raw])),
  };
}

/** The names and engines of the base tables in scope on the source, and its lower_case_table_names and binlog retention variables. */
async function sourceAndTargetRules(cfg: Config, opts: LiveOptions, reachable: boolean[]): Promise<RuleFailure[]> {
  const { connect } = await agentModule("db");
  const rules = await agentModule("rules");
  const out: RuleFailure[] = [];
  const label = `source (${cfg.source.host}:${cfg.source.port})`;
  let c: any;
  let lctn: string | undefined;
  const names: string[] = [];
  const tables: { name: string; engine: string | null }[] = [];
  try {
    c = await connect(cfg.source, "source");
    const [vars] = await c.query("SHOW GLOBAL VARIABLES WHERE Variable_name IN ('lower_case_table_names', 'binlog_expire_logs_seconds', 'expire_logs_days')");
    const v: Record<string, string> = {};
    for (const r of vars as any[]) v[String(r.Variable_name).toLowerCase()] = String(r.Value);
    lctn = v.lower_case_table_names;
    out.push(...rules.checkBinlogRetention(label, rules.binlogRetentionSeconds(v), opts.tolerateOutageSeconds ?? 86400));
    const [rows] = await c.query("SELECT TABLE_SCHEMA AS db, TABLE_NAME AS tbl, ENGINE AS engine FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA IN (?) ORDER BY 1, 2", [cfg.databases]);
    const inScope = rules.makeTableFilter({ databases: cfg.databases, include: cfg.tables?.include, exclude: cfg.tables?.exclude });
    names.push(...cfg.databases);
    for (const r of rows as any[]) {
      if (!inScope(r.db, r.tbl)) continue;
      names.push(`${r.db}.${r.tbl}`);
      tables.push({ name: `${r.db}.${r.tbl}`, engine: r.engine });
    }
  } finally {
    await c?.end().catch(() => undefined);
  }
  for (const [i, r] of cfg.replicas.entries()) {
    if (!reachable[i]) continue; // the preflight reported it
    const where = `replica ${r.name} (${r.host}:${r.port})`;
    let rc: any;
    try {
      rc = await connect(r, `replicas[${i}]`);
      const [[row]] = await rc.query("SELECT @@GLOBAL.lower_case_table_names AS v");
      out.push(...rules.checkLowerCaseTableNames(where, lctn, row?.v === undefined || row?.v === null ? undefined : String(row.v), names));
    } finally {
      await rc?.end().catch(() => undefined);
    }
    if (rules.isAzureMySqlHost(r.host)) out.push(...rules.checkStorageEngines(where, tables));
  }
  return out;
}

/** Create `_datasync` and record the group's membership on one replica (idempotent). */
export async function prepareBookkeeping(e: Endpoint, where: string, group: string, replica: string, source: string): Promise<void> {
  const { connect, describeConnError, quoteId } = await agentModule("db");
  const { BOOKKEEPING_SCHEMA } = await agentModule("rules");
  const S = quoteId(BOOKKEEPING_SCHEMA);
  let c: any;
  try {
    c = await connect(e, where);
  } catch (err) {
    throw new Error(`cannot prepare ${BOOKKEEPING_SCHEMA}: ${describeConnError(err, where, e)}`);
  }
  try {
    await c.query(`CREATE DATABASE IF NOT EXISTS ${S}`);
    // The provider's own table; the agent's checkpoint tables sit next to it, keyed by group_name too.
    await c.query(
      `CREATE TABLE IF NOT EXISTS ${S}.\`members\` (group_name VARCHAR(40) NOT NULL PRIMARY KEY, replica VARCHAR(63) NOT NULL, ` +
        "source VARCHAR(300) NOT NULL, joined_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB",
    );
    await c.query(`INSERT INTO ${S}.\`members\` (group_name, replica, source) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE replica = VALUES(replica), source = VALUES(source)`, [group, replica, source]);
  } catch (err: any) {
    throw new Error(`${where} (${e.host}:${e.port}): preparing ${BOOKKEEPING_SCHEMA} failed: ${err?.message}; the sync user needs CREATE, INSERT, UPDATE, DELETE on ${BOOKKEEPING_SCHEMA} (GRANT ALL PRIVILEGES ON ${S}.* TO <user>).`);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** columns by which bookkeeping tables in `_datasync` name their group */
const GROUP_COLUMNS = ["group_name", "grp", "sync_group", "group"];

/**
 * Remove a group's bookkeeping from one replica: with scope "group" (the group is destroyed) every row of a
 * `_datasync` table keyed by the group (membership, checkpoints, snapshot progress); with "membership" (the
 * replica leaves the group) only its `members` row. Other groups' rows and the synced data stay.
 * Returns false when the server cannot be reached (it may be gone already), so a delete can go on.
 */
export async function removeBookkeeping(e: Endpoint, where: string, group: string, scope: "group" | "membership" = "group"): Promise<boolean> {
  const { connect, describeConnError, quoteId } = await agentModule("db");
  const { BOOKKEEPING_SCHEMA } = await agentModule("rules");
  const S = quoteId(BOOKKEEPING_SCHEMA);
  let c: any;
  try {
    c = await connect(e, where);
  } catch (err: any) {
    if (["ECONNREFUSED", "ENOTFOUND", "ETIMEDOUT", "EHOSTUNREACH", "EAI_AGAIN"].includes(err?.code)) {
      process.stderr.write(`datasync: ${describeConnError(err, where, e)}; its ${BOOKKEEPING_SCHEMA} bookkeeping for group ${group} was left in place\n`);
      return false;
    }
    throw new Error(`cannot remove the bookkeeping of group ${group}: ${describeConnError(err, where, e)}`);
  }
  try {
    if (scope === "membership") {
      // a replica leaves the group: its membership row goes, its checkpoints stay (re-adding it resumes
      // from them, no new snapshot); only destroying the group itself removes them
      const [t] = await c.query("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'members'", [BOOKKEEPING_SCHEMA]);
      if ((t as any[]).length) await c.query(`DELETE FROM ${S}.\`members\` WHERE group_name = ?`, [group]);
      return true;
    }
    const [cols] = await c.query(
      "SELECT TABLE_NAME AS t, COLUMN_NAME AS col FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND COLUMN_NAME IN (?) ORDER BY 1",
      [BOOKKEEPING_SCHEMA, GROUP_COLUMNS],
    );
    for (const { t, col } of cols as { t: string; col: string }[]) {
      await c.query(`DELETE FROM ${S}.\`${t.replace(/`/g, "``")}\` WHERE \`${col.replace(/`/g, "``")}\` = ?`, [group]);
    }
    return true;
  } finally {
    await c.end().catch(() => undefined);
  }
}
