// StackConfig owns the root stack program's config: the namespace `datasync` of the stack (Pulumi.<stack>.yaml),
// its schema, reading it (secrets stay opaque: `datasync plan` never decrypts), validation with every error
// naming the key and the fix, and how a secret value becomes an Output. program.ts and program-azure.ts build
// on it; neither imports the other statically (program.ts loads the Azure part with import()).
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { REPLICA_NAME_RE } from "../agent/rules.js";

export const NAMESPACE = "datasync";

/** a secret as it may appear in config read without decryption (`datasync plan`): kept opaque */
const secretish = z.union([z.string(), z.strictObject({ secure: z.string() })]);
const tls = z.strictObject({ mode: z.enum(["disabled", "required", "verify-ca", "verify-identity"]).optional(), ca: z.string().optional(), cert: z.string().optional(), key: z.string().optional() });
const version = z.string().regex(/^\d+\.\d+/, 'write major.minor, e.g. "8.0" or "10.11"');

const primarySchema = z.strictObject({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).optional(),
  user: z.string().min(1),
  password: secretish.optional(),
  passwordEnv: z.string().optional(),
  passwordFile: z.string().optional(),
  version,
  flavor: z.enum(["mysql", "mariadb"]).optional(),
  tls: tls.optional(),
  serverId: z.number().int().positive().optional(),
  binlogExpireSeconds: z.number().int().min(0).optional(),
});

const replicaSchema = z.strictObject({
  name: z.string().regex(REPLICA_NAME_RE, "1-63 letters, digits, '_', '.', '-', starting with a letter or digit"),
  // local target (defaults: host 127.0.0.1, user/password/version of the primary)
  host: z.string().min(1).optional(),
  port: z.number().int().min(1).max(65535).optional(),
  user: z.string().min(1).optional(),
  password: secretish.optional(),
  passwordEnv: z.string().optional(),
  passwordFile: z.string().optional(),
  version: version.optional(),
  flavor: z.enum(["mysql", "mariadb"]).optional(),
  tls: tls.optional(),
  // azure target
  location: z.string().min(1).optional(),
  sku: z.strictObject({ name: z.string(), tier: z.string() }).optional(),
  storageSizeGB: z.number().int().min(20).optional(),
});

const firewallRule = z.strictObject({ name: z.string().regex(/^[A-Za-z0-9_-]{1,80}$/, "letters, digits, '_' and '-'"), startIpAddress: z.string().min(7), endIpAddress: z.string().min(7) });

const configSchema = z.strictObject({
  target: z.enum(["local", "azure"]),
  group: z.string().regex(/^[a-z0-9][a-z0-9-]{0,39}$/, "[a-z0-9][a-z0-9-]{0,39}, e.g. orders").optional(),
  primary: primarySchema,
  replicas: z.array(replicaSchema).min(1, "declare at least one replica"),
  databases: z.array(z.string().min(1)).min(1, "list at least one database"),
  tables: z.strictObject({ include: z.array(z.string()).optional(), exclude: z.array(z.string()).optional() }).optional(),
  agent: z.record(z.string(), z.unknown()).optional(),
  local: z.strictObject({ entry: z.string().optional(), logFile: z.string().optional(), startAgent: z.boolean().optional() }).optional(),
  azure: z
    .strictObject({
      location: z.string().min(1),
      resourceGroupName: z.string().min(1).optional(),
      agentLocation: z.string().min(1).optional(),
      agentImage: z.string().min(1).optional(),
      agentCpu: z.number().positive().optional(),
      agentMemoryInGB: z.number().positive().optional(),
      agentSubnetId: z.string().min(1).optional(),
      agentEgressIp: z.string().min(7).optional(),
      agentProbes: z.boolean().optional(),
      lowerCaseTableNames: z.string().optional(),
      network: z
        .strictObject({
          access: z.enum(["public", "private"]).optional(),
          addressPrefix: z.string().optional(),
          agentSubnetPrefix: z.string().optional(),
          serverSubnetPrefix: z.string().optional(),
        })
        .optional(),
      firewallRules: z.array(firewallRule).optional(),
      delegatedSubnetResourceId: z.string().min(1).optional(),
      privateDnsZoneResourceId: z.string().min(1).optional(),
      administratorLogin: z.string().min(1).optional(),
      registry: z
        .strictObject({ server: z.string().min(1), identityId: z.string().min(1).optional(), username: z.string().min(1).optional(), password: secretish.optional() })
        .optional(),
      alerts: z.strictObject({ email: z.string().regex(/^[^@\s]+@[^@\s]+$/, "an e-mail address").optional(), lagSeconds: z.number().positive().optional() }).optional(),
      logRetentionDays: z.number().int().min(30).max(730).optional(),
      protect: z.boolean().optional(),
    })
    .optional(),
  tolerateOutageSeconds: z.number().int().positive().optional(),
});

export type StackConfig = z.output<typeof configSchema>;

export class ProgramConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid stack configuration (namespace ${NAMESPACE}):\n  - ${problems.join("\n  - ")}`);
    this.name = "ProgramConfigError";
    this.problems = problems;
  }
}

const KEYS = ["target", "group", "primary", "replicas", "databases", "tables", "agent", "local", "azure", "tolerateOutageSeconds"] as const;

function keyPath(path: PropertyKey[]): string {
  let s = `${NAMESPACE}:`;
  path.forEach((p, i) => (s += typeof p === "number" ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`));
  return s;
}

const EXAMPLES: Record<string, string> = {
  target: "pulumi config set datasync:target local   # or azure",
  primary: "pulumi config set --path datasync:primary.host 10.0.0.5 (and .user, .version; the password with --secret)",
  replicas: "pulumi config set --path 'datasync:replicas[0].name' westeurope",
  databases: "pulumi config set --path 'datasync:databases[0]' shop",
  azure: "pulumi config set --path datasync:azure.location westeurope",
};

