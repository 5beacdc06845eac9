// A dev stack on this machine: a MariaDB primary and two replicas on local ports, the agent as a
// background process (started by `pulumi up`, stopped by `pulumi destroy`, restarted when it died).
import * as pulumi from "@pulumi/pulumi";
import { LocalAgent, ReplicaServer, SyncGroup } from "datasync";

const cfg = new pulumi.Config();
const password = cfg.getSecret("password") ?? pulumi.secret("");
const server = (port: number) => ({ host: "127.0.0.1", port, user: cfg.get("user") ?? "root", password, version: "10.11" });
const databases = ["shop"];
const primary = server(cfg.getNumber("primaryPort") ?? 3306);

const members = [
  { name: "reporting", port: cfg.getNumber("reportingPort") ?? 3307 },
  { name: "staging", port: cfg.getNumber("stagingPort") ?? 3308 },
].map((r) => new ReplicaServer(`shop-${r.name}`, { name: r.name, ...server(r.port), group: "shop-dev", primary, databases }));

const group = new SyncGroup("shop-dev", { primary, replicas: members.map((m) => m.spec), databases, agent: { http: { listen: "127.0.0.1:9464" } } });
const agent = new LocalAgent("shop-dev-agent", { config: group.agentConfig });

export const topology = group.topology;
export const agentPid = agent.pid;
export const healthUrl = agent.healthUrl;
