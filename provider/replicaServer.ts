// ReplicaServer owns one replica's membership in a sync group as its own resource
// (pulumi-nodejs:dynamic/datasync:ReplicaServer): adding or removing a replica shows in a preview as its own
// create or delete. Create checks the live server and prepares `_datasync`; delete removes the group's rows.
import * as pulumi from "@pulumi/pulumi";
import type { Flavor } from "../agent/rules.js";
import { agentModule, liveCheckError, prepareBookkeeping, removeBookkeeping } from "./live.js";
import * as random from "@pulumi/random";
import { canonical, checkSyncGroup, defaultSyncUser, flavorOf, STATE_VERSION, UNKNOWN, type ServerSpec } from "./spec.js";
import type { ReplicaArgs } from "./syncGroup.js";

/** ReplicaServer inputs as the provider sees them (flat: top-level secrets stay addressable). */
interface ReplicaServerInputs extends ServerSpec {
  group: string;
  replicaName: string;
  primary: { version: string; flavor?: Flavor; host?: string; port?: number };
  databases: string[];
  /** the dedicated sync account created on this replica with the admin credentials above (user, password) */
  syncUser?: string;
  syncPassword?: string;
}

function asGroup(n: any) {
  // the same rules as a group of one replica; the primary needs only its endpoint and version here
  return {
    group: n.group,
    primary: n.primary && typeof n.primary === "object" ? { host: n.primary.host ?? "(primary)", user: "-", port: n.primary.port, version: n.primary.version, flavor: n.primary.flavor } : n.primary,
    replicas: [{ name: n.replicaName, host: n.host, port: n.port, user: n.user, password: n.password, passwordEnv: n.passwordEnv, passwordFile: n.passwordFile, version: n.version, flavor: n.flavor, tls: n.tls }],
    databases: n.databases,
  };
}

/** group-level paths (replicas[0].version) become this resource's property names (version) */
function localPath(p: string): string {
  if (p === "replicas[0].name") return "replicaName";
  if (p.startsWith("replicas[0].")) return p.slice("replicas[0].".length);
  if (p === "replicas[0]") return "host";
  return p;
}

function endpointOf(n: ReplicaServerInputs) {
  const e: Record<string, unknown> = { name: n.replicaName, host: n.host, port: n.port ?? 3306, user: n.user };
  for (const k of ["password", "passwordEnv", "passwordFile", "tls"] as const) if (n[k] !== undefined && n[k] !== null) e[k] = n[k];
  return e as any;
}

async function join(n: ReplicaServerInputs): Promise<Record<string, unknown>> {
  const failures = checkSyncGroup(asGroup(n));
  if (failures.length) throw new Error(`replica ${n.replicaName}: ${failures.map((f) => f.reason.replace(/replicas\[0\]\./g, "")).join("\n  ")}`);
  const { preflightReplica } = await agentModule("preflight");
  const { parseVersion, checkDeclaredVersion } = await agentModule("rules");
  const e = endpointOf(n);
  const cfg = { group: n.group, databases: n.databases, replicas: [e] };
  const primaryVersion = parseVersion(n.primary.version, flavorOf(n.primary));
  // parity with the primary's declared version, privileges, replica parameters, reachability
  const report = await preflightReplica(cfg, 0, { version: primaryVersion, vars: {} });
  const all = [...report.failures];
  if (report.version) all.push(...checkDeclaredVersion("version", report.label, n.version, flavorOf(n), report.version));
  if (all.length) throw liveCheckError(`replica ${n.replicaName} of group "${n.group}"`, all);
  const source = n.primary.host ? `${n.primary.host}:${n.primary.port ?? 3306}` : "(primary)";
  await prepareBookkeeping(e, n.replicaName, n.group, n.replicaName, source);
  if (n.syncUser) {
    if (!n.syncPassword) throw new Error(`replica ${n.replicaName}: syncUser ${n.syncUser} is given without syncPassword; give the password as a secret (or let ReplicaServer generate it with syncAccount: true).`);
    await ensureSyncAccount(e, `replica ${n.replicaName}`, n.syncUser, n.syncPassword, n.databases);
    // the account the agent will use must pass the replica privilege rule on its own
    const own = await preflightReplica({ ...cfg, replicas: [{ ...e, user: n.syncUser, password: n.syncPassword, passwordEnv: undefined, passwordFile: undefined }] }, 0, undefined);
    if (own.failures.length) throw liveCheckError(`the sync account ${n.syncUser} of replica ${n.replicaName}`, own.failures);
  }
  return JSON.parse(JSON.stringify({ ...n, flavor: flavorOf(n), liveVersion: report.version?.raw, stateVersion: STATE_VERSION }));
}

