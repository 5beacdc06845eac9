// Plan-model owns the data of `datasync plan`: what a registered resource is reduced to (no credential
// ever leaves the child process), and the per-group plan built from the records — servers, agent
// placement and the preview rules, evaluated by the same `checkSyncGroup` as `SyncGroup.check`. Pure.
import type { Flavor } from "../agent/rules.js";
import { checkSyncGroup, flavorOf, UNKNOWN, warnSyncGroup, type CheckFailure } from "./spec.js";

export const SYNC_GROUP_TYPE = "pulumi-nodejs:dynamic/datasync:SyncGroup";
const SECRET_SIG = "4dabf18193072939515e22adb298388d";
/** what a credential becomes in a record */
export const REDACTED = "[secret]";

export interface RecordedResource {
  type: string;
  name: string;
  /** only the fields the plan shows; credentials replaced by REDACTED, unknowns by spec.UNKNOWN */
  inputs: Record<string, any>;
}

/** Secret envelopes (mocks) unwrapped, unknowns (preview) as the engine's UNKNOWN string. */
function plain(v: any): any {
  if (v && typeof v === "object" && !Array.isArray(v)) {
    if (v[SECRET_SIG] !== undefined) return plain(v.value);
    if (v.__pulumiUnknown === true) return UNKNOWN;
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  }
  if (Array.isArray(v)) return v.map(plain);
  return v;
}

function pick(o: any, keys: string[]): Record<string, any> {
  const out: Record<string, any> = {};
  if (!o || typeof o !== "object") return out;
  for (const k of keys) if (o[k] !== undefined && o[k] !== null) out[k] = o[k];
  return out;
}

const SERVER_KEYS = ["name", "host", "port", "user", "passwordEnv", "passwordFile", "version", "flavor", "tls", "serverId", "binlogExpireSeconds"];

function serverRecord(s: any): any {
  if (!s || typeof s !== "object") return s;
  const r = pick(s, SERVER_KEYS);
  if (r.tls && typeof r.tls === "object") r.tls = pick(r.tls, ["mode"]);
  if (s.password !== undefined && s.password !== null) r.password = REDACTED;
  return r;
}

/** The record of one registered resource: a whitelist per type, so no credential is ever copied. */
export function recordOf(type: string, name: string, rawInputs: unknown): RecordedResource {
  const i = plain(rawInputs ?? {});
  let inputs: Record<string, any> = {};
  if (type === SYNC_GROUP_TYPE) {
    inputs = pick(i, ["group", "databases", "tables", "agent", "tolerateOutageSeconds"]);
    inputs.primary = serverRecord(i.primary);
    inputs.replicas = Array.isArray(i.replicas) ? i.replicas.map(serverRecord) : i.replicas;
  } else if (type === "pulumi-nodejs:dynamic/datasync:ReplicaServer") {
    inputs = pick(i, ["group", "replicaName", "host", "port", "version", "flavor"]);
  } else if (type === "azure-native:dbformysql:Server") {
    inputs = pick(i, ["location", "version"]);
    if (i.sku && typeof i.sku === "object") inputs.sku = pick(i.sku, ["name", "tier"]);
    if (i.network && typeof i.network === "object") inputs.network = { publicNetworkAccess: i.network.publicNetworkAccess, private: i.network.delegatedSubnetResourceId !== undefined };
  } else if (type === "azure-native:dbformysql:FirewallRule") {
    inputs = pick(i, ["serverName", "firewallRuleName", "startIpAddress", "endIpAddress"]);
  } else if (type === "azure-native:network:NatGateway" || type === "azure-native:network:PublicIPAddress" || type === "azure-native:privatedns:PrivateZone") {
    inputs = pick(i, ["location", "privateZoneName", "idleTimeoutInMinutes"]);
  } else if (type === "azure-native:network:Subnet") {
    inputs = pick(i, ["addressPrefix"]);
    inputs.delegations = Array.isArray(i.delegations) ? i.delegations.map((d: any) => d?.serviceName) : [];
    inputs.nat = i.natGateway !== undefined;
  } else if (type === "azure-native:containerinstance:ContainerGroup") {
    inputs = pick(i, ["location"]);
    const c = Array.isArray(i.containers) ? i.containers[0] : undefined;
    if (c) inputs.container = { image: c.image, cpu: c.resources?.requests?.cpu, memoryInGB: c.resources?.requests?.memoryInGB };
    // only what is there, so a plain container group records as before
    if (Array.isArray(i.subnetIds) ? i.subnetIds.length > 0 : i.subnetIds !== undefined && i.subnetIds !== UNKNOWN) inputs.subnet = true;
    if (i.diagnostics !== undefined && i.diagnostics !== null) inputs.logs = true;
  } else if (type === "pulumi-nodejs:dynamic/datasync:LocalAgent") {
    inputs = pick(i, ["entry"]);
  }
  return { type, name, inputs };
}

