// AzureReplica owns an Azure Database for MySQL flexible server as a sync target: the server on the
// primary's version (protected: a rename must not silently replace it), the server parameters the sync
// needs (DESIGN.md rule 6) as Configuration resources, its network access (firewall rules or a delegated
// subnet), its metric alerts, and the replica spec a SyncGroup accepts.
import * as pulumi from "@pulumi/pulumi";
import * as dbformysql from "@pulumi/azure-native/dbformysql/index.js";
import * as random from "@pulumi/random";
import { hasInvisiblePrimaryKeySetting, parseVersion } from "../agent/rules.js";
import { serverAlerts } from "./azureMonitoring.js";
import type { ReplicaArgs } from "./syncGroup.js";

/** Azure flexible server versions by the primary's major.minor. */
const AZURE_VERSIONS: Record<string, string> = { "5.7": "5.7", "8.0": "8.0.21", "8.4": "8.4" };

/** The Azure server version for a primary version, or an error naming the fix. Pure; exported for tests. */
export function azureVersionFor(primaryVersion: string, primaryFlavor?: "mysql" | "mariadb"): string {
  const v = parseVersion(primaryVersion, primaryFlavor);
  if (!v) throw new Error(`primaryVersion: "${primaryVersion}" is not a version; write major.minor, e.g. "8.0".`);
  if (v.flavor === "mariadb") {
    throw new Error(`primaryVersion: the primary runs MariaDB ${v.major}.${v.minor}, and Azure Database for MySQL runs MySQL only; flavor must be equal on primary and replicas. Use a MariaDB replica elsewhere, or a MySQL primary.`);
  }
  const az = AZURE_VERSIONS[`${v.major}.${v.minor}`];
  if (!az) throw new Error(`primaryVersion: MySQL ${v.major}.${v.minor} is not offered by Azure Database for MySQL flexible server (offered: ${Object.keys(AZURE_VERSIONS).join(", ")}). Upgrade the primary to one of them.`);
  return az;
}

export interface FirewallRuleSpec {
  name: string;
  startIpAddress: pulumi.Input<string>;
  endIpAddress: pulumi.Input<string>;
}

export interface AzureReplicaArgs {
  /** the replica's name in the sync group; defaults to the resource name */
  replicaName?: pulumi.Input<string>;
  resourceGroupName: pulumi.Input<string>;
  location: pulumi.Input<string>;
  /** the primary's major.minor ("8.0"); the server is created on that version */
  primaryVersion: string;
  primaryFlavor?: "mysql" | "mariadb";
  /**
   * @deprecated Azure fixes lower_case_table_names when a server is created (1 on 8.0) and refuses to set
   * it later; it is read at create (rule 6), never set. Giving it is an error.
   */
  lowerCaseTableNames?: pulumi.Input<string>;
  /** Defaults to "datasync". */
  administratorLogin?: pulumi.Input<string>;
  /** a secret; when absent a random 32-character password (@pulumi/random) is generated and kept in state as a secret */
  administratorPassword?: pulumi.Input<string>;
  /** Defaults to Standard_B1ms (Burstable). */
  sku?: pulumi.Input<{ name: pulumi.Input<string>; tier: pulumi.Input<string> }>;
  /** Defaults to 32. */
  storageSizeGB?: pulumi.Input<number>;
  /** public access restricted to these ranges (the agent's outbound address, the deployer's address) */
  firewallRules?: FirewallRuleSpec[];
  /** private access: a subnet delegated to Microsoft.DBforMySQL/flexibleServers and its private DNS zone */
  delegatedSubnetResourceId?: pulumi.Input<string>;
  privateDnsZoneResourceId?: pulumi.Input<string>;
  /** more server parameters (name → value), set after the required ones */
  parameters?: Record<string, pulumi.Input<string>>;
  tags?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** resources the server waits for (e.g. the private DNS zone's network link) */
  dependsOn?: pulumi.Input<pulumi.Resource>[];
  /** Defaults to true: `pulumi destroy` or a change that would replace the server stops with an error instead of deleting its data. */
  protect?: boolean;
  /** Defaults to true: metric alerts on storage and (Burstable) CPU credits */
  alerts?: boolean;
  /** where the metric alerts notify (an action group's id); without it they show in Azure Monitor only */
  actionGroupId?: pulumi.Input<string>;
}

/**
 * The server parameters the sync needs on an Azure target (rule 6), by the primary's declared version.
 * `sql_generate_invisible_primary_key` exists from MySQL 8.0.30 and Azure turns it ON by default on 8.0 and
 * later ("Limitations in Azure Database for MySQL - Flexible Server", section Generated Invisible Primary
 * Keys, https://learn.microsoft.com/azure/mysql/flexible-server/concepts-limitations): OFF on 8.0/8.4, not
 * set on 5.7 (no such parameter). `lower_case_table_names` is never set: it "can only be set to 1" and is
 * fixed once the server is initialized (same page); rule 6 reads it at create.
 */
export function requiredParameters(primaryVersion: string, primaryFlavor?: "mysql" | "mariadb"): Record<string, string> {
  const v = parseVersion(primaryVersion, primaryFlavor);
  const out: Record<string, string> = {};
  // tables created by the sync must not get a key the source does not have
  if (v && hasInvisiblePrimaryKeySetting(v)) out.sql_generate_invisible_primary_key = "OFF";
  return out;
}

export class AzureReplica extends pulumi.ComponentResource {
  readonly server: dbformysql.Server;
  readonly configurations: dbformysql.Configuration[];
  readonly firewallRules: dbformysql.FirewallRule[];
  readonly alerts: pulumi.CustomResource[];
  /** the replica spec a SyncGroup or ReplicaServer accepts (password secret) */
  readonly spec: ReplicaArgs;
  readonly host: pulumi.Output<string>;

