// SyncGroup owns the public sync-group resource: a dynamic resource (pulumi-nodejs:dynamic/datasync:SyncGroup)
// whose `check` enforces DESIGN.md's rules at preview, whose create/update re-check the live servers and
// prepare each replica, and whose outputs are the agent config (secret), the Mermaid topology and the names.
import * as pulumi from "@pulumi/pulumi";
import type { Config } from "../agent/config.js";
import { liveCheck, prepareBookkeeping, removeBookkeeping, agentModule } from "./live.js";
import {
  buildAgentConfig,
  canonical,
  checkSyncGroup,
  derive,
  diffSyncGroup,
  flavorOf,
  migrateState,
  redact,
  STATE_VERSION,
  stateVersionOf,
  warnSyncGroup,
  type AgentSettings,
  type PrimarySpec,
  type ReplicaSpec,
  type SyncGroupInputs,
  type TablesSpec,
} from "./spec.js";
import type { Flavor } from "../agent/rules.js";

function plain<T>(v: T): T {
  // Struct cannot carry undefined; JSON drops it
  return JSON.parse(JSON.stringify(v));
}

function declaredOf(g: SyncGroupInputs) {
  return {
    primary: { version: g.primary.version, flavor: flavorOf(g.primary) },
    replicas: g.replicas.map((r) => ({ version: r.version, flavor: flavorOf(r) })),
  };
}

/** Validate, check live, prepare every replica; the outputs of create and update. */
async function apply(news: SyncGroupInputs, olds?: any): Promise<Record<string, unknown>> {
  const failures = checkSyncGroup(news);
  if (failures.length) throw new Error(`sync group "${news.group}": ${failures.length} rule${failures.length > 1 ? "s fail" : " fails"}:\n${failures.map((f) => `  - ${f.reason}`).join("\n")}`);
  const derived = derive(news);
  const { validateConfig } = await agentModule("config");
  const cfg: Config = validateConfig(JSON.parse(derived.agentConfig!));
  const versions = await liveCheck(cfg, declaredOf(news), `sync group "${news.group}"`, { tolerateOutageSeconds: news.tolerateOutageSeconds });
  const source = `${cfg.source.host}:${cfg.source.port}`;
  for (let i = 0; i < cfg.replicas.length; i++) {
    await prepareBookkeeping(cfg.replicas[i], `replicas[${i}]`, cfg.group, cfg.replicas[i].name, source);
  }
  if (olds?.agentConfig) {
    // replicas that left the group (by name or endpoint) lose their membership; their checkpoints stay,
    // so a replica added back resumes instead of a full snapshot (only destroying the group removes them)
    const old = safeConfig(olds.agentConfig);
    const still = new Set(cfg.replicas.map((r) => `${r.name}@${r.host}:${r.port}`));
    for (const [i, r] of (old?.replicas ?? []).entries()) {
      if (!still.has(`${r.name}@${r.host}:${r.port}`)) await removeBookkeeping(r, `previous replicas[${i}] (${r.name})`, old!.group, "membership");
    }
  }
  return plain({
    stateVersion: STATE_VERSION,
    group: news.group,
    primary: { ...redact(news.primary), flavor: flavorOf(news.primary) },
    replicas: news.replicas.map((r) => ({ ...redact(r), flavor: flavorOf(r) })),
    databases: news.databases,
    tables: news.tables,
    agent: news.agent,
    tolerateOutageSeconds: news.tolerateOutageSeconds,
    agentConfig: derived.agentConfig,
    topology: derived.topology,
    replicaNames: derived.replicaNames,
    liveVersions: versions,
  });
}

/** The agent config of a previous state, or undefined when it no longer validates. */
function safeConfig(text: string): Config | undefined {
  try {
    return JSON.parse(text) as Config;
  } catch {
    return undefined;
  }
}

/** The dynamic provider. Closure-serialized into the state: no connection, no pool, drivers imported inside. */
export const syncGroupProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds: any, news: any) {
    const failures = checkSyncGroup(news);
    return { inputs: { ...news, ...derive(news), stateVersion: STATE_VERSION }, failures };
  },
  async diff(_id: string, olds: any, news: any) {
    // diffSyncGroup reads the stored state version: older state updates (migrates), newer state throws
    const d = diffSyncGroup(olds, news);
    // a new group or primary must not share bookkeeping with the old one: delete it first
    return { changes: d.changes, replaces: d.replaces, deleteBeforeReplace: d.replaces.length > 0 };
  },
  async create(inputs: any) {
    const outs = await apply(inputs);
    return { id: String(inputs.group), outs };
  },
  async update(_id: string, olds: any, news: any) {
    stateVersionOf(olds, `sync group "${olds.group}"`);
    return { outs: await apply(news, migrateState(olds)) };
  },
  async delete(_id: string, props: any) {
    // the group itself is destroyed: every row of it goes, checkpoints included
    stateVersionOf(props, `sync group "${props.group}"`);
    const old = safeConfig(props.agentConfig);
    if (!old) return;
    // the stored config carries resolved ports and credentials (buildAgentConfig)
    for (const [i, r] of (old.replicas ?? []).entries()) await removeBookkeeping(r, `replicas[${i}] (${r.name})`, old.group);
  },
};

