// Spec owns the plain (resolved) shapes of a sync group as the dynamic providers see them, and the pure
// functions over them: preview-time rule evaluation (with unknowns deferred), the agent config, the diff.
// Everything here is captured by closure serialization, so it may only use agent/rules.ts (pure) and
// must not import drivers, zod or @pulumi at run time.
import {
  checkBinlogRetention,
  checkDatabases,
  checkTopology,
  checkVersionParity,
  defaultFlavor,
  GROUP_RE,
  REPLICA_NAME_RE,
  type Flavor,
  type RuleFailure,
} from "../agent/rules.js";
import { renderMermaid } from "./topology.js";

/** The string the engine sends for a value not known yet (preview). */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
/**
 * Bumped when the shape or meaning of a provider's state changes. The provider code is frozen in state
 * (delete runs the code stored at the last create/update), so every diff reads the stored version:
 * older state is migrated by an update (which also stores this code), newer state is refused.
 * 1: first release (agent modules loaded by an absolute path; membership deletes removed checkpoints).
 * 2: agent modules loaded by package name; membership deletes keep checkpoints.
 */
export const STATE_VERSION = 2;

/**
 * What a stored state version means for this code: "current", "migrate" (older: an update rewrites it)
 * or an Error naming the fix (newer: written by a later datasync, which this code must not touch).
 */
export function stateVersionOf(olds: any, what: string): "current" | "migrate" {
  const v = olds?.stateVersion;
  if (v === STATE_VERSION) return "current";
  if (v === undefined || v === null || (typeof v === "number" && v < STATE_VERSION)) return "migrate";
  throw new Error(`${what}: the state was written by a newer datasync (state version ${JSON.stringify(v)}; this one understands up to ${STATE_VERSION}). Upgrade the datasync package of this project to the version that wrote it, then run pulumi again.`);
}

/** Older state brought to the current shape (v1 → v2: same fields; the update stores the new provider code). */
export function migrateState<T extends Record<string, any>>(props: T): T & { stateVersion: number } {
  return { ...props, stateVersion: STATE_VERSION };
}

export type TlsMode = "disabled" | "required" | "verify-ca" | "verify-identity";
export interface TlsSpec {
  mode?: TlsMode;
  ca?: string;
  cert?: string;
  key?: string;
}

/** A server endpoint with its declared version (plain values). */
export interface ServerSpec {
  host: string;
  port?: number;
  user: string;
  /** a secret; or passwordEnv / passwordFile, resolved where the connection is made */
  password?: string;
  passwordEnv?: string;
  passwordFile?: string;
  /** declared major.minor, e.g. "8.0" or "10.11" */
  version: string;
  /** defaults from the version: 10.x and 11.x are MariaDB, the rest MySQL */
  flavor?: Flavor;
  tls?: TlsSpec;
}

export interface PrimarySpec extends ServerSpec {
  /** binlog client id; default derived from the group by the agent */
  serverId?: number;
  /** the source's binlog_expire_logs_seconds as declared (preview warning); checked live at create */
  binlogExpireSeconds?: number;
}

export interface ReplicaSpec extends ServerSpec {
  /** unique in the group: [A-Za-z0-9][A-Za-z0-9_.-]{0,62} */
  name: string;
}

export interface TablesSpec {
  include?: string[];
  exclude?: string[];
}

/** Agent settings that go into the agent config next to the topology. */
export interface AgentSettings {
  http?: { listen?: string };
  readyLagSeconds?: number;
  heartbeatSeconds?: number;
  logLevel?: "fatal" | "error" | "warn" | "info" | "debug" | "trace";
  /**
   * sharedStream defaults to true (replicas at the same position share one binlog connection and decode; false: one each,
   * agent/README.md "Decode once"); parallel to true (agent/README.md "Parallel apply"); stuckSeconds to 60; readerThread to
   * false (the shared stream read and decoded on a worker thread, for containers with more than two cores: agent/README.md
   * "Reader thread")
   */
  apply?: { maxRows?: number; maxBytes?: number; queueBytes?: number; sharedStream?: boolean; parallel?: boolean; stuckSeconds?: number; readerThread?: boolean };
  snapshot?: { chunkRows?: number; rowsPerSecond?: number };
}

