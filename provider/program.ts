// Program owns the root stack program (Pulumi.yaml `main: dist/provider/program.js`): it reads the stack
// config namespace `datasync`, validates it (every error names the key and the fix), and declares the
// sync group for the `local` or `azure` target. Importing it has no side effects: `runProgram()` builds the
// resources (also under mocks, for `datasync plan`), `collectTopology()` evaluates the topology and the
// preview rules from config alone, and the default export is what the Pulumi runtime calls.
import * as pulumi from "@pulumi/pulumi";
import { SyncGroup, type PrimaryArgs, type ReplicaArgs } from "./syncGroup.js";
import { ReplicaServer } from "./replicaServer.js";
import { LocalAgent } from "./localAgent.js";
import { checkSyncGroup, flavorOf, type CheckFailure } from "./spec.js";
import { renderMermaid, type TopologyNode } from "./topology.js";

export { NAMESPACE, ProgramConfigError, readRawConfig, parseStackConfig, loadStackConfig, secretOf, type StackConfig } from "./stack-config.js";
import { loadStackConfig, secretOf, type StackConfig } from "./stack-config.js";

export function groupName(c: StackConfig): string {
  if (c.group) return c.group;
  return pulumi.getStack().toLowerCase().replace(/[^a-z0-9-]/g, "-").replace(/^-+/, "").slice(0, 40) || "datasync";
}

function primaryArgs(c: StackConfig): PrimaryArgs {
  const p = c.primary;
  return { host: p.host, port: p.port ?? 3306, user: p.user, password: secretOf(p.password), passwordEnv: p.passwordEnv, passwordFile: p.passwordFile, version: p.version, flavor: p.flavor, tls: p.tls, serverId: p.serverId, binlogExpireSeconds: p.binlogExpireSeconds };
}


/** local replica spec with the documented defaults */
function localReplica(c: StackConfig, i: number): ReplicaArgs {
  const r = c.replicas[i];
  const own = r.password !== undefined || r.passwordEnv !== undefined || r.passwordFile !== undefined;
  const cred = own ? r : c.primary;
  return {
    name: r.name,
    host: r.host ?? "127.0.0.1",
    port: r.port ?? 3306,
    user: r.user ?? c.primary.user,
    password: secretOf(cred.password),
    passwordEnv: cred.passwordEnv,
    passwordFile: cred.passwordFile,
    version: r.version ?? c.primary.version,
    flavor: r.flavor ?? c.primary.flavor,
    tls: r.tls,
  };
}

export interface Topology {
  group: string;
  target: "local" | "azure";
  primary: TopologyNode;
  replicas: (TopologyNode & { location?: string })[];
  databases: string[];
  mermaid: string;
  /** the preview rules on the declared values (hosts of Azure servers are known only after create) */
  failures: CheckFailure[];
}

/** The topology and rule results of a stack config, without any resource (for `datasync plan`). */
export function collectTopology(c: StackConfig = loadStackConfig()): Topology {
  const group = groupName(c);
  const primary: TopologyNode = { name: "primary", host: c.primary.host, port: c.primary.port ?? 3306, version: c.primary.version, flavor: flavorOf(c.primary) };
  const replicas = c.replicas.map((r, i) => {
    if (c.target === "azure") {
      return { name: r.name, version: c.primary.version, flavor: "mysql" as const, location: r.location ?? c.azure?.location };
    }
    const s = localReplica(c, i);
    return { name: r.name, host: s.host as string, port: s.port as number, version: s.version as string, flavor: flavorOf({ version: s.version, flavor: s.flavor }) };
  });
  const failures = checkSyncGroup({
    group,
    primary: { ...primary, user: c.primary.user },
    replicas: replicas.map((r) => ({ ...r, user: "-", host: r.host ?? undefined })),
    databases: c.databases,
  }).filter((f) => !(c.target === "azure" && /\.host$/.test(f.property)));
  if (c.target === "azure" && flavorOf(c.primary) === "mariadb") {
    failures.push({ property: "primary.version", reason: `primary.version: the primary runs MariaDB ${c.primary.version}; Azure Database for MySQL runs MySQL only, so flavor parity fails for every Azure replica. Use target local (MariaDB replicas) or a MySQL primary.` });
  }
  return { group, target: c.target, primary, replicas, databases: c.databases, mermaid: renderMermaid(group, primary, replicas, c.databases), failures };
}

/** Declare the stack's resources; returns the stack outputs. */
export async function runProgram(c: StackConfig = loadStackConfig()): Promise<Record<string, unknown>> {
  const group = groupName(c);
  const primary = primaryArgs(c);
  const primaryRef = { version: c.primary.version, flavor: c.primary.flavor, host: c.primary.host, port: c.primary.port ?? 3306 };
  if (c.target === "local") {
    const members = c.replicas.map((_, i) => {
      const spec = localReplica(c, i);
      return new ReplicaServer(`${group}-${c.replicas[i].name}`, { ...spec, group, primary: primaryRef, databases: c.databases });
    });
    const sync = new SyncGroup(group, { group, primary, replicas: members.map((m) => m.spec), databases: c.databases, tables: c.tables, agent: c.agent as any, tolerateOutageSeconds: c.tolerateOutageSeconds }, { dependsOn: members });
    const out: Record<string, unknown> = { group, topology: sync.topology, replicaNames: sync.replicaNames, agentConfig: sync.agentConfig };
    if (c.local?.startAgent !== false) {
      const agent = new LocalAgent(`${group}-agent`, { config: sync.agentConfig, entry: c.local?.entry, logFile: c.local?.logFile });
      out.agentPid = agent.pid;
      out.agentHealthUrl = agent.healthUrl;
    }
    return out;
  }
  const { azureStack } = await import("./program-azure.js");
  return azureStack(c, group, primary, primaryRef);
}

/** The Pulumi runtime calls the default export of an ESM program and uses its result as stack outputs. */
export default async function main(): Promise<Record<string, unknown>> {
  return runProgram();
}
