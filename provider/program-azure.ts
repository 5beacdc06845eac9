// Program-azure owns the `azure` target of the root program: a resource group, an AzureReplica per
// replica (each in its own region), their memberships, the SyncGroup and the agent in Container Instances.
// Loaded lazily so a local stack never loads azure-native.
import * as pulumi from "@pulumi/pulumi";
import * as resources from "@pulumi/azure-native/resources/index.js";
import { AzureReplica } from "./azureReplica.js";
import { ReplicaServer } from "./replicaServer.js";
import { SyncAgent } from "./syncAgent.js";
import { SyncGroup, type PrimaryArgs } from "./syncGroup.js";
import type { StackConfig } from "./program.js";

export function azureStack(
  c: StackConfig,
  group: string,
  primary: PrimaryArgs,
  primaryRef: { version: string; flavor?: "mysql" | "mariadb"; host: string; port: number },
): Record<string, unknown> {
  const az = c.azure!;
  const rg = az.resourceGroupName
    ? pulumi.output(az.resourceGroupName)
    : new resources.ResourceGroup(`${group}-rg`, { location: az.location, tags: { "datasync-group": group } }).name;
  const tags = { "datasync-group": group };
  const replicas = c.replicas.map(
    (r) =>
      new AzureReplica(`${group}-${r.name}`, {
        replicaName: r.name,
        resourceGroupName: rg,
        location: r.location ?? az.location,
        primaryVersion: c.primary.version,
        primaryFlavor: c.primary.flavor,
        lowerCaseTableNames: az.lowerCaseTableNames,
        administratorLogin: az.administratorLogin,
        sku: r.sku,
        storageSizeGB: r.storageSizeGB,
        firewallRules: az.firewallRules,
        delegatedSubnetResourceId: az.delegatedSubnetResourceId,
        privateDnsZoneResourceId: az.privateDnsZoneResourceId,
        tags,
      }),
  );
  const members = replicas.map((r, i) => new ReplicaServer(`${group}-${c.replicas[i].name}`, { ...r.spec, group, primary: primaryRef, databases: c.databases, syncAccount: true }));
  const sync = new SyncGroup(group, { group, primary, replicas: members.map((m) => m.spec), databases: c.databases, tables: c.tables, agent: c.agent as any }, { dependsOn: members });
  const agent = new SyncAgent(`${group}-agent`, {
    resourceGroupName: rg,
    location: az.agentLocation ?? az.location,
    config: sync.agentConfig,
    image: az.agentImage,
    cpu: az.agentCpu,
    memoryInGB: az.agentMemoryInGB,
    subnetIds: az.agentSubnetId ? [az.agentSubnetId] : undefined,
    tags,
  });
  return {
    group,
    topology: sync.topology,
    replicaNames: sync.replicaNames,
    agentConfig: sync.agentConfig,
    replicaHosts: Object.fromEntries(replicas.map((r, i) => [c.replicas[i].name, r.host])),
    agentImage: agent.image,
    agentContainerGroupId: agent.containerGroup.id,
    resourceGroupName: rg,
  };
}