/**
 * Least privilege: the agent writes with an account of its own, not the server admin. Creates (or updates
 * the password of) `user`@'%' and grants exactly what rule 6 names on the synced schemas and `_datasync`.
 * The password goes to the server as a statement parameter and never into a message.
 */
async function ensureSyncAccount(admin: any, where: string, user: string, password: string, databases: string[]): Promise<void> {
  const { connect, describeConnError, quoteId } = await agentModule("db");
  const { REPLICA_SCHEMA_PRIVILEGES, BOOKKEEPING_PRIVILEGES, BOOKKEEPING_SCHEMA } = await agentModule("rules");
  let c: any;
  try {
    c = await connect(admin, where);
  } catch (err) {
    throw new Error(`cannot create the sync account ${user}: ${describeConnError(err, where, admin)}`);
  }
  const account = `${c.escape(user)}@'%'`;
  try {
    await c.query(`CREATE USER IF NOT EXISTS ${account} IDENTIFIED BY ?`, [password]);
    await c.query(`ALTER USER ${account} IDENTIFIED BY ?`, [password]);
    const schemaPrivs = REPLICA_SCHEMA_PRIVILEGES.map((p: { privilege: string }) => p.privilege).join(", ");
    for (const db of databases) await c.query(`GRANT ${schemaPrivs} ON ${quoteId(db)}.* TO ${account}`);
    await c.query(`GRANT ${BOOKKEEPING_PRIVILEGES.join(", ")} ON ${quoteId(BOOKKEEPING_SCHEMA)}.* TO ${account}`);
  } catch (err: any) {
    // err.sql would carry the password: only the server's message is kept
    throw new Error(`${where} (${admin.host}:${admin.port}): creating the sync account ${user} failed: ${err?.sqlMessage ?? err?.code ?? "error"}; the admin account ${admin.user} needs CREATE USER and the privileges it grants (with GRANT OPTION).`);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Drop the sync account when the membership ends (the admin stays). */
async function dropSyncAccount(admin: any, where: string, user: string): Promise<void> {
  const { connect } = await agentModule("db");
  let c: any;
  try {
    c = await connect(admin, where);
  } catch {
    process.stderr.write(`datasync: ${where} (${admin.host}:${admin.port}) is unreachable; its sync account ${user} was left in place\n`);
    return;
  }
  try {
    await c.query(`DROP USER IF EXISTS ${c.escape(user)}@'%'`);
  } finally {
    await c.end().catch(() => undefined);
  }
}

export const replicaServerProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds: any, news: any) {
    const failures = checkSyncGroup(asGroup(news))
      .filter((f) => !f.property.startsWith("primary.") || f.property === "primary.version")
      .map((f) => ({ property: localPath(f.property), reason: f.reason.replace(/replicas\[0\]\./g, "").replace(/replicas\[0\]/g, "host") }));
    return { inputs: { ...news, stateVersion: STATE_VERSION }, failures };
  },
  async diff(_id: string, olds: any, news: any) {
    // identity of the membership: group, replica name and endpoint; the rest is re-checked in place
    const replaces = ["group", "replicaName", "host", "port"].filter((k) => news[k] === UNKNOWN || canonical(olds[k] ?? (k === "port" ? 3306 : undefined)) !== canonical(news[k] ?? (k === "port" ? 3306 : undefined)));
    const updates = ["user", "password", "passwordEnv", "passwordFile", "version", "flavor", "tls", "primary", "databases", "syncUser", "syncPassword"].filter((k) => canonical(olds[k]) !== canonical(news[k]) && !(k === "flavor" && news[k] === undefined));
    return { changes: replaces.length + updates.length > 0, replaces, deleteBeforeReplace: replaces.length > 0 };
  },
  async create(inputs: any) {
    const outs = await join(inputs);
    return { id: `${inputs.group}/${inputs.replicaName}`, outs };
  },
  async update(_id: string, olds: any, news: any) {
    const outs = await join(news);
    if (olds.syncUser && olds.syncUser !== news.syncUser) await dropSyncAccount(endpointOf(news), `replica ${news.replicaName}`, olds.syncUser);
    return { outs };
  },
  async delete(_id: string, props: any) {
    await removeBookkeeping(endpointOf(props), props.replicaName, props.group);
    if (props.syncUser) await dropSyncAccount(endpointOf(props), `replica ${props.replicaName}`, props.syncUser);
  },
};

