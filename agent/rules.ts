// Rules owns the checks that decide whether a sync group can work. Pure functions, each returning every
// failure it finds; the provider's `check` (preview) and the agent's preflight (start) both call these.

export interface RuleFailure {
  /** rule number of DESIGN.md (1..6) and a stable code */
  rule: number;
  code: string;
  /** the property path (provider) or server name (agent) */
  where: string;
  message: string;
}

export const MAX_REPLICAS = 5;
export const SYSTEM_SCHEMAS = ["mysql", "sys", "information_schema", "performance_schema"];
export const BOOKKEEPING_SCHEMA = "_datasync";
export const GROUP_RE = /^[a-z0-9][a-z0-9-]{0,39}$/;
export const REPLICA_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/**
 * The hosts on which TLS defaults to disabled: exactly 127.0.0.1, localhost and ::1 (DESIGN.md). The rest of
 * 127.0.0.0/8 is not on the list: such an address can be a tunnel or a proxy to a remote server.
 */
export function tlsOffByDefault(host: string): boolean {
  const h = host.trim().toLowerCase();
  return h === "localhost" || h === "127.0.0.1" || h === "::1" || h === "[::1]";
}

/** any loopback address (127.0.0.0/8, localhost, ::1) */
export function isLoopback(host: string): boolean {
  const h = host.trim().toLowerCase();
  return h === "localhost" || h === "::1" || h === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(h);
}

export interface EndpointLike {
  name?: string;
  host?: string;
  port?: number;
}

function endpointKey(e: EndpointLike): string | null {
  if (typeof e.host !== "string") return null; // unknown at preview: deferred
  let h = e.host.trim().toLowerCase();
  if (h === "localhost" || h === "::1" || h === "[::1]") h = "127.0.0.1";
  return `${h}:${e.port ?? 3306}`;
}

/** Rule 1: at most 5 replicas; names unique; no endpoint twice; the primary is not a replica. */
export function checkTopology(
  primary: EndpointLike,
  replicas: EndpointLike[],
  paths = { primary: "source", replicas: "replicas" },
): RuleFailure[] {
  const out: RuleFailure[] = [];
  if (replicas.length > MAX_REPLICAS) {
    out.push({
      rule: 1,
      code: "too-many-replicas",
      where: paths.replicas,
      message: `${paths.replicas}: ${replicas.length} replicas are declared, at most ${MAX_REPLICAS} are allowed per primary. Remove ${replicas.length - MAX_REPLICAS} of them, or split them across two sync groups with their own primary.`,
    });
  }
  if (replicas.length === 0) {
    out.push({ rule: 1, code: "no-replicas", where: paths.replicas, message: `${paths.replicas}: no replica is declared; declare 1 to ${MAX_REPLICAS} replicas.` });
  }
  const names = new Map<string, number>();
  const endpoints = new Map<string, number>();
  const pkey = endpointKey(primary);
  replicas.forEach((r, i) => {
    const p = `${paths.replicas}[${i}]`;
    if (typeof r.name === "string") {
      const prev = names.get(r.name);
      if (prev !== undefined) {
        out.push({ rule: 1, code: "duplicate-name", where: `${p}.name`, message: `${p}.name: "${r.name}" is already the name of ${paths.replicas}[${prev}]; replica names must be unique. Rename one of them.` });
      } else names.set(r.name, i);
    }
    const k = endpointKey(r);
    if (k) {
      const prev = endpoints.get(k);
      if (prev !== undefined) {
        out.push({ rule: 1, code: "duplicate-endpoint", where: `${p}.host`, message: `${p}: endpoint ${k} is already ${paths.replicas}[${prev}]; a server can be a replica only once per group. Remove the duplicate.` });
      } else endpoints.set(k, i);
      if (pkey && k === pkey) {
        out.push({ rule: 1, code: "primary-is-replica", where: `${p}.host`, message: `${p}: endpoint ${k} is the primary itself; a primary cannot be its own replica. Point ${p} at another server.` });
      }
    }
  });
  return out;
}

export type Flavor = "mysql" | "mariadb";
export interface ServerVersion {
  flavor: Flavor;
  major: number;
  minor: number;
  patch: number;
  raw: string;
}