/** The inputs of the SyncGroup dynamic resource, after the engine resolved them. */
export interface SyncGroupInputs {
  group: string;
  primary: PrimarySpec;
  replicas: ReplicaSpec[];
  databases: string[];
  tables?: TablesSpec;
  agent?: AgentSettings;
  /** how long a replica or the agent may be away and still resume from its checkpoint; default 86400 */
  tolerateOutageSeconds?: number;
  /** derived (check recomputes them): the agent config JSON, the Mermaid topology, the replica names */
  agentConfig?: string;
  topology?: string;
  replicaNames?: string[];
  stateVersion?: number;
}

export interface CheckFailure {
  property: string;
  reason: string;
}

/** true when the value (or anything inside it) is still unknown */
export function isUnknown(v: unknown): boolean {
  if (v === UNKNOWN) return true;
  if (Array.isArray(v)) return v.some(isUnknown);
  if (v && typeof v === "object") return Object.values(v).some(isUnknown);
  return false;
}

/** the value if known and of the wanted type, else undefined (deferred) */
function str(v: unknown): string | undefined {
  return typeof v === "string" && v !== UNKNOWN ? v : undefined;
}
function num(v: unknown): number | undefined {
  return typeof v === "number" ? v : undefined;
}

function toFailure(f: RuleFailure): CheckFailure {
  return { property: f.where, reason: f.message };
}

/** The flavor of a server spec: declared, else from the version (unknown while the version is unknown). */
export function flavorOf(s: { version?: unknown; flavor?: unknown }): Flavor | undefined {
  const f = str(s.flavor);
  if (f === "mysql" || f === "mariadb") return f;
  const v = str(s.version);
  return v === undefined ? undefined : defaultFlavor(v);
}

function checkServerFields(s: any, path: string, out: CheckFailure[]): void {
  if (s === UNKNOWN) return;
  if (s === null || typeof s !== "object" || Array.isArray(s)) {
    out.push({ property: path, reason: `${path}: expected an object with host, user, password and version; got ${JSON.stringify(s)}.` });
    return;
  }
  for (const k of ["host", "user", "version"]) {
    if (s[k] === undefined || s[k] === null || s[k] === "") {
      out.push({ property: `${path}.${k}`, reason: `${path}.${k}: required and missing; set it (e.g. ${k === "version" ? 'version: "8.0"' : k === "host" ? 'host: "10.0.0.5"' : 'user: "datasync"'}).` });
    } else if (s[k] !== UNKNOWN && typeof s[k] !== "string") {
      out.push({ property: `${path}.${k}`, reason: `${path}.${k}: ${JSON.stringify(s[k])} is not a string; write it as text.` });
    }
  }
  if (s.port !== undefined && s.port !== UNKNOWN && (typeof s.port !== "number" || !Number.isInteger(s.port) || s.port < 1 || s.port > 65535)) {
    out.push({ property: `${path}.port`, reason: `${path}.port: ${JSON.stringify(s.port)} is not a TCP port; use an integer 1-65535 (default 3306).` });
  }
  if (s.flavor !== undefined && s.flavor !== UNKNOWN && s.flavor !== "mysql" && s.flavor !== "mariadb") {
    out.push({ property: `${path}.flavor`, reason: `${path}.flavor: "${s.flavor}" is not a flavor; use "mysql" or "mariadb", or leave it out to derive it from the version.` });
  }
  const secrets = ["password", "passwordEnv", "passwordFile"].filter((k) => s[k] !== undefined && s[k] !== null);
  if (secrets.length > 1) {
    out.push({ property: `${path}.password`, reason: `${path}: ${secrets.join(" and ")} are both given; give at most one of password, passwordEnv, passwordFile.` });
  }
  const mode = s.tls?.mode;
  if (mode !== undefined && mode !== UNKNOWN && !["disabled", "required", "verify-ca", "verify-identity"].includes(mode)) {
    out.push({ property: `${path}.tls.mode`, reason: `${path}.tls.mode: "${mode}" is not a TLS mode; use disabled, required, verify-ca or verify-identity.` });
  }
}

/**
 * Every preview-time failure of a sync group, at once, each naming its property path. A value still
 * unknown (UNKNOWN or absent where optional) is deferred to create, never failed.
 */