/** One server as the plan shows it; `undefined` = not known before create (e.g. an Azure host name). */
export interface PlanServer {
  name: string;
  host?: string;
  port?: number;
  user?: string;
  version?: string;
  flavor?: Flavor;
  /** Azure region */
  location?: string;
  tls?: string;
  /** how the password is given: "secret", "env NAME", "file PATH" or "none" — never the value */
  credential?: string;
  sku?: string;
}

export interface AgentPlacement {
  /** e.g. "local process", "Azure Container Instances", "not declared" */
  kind: string;
  location?: string;
  detail?: string;
}

export type RuleStatus = "pass" | "fail" | "deferred" | "live" | "warn";

export interface RuleResult {
  id: string;
  title: string;
  status: RuleStatus;
  /** failure messages (fail), or what is deferred/checked live */
  notes: string[];
}

export interface GroupPlan {
  group: string;
  primary: PlanServer;
  replicas: PlanServer[];
  databases: string[];
  tables?: { include?: string[]; exclude?: string[] };
  agent: AgentPlacement;
  /** how the agent reaches out and the servers are reached (Azure) */
  network?: { egress: string; serverAccess: string };
  /** exactly what SyncGroup.check would return for these inputs */
  failures: CheckFailure[];
  rules: RuleResult[];
}

export interface Plan {
  project: string;
  stack: string;
  /** the program that ran, relative to the project where possible */
  program: string;
  /** the stack file, or `REF:file` for a base */
  stackFile: string;
  target?: string;
  groups: GroupPlan[];
  /** every resource the program registered (type and name), as a preview would list them */
  resources: { type: string; name: string }[];
}

const known = (v: unknown): boolean => v !== undefined && v !== null && v !== UNKNOWN;
const str = (v: unknown): string | undefined => (typeof v === "string" && v !== UNKNOWN ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === "number" ? v : undefined);

function credentialOf(s: any): string {
  if (known(s.password)) return "secret";
  if (known(s.passwordEnv)) return `env ${s.passwordEnv}`;
  if (known(s.passwordFile)) return `file ${s.passwordFile}`;
  return "none";
}

function planServer(s: any, name: string): PlanServer {
  const v = str(s?.version);
  return {
    name,
    host: str(s?.host),
    port: num(s?.port) ?? (s?.port === UNKNOWN ? undefined : 3306),
    user: str(s?.user),
    version: v,
    flavor: v === undefined ? undefined : flavorOf(s),
    tls: str(s?.tls?.mode),
    credential: s && typeof s === "object" ? credentialOf(s) : undefined,
  };
}

/** The rule (DESIGN.md numbering) a preview failure belongs to, by its property path. */
export function ruleOf(f: CheckFailure): string {
  if (/(^|\.)version$/.test(f.property) && /differs|flavor/.test(f.reason)) return "2";
  if (/^databases/.test(f.property)) return /system schema/.test(f.reason) ? "5" : "inputs";
  if (/^replicas(\[\d+\])?(\.(name|host|port))?$|^primary\.(host|port)$/.test(f.property) && /replica|endpoint|primary|unique|at most/.test(f.reason)) return "1";
  return "inputs";
}

function rulesOf(failures: CheckFailure[], g: { primary: PlanServer; replicas: PlanServer[] }, warnings: string[] = []): RuleResult[] {
  const by = (id: string) => failures.filter((f) => ruleOf(f) === id).map((f) => f.reason);
  const result = (id: string, title: string, deferred: string[]): RuleResult => {
    const fails = by(id);
    if (fails.length) return { id, title, status: "fail", notes: fails };
    return { id, title, status: deferred.length ? "deferred" : "pass", notes: deferred };
  };
  const noHost = g.replicas.filter((r) => r.host === undefined).map((r) => r.name);
  const noVersion = [g.primary, ...g.replicas].filter((s) => s.version === undefined).map((s) => s.name);
  return [
    result("1", "at most 5 replicas; unique names and endpoints; the primary is not a replica", noHost.length ? [`endpoints of ${noHost.join(", ")} are known after create; checked again at create`] : []),
    result("2", "flavor and major.minor equal on the primary and every replica", noVersion.length ? [`versions of ${noVersion.join(", ")} are known after create; checked at create`] : []),
    result("5", "no system schema synced (accounts and privileges are never replicated)", []),
    result("inputs", "declared inputs: group and replica names, ports, databases, credentials, TLS", []),
    {
      id: "3",
      title: "binlog retention at least the outage a replica may have (declared primary.binlogExpireSeconds)",
      status: warnings.length ? "warn" : "live",
      notes: warnings.length ? warnings : ["checked live at create (binlog_expire_logs_seconds against tolerateOutageSeconds)"],
    },
    {
      id: "3,4,6",
      title: "binlog settings, primary keys, privileges, Azure parameters, lower_case_table_names, InnoDB on Azure",
      status: "live",
      notes: ["need the live servers: checked by pulumi up (create/update) and at agent start, not by a plan"],
    },
  ];
}