/** Raw values of the namespace: from the Pulumi runtime config (PULUMI_CONFIG, setAllConfig) or given. */
export function readRawConfig(): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  for (const k of KEYS) {
    // runtime.getConfig reads without the secret-getter warning; passwords are wrapped as secrets below
    const v = pulumi.runtime.getConfig(`${NAMESPACE}:${k}`);
    if (v === undefined) continue;
    try {
      raw[k] = k === "target" || k === "group" ? v : JSON.parse(v);
    } catch {
      raw[k] = v;
    }
  }
  return raw;
}

/** Validate the stack config; throws ProgramConfigError naming each key and its fix. */
export function parseStackConfig(raw: Record<string, unknown>): StackConfig {
  const r = configSchema.safeParse(raw);
  const problems: string[] = [];
  if (!r.success) {
    for (const i of r.error.issues) {
      const key = keyPath(i.path);
      const top = String(i.path[0] ?? "");
      if (i.code === "unrecognized_keys") problems.push(`${key}: unknown key${i.keys.length > 1 ? "s" : ""} ${i.keys.join(", ")}; remove ${i.keys.length > 1 ? "them" : "it"} or check the spelling (see provider/README.md).`);
      else if (i.code === "invalid_type" && /received undefined/.test(i.message)) problems.push(`${key}: required and missing; set it, e.g. ${EXAMPLES[top] ?? `pulumi config set --path ${key} <value>`}.`);
      else problems.push(`${key}: ${i.message}; fix it with pulumi config set --path ${key} <value>.`);
    }
    throw new ProgramConfigError(problems);
  }
  const c = r.data;
  if (c.target === "azure" && !c.azure) problems.push(`${NAMESPACE}:azure: required for target azure (at least azure.location); set it, e.g. ${EXAMPLES.azure}.`);
  if (c.target === "local") {
    c.replicas.forEach((rep, i) => {
      if (rep.port === undefined && (rep.host === undefined || rep.host === c.primary.host)) {
        problems.push(`${NAMESPACE}:replicas[${i}].port: required for a local replica on the primary's host; set it, e.g. pulumi config set --path 'datasync:replicas[${i}].port' ${3307 + i}.`);
      }
      if (rep.location || rep.sku) problems.push(`${NAMESPACE}:replicas[${i}]: location and sku apply to target azure only; remove them or set datasync:target azure.`);
    });
  } else if (c.azure) {
    const az = c.azure;
    const access = az.network?.access ?? (az.delegatedSubnetResourceId ? "private" : "public");
    if (az.firewallRules?.length && (az.delegatedSubnetResourceId || access === "private")) {
      problems.push(`${NAMESPACE}:azure: give either firewallRules (public access) or private access (network.access private, or delegatedSubnetResourceId), not both.`);
    }
    if (az.lowerCaseTableNames !== undefined) {
      problems.push(`${NAMESPACE}:azure.lowerCaseTableNames: Azure fixes lower_case_table_names when a server is created (1 on MySQL 8.0) and refuses to change it, so it is read at create, never set; remove it (pulumi config rm --path datasync:azure.lowerCaseTableNames). A source with 0 syncs when every name in scope is lower case (rule 6).`);
    }
    if (access === "private" && !az.delegatedSubnetResourceId) {
      const agentLocation = az.agentLocation ?? az.location;
      c.replicas.forEach((r, i) => {
        const loc = r.location ?? az.location;
        if (loc !== agentLocation) problems.push(`${NAMESPACE}:replicas[${i}].location: ${loc} differs from the agent's region ${agentLocation}; private access puts each server in a delegated subnet of the agent's network, which must be in the server's region. Use network.access public (firewall open to the agent's NAT address only), or place the replica in ${agentLocation}.`);
      });
    }
    if (!az.agentImage) {
      problems.push(`${NAMESPACE}:azure.agentImage: required for target azure: the agent image in your registry, pinned by digest (<registry>/datasync-agent@sha256:…); build and push it with examples/ci/.github/workflows/datasync-agent-release.yml, then pulumi config set --path datasync:azure.agentImage <image@digest>.`);
    }
    if (az.delegatedSubnetResourceId && !az.privateDnsZoneResourceId) problems.push(`${NAMESPACE}:azure.privateDnsZoneResourceId: required with delegatedSubnetResourceId (a private DNS zone ending in .mysql.database.azure.com, linked to the network).`);
    if (az.agentSubnetId && !az.agentEgressIp && access === "public") problems.push(`${NAMESPACE}:azure.agentEgressIp: required with agentSubnetId and public access: the address your subnet's NAT gateway uses, so the servers' firewall can allow the agent.`);
    if (az.registry && az.registry.identityId === undefined && (az.registry.username === undefined || az.registry.password === undefined)) {
      problems.push(`${NAMESPACE}:azure.registry: give identityId (a user-assigned identity with AcrPull on the registry) or username and password (--secret).`);
    }
    if (az.registry?.identityId && (az.registry.username || az.registry.password)) problems.push(`${NAMESPACE}:azure.registry: give identityId or username and password, not both.`);
  }
  if (problems.length) throw new ProgramConfigError(problems);
  return c;
}

/** Load and validate the stack's `datasync` namespace. */
export function loadStackConfig(): StackConfig {
  return parseStackConfig(readRawConfig());
}

export function secretOf(v: z.output<typeof secretish> | undefined): pulumi.Output<string> | undefined {
  if (v === undefined) return undefined;
  // an undecrypted `{secure: …}` stays opaque (its ciphertext, secret) — `datasync plan` never decrypts
  return pulumi.secret(typeof v === "string" ? v : v.secure);
}
