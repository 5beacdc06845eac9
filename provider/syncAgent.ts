// SyncAgent owns the agent as an Azure Container Instances group: the image, the config as a secure
// environment value, probes on /healthz and /readyz, restart Always, CPU and memory.
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
  /** for a private registry */
  imageRegistryCredentials?: containerinstance.ContainerGroupArgs["imageRegistryCredentials"];
  tags?: pulumi.Input<Record<string, pulumi.Input<string>>>;
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
    this.containerGroup = new containerinstance.ContainerGroup(
      name,
      {
        resourceGroupName: args.resourceGroupName,
        location: args.location,
        osType: "Linux",
        restartPolicy: "Always",
        subnetIds: pulumi.output(args.subnetIds).apply((ids) => ids?.map((id) => ({ id }))),
        imageRegistryCredentials: args.imageRegistryCredentials,
        ipAddress: args.subnetIds ? { type: "Private", ports: [{ port: AGENT_PORT, protocol: "TCP" }] } : undefined,
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
            livenessProbe: probe("/healthz", 15),
            readinessProbe: probe("/readyz", 5),
          },
        ],
        tags: args.tags,
      },
      { parent: this },
    );
    this.registerOutputs({ image: this.image });
  }
}