/** The agent's egress and the servers' access, from the network resources the program declared. */
function networkOf(resources: RecordedResource[]): GroupPlan["network"] {
  const servers = resources.filter((r) => r.type === "azure-native:dbformysql:Server");
  if (servers.length === 0) return undefined;
  const nat = resources.find((r) => r.type === "azure-native:network:NatGateway");
  const subnet = resources.find((r) => r.type === "azure-native:network:Subnet" && r.inputs.nat);
  const egress = nat
    ? `a NAT gateway on its subnet${str(subnet?.inputs.addressPrefix) ? ` ${subnet!.inputs.addressPrefix}` : ""}: one static public IP (stack output agentEgressIp, known after create; allow it on the primary's firewall)`
    : "no NAT gateway declared: the agent's outbound address is not predictable";
  const isPrivate = servers.every((s) => s.inputs.network?.private);
  const fw = resources.filter((r) => r.type === "azure-native:dbformysql:FirewallRule");
  const names = [...new Set(fw.map((f) => `${f.inputs.firewallRuleName} ${str(f.inputs.startIpAddress) ?? "(the NAT IP, known after create)"}${str(f.inputs.endIpAddress) && f.inputs.endIpAddress !== f.inputs.startIpAddress ? `-${f.inputs.endIpAddress}` : ""}`))];
  const zone = resources.find((r) => r.type === "azure-native:privatedns:PrivateZone");
  const serverAccess = isPrivate
    ? `private: delegated subnet${zone ? `, private DNS zone ${str(zone.inputs.privateZoneName) ?? ""}` : ""}; public access disabled`
    : `public, firewall open to: ${names.join(", ") || "nothing (no firewall rule: unreachable)"}`;
  return { egress, serverAccess };
}

function agentOf(resources: RecordedResource[], group: string, groups: number): AgentPlacement {
  const mine = (r: RecordedResource) => groups === 1 || r.name === `${group}-agent` || r.name.startsWith(`${group}-`);
  const local = resources.find((r) => r.type === "pulumi-nodejs:dynamic/datasync:LocalAgent" && mine(r));
  if (local) return { kind: "local process", detail: "on the machine running pulumi up" };
  const aci = resources.find((r) => r.type === "azure-native:containerinstance:ContainerGroup" && mine(r));
  if (aci) {
    const c = aci.inputs.container ?? {};
    const size = c.cpu !== undefined ? `${c.cpu} CPU, ${c.memoryInGB} GB` : undefined;
    const where = aci.inputs.subnet ? "in a VNet subnet" : undefined;
    const logs = aci.inputs.logs ? "logs to Log Analytics" : undefined;
    return { kind: "Azure Container Instances", location: str(aci.inputs.location), detail: [str(c.image), size, where, logs].filter(Boolean).join(", ") || undefined };
  }
  return { kind: "not declared", detail: "the program declares no agent; run `datasync agent` with the group's config" };
}

/** Build the plan of every SyncGroup the program registered. */
export function buildPlan(meta: Omit<Plan, "groups" | "resources">, resources: RecordedResource[]): Plan {
  const groups = resources.filter((r) => r.type === SYNC_GROUP_TYPE);
  const servers = resources.filter((r) => r.type === "azure-native:dbformysql:Server");
  const target = meta.target ?? (resources.some((r) => r.type.startsWith("azure-native:")) ? "azure" : resources.some((r) => r.type.endsWith("datasync:LocalAgent")) ? "local" : undefined);
  const plans = groups.map((g): GroupPlan => {
    const i = g.inputs;
    const group = str(i.group) ?? g.name;
    const primary = planServer(i.primary, "primary");
    const replicas: PlanServer[] = (Array.isArray(i.replicas) ? i.replicas : []).map((r: any, n: number) => {
      const name = str(r?.name) ?? `replicas[${n}]`;
      const s = planServer(r, name);
      const az = servers.find((x) => x.name === `${group}-${name}`) ?? servers.find((x) => x.name.endsWith(`-${name}`));
      if (az) {
        s.location = str(az.inputs.location);
        if (az.inputs.sku) s.sku = [az.inputs.sku.tier, az.inputs.sku.name].filter(Boolean).join(" ");
      }
      return s;
    });
    const failures = checkSyncGroup(i);
    const warnings = warnSyncGroup(i);
    return {
      group,
      primary,
      replicas,
      databases: Array.isArray(i.databases) ? i.databases.filter((d: unknown) => typeof d === "string") : [],
      tables: i.tables,
      agent: agentOf(resources, group, groups.length),
      network: networkOf(resources),
      failures,
      rules: rulesOf(failures, { primary, replicas }, warnings),
    };
  });
  return { ...meta, target, groups: plans, resources: resources.map((r) => ({ type: r.type, name: r.name })) };
}

/** true when every rule a plan can evaluate passes */
export function planPasses(p: Plan): boolean {
  return p.groups.every((g) => g.failures.length === 0);
}
