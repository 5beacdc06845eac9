// Preflight owns the live checks of DESIGN.md's rules against the real source and replicas: it reads
// versions, settings, grants and table keys, and hands them to the pure rules in rules.ts.
import type { Config, Endpoint } from "./config.js";
import { connect, describeConnError, type Conn } from "./db.js";
import { describeIdentity, identityKey, readServerIdentity, type ServerIdentity } from "./identity.js";
import {
  checkBinlogSettings,
  checkLowerCaseTableNames,
  checkPrimaryKeys,
  checkReplicaPrivileges,
  checkSourcePrivileges,
  checkVersionParity,
  makeTableFilter,
  parseVersion,
  type Flavor,
  type RuleFailure,
  type ServerVersion,
  type Variables,
} from "./rules.js";

export interface ServerReport {
  /** "source" or the replica's name */
  name: string;
  /** "source (127.0.0.1:3306)" */
  label: string;
  reachable: boolean;
  version?: ServerVersion;
  failures: RuleFailure[];
  warnings: string[];
}

export interface PreflightReport {
  ok: boolean;
  source: ServerReport;
  replicas: ServerReport[];
}

const VARS = [
  "log_bin",
  "binlog_format",
  "binlog_row_image",
  "binlog_row_metadata",
  "binlog_transaction_compression",
  "binlog_row_value_options",
  "log_bin_compress",
  "gtid_mode",
  "lower_case_table_names",
  "sql_generate_invisible_primary_key",
  "server_id",
];

export async function readVariables(c: Conn): Promise<Variables> {
  const [rows] = await c.query<any[]>(`SHOW GLOBAL VARIABLES WHERE Variable_name IN (${VARS.map(() => "?").join(",")})`, VARS);
  const out: Variables = {};
  for (const r of rows) out[String(r.Variable_name).toLowerCase()] = String(r.Value);
  return out;
}

export async function readGrants(c: Conn): Promise<string[]> {
  const [rows] = await c.query<any[]>("SHOW GRANTS");
  return rows.map((r) => String(Object.values(r)[0]));
}

/**
 * Base tables in the synced databases (filtered) without a primary key. Reads STATISTICS, not
 * TABLE_CONSTRAINTS: MariaDB 10.11 hides TABLE_CONSTRAINTS rows from a user with only SELECT (the
 * sync user), which would report every table as keyless.
 */
/** The synced schemas and their base tables in scope, as `db` and `db.table` (names as the source stores them). */
async function sourceNamesInScope(c: Conn, cfg: Pick<Config, "databases" | "tables">): Promise<string[]> {
  const [rows] = await c.query<any[]>(
    "SELECT TABLE_SCHEMA AS db, TABLE_NAME AS tbl FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA IN (?)",
    [cfg.databases],
  );
  const inScope = makeTableFilter({ databases: cfg.databases, include: cfg.tables?.include, exclude: cfg.tables?.exclude });
  return [...cfg.databases, ...rows.filter((r) => inScope(String(r.db), String(r.tbl))).map((r) => `${r.db}.${r.tbl}`)];
}

export async function tablesWithoutPrimaryKey(c: Conn, cfg: Pick<Config, "databases" | "tables">): Promise<string[]> {
  if (cfg.databases.length === 0) return [];
  const [rows] = await c.query<any[]>(
    `SELECT t.TABLE_SCHEMA AS db, t.TABLE_NAME AS tbl FROM information_schema.TABLES t
     WHERE t.TABLE_TYPE = 'BASE TABLE' AND t.TABLE_SCHEMA IN (?)
       AND NOT EXISTS (SELECT 1 FROM information_schema.STATISTICS k
                       WHERE k.TABLE_SCHEMA = t.TABLE_SCHEMA AND k.TABLE_NAME = t.TABLE_NAME AND k.INDEX_NAME = 'PRIMARY')
     ORDER BY 1, 2`,
    [cfg.databases],
  );
  const inScope = makeTableFilter({ databases: cfg.databases, include: cfg.tables?.include, exclude: cfg.tables?.exclude });
  return rows.filter((r) => inScope(r.db, r.tbl)).map((r) => `${r.db}.${r.tbl}`);
}