/** Parse `SELECT VERSION()` output ("10.11.6-MariaDB-0+deb12u1-log", "8.0.36") or a declared "8.0". */
export function parseVersion(raw: string, flavor?: Flavor): ServerVersion | null {
  const m = /^(?:5\.5\.5-)?(\d+)\.(\d+)(?:\.(\d+))?/.exec(raw.trim());
  if (!m) return null;
  const major = Number(m[1]);
  const minor = Number(m[2]);
  const patch = m[3] ? Number(m[3]) : 0;
  const f: Flavor = flavor ?? (/mariadb/i.test(raw) || major === 10 || major === 11 || major === 12 ? "mariadb" : "mysql");
  return { flavor: f, major, minor, patch, raw };
}

/** flavor default from the version: 10.x and 11.x are MariaDB, the rest MySQL */
export function defaultFlavor(version: string): Flavor {
  const v = parseVersion(version);
  return v?.flavor ?? "mysql";
}

export function fmtVersion(v: ServerVersion): string {
  return `${v.flavor === "mariadb" ? "MariaDB" : "MySQL"} ${v.major}.${v.minor}`;
}

/** Rule 2: flavor and major.minor equal on the primary and every replica. Unknown (undefined) values are deferred. */
export function checkVersionParity(
  primary: { where: string; version?: string; flavor?: Flavor },
  replicas: { where: string; version?: string; flavor?: Flavor }[],
): RuleFailure[] {
  const out: RuleFailure[] = [];
  if (typeof primary.version !== "string") return out;
  const pv = parseVersion(primary.version, primary.flavor);
  if (!pv) {
    return [{ rule: 2, code: "bad-version", where: primary.where, message: `${primary.where}: "${primary.version}" is not a version; write major.minor, e.g. "8.0" or "10.11".` }];
  }
  for (const r of replicas) {
    if (typeof r.version !== "string") continue;
    const rv = parseVersion(r.version, r.flavor);
    if (!rv) {
      out.push({ rule: 2, code: "bad-version", where: r.where, message: `${r.where}: "${r.version}" is not a version; write major.minor, e.g. "8.0" or "10.11".` });
      continue;
    }
    if (rv.flavor !== pv.flavor || rv.major !== pv.major || rv.minor !== pv.minor) {
      out.push({
        rule: 2,
        code: "version-mismatch",
        where: r.where,
        message: `${r.where}: ${fmtVersion(rv)} (${r.version}) differs from the primary's ${fmtVersion(pv)} (${primary.version}); flavor and major.minor must be equal. Run the replica on ${fmtVersion(pv)}.`,
      });
    }
  }
  return out;
}

/**
 * Rule 2, live: a declared version (the provider's `version` input) must be what the server runs, or the
 * preview-time parity check proved nothing. `server` names it ("replicas[1] (10.0.0.6:3306)").
 */
export function checkDeclaredVersion(where: string, server: string, declared: string, declaredFlavor: Flavor | undefined, live: ServerVersion): RuleFailure[] {
  const dv = parseVersion(declared, declaredFlavor);
  if (!dv) return [];
  if (dv.flavor === live.flavor && dv.major === live.major && dv.minor === live.minor) return [];
  return [
    {
      rule: 2,
      code: "declared-version-mismatch",
      where,
      message: `${where}: declared ${fmtVersion(dv)} ("${declared}") but ${server} runs ${fmtVersion(live)} (${live.raw}); the declared version must be the live one. Set ${where} to "${live.major}.${live.minor}"${live.flavor !== dv.flavor ? ` and flavor to "${live.flavor}"` : ""}, and keep flavor and major.minor equal on the primary and every replica.`,
    },
  ];
}

/** Server variables relevant to rule 3, as read with SHOW GLOBAL VARIABLES (names lower case). */
export type Variables = Record<string, string | undefined>;

