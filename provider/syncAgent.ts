// SyncAgent owns the agent as an Azure Container Instances group: the image (and how it is pulled), the
// config as a secure environment value, probes on /healthz and /readyz where ACI allows them, restart
// Always, CPU and memory, the subnet, logs to Log Analytics, and delete-before-replace for the properties
// ACI cannot update in place (never two agents of a group from one `pulumi up`).
import * as pulumi from "@pulumi/pulumi";
import * as containerinstance from "@pulumi/azure-native/containerinstance/index.js";
import { readFileSync } from "node:fs";
import { remoteAgentConfig } from "./spec.js";

export const AGENT_PORT = 9464;
/** Default image; override with the stack config `datasync:agentImage` or the `image` argument. */
export const DEFAULT_IMAGE = "ghcr.io/datasync/datasync-agent:0.1.0";

/**
 * The config the container runs: HTTP on all interfaces so the probes reach it; CA/cert/key files inlined
 * and passwordEnv/passwordFile refused (they exist where pulumi runs, not in the container). Exported for tests.
 */
export function containerConfig(config: string): string {
  const c = JSON.parse(remoteAgentConfig(config, { name: "Azure container" }, (p) => readFileSync(p, "utf8")));
  return JSON.stringify({ ...c, http: { ...(c.http ?? {}), listen: `0.0.0.0:${AGENT_PORT}` } });
}

export interface SyncAgentArgs {
  resourceGroupName: pulumi.Input<string>;
  location: pulumi.Input<string>;
  /** the agent config JSON: a SyncGroup's `agentConfig` (secret) */
  config: pulumi.Input<string>;
  /** Defaults to the stack config datasync:agentImage, else DEFAULT_IMAGE. */
  image?: pulumi.Input<string>;
  /** Defaults to 1. */
  cpu?: pulumi.Input<number>;
  /** Defaults to 1.5. */
  memoryInGB?: pulumi.Input<number>;
  /** run inside a VNet (reaches private replicas); else the group has no inbound address at all */
  subnetIds?: pulumi.Input<pulumi.Input<string>[]>;
  /**
   * Defaults to true outside a VNet, false inside one: "You can't enable a liveness probe or readiness
   * probe in a container group deployed to a virtual network" ("Virtual network scenarios and resources",
   * https://learn.microsoft.com/azure/container-instances/container-instances-virtual-network-concepts).
   */
  probes?: boolean;
  /** a private registry: its server and a user-assigned identity (AcrPull) or a username and a (secret) password */
  registry?: RegistryArgs;
  /** for a private registry (low level; `registry` builds it) */
  imageRegistryCredentials?: containerinstance.ContainerGroupArgs["imageRegistryCredentials"];
  /** the container's stdout/stderr to this Log Analytics workspace (ACI `diagnostics.logAnalytics`) */
  logAnalytics?: { workspaceId: pulumi.Input<string>; workspaceKey: pulumi.Input<string>; workspaceResourceId?: pulumi.Input<string> };
  tags?: pulumi.Input<Record<string, pulumi.Input<string>>>;
}

export interface RegistryArgs {
  /** login server without a scheme, e.g. myregistry.azurecr.io */
  server: pulumi.Input<string>;
  /** resource id of a user-assigned managed identity with AcrPull on the registry */
  identityId?: pulumi.Input<string>;
  username?: pulumi.Input<string>;
  /** a secret */
  password?: pulumi.Input<string>;
}

/**
 * The properties of a container group that ACI cannot change in place: "OS type, CPU, memory, restart
 * policy, ports" need the group deleted first ("Update containers in Azure Container Instances", section
 * Properties that require container delete, https://learn.microsoft.com/azure/container-instances/container-instances-update),
 * and so do the network (subnet, IP address type), the identity and the region.
 */
export const ACI_REPLACE_ON_CHANGES = ["osType", "restartPolicy", "location", "subnetIds", "ipAddress", "identity", "containers[*].resources", "containers[*].ports"];