export async function triggersInScope(c: Conn, databases: string[]): Promise<string[]> {
  const [rows] = await c.query<any[]>(
    "SELECT TRIGGER_SCHEMA AS db, TRIGGER_NAME AS name, EVENT_OBJECT_TABLE AS tbl FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA IN (?) ORDER BY 1, 2",
    [databases],
  );
  return rows.map((r) => `${r.db}.${r.name} (on ${r.tbl})`);
}

function label(e: Endpoint, name: string): string {
  return `${name} (${e.host}:${e.port})`;
}

export interface SourceFacts {
  version: ServerVersion;
  vars: Variables;
  /** the source's server identity (DESIGN.md "Server identity"); absent where only the declared version is known */
  identity?: ServerIdentity;
  /** "source (host:port)" for messages */
  label?: string;
  /**
   * The identity each replica showed at its last preflight, by replica name: a replica must be a server
   * of its own, so a later preflight (agent start, every reconnect of a replica session) compares with them.
   */
  replicaIdentities?: Map<string, { identity: ServerIdentity; label: string }>;
  /** the source's schema and `db.table` names in scope (rule 6, lower_case_table_names 0 → 1) */
  namesInScope?: string[];
}

/**
 * Rule 1, live: a replica is neither the source nor another replica, by server identity rather than by
 * host string (a DNS alias, another address, a proxy or a port forward name the same server). Writing to
 * such a "replica" would overwrite the source's (or the other replica's) data. Registers the replica's
 * identity in `source.replicaIdentities`; the check and the registration run without an await between
 * them, so two sessions connecting at once still see each other.
 */
export function checkDistinctServer(name: string, label: string, where: string, id: ServerIdentity, source?: SourceFacts): RuleFailure[] {
  const out: RuleFailure[] = [];
  if (!source) return out;
  const key = identityKey(id);
  if (source.identity && identityKey(source.identity) === key) {
    out.push({
      rule: 1,
      code: "replica-is-source",
      where: label,
      message: `${label} is the same server as ${source.label ?? "the source"}: both report ${describeIdentity(id)}. Writing to it would overwrite the source's data, so nothing is written. Fix: point ${where} at a different server (the address given reaches the source, e.g. a DNS alias, another address of it or a port forward).`,
    });
  }
  source.replicaIdentities ??= new Map();
  for (const [other, seen] of source.replicaIdentities) {
    if (other !== name && identityKey(seen.identity) === key) {
      out.push({
        rule: 1,
        code: "replica-twice",
        where: label,
        message: `${label} is the same server as ${seen.label}: both report ${describeIdentity(id)}. A server can be a replica only once per group (two writers would overwrite each other). Fix: point ${where} or replica ${other} at another server, or remove one of them.`,
      });
    }
  }
  if (out.length === 0) source.replicaIdentities.set(name, { identity: id, label });
  return out;
}