export function checkSyncGroup(news: any): CheckFailure[] {
  const out: CheckFailure[] = [];
  const group = news.group;
  if (group !== UNKNOWN && (typeof group !== "string" || !GROUP_RE.test(group))) {
    out.push({ property: "group", reason: `group: ${JSON.stringify(group)} is not a valid group name; use 1-40 of a-z, 0-9 and '-', starting with a letter or digit (e.g. "orders").` });
  }
  const primary = news.primary;
  if (primary === undefined) {
    out.push({ property: "primary", reason: "primary: required and missing; declare the primary with host, user, password and version." });
  } else checkServerFields(primary, "primary", out);

  const replicas = news.replicas;
  let list: any[] = [];
  if (replicas === undefined) {
    out.push({ property: "replicas", reason: "replicas: required and missing; declare 1 to 5 replicas, each with name, host, user, password and version." });
  } else if (replicas !== UNKNOWN && !Array.isArray(replicas)) {
    out.push({ property: "replicas", reason: `replicas: expected a list of replica specs; got ${JSON.stringify(replicas)}.` });
  } else if (Array.isArray(replicas)) {
    list = replicas;
    list.forEach((r, i) => {
      const p = `replicas[${i}]`;
      checkServerFields(r, p, out);
      if (r && typeof r === "object") {
        if (r.name === undefined || r.name === null) {
          out.push({ property: `${p}.name`, reason: `${p}.name: required and missing; name each replica (e.g. name: "westeurope").` });
        } else if (r.name !== UNKNOWN && (typeof r.name !== "string" || !REPLICA_NAME_RE.test(r.name))) {
          out.push({ property: `${p}.name`, reason: `${p}.name: ${JSON.stringify(r.name)} is not a valid replica name; use 1-63 letters, digits, '_', '.', '-', starting with a letter or digit.` });
        }
      }
    });
    const ep = (r: any) => (r && typeof r === "object" ? { name: str(r.name), host: str(r.host), port: num(r.port) } : {});
    // Rule 1: count, unique names and endpoints, primary not a replica (unknown hosts are deferred).
    out.push(...checkTopology(primary && typeof primary === "object" ? ep(primary) : {}, list.map(ep), { primary: "primary", replicas: "replicas" }).map(toFailure));
    // Rule 2: flavor and major.minor parity of the declared versions.
    if (primary && typeof primary === "object" && (primary.version === undefined || typeof primary.version === "string")) {
      const pv = str(primary.version);
      const parity = checkVersionParity(
        { where: "primary.version", version: pv, flavor: pv === undefined ? undefined : flavorOf(primary) },
        list.map((r, i) => {
          const v = r && typeof r === "object" ? str(r.version) : undefined;
          return { where: `replicas[${i}].version`, version: v, flavor: v === undefined ? undefined : flavorOf(r) };
        }),
      );
      out.push(...parity.map(toFailure));
    }
  }

  const dbs = news.databases;
  if (dbs === undefined || (Array.isArray(dbs) && dbs.length === 0)) {
    out.push({ property: "databases", reason: "databases: list at least one database to sync (e.g. databases: [\"shop\"])." });
  } else if (dbs !== UNKNOWN && !Array.isArray(dbs)) {
    out.push({ property: "databases", reason: `databases: expected a list of database names; got ${JSON.stringify(dbs)}.` });
  } else if (Array.isArray(dbs)) {
    // checkDatabases skips non-strings: unknown names are deferred
    out.push(...checkDatabases(dbs.map((d) => (d === UNKNOWN ? undefined : d))).map(toFailure));
  }
  return out;
}

export const DEFAULT_TOLERATE_OUTAGE_SECONDS = 86400;

/**
 * Preview warnings (not failures: the live value decides at create): the declared binlog retention of the
 * primary against the outage a replica may have (rule 3, binlog retention).
 */
export function warnSyncGroup(news: any): string[] {
  const out: string[] = [];
  const declared = news?.primary?.binlogExpireSeconds;
  const tolerate = typeof news?.tolerateOutageSeconds === "number" ? news.tolerateOutageSeconds : DEFAULT_TOLERATE_OUTAGE_SECONDS;
  if (typeof declared === "number") {
    out.push(...checkBinlogRetention("primary.binlogExpireSeconds", declared === 0 ? Infinity : declared, tolerate).map((f) => f.message));
  }
  return out;
}

function endpointConfig(s: ServerSpec): Record<string, unknown> {
  const e: Record<string, unknown> = { host: s.host, port: s.port ?? 3306, user: s.user };
  if (s.password !== undefined && s.password !== null) e.password = s.password;
  if (s.passwordEnv !== undefined && s.passwordEnv !== null) e.passwordEnv = s.passwordEnv;
  if (s.passwordFile !== undefined && s.passwordFile !== null) e.passwordFile = s.passwordFile;
  if (s.tls) e.tls = Object.fromEntries(Object.entries(s.tls).filter(([, v]) => v !== undefined && v !== null));
  return e;
}