/** Rule 3: the source binlog must carry full row images the reader can decode. */
export function checkBinlogSettings(server: string, vars: Variables, flavor: Flavor): RuleFailure[] {
  const out: RuleFailure[] = [];
  const v = (k: string) => vars[k]?.toUpperCase();
  const fail = (code: string, setting: string, current: string | undefined, required: string, fix: string) =>
    out.push({ rule: 3, code, where: server, message: `${server}: ${setting} is ${current ?? "unset"}, required ${required}. ${fix}` });
  if (v("log_bin") !== undefined && v("log_bin") !== "ON" && v("log_bin") !== "1") {
    fail("binlog-off", "log_bin", vars.log_bin, "ON", "Start the server with --log-bin (on Azure the binlog is always on).");
  }
  if (v("binlog_format") !== "ROW") {
    fail("binlog-format", "binlog_format", vars.binlog_format, "ROW", "Set binlog_format=ROW (SET GLOBAL binlog_format='ROW' and in the server configuration).");
  }
  if (v("binlog_row_image") !== "FULL") {
    fail("binlog-row-image", "binlog_row_image", vars.binlog_row_image, "FULL", "Set binlog_row_image=FULL (SET GLOBAL binlog_row_image='FULL' and in the server configuration).");
  }
  if (vars.binlog_row_metadata !== undefined && v("binlog_row_metadata") !== "FULL") {
    fail("binlog-row-metadata", "binlog_row_metadata", vars.binlog_row_metadata, "FULL", "Set binlog_row_metadata=FULL so row events carry column names (SET GLOBAL binlog_row_metadata='FULL').");
  }
  if (flavor === "mysql") {
    if (vars.binlog_transaction_compression !== undefined && v("binlog_transaction_compression") !== "OFF" && v("binlog_transaction_compression") !== "0") {
      fail("binlog-compression", "binlog_transaction_compression", vars.binlog_transaction_compression, "OFF", "The reader cannot decode compressed transactions; SET GLOBAL binlog_transaction_compression=OFF.");
    }
    if (vars.binlog_row_value_options !== undefined && /PARTIAL_JSON/i.test(vars.binlog_row_value_options)) {
      fail("binlog-partial-json", "binlog_row_value_options", vars.binlog_row_value_options, "'' (empty)", "The reader cannot decode partial JSON updates; SET GLOBAL binlog_row_value_options=''.");
    }
  } else if (vars.log_bin_compress !== undefined && v("log_bin_compress") !== "OFF" && v("log_bin_compress") !== "0") {
    fail("binlog-compression", "log_bin_compress", vars.log_bin_compress, "OFF", "The reader would skip compressed events silently; SET GLOBAL log_bin_compress=OFF.");
  }
  return out;
}

/** Rule 4: every table in scope has a primary key. */
export function checkPrimaryKeys(server: string, tablesWithoutKey: string[]): RuleFailure[] {
  if (tablesWithoutKey.length === 0) return [];
  return [
    {
      rule: 4,
      code: "no-primary-key",
      where: server,
      message: `${server}: table${tablesWithoutKey.length > 1 ? "s" : ""} ${tablesWithoutKey.join(", ")} ha${tablesWithoutKey.length > 1 ? "ve" : "s"} no primary key; rows cannot be located on the replicas. Add a primary key (ALTER TABLE … ADD PRIMARY KEY (…)) or exclude ${tablesWithoutKey.length > 1 ? "them" : "it"} with tables.exclude.`,
    },
  ];
}

/** Rule 5: statements about accounts and privileges are never replicated. */
const ACCOUNT_STMT =
  /^\s*(?:\/\*.*?\*\/\s*)*(?:CREATE\s+(?:OR\s+REPLACE\s+)?(?:USER|ROLE)|ALTER\s+USER|DROP\s+(?:USER|ROLE)|GRANT|REVOKE|SET\s+PASSWORD|SET\s+DEFAULT\s+ROLE|RENAME\s+USER|FLUSH\s+PRIVILEGES)\b/is;
export function isAccountStatement(sql: string): boolean {
  return ACCOUNT_STMT.test(sql);
}