/** A server as the program declares it: every field may be an Output; the password should be a secret. */
export interface ServerArgs {
  host: pulumi.Input<string>;
  port?: pulumi.Input<number>;
  user: pulumi.Input<string>;
  /** a secret (plain strings are wrapped in pulumi.secret); or passwordEnv / passwordFile */
  password?: pulumi.Input<string>;
  passwordEnv?: pulumi.Input<string>;
  passwordFile?: pulumi.Input<string>;
  /** major.minor, e.g. "8.0" or "10.11" */
  version: pulumi.Input<string>;
  /** Defaults to the flavor of the version: 10.x and 11.x MariaDB, the rest MySQL. */
  flavor?: pulumi.Input<Flavor>;
  /** Defaults to the agent's: disabled on loopback, verify-identity elsewhere. */
  tls?: pulumi.Input<PrimarySpec["tls"]>;
}

export interface PrimaryArgs extends ServerArgs {
  serverId?: pulumi.Input<number>;
  /** the source's binlog_expire_logs_seconds as you know it (0 = never purged): warns at preview when below tolerateOutageSeconds */
  binlogExpireSeconds?: pulumi.Input<number>;
}

export interface ReplicaArgs extends ServerArgs {
  name: pulumi.Input<string>;
}

export interface SyncGroupArgs {
  /** Defaults to the resource name; [a-z0-9][a-z0-9-]{0,39}. */
  group?: pulumi.Input<string>;
  primary: pulumi.Input<PrimaryArgs>;
  /** 1..5 plain specs, or the `spec` of a ReplicaServer / AzureReplica */
  replicas: pulumi.Input<pulumi.Input<ReplicaArgs>[]>;
  databases: pulumi.Input<pulumi.Input<string>[]>;
  tables?: pulumi.Input<TablesSpec>;
  agent?: pulumi.Input<AgentSettings>;
  /**
   * How long a replica or the agent may be away (maintenance, outage) and still resume from its checkpoint:
   * the source must keep its binlogs at least this long (checked live; a declared
   * `primary.binlogExpireSeconds` below it warns at preview). Defaults to 86400 (a day).
   */
  tolerateOutageSeconds?: pulumi.Input<number>;
}

/** Plain-object specs get their password wrapped as a secret, keeping the other fields visible. */
function withSecretPassword<T extends pulumi.Input<ServerArgs>>(s: T): T {
  if (s && typeof s === "object" && !pulumi.Output.isInstance(s) && !(s instanceof Promise) && (s as ServerArgs).password !== undefined) {
    return { ...(s as object), password: pulumi.secret((s as ServerArgs).password!) } as unknown as T;
  }
  return s;
}

/** The visible projection (no password) of a list of specs, for the topology and names. */
function visible(v: pulumi.Input<any>): pulumi.Output<any> {
  return pulumi.unsecret(pulumi.output(v).apply((x: any) => (Array.isArray(x) ? x.map((r) => redact(r ?? {})) : redact(x ?? {}))));
}

export class SyncGroup extends pulumi.dynamic.Resource {
  declare readonly group: pulumi.Output<string>;
  /** the agent config JSON (DESIGN.md), secret: it carries the credentials */
  declare readonly agentConfig: pulumi.Output<string>;
  /** the topology as Mermaid text (no credentials) */
  declare readonly topology: pulumi.Output<string>;
  declare readonly replicaNames: pulumi.Output<string[]>;
  /** `SELECT VERSION()` of each server at the last create/update */
  declare readonly liveVersions: pulumi.Output<{ primary?: string; replicas: Record<string, string> }>;
  declare readonly stateVersion: pulumi.Output<number>;

  constructor(name: string, args: SyncGroupArgs, opts: pulumi.CustomResourceOptions = {}) {
    const group = args.group ?? name;
    const primary = withSecretPassword(args.primary);
    const replicas = Array.isArray(args.replicas) ? args.replicas.map(withSecretPassword) : args.replicas;
    const all = pulumi.all([group, primary, replicas, args.databases, args.tables, args.agent]);
    // Computed here as well as in check, so mocks and `datasync plan` see them without the provider.
    const agentConfig = pulumi.secret(
      all.apply(([g, p, rs, dbs, tables, agent]) => canonical(buildAgentConfig({ group: g, primary: p as PrimarySpec, replicas: rs as ReplicaSpec[], databases: dbs, tables, agent }))),
    );
    const shape = pulumi.all([group, visible(primary), visible(replicas), pulumi.unsecret(pulumi.output(args.databases))]);
    const derived = shape.apply(([g, p, rs, dbs]) => derive({ group: g, primary: p, replicas: rs, databases: dbs }));
    super(
      syncGroupProvider,
      name,
      {
        group,
        primary,
        replicas,
        databases: args.databases,
        tables: args.tables,
        agent: args.agent,
        tolerateOutageSeconds: args.tolerateOutageSeconds,
        agentConfig,
        topology: derived.apply((d) => d.topology!),
        replicaNames: derived.apply((d) => d.replicaNames!),
        liveVersions: undefined,
        stateVersion: STATE_VERSION,
      },
      { ...opts, additionalSecretOutputs: [...(opts.additionalSecretOutputs ?? []), "agentConfig"] },
      "datasync",
      "SyncGroup",
    );
    // preview warnings on the declared values (a check failure would stop the preview; these may be fine live)
    pulumi.all([visible(primary), args.tolerateOutageSeconds]).apply(([p, t]) => {
      for (const w of warnSyncGroup({ primary: p, tolerateOutageSeconds: t })) pulumi.log.warn(w, this);
    });
  }
}
