// The package's main entry (DESIGN.md "Public Pulumi API"): the Pulumi resources and their types.
export { SyncGroup, syncGroupProvider, type SyncGroupArgs, type ServerArgs, type PrimaryArgs, type ReplicaArgs } from "./syncGroup.js";
export { ReplicaServer, replicaServerProvider, type ReplicaServerArgs } from "./replicaServer.js";
export { AzureReplica, azureVersionFor, requiredParameters, type AzureReplicaArgs, type FirewallRuleSpec } from "./azureReplica.js";
export { SyncAgent, containerConfig, registryAccess, ACI_REPLACE_ON_CHANGES, DEFAULT_IMAGE, AGENT_PORT, type SyncAgentArgs, type RegistryArgs } from "./syncAgent.js";
export { AzureNetwork, NAT_IDLE_TIMEOUT_MINUTES, type AzureNetworkArgs } from "./azureNetwork.js";
export { AzureMonitoring, serverAlerts, lagQuery, errorQuery, type AzureMonitoringArgs } from "./azureMonitoring.js";
export { LocalAgent, localAgentProvider, type LocalAgentArgs } from "./localAgent.js";
export { renderMermaid, type TopologyNode } from "./topology.js";
export {
  buildAgentConfig,
  checkSyncGroup,
  diffSyncGroup,
  UNKNOWN,
  STATE_VERSION,
  stateVersionOf,
  migrateState,
  warnSyncGroup,
  type PrimarySpec,
  type ReplicaSpec,
  type ServerSpec,
  type TablesSpec,
  type AgentSettings,
  type TlsSpec,
  type SyncGroupInputs,
  type CheckFailure,
} from "./spec.js";
export { liveCheckError } from "./live.js";