export interface ReplicaServerArgs extends ReplicaArgs {
  /** the sync group's name */
  group: pulumi.Input<string>;
  /** the primary's declared version (and endpoint, recorded in the membership) */
  primary: pulumi.Input<{ version: pulumi.Input<string>; flavor?: pulumi.Input<Flavor>; host?: pulumi.Input<string>; port?: pulumi.Input<number> }>;
  /** the synced databases (the sync user needs DDL and DML on them and on _datasync) */
  databases: pulumi.Input<pulumi.Input<string>[]>;
  /**
   * Least privilege for a replica the program manages: create a dedicated sync account with `user`/`password`
   * (the admin) and hand the group that account instead. `true`: user `datasync_<group>`, a generated password
   * (@pulumi/random, a secret). Defaults to none (the given account is the sync account).
   */
  syncAccount?: boolean | { user?: pulumi.Input<string>; password?: pulumi.Input<string> };
}

export class ReplicaServer extends pulumi.dynamic.Resource {
  declare readonly group: pulumi.Output<string>;
  declare readonly replicaName: pulumi.Output<string>;
  declare readonly host: pulumi.Output<string>;
  declare readonly port: pulumi.Output<number | undefined>;
  declare readonly user: pulumi.Output<string>;
  declare readonly password: pulumi.Output<string | undefined>;
  declare readonly version: pulumi.Output<string>;
  declare readonly flavor: pulumi.Output<Flavor>;
  declare readonly liveVersion: pulumi.Output<string>;
  /** the replica spec SyncGroup accepts; the password stays a secret, the rest visible */
  readonly spec: ReplicaArgs;

  constructor(name: string, args: ReplicaServerArgs, opts: pulumi.CustomResourceOptions = {}) {
    const sa = args.syncAccount === true ? {} : args.syncAccount || undefined;
    const syncUser = sa ? (sa.user ?? pulumi.output(args.group).apply(defaultSyncUser)) : undefined;
    const syncPassword = sa
      ? pulumi.secret(sa.password ?? new random.RandomPassword(`${name}-sync`, { length: 32, special: true, overrideSpecial: "-_.~!#%^*", minLower: 2, minUpper: 2, minNumeric: 2 }, { parent: opts.parent }).result)
      : undefined;
    super(
      replicaServerProvider,
      name,
      {
        group: args.group,
        replicaName: args.name,
        host: args.host,
        port: args.port,
        user: args.user,
        password: args.password === undefined ? undefined : pulumi.secret(args.password),
        passwordEnv: args.passwordEnv,
        passwordFile: args.passwordFile,
        version: args.version,
        flavor: args.flavor,
        tls: args.tls,
        primary: args.primary,
        databases: args.databases,
        syncUser,
        syncPassword,
        liveVersion: undefined,
        stateVersion: STATE_VERSION,
      },
      { ...opts, additionalSecretOutputs: [...(opts.additionalSecretOutputs ?? []), "password", "syncPassword"] },
      "datasync",
      "ReplicaServer",
    );
    // The spec carries the declared values (known at preview, so SyncGroup's check can run its rules on
    // them) and depends on this resource through its URN (known at preview too): the group is created
    // after the membership was checked live.
    const after = <T>(v: pulumi.Input<T>): pulumi.Output<T> => pulumi.all([this.urn, v]).apply(([, x]) => x as T);
    this.spec = {
      name: after(args.name),
      host: after(args.host),
      port: after(args.port ?? 3306),
      version: after(args.version),
      ...(args.flavor !== undefined ? { flavor: after(args.flavor) } : {}),
      // with a sync account the group (and its agent) gets that account, never the admin
      ...(syncUser !== undefined
        ? { user: after(syncUser), password: pulumi.secret(after(syncPassword!)) }
        : {
            user: after(args.user),
            ...(args.password !== undefined ? { password: pulumi.secret(after(args.password)) } : {}),
            ...(args.passwordEnv !== undefined ? { passwordEnv: after(args.passwordEnv) } : {}),
            ...(args.passwordFile !== undefined ? { passwordFile: after(args.passwordFile) } : {}),
          }),
      ...(args.tls !== undefined ? { tls: after(args.tls) } : {}),
    };
  }
}
