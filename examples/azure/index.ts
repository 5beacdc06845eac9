// A full Azure program: a resource group, replicas in two regions (flexible servers on the primary's
// version with the parameters the sync needs), the sync group, and the agent in Container Instances.
import * as pulumi from "@pulumi/pulumi";
import * as resources from "@pulumi/azure-native/resources/index.js";
import { AzureReplica, ReplicaServer, SyncAgent, SyncGroup } from "datasync";

const cfg = new pulumi.Config();
const primary = {
  host: cfg.require("primaryHost"),
  port: 3306,
  user: "datasync",
  password: cfg.requireSecret("primaryPassword"),
  version: "8.0",
  tls: { mode: "verify-identity" as const },
};
const databases = ["shop"];
const firewallRules = [{ name: "agent-egress", startIpAddress: cfg.require("agentEgressIp"), endIpAddress: cfg.require("agentEgressIp") }];

const rg = new resources.ResourceGroup("orders-rg", { location: "westeurope" });

const regions = ["westeurope", "northeurope"];
const servers = regions.map(
  (location) =>
    new AzureReplica(`orders-${location}`, {
      replicaName: location,
      resourceGroupName: rg.name,
      location,
      primaryVersion: primary.version,
      lowerCaseTableNames: "0",
      firewallRules,
    }),
);
// each replica's membership is its own resource: adding a region shows as one create in the preview
const members = servers.map((s, i) => new ReplicaServer(`orders-${regions[i]}`, { ...s.spec, group: "orders", primary, databases }));

const group = new SyncGroup("orders", { primary, replicas: members.map((m) => m.spec), databases, tables: { exclude: ["shop.audit_*"] } });

const agent = new SyncAgent("orders-agent", { resourceGroupName: rg.name, location: "westeurope", config: group.agentConfig, cpu: 1, memoryInGB: 1.5 });

export const topology = group.topology;
export const replicaNames = group.replicaNames;
export const replicaHosts = servers.map((s) => s.host);
export const agentImage = agent.image;
