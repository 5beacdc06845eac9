// Program-azure owns the `azure` target of the root program: a resource group, the agent's network (VNet,
// ACI subnet, NAT gateway with a static egress IP; private access: a server subnet and private DNS zone),
// monitoring (Log Analytics, action group, alerts), an AzureReplica per replica (each in its own region,
// reachable from the agent), their memberships, the SyncGroup and the agent in Container Instances.
// Loaded lazily so a local stack never loads azure-native.
import * as pulumi from "@pulumi/pulumi";
import * as resources from "@pulumi/azure-native/resources/index.js";
import { AzureReplica, type FirewallRuleSpec } from "./azureReplica.js";
import { AzureNetwork } from "./azureNetwork.js";
import { AzureMonitoring } from "./azureMonitoring.js";
import { ReplicaServer } from "./replicaServer.js";
import { SyncAgent, type RegistryArgs } from "./syncAgent.js";
import { SyncGroup, type PrimaryArgs } from "./syncGroup.js";
import { secretOf, type StackConfig } from "./stack-config.js";

export function azureStack(
  c: StackConfig,
  group: string,
  primary: PrimaryArgs,
  primaryRef: { version: string; flavor?: "mysql" | "mariadb"; host: string; port: number },
): Record<string, unknown> {
  const az = c.azure!;
  const tags = { "datasync-group": group };
  const agentLocation = az.agentLocation ?? az.location;
  const rg = az.resourceGroupName ? pulumi.output(az.resourceGroupName) : new resources.ResourceGroup(`${group}-rg`, { location: az.location, tags }).name;
  const access = az.network?.access ?? (az.delegatedSubnetResourceId ? "private" : "public");

  // the agent's network: composed here unless the stack brings its own subnet (agentSubnetId)
  const net = az.agentSubnetId
    ? undefined
    : new AzureNetwork(`${group}-net`, {
        resourceGroupName: rg,
        location: agentLocation,
        access: az.delegatedSubnetResourceId ? "public" : access, // a brought private subnet: nothing to compose for the servers
        addressPrefix: az.network?.addressPrefix,
        agentSubnetPrefix: az.network?.agentSubnetPrefix,
        serverSubnetPrefix: az.network?.serverSubnetPrefix,
        privateDnsZoneName: `${group}.private.mysql.database.azure.com`,
        tags,
      });
  const egressIp: pulumi.Output<string> | undefined = net ? net.egressIp : az.agentEgressIp ? pulumi.output(az.agentEgressIp) : undefined;

  const monitoring = new AzureMonitoring(`${group}-ops`, { resourceGroupName: rg, location: agentLocation, group, email: az.alerts?.email, retentionDays: az.logRetentionDays, tags });

  // public access: the firewall admits the agent's NAT address and the configured ranges (the deployer's)
  const firewallRules: FirewallRuleSpec[] | undefined =
    access === "public" ? [...(az.firewallRules ?? []), ...(egressIp ? [{ name: "agent-egress", startIpAddress: egressIp, endIpAddress: egressIp }] : [])] : undefined;
  const privateSubnet = access === "private" ? (az.delegatedSubnetResourceId ?? net?.serverSubnet?.id) : undefined;
  const privateZone = access === "private" ? (az.privateDnsZoneResourceId ?? net?.privateDnsZone?.id) : undefined;

  const replicas = c.replicas.map(
    (r) =>
      new AzureReplica(`${group}-${r.name}`, {
        replicaName: r.name,
        resourceGroupName: rg,
        location: r.location ?? az.location,
        primaryVersion: c.primary.version,
        primaryFlavor: c.primary.flavor,
        administratorLogin: az.administratorLogin,
        sku: r.sku,
        storageSizeGB: r.storageSizeGB,
        firewallRules,
        delegatedSubnetResourceId: privateSubnet,
        privateDnsZoneResourceId: privateZone,
        dependsOn: net?.dnsLink ? [net.dnsLink] : undefined,
        protect: az.protect,
        actionGroupId: monitoring.actionGroup?.id,
        tags,
      }),
  );
  // each membership waits for its server component (parameters, firewall rules) before its live check
  const members = replicas.map((r, i) => new ReplicaServer(`${group}-${c.replicas[i].name}`, { ...r.spec, group, primary: primaryRef, databases: c.databases, syncAccount: true }, { dependsOn: [r] }));
  const sync = new SyncGroup(
    group,
    { group, primary, replicas: members.map((m) => m.spec), databases: c.databases, tables: c.tables, agent: c.agent as any, tolerateOutageSeconds: c.tolerateOutageSeconds },
    { dependsOn: members },
  );
  const registry: RegistryArgs | undefined = az.registry
    ? { server: az.registry.server, identityId: az.registry.identityId, username: az.registry.username, password: secretOf(az.registry.password) }
    : undefined;
  if (az.agentImage && !/@sha256:[0-9a-f]{64}$/.test(az.agentImage)) {
    pulumi.log.warn(`datasync:azure.agentImage ${az.agentImage} is not pinned by digest: a moved tag changes the agent without a diff. Use <image>@sha256:… (examples/ci/.github/workflows/datasync-agent-release.yml pins it).`);
  }
  const agentSubnet = az.agentSubnetId ?? net?.agentSubnet.id;
  const agent = new SyncAgent(
    `${group}-agent`,
    {
      resourceGroupName: rg,
      location: agentLocation,
      config: sync.agentConfig,
      image: az.agentImage,
      cpu: az.agentCpu,
      memoryInGB: az.agentMemoryInGB,
      subnetIds: agentSubnet ? [agentSubnet] : undefined,
      probes: az.agentProbes,
      registry,
      logAnalytics: { workspaceId: monitoring.logAnalytics.workspaceId, workspaceKey: monitoring.logAnalytics.workspaceKey },
      tags,
    },
    { dependsOn: replicas },
  );
  monitoring.alertOn(agent.containerGroup.name, { resourceGroupName: rg, location: agentLocation, lagSeconds: az.alerts?.lagSeconds, tags });
  return {
    group,
    topology: sync.topology,
    replicaNames: sync.replicaNames,
    agentConfig: sync.agentConfig,
    replicaHosts: Object.fromEntries(replicas.map((r, i) => [c.replicas[i].name, r.host])),
    agentImage: agent.image,
    agentContainerGroupId: agent.containerGroup.id,
    /** allow this address on the on-premises firewall in front of the primary */
    agentEgressIp: egressIp,
    serverAccess: access,
    logAnalyticsWorkspaceId: monitoring.workspace.id,
    alertRuleIds: monitoring.rules.map((r) => r.id),
    resourceGroupName: rg,
  };
}