  constructor(name: string, args: AzureReplicaArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("datasync:azure:AzureReplica", name, {}, opts);
    const version = azureVersionFor(args.primaryVersion, args.primaryFlavor);
    const parent = { parent: this };
    if (args.firewallRules?.length && args.delegatedSubnetResourceId) {
      throw new Error(`AzureReplica ${name}: give either firewallRules (public access) or delegatedSubnetResourceId (private access), not both.`);
    }
    if (args.lowerCaseTableNames !== undefined) {
      throw new Error(`AzureReplica ${name}: lowerCaseTableNames cannot be set: Azure fixes lower_case_table_names when the server is created (1 on MySQL 8.0) and refuses later changes. Remove it; the sync reads the value at create and accepts a source with 0 when every name in scope is lower case (rule 6).`);
    }
    const login = args.administratorLogin ?? "datasync";
    const password: pulumi.Output<string> = args.administratorPassword
      ? pulumi.secret(args.administratorPassword)
      : pulumi.secret(new random.RandomPassword(`${name}-admin`, { length: 32, special: true, overrideSpecial: "-_.~!#%^*", minLower: 2, minUpper: 2, minNumeric: 2 }, parent).result);
    const isPrivate = args.delegatedSubnetResourceId !== undefined;
    this.server = new dbformysql.Server(
      name,
      {
        resourceGroupName: args.resourceGroupName,
        location: args.location,
        version,
        administratorLogin: login,
        administratorLoginPassword: password,
        sku: args.sku ?? { name: "Standard_B1ms", tier: "Burstable" },
        storage: { storageSizeGB: args.storageSizeGB ?? 32, autoGrow: "Enabled" },
        backup: { backupRetentionDays: 7, geoRedundantBackup: "Disabled" },
        network: isPrivate
          ? { delegatedSubnetResourceId: args.delegatedSubnetResourceId, privateDnsZoneResourceId: args.privateDnsZoneResourceId, publicNetworkAccess: "Disabled" }
          : { publicNetworkAccess: "Enabled" },
        tags: args.tags,
      },
      // protect: renaming the group or stack changes this resource's name; Pulumi would replace (delete) the
      // server and its data. With protect, that plan fails and names the server instead.
      { ...parent, additionalSecretOutputs: ["administratorLoginPassword"], protect: args.protect ?? true, dependsOn: args.dependsOn },
    );
    // Parameters one at a time: Azure rejects concurrent configuration updates on a server.
    const params: Record<string, pulumi.Input<string>> = { ...requiredParameters(args.primaryVersion, args.primaryFlavor), ...(args.parameters ?? {}) };
    this.configurations = [];
    let previous: pulumi.Resource = this.server;
    for (const [param, value] of Object.entries(params)) {
      const c: dbformysql.Configuration = new dbformysql.Configuration(
        `${name}-${param.replace(/_/g, "-")}`,
        { resourceGroupName: args.resourceGroupName, serverName: this.server.name, configurationName: param, value, source: "user-override" },
        { ...parent, dependsOn: [previous] },
      );
      this.configurations.push(c);
      previous = c;
    }
    this.firewallRules = (isPrivate ? [] : (args.firewallRules ?? [])).map(
      (r) =>
        new dbformysql.FirewallRule(
          `${name}-fw-${r.name}`,
          { resourceGroupName: args.resourceGroupName, serverName: this.server.name, firewallRuleName: r.name, startIpAddress: r.startIpAddress, endIpAddress: r.endIpAddress },
          parent,
        ),
    );
    // the CPU credit alert only where credits exist (Burstable); a sku given as an Output counts as not Burstable
    const tier = args.sku === undefined ? "Burstable" : pulumi.Output.isInstance(args.sku) ? undefined : (args.sku as { tier?: unknown }).tier;
    this.alerts = args.alerts !== false
      ? serverAlerts(name, { resourceGroupName: args.resourceGroupName, serverId: this.server.id, actionGroupId: args.actionGroupId, burstable: tier === "Burstable", tags: args.tags }, parent)
      : [];
    this.host = this.server.fullyQualifiedDomainName as pulumi.Output<string>;
    // the spec resolves after the parameters are set and the firewall rules exist, so the live checks of a
    // membership or group (which connect from the deployer, and the agent after them) find a ready server
    const ready = pulumi.all([this.host, ...this.configurations.map((c) => c.id), ...this.firewallRules.map((f) => f.id)]).apply(([h]) => h);
    this.spec = {
      name: args.replicaName ?? name,
      host: ready,
      port: 3306,
      user: login,
      password,
      version: args.primaryVersion,
      flavor: "mysql",
      tls: { mode: "verify-identity" },
    };
    this.registerOutputs({ host: this.host, spec: this.spec });
  }
}