/** The identity and registry credentials of a container group for a registry spec. Pure; exported for tests. */
export function registryAccess(r: RegistryArgs | undefined, name: string): Pick<containerinstance.ContainerGroupArgs, "identity" | "imageRegistryCredentials"> {
  if (!r) return {};
  const hasUser = r.username !== undefined || r.password !== undefined;
  if (r.identityId !== undefined && hasUser) throw new Error(`SyncAgent ${name}: registry takes identityId or username and password, not both.`);
  if (r.identityId !== undefined) {
    // the identity must be assigned to the group and named in the credential
    // ("Deploy to Azure Container Instances from Azure Container Registry using a managed identity",
    // https://learn.microsoft.com/azure/container-instances/using-azure-container-registry-mi)
    return { identity: { type: "UserAssigned", userAssignedIdentities: [r.identityId] }, imageRegistryCredentials: [{ server: r.server, identity: r.identityId }] };
  }
  if (r.username === undefined || r.password === undefined) throw new Error(`SyncAgent ${name}: registry needs identityId (a user-assigned identity with AcrPull), or username and password.`);
  return { imageRegistryCredentials: [{ server: r.server, username: r.username, password: pulumi.secret(r.password) }] };
}

export class SyncAgent extends pulumi.ComponentResource {
  readonly containerGroup: containerinstance.ContainerGroup;
  readonly image: pulumi.Output<string>;

  constructor(name: string, args: SyncAgentArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("datasync:azure:SyncAgent", name, {}, opts);
    const image = args.image ?? new pulumi.Config("datasync").get("agentImage") ?? DEFAULT_IMAGE;
    this.image = pulumi.output(image);
    const probe = (path: string, initialDelaySeconds: number) => ({
      httpGet: { path, port: AGENT_PORT, scheme: "http" },
      initialDelaySeconds,
      periodSeconds: 10,
      timeoutSeconds: 5,
      failureThreshold: 3,
    });
    const probes = args.probes ?? args.subnetIds === undefined;
    const access = registryAccess(args.registry, name);
    this.containerGroup = new containerinstance.ContainerGroup(
      name,
      {
        resourceGroupName: args.resourceGroupName,
        location: args.location,
        osType: "Linux",
        restartPolicy: "Always",
        subnetIds: args.subnetIds === undefined ? undefined : pulumi.output(args.subnetIds).apply((ids) => ids.map((id) => ({ id }))),
        ...access,
        imageRegistryCredentials: args.imageRegistryCredentials ?? access.imageRegistryCredentials,
        ipAddress: args.subnetIds ? { type: "Private", ports: [{ port: AGENT_PORT, protocol: "TCP" }] } : undefined,
        diagnostics: args.logAnalytics ? { logAnalytics: { workspaceId: args.logAnalytics.workspaceId, workspaceKey: args.logAnalytics.workspaceKey, workspaceResourceId: args.logAnalytics.workspaceResourceId, logType: "ContainerInsights" } } : undefined,
        containers: [
          {
            name: "agent",
            image,
            ports: [{ port: AGENT_PORT, protocol: "TCP" }],
            environmentVariables: [
              { name: "DATASYNC_CONFIG", secureValue: pulumi.secret(pulumi.output(args.config).apply(containerConfig)) },
              { name: "NODE_ENV", value: "production" },
            ],
            resources: { requests: { cpu: args.cpu ?? 1, memoryInGB: args.memoryInGB ?? 1.5 } },
            ...(probes ? { livenessProbe: probe("/healthz", 15), readinessProbe: probe("/readyz", 5) } : {}),
          },
        ],
        tags: args.tags,
      },
      // delete first: a new group created beside the old one would run two agents of the group at once
      { parent: this, replaceOnChanges: ACI_REPLACE_ON_CHANGES, deleteBeforeReplace: true, additionalSecretOutputs: ["diagnostics"] },
    );
    this.registerOutputs({ image: this.image });
  }
}