/** Live checks of the source. Never throws for rule failures; connection errors become a failure. */
export async function preflightSource(cfg: Config): Promise<{ report: ServerReport; facts?: SourceFacts }> {
  const report: ServerReport = { name: "source", label: label(cfg.source, "source"), reachable: false, failures: [], warnings: [] };
  let c: Conn;
  try {
    c = await connect(cfg.source, "source");
  } catch (err) {
    report.failures.push({ rule: 0, code: "source-unreachable", where: report.label, message: describeConnError(err, "source", cfg.source) });
    return { report };
  }
  try {
    report.reachable = true;
    const [[{ v }]] = await c.query<any[]>("SELECT VERSION() AS v");
    const version = parseVersion(String(v))!;
    report.version = version;
    const identity = await readServerIdentity(c);
    const vars = await readVariables(c);
    report.failures.push(...checkBinlogSettings(report.label, vars, version.flavor));
    report.failures.push(...checkSourcePrivileges(report.label, await readGrants(c), version.flavor));
    report.failures.push(...checkPrimaryKeys(report.label, await tablesWithoutPrimaryKey(c, cfg)));
    const trig = await triggersInScope(c, cfg.databases);
    if (trig.length) {
      report.warnings.push(
        `${report.label}: trigger${trig.length > 1 ? "s" : ""} ${trig.join(", ")} ${trig.length > 1 ? "are" : "is"} held back from the replicas while syncing (their effects arrive as rows); install them on a replica when syncing ends, e.g. at cutover.`,
      );
    }
    const namesInScope = await sourceNamesInScope(c, cfg);
    return { report, facts: { version, vars, identity, label: report.label, replicaIdentities: new Map(), namesInScope } };
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Live checks of one replica against the source facts. */
export async function preflightReplica(cfg: Config, index: number, source?: SourceFacts): Promise<ServerReport> {
  const r = cfg.replicas[index];
  const report: ServerReport = { name: r.name, label: label(r, `replica ${r.name}`), reachable: false, failures: [], warnings: [] };
  let c: Conn;
  try {
    c = await connect(r, `replicas[${index}]`);
  } catch (err) {
    report.failures.push({ rule: 0, code: "replica-unreachable", where: report.label, message: describeConnError(err, `replica ${r.name}`, r) });
    return report;
  }
  try {
    report.reachable = true;
    const [[{ v }]] = await c.query<any[]>("SELECT VERSION() AS v");
    const version = parseVersion(String(v))!;
    report.version = version;
    report.failures.push(...checkDistinctServer(r.name, report.label, `replicas[${index}]`, await readServerIdentity(c), source));
    if (source) {
      report.failures.push(
        ...checkVersionParity(
          { where: "source", version: source.version.raw, flavor: source.version.flavor },
          [{ where: report.label, version: version.raw, flavor: version.flavor }],
        ),
      );
    }
    const vars = await readVariables(c);
    // rule 6: equal, or a case-sensitive source (0) to a lower-case target (1, Azure's fixed value) when every
    // name in scope is lower case and none collide (the one rule the provider's live check runs too)
    if (source) report.failures.push(...checkLowerCaseTableNames(report.label, source.vars.lower_case_table_names, vars.lower_case_table_names, source.namesInScope ?? []));
    if (vars.sql_generate_invisible_primary_key !== undefined && /^(ON|1)$/i.test(vars.sql_generate_invisible_primary_key)) {
      report.failures.push({
        rule: 6,
        code: "invisible-primary-key",
        where: report.label,
        message: `${report.label}: sql_generate_invisible_primary_key is ON, required OFF (tables created by the sync would get a key the source does not have). Set the server parameter sql_generate_invisible_primary_key=OFF.`,
      });
    }
    report.failures.push(...checkReplicaPrivileges(report.label, await readGrants(c), cfg.databases));
    return report;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/**
 * Before the first write on a new connection to replica `index` (the writer lock's connection, on every
 * reconnect): the server behind it is neither the source nor another replica. Throws naming both endpoints.
 */
export async function proveDistinctServer(c: Conn, cfg: Config, index: number, source: SourceFacts): Promise<void> {
  const r = cfg.replicas[index];
  const failures = checkDistinctServer(r.name, label(r, `replica ${r.name}`), `replicas[${index}]`, await readServerIdentity(c), source);
  if (failures.length) throw new Error(failures.map((f) => f.message).join("; "));
}

/**
 * Agent start: every reachable replica is a server of its own (not the source, not another replica), all
 * checked before any replica session starts; an unreachable replica is checked when its session connects.
 * Returns the failures (the agent refuses to start on any).
 */
export async function checkReplicaServers(cfg: Config, source: SourceFacts): Promise<RuleFailure[]> {
  const seen = await Promise.all(
    cfg.replicas.map(async (r, i) => {
      let c: Conn;
      try {
        c = await connect(r, `replicas[${i}]`);
      } catch {
        return undefined; // reported by the replica's session, which checks again before writing
      }
      try {
        return await readServerIdentity(c);
      } finally {
        await c.end().catch(() => undefined);
      }
    }),
  );
  const out: RuleFailure[] = [];
  seen.forEach((id, i) => {
    if (id) out.push(...checkDistinctServer(cfg.replicas[i].name, label(cfg.replicas[i], `replica ${cfg.replicas[i].name}`), `replicas[${i}]`, id, source));
  });
  return out;
}

export async function preflight(cfg: Config): Promise<PreflightReport> {
  const { report: source, facts } = await preflightSource(cfg);
  const replicas = await Promise.all(cfg.replicas.map((_, i) => preflightReplica(cfg, i, facts)));
  return { ok: source.failures.length === 0 && replicas.every((r) => r.failures.length === 0), source, replicas };
}

export type { Flavor };
export { checkReplicaPrivileges };
