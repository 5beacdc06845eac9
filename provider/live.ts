// Live owns what the dynamic providers do against real servers: the create/update re-check (the agent's
// preflight plus declared-versus-live versions) and the `_datasync` bookkeeping of a group on a replica.
// These functions are captured by closure serialization: the agent modules and the driver are imported
// inside them (never a connection or pool in a closure), by a URL fixed when this module loaded.
import type { Config, Endpoint } from "../agent/config.js";
import type { RuleFailure } from "../agent/rules.js";

/** where the compiled agent modules are (dist/agent/), as a URL string so a serialized closure carries it */
const AGENT_DIR = new URL("../agent/", import.meta.url).href;

/** Import a compiled agent module: next to this file, else through the installed package. */
export async function agentModule(name: "config" | "db" | "preflight" | "rules"): Promise<any> {
  try {
    return await import(`${AGENT_DIR}${name}.js`);
  } catch (err: any) {
    if (err?.code !== "ERR_MODULE_NOT_FOUND") throw err;
    return await import(`datasync/agent/${name}`);
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

/**
 * Every live rule for a group (agent preflight: reachability, versions, binlog settings, keys in scope,
 * privileges, replica parameters) plus each declared version against `SELECT VERSION()`.
 * Throws LiveCheckError with all failures; returns the live versions.
 */
export async function liveCheck(cfg: Config, declared: DeclaredVersions, what: string): Promise<LiveVersions> {
  const { preflight } = await agentModule("preflight");
  const { checkDeclaredVersion } = await agentModule("rules");
  const report = await preflight(cfg);
  const failures: RuleFailure[] = [...report.source.failures];
  if (report.source.version) {
    failures.push(...checkDeclaredVersion("primary.version", report.source.label, declared.primary.version, declared.primary.flavor, report.source.version));
  }
  report.replicas.forEach((r: any, i: number) => {
    failures.push(...r.failures);
    if (r.version && declared.replicas[i]) {
      failures.push(...checkDeclaredVersion(`replicas[${i}].version`, r.label, declared.replicas[i].version, declared.replicas[i].flavor, r.version));
    }
  });
  if (failures.length) throw liveCheckError(what, failures);
  return {
    primary: report.source.version?.raw,
    replicas: Object.fromEntries(report.replicas.map((r: any) => [r.name, r.version?.raw])),
  };
}

/** Create `_datasync` and record the group's membership on one replica (idempotent). */
export async function prepareBookkeeping(e: Endpoint, where: string, group: string, replica: string, source: string): Promise<void> {
  const { connect, describeConnError } = await agentModule("db");
  let c: any;
  try {
    c = await connect(e, where);
  } catch (err) {
    throw new Error(`cannot prepare _datasync: ${describeConnError(err, where, e)}`);
  }
  try {
    await c.query("CREATE DATABASE IF NOT EXISTS `_datasync`");
    // The provider's own table; the agent's checkpoint tables sit next to it, keyed by group_name too.
    await c.query(
      "CREATE TABLE IF NOT EXISTS `_datasync`.`members` (group_name VARCHAR(40) NOT NULL PRIMARY KEY, replica VARCHAR(63) NOT NULL, " +
        "source VARCHAR(300) NOT NULL, joined_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB",
    );
    await c.query("INSERT INTO `_datasync`.`members` (group_name, replica, source) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE replica = VALUES(replica), source = VALUES(source)", [group, replica, source]);
  } catch (err: any) {
    throw new Error(`${where} (${e.host}:${e.port}): preparing _datasync failed: ${err?.message}; the sync user needs CREATE, INSERT, UPDATE, DELETE on _datasync (GRANT ALL PRIVILEGES ON \`_datasync\`.* TO <user>).`);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** columns by which bookkeeping tables in `_datasync` name their group */
const GROUP_COLUMNS = ["group_name", "grp", "sync_group", "group"];

/**
 * Remove a group's bookkeeping from one replica: every row of a `_datasync` table keyed by the group
 * (membership, checkpoints, snapshot progress). Other groups' rows and the synced data stay.
 * Returns false when the server cannot be reached (it may be gone already), so a delete can go on.
 */
export async function removeBookkeeping(e: Endpoint, where: string, group: string): Promise<boolean> {
  const { connect, describeConnError } = await agentModule("db");
  let c: any;
  try {
    c = await connect(e, where);
  } catch (err: any) {
    if (["ECONNREFUSED", "ENOTFOUND", "ETIMEDOUT", "EHOSTUNREACH", "EAI_AGAIN"].includes(err?.code)) {
      process.stderr.write(`datasync: ${describeConnError(err, where, e)}; its _datasync bookkeeping for group ${group} was left in place\n`);
      return false;
    }
    throw new Error(`cannot remove the bookkeeping of group ${group}: ${describeConnError(err, where, e)}`);
  }
  try {
    const [cols] = await c.query(
      "SELECT TABLE_NAME AS t, COLUMN_NAME AS col FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '_datasync' AND COLUMN_NAME IN (?) ORDER BY 1",
      [GROUP_COLUMNS],
    );
    for (const { t, col } of cols as { t: string; col: string }[]) {
      await c.query(`DELETE FROM \`_datasync\`.\`${t.replace(/`/g, "``")}\` WHERE \`${col.replace(/`/g, "``")}\` = ?`, [group]);
    }
    return true;
  } finally {
    await c.end().catch(() => undefined);
  }
}
