// @ts-check
// A full Azure program built from datasync's components: a resource group; the agent's network (a VNet,
// an ACI subnet behind a NAT gateway with one static public IP); Log Analytics with e-mail alerts;
// replicas in two regions (flexible servers on the primary's version, GIPK off, firewall open to the
// agent's NAT IP and the deployer only, metric alerts, protected); a membership per replica; the sync
// group (rules at preview, live checks at create); the agent in Container Instances, pulled from a
// private registry with a managed identity. The root program (../../Pulumi.yaml, target azure) does the
// same from stack config alone.
import * as pulumi from "@pulumi/pulumi";
import * as resources from "@pulumi/azure-native/resources/index.js";
import { AzureMonitoring, AzureNetwork, AzureReplica, ReplicaServer, SyncAgent, SyncGroup } from "datasync";

const cfg = new pulumi.Config();
const group = "orders";
const location = "westeurope";
const primary = {
  host: cfg.require("primaryHost"),
  port: 3306,
  user: "datasync",
  password: cfg.requireSecret("primaryPassword"),
  version: "8.0",
  tls: { mode: /** @type {const} */ ("verify-identity") },
};
const databases = ["shop"];
const tags = { "datasync-group": group };

const rg = new resources.ResourceGroup(`${group}-rg`, { location, tags });
const net = new AzureNetwork(`${group}-net`, { resourceGroupName: rg.name, location, access: "public", tags });
const ops = new AzureMonitoring(`${group}-ops`, { resourceGroupName: rg.name, location, group, email: cfg.get("alertEmail"), tags });

// the firewall admits the agent (NAT IP) and the machine running `pulumi up` (its live checks connect)
const firewallRules = [
  { name: "agent-egress", startIpAddress: net.egressIp, endIpAddress: net.egressIp },
  { name: "deployer", startIpAddress: cfg.require("deployerIp"), endIpAddress: cfg.require("deployerIp") },
];
const regions = ["westeurope", "northeurope"];
const servers = regions.map(
  (region) =>
    new AzureReplica(`${group}-${region}`, {
      replicaName: region,
      resourceGroupName: rg.name,
      location: region,
      primaryVersion: primary.version,
      firewallRules,
      actionGroupId: ops.actionGroup?.id,
      tags,
    }),
);
// each replica's membership is its own resource: adding a region shows as one create in the preview
const members = servers.map((s, i) => new ReplicaServer(`${group}-${regions[i]}`, { ...s.spec, group, primary, databases }, { dependsOn: [s] }));
const sync = new SyncGroup(group, { primary, replicas: members.map((m) => m.spec), databases, tables: { exclude: ["shop.audit_*"] } }, { dependsOn: members });

const identityId = cfg.get("registryIdentityId");
const agent = new SyncAgent(
  `${group}-agent`,
  {
    resourceGroupName: rg.name,
    location,
    config: sync.agentConfig,
    image: cfg.require("agentImage"), // pinned by digest: examples/ci/.github/workflows/datasync-agent-release.yml
    subnetIds: [net.agentSubnet.id],
    registry: identityId
      ? { server: cfg.require("registryServer"), identityId }
      : { server: cfg.require("registryServer"), username: cfg.require("registryUsername"), password: cfg.requireSecret("registryPassword") },
    logAnalytics: { workspaceId: ops.logAnalytics.workspaceId, workspaceKey: ops.logAnalytics.workspaceKey },
    tags,
  },
  { dependsOn: servers },
);
ops.alertOn(agent.containerGroup.name, { resourceGroupName: rg.name, location, tags });

export const agentEgressIp = net.egressIp; // allow it on the on-premises firewall in front of the primary
export const topology = sync.topology;
export const replicaNames = sync.replicaNames;
export const replicaHosts = servers.map((s) => s.host);
export const agentImage = agent.image;