/** Rule 1 and config: databases must be user schemas. */
export function checkDatabases(databases: unknown[], where = "databases"): RuleFailure[] {
  const out: RuleFailure[] = [];
  databases.forEach((d, i) => {
    if (typeof d !== "string") return;
    if (SYSTEM_SCHEMAS.includes(d.toLowerCase()) || d === BOOKKEEPING_SCHEMA) {
      out.push({ rule: 5, code: "system-schema", where: `${where}[${i}]`, message: `${where}[${i}]: "${d}" is a system schema; accounts, privileges and server metadata are never synced. Remove it from ${where}.` });
    } else if (!/^[^/\\.]{1,64}$/.test(d) || d.includes(String.fromCharCode(0)) || d.endsWith(" ")) {
      out.push({ rule: 1, code: "bad-database", where: `${where}[${i}]`, message: `${where}[${i}]: "${d}" is not a valid database name (1-64 characters, no '/', '\\', '.', no trailing space).` });
    }
  });
  const seen = new Set<string>();
  databases.forEach((d, i) => {
    if (typeof d !== "string") return;
    if (seen.has(d)) out.push({ rule: 1, code: "duplicate-database", where: `${where}[${i}]`, message: `${where}[${i}]: "${d}" is listed twice; list each database once.` });
    seen.add(d);
  });
  return out;
}

/** Rule 6: privileges. `grants` is the output of SHOW GRANTS (one statement a row). */
export function checkSourcePrivileges(server: string, grants: string[], flavor: Flavor): RuleFailure[] {
  const all = grants.join("\n").toUpperCase();
  const global = grants.filter((g) => /\bON\s+\*\.\*/i.test(g)).join("\n").toUpperCase();
  if (/ALL PRIVILEGES ON \*\.\*/.test(all)) return [];
  const need: [string, RegExp][] = [
    ["REPLICATION SLAVE", /REPLICATION (SLAVE|REPLICA)\b/],
    [flavor === "mariadb" ? "BINLOG MONITOR" : "REPLICATION CLIENT", /REPLICATION CLIENT|BINLOG MONITOR|SUPER/],
  ];
  const missing = need.filter(([, re]) => !re.test(global)).map(([n]) => n);
  if (!/\bSELECT\b/.test(all)) missing.push("SELECT");
  if (missing.length === 0) return [];
  return [
    {
      rule: 6,
      code: "source-privileges",
      where: server,
      message: `${server}: the sync user lacks ${missing.join(", ")}; required REPLICATION SLAVE, ${flavor === "mariadb" ? "BINLOG MONITOR" : "REPLICATION CLIENT"}, SELECT. Fix: GRANT ${missing.join(", ")} ON ${missing.length === 1 && missing[0] === "SELECT" ? "<db>.*" : "*.*"} TO <user>.`,
    },
  ];
}