/** The agent config (DESIGN.md "Agent config") for a fully known sync group; passes validateConfig. */
export function buildAgentConfig(g: SyncGroupInputs): Record<string, unknown> {
  const source = endpointConfig(g.primary);
  if (g.primary.serverId !== undefined && g.primary.serverId !== null) source.serverId = g.primary.serverId;
  const cfg: Record<string, unknown> = {
    group: g.group,
    source,
    replicas: g.replicas.map((r) => ({ name: r.name, ...endpointConfig(r) })),
    databases: [...g.databases],
  };
  if (g.tables && (g.tables.include || g.tables.exclude)) {
    cfg.tables = Object.fromEntries(Object.entries(g.tables).filter(([, v]) => v !== undefined && v !== null));
  }
  const a = g.agent ?? {};
  for (const [k, v] of Object.entries(a)) if (v !== undefined && v !== null) cfg[k] = v;
  return cfg;
}

/** A copy without credentials, for outputs and messages. */
export function redact<T extends Partial<ServerSpec>>(s: T): Omit<T, "password"> {
  const { password: _p, ...rest } = s;
  return rest;
}

export interface TopologyServer {
  name: string;
  host?: string;
  port?: number;
  version?: string;
  flavor?: Flavor;
}

/** Derived inputs: check fills them so preview shows them and the state always agrees with the inputs. */
export function derive(news: any): { agentConfig?: string; topology?: string; replicaNames?: string[] } {
  const out: { agentConfig?: string; topology?: string; replicaNames?: string[] } = {};
  const replicas: any[] = Array.isArray(news.replicas) ? news.replicas : [];
  if (Array.isArray(news.replicas) && replicas.every((r) => r && typeof r === "object" && typeof r.name === "string" && r.name !== UNKNOWN)) {
    out.replicaNames = replicas.map((r) => r.name);
  }
  if (news.primary && typeof news.primary === "object" && out.replicaNames && typeof news.group === "string" && news.group !== UNKNOWN) {
    const srv = (s: any, name: string): TopologyServer => ({
      name,
      host: str(s.host),
      port: num(s.port) ?? 3306,
      version: str(s.version),
      flavor: str(s.version) ? flavorOf(s) : undefined,
    });
    out.topology = renderMermaid(news.group, srv(news.primary, "primary"), replicas.map((r) => srv(r, r.name)), Array.isArray(news.databases) ? news.databases.filter((d: unknown) => typeof d === "string" && d !== UNKNOWN) : []);
  }
  const known = ["group", "primary", "replicas", "databases", "tables", "agent"].every((k) => !isUnknown(news[k]));
  if (known && news.primary && Array.isArray(news.replicas) && Array.isArray(news.databases)) {
    out.agentConfig = canonical(buildAgentConfig(news as SyncGroupInputs));
  }
  return out;
}

function endpointOf(s: any): string {
  return `${String(s?.host ?? "").trim().toLowerCase()}:${s?.port ?? 3306}`;
}