/** what the sync account needs on every synced schema: rows, tables, and the DDL of the other objects it replicates */
export const REPLICA_SCHEMA_PRIVILEGES: { privilege: string; why: string }[] = [
  { privilege: "SELECT", why: "rows" },
  { privilege: "INSERT", why: "rows" },
  { privilege: "UPDATE", why: "rows" },
  { privilege: "DELETE", why: "rows" },
  { privilege: "CREATE", why: "tables" },
  { privilege: "DROP", why: "tables" },
  { privilege: "ALTER", why: "tables" },
  { privilege: "INDEX", why: "indexes" },
  { privilege: "REFERENCES", why: "foreign keys" },
  { privilege: "CREATE VIEW", why: "views" },
  { privilege: "CREATE ROUTINE", why: "procedures and functions" },
  { privilege: "ALTER ROUTINE", why: "procedures and functions" },
  { privilege: "EVENT", why: "events (created disabled)" },
  { privilege: "TRIGGER", why: "triggers (installed at cutover)" },
];
/** what the sync account needs on `_datasync` (its own bookkeeping tables) */
export const BOOKKEEPING_PRIVILEGES = ["SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "INDEX"];

/** The account name in SHOW GRANTS output ("`sync`@`%`"), for the fix in messages. */
function grantee(grants: string[]): string {
  for (const g of grants) {
    const m = /\bTO\s+(\S+@\S+)/i.exec(g);
    if (m) return m[1].replace(/`/g, "'");
  }
  return "<user>";
}

/** The privileges `grants` (SHOW GRANTS rows) give on `schema` (global and schema-level grants, wildcards). */
export function privilegesOn(grants: string[], schema: string, all: string[]): Set<string> {
  const s = new Set<string>();
  for (const g of grants) {
    const m = /^GRANT\s+(.+?)\s+ON\s+(\S+)\s+TO/i.exec(g);
    if (!m) continue;
    const target = m[2].replace(/`/g, "");
    const dbPart = target.split(".")[0];
    const wildcard = () => {
      // a schema-level grant may name a pattern: % any string, _ one character, \_ a literal underscore
      let re = "";
      for (let i = 0; i < dbPart.length; i++) {
        const ch = dbPart[i];
        if (ch === "\\" && i + 1 < dbPart.length) re += dbPart[++i].replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
        else if (ch === "%") re += ".*";
        else if (ch === "_") re += ".";
        else re += ch.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      }
      return new RegExp(`^${re}$`).test(schema);
    };
    const matches = target === "*.*" || dbPart.replace(/\\_/g, "_") === schema || ((dbPart.includes("%") || dbPart.includes("_")) && wildcard());
    if (!matches || !target.endsWith(".*")) continue;
    for (const p of m[1].split(",").map((x) => x.trim().toUpperCase().replace(/\s+/g, " "))) {
      if (p === "ALL" || p === "ALL PRIVILEGES") all.forEach((n) => s.add(n));
      else s.add(p);
    }
  }
  return s;
}

/**
 * Rule 6, replicas: rows and DDL on every synced schema (the DDL of tables, views, routines, events,
 * triggers and foreign keys is replicated, so each privilege is named before the first such DDL fails)
 * and the bookkeeping privileges on `_datasync`. `grants` is SHOW GRANTS of the sync account.
 */
export function checkReplicaPrivileges(server: string, grants: string[], schemas: string[]): RuleFailure[] {
  const out: RuleFailure[] = [];
  const who = grantee(grants);
  const need = REPLICA_SCHEMA_PRIVILEGES.map((p) => p.privilege);
  for (const schema of schemas) {
    const have = privilegesOn(grants, schema, need);
    const missing = REPLICA_SCHEMA_PRIVILEGES.filter((p) => !have.has(p.privilege));
    if (missing.length) {
      out.push({
        rule: 6,
        code: "replica-privileges",
        where: server,
        message: `${server}: the sync user lacks ${missing.map((p) => p.privilege).join(", ")} on \`${schema}\` (needed for ${[...new Set(missing.map((p) => p.why))].join("; ")}); the sync replicates rows and DDL of the synced schemas. Fix: GRANT ${missing.map((p) => p.privilege).join(", ")} ON \`${schema}\`.* TO ${who} (or GRANT ALL PRIVILEGES ON \`${schema}\`.*).`,
      });
    }
  }
  const have = privilegesOn(grants, BOOKKEEPING_SCHEMA, BOOKKEEPING_PRIVILEGES);
  const missing = BOOKKEEPING_PRIVILEGES.filter((n) => !have.has(n));
  if (missing.length) {
    out.push({
      rule: 6,
      code: "replica-privileges",
      where: server,
      message: `${server}: the sync user lacks ${missing.join(", ")} on \`${BOOKKEEPING_SCHEMA}\` (its checkpoints and snapshot progress). Fix: GRANT ALL PRIVILEGES ON \`${BOOKKEEPING_SCHEMA}\`.* TO ${who}.`,
    });
  }
  return out;
}

/** Simple glob (`*`, `?`) on `db.table`, case-sensitive like table names on Linux. */
export function globToRegExp(glob: string): RegExp {
  const re = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${re}$`);
}

export interface TableFilter {
  databases: string[];
  include?: string[];
  exclude?: string[];
}

/** Which db.table pairs are in scope. */
export function makeTableFilter(f: TableFilter): (db: string, table: string) => boolean {
  const dbs = new Set(f.databases);
  const inc = (f.include ?? []).map(globToRegExp);
  const exc = (f.exclude ?? []).map(globToRegExp);
  return (db, table) => {
    if (!dbs.has(db)) return false;
    const name = `${db}.${table}`;
    if (inc.length > 0 && !inc.some((r) => r.test(name))) return false;
    return !exc.some((r) => r.test(name));
  };
}