/** Stable JSON (sorted keys) for comparisons. */
export function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v && typeof v === "object") {
    return `{${Object.keys(v)
      .filter((k) => (v as any)[k] !== undefined && (v as any)[k] !== null)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as any)[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v);
}

function sameJson(a: unknown, b: unknown): boolean {
  try {
    return canonical(JSON.parse(String(a))) === canonical(JSON.parse(String(b)));
  } catch {
    return false;
  }
}

/**
 * Which changes replace a sync group and which update it in place. A new group name or primary endpoint
 * starts a new group (checkpoints belong to one source), so those replace; replicas, databases, tables,
 * credentials, versions and agent settings update in place (update re-checks live and prepares replicas).
 */
export function diffSyncGroup(olds: any, news: any): { changes: boolean; replaces: string[]; updates: string[] } {
  const replaces: string[] = [];
  const updates: string[] = [];
  if (news.group === UNKNOWN || olds.group !== news.group) replaces.push("group");
  if (isUnknown(news.primary?.host) || isUnknown(news.primary?.port) || endpointOf(olds.primary) !== endpointOf(news.primary)) replaces.push("primary");
  // compare what was declared, with the flavor default applied (outputs carry it explicitly)
  const norm = (p: any) => (p && typeof p === "object" ? { ...redact(p), flavor: p.version === undefined ? p.flavor : flavorOf(p) } : p);
  const redactedPrimary = norm;
  if (!replaces.includes("primary") && canonical(redactedPrimary(olds.primary)) !== canonical(redactedPrimary(news.primary))) updates.push("primary");
  const redactedReplicas = (rs: any) => (Array.isArray(rs) ? rs.map(norm) : rs);
  if (canonical(redactedReplicas(olds.replicas)) !== canonical(redactedReplicas(news.replicas))) updates.push("replicas");
  for (const k of ["databases", "tables", "agent", "tolerateOutageSeconds"]) if (canonical(olds[k]) !== canonical(news[k])) updates.push(k);
  // older state: an update migrates it and stores this provider code (newer state throws)
  if (stateVersionOf(olds, `sync group "${olds.group}"`) === "migrate") updates.push("stateVersion");
  // credentials live only in the (secret) agent config: compare it to see a password change
  const newConfig = news.agentConfig ?? derive(news).agentConfig;
  if (updates.length === 0 && replaces.length === 0 && (newConfig === undefined || isUnknown(newConfig) || sameJson(newConfig, olds.agentConfig) === false)) updates.push("agentConfig");
  return { changes: replaces.length > 0 || updates.length > 0, replaces, updates };
}

/** What a remote target (a container) provides to the agent besides its config. */
export interface RemoteTarget {
  /** e.g. "Azure Container Instances" (for messages) */
  name: string;
  /** names of environment variables the target sets in the agent's process (secure values) */
  env?: string[];
  /** files the target mounts into the agent's file system */
  files?: string[];
}

/**
 * The agent config for an agent that runs elsewhere (a container): a `tls.ca`/`cert`/`key` given as a path
 * is read here, where `pulumi up` runs, and inlined as PEM (the path would not exist in the container);
 * `passwordEnv`/`passwordFile` are refused unless the target provides that variable or file. The result
 * carries credentials: keep it secret. `read` reads a file (injected: this module is closure-serialized
 * and must not import `fs`); its errors become messages naming the key and the fix.
 */
export function remoteAgentConfig(config: string, target: RemoteTarget, read: (path: string) => string): string {
  const c = JSON.parse(config);
  const problems: string[] = [];
  const endpoint = (e: any, where: string) => {
    if (!e || typeof e !== "object") return e;
    const out = { ...e };
    if (typeof e.passwordEnv === "string" && !(target.env ?? []).includes(e.passwordEnv)) {
      problems.push(`${where}.passwordEnv: the environment variable ${e.passwordEnv} exists where pulumi runs, not in the agent's ${target.name}; give ${where}.password as a Pulumi secret (pulumi config set --secret), which travels encrypted in the agent config`);
    }
    if (typeof e.passwordFile === "string" && !(target.files ?? []).includes(e.passwordFile)) {
      problems.push(`${where}.passwordFile: the file ${e.passwordFile} exists where pulumi runs, not in the agent's ${target.name}; give ${where}.password as a Pulumi secret (pulumi config set --secret), which travels encrypted in the agent config`);
    }
    if (e.tls && typeof e.tls === "object") {
      const tls = { ...e.tls };
      for (const k of ["ca", "cert", "key"]) {
        const v = tls[k];
        if (typeof v !== "string" || v.includes("-----BEGIN") || (target.files ?? []).includes(v)) continue;
        try {
          const text = read(v);
          if (!/-----BEGIN [A-Z0-9 ]+-----/.test(text)) throw new Error("no PEM block in it");
          tls[k] = text;
        } catch (err: any) {
          problems.push(`${where}.tls.${k}: cannot inline ${k === "key" ? "the key file" : v} for the agent's ${target.name} (${err?.code ?? err?.message}); give a readable PEM file or the PEM text itself`);
        }
      }
      out.tls = tls;
    }
    return out;
  };
  const result = { ...c, source: endpoint(c.source, "primary"), replicas: Array.isArray(c.replicas) ? c.replicas.map((r: any, i: number) => endpoint(r, `replicas[${i}]`)) : c.replicas };
  if (problems.length) throw new Error(`the agent config for ${target.name} cannot run there:\n  - ${problems.join("\n  - ")}`);
  return JSON.stringify(result);
}

/**
 * The name of the dedicated sync account the provider creates on a replica it manages: `datasync_<group>`,
 * shortened with a hash of the group to MySQL's 32 characters (Azure's limit too).
 */
export function defaultSyncUser(group: string): string {
  const name = `datasync_${group}`;
  if (name.length <= 32) return name;
  let h = 0x811c9dc5; // FNV-1a: stable, no imports (this module is closure-serialized)
  for (let i = 0; i < group.length; i++) h = Math.imul(h ^ group.charCodeAt(i), 0x01000193) >>> 0;
  return `datasync_${group.slice(0, 14)}_${h.toString(16).padStart(8, "0")}`;
}
