// The prod stack (Pulumi.prod.yaml, target azure) under mocks: the azure-native resources the root
// program declares, their inputs (versions equal to the primary's, parameters, probes, secure env),
// secrets, and the topology.
import { beforeAll, describe, expect, it } from "vitest";
import { runUnderMocks, stackConfig, isSecretEnvelope, plaintextLeaks, reveal, type Registered } from "../support/provider-mocks.js";
import YAML from "yaml";
import { readFileSync } from "node:fs";

let run: Awaited<ReturnType<typeof runUnderMocks>>;
const byType = (t: string): Registered[] => run.registered.filter((r) => r.type === t);
const prod = YAML.parse(readFileSync("Pulumi.prod.yaml", "utf8")).config;

beforeAll(async () => {
  const primary = { ...prod["datasync:primary"], password: "prod-primary-secret" };
  run = await runUnderMocks("prod", stackConfig("Pulumi.prod.yaml", { "datasync:primary": primary }), ["datasync:primary"]);
});

describe("root program, prod stack (azure)", () => {
  it("declares a resource group, a flexible server per replica in its region, on the primary's version", () => {
    expect(byType("azure-native:resources:ResourceGroup")).toHaveLength(1);
    const servers = byType("azure-native:dbformysql:Server");
    expect(servers.map((s) => s.name)).toEqual(["orders-westeurope", "orders-northeurope", "orders-eastus"]);
    expect(servers.map((s) => s.inputs.location)).toEqual(["westeurope", "northeurope", "eastus"]);
    for (const s of servers) {
      expect(s.inputs.version).toBe("8.0.21"); // the primary declares 8.0
      expect(s.inputs.network).toEqual({ publicNetworkAccess: "Enabled" });
      expect(isSecretEnvelope(s.inputs.administratorLoginPassword)).toBe(true);
      expect(s.inputs.administratorLogin).toBe("datasync");
    }
    expect(servers[2].inputs.sku).toEqual({ name: "Standard_D2ds_v4", tier: "GeneralPurpose" });
    expect(servers[0].inputs.sku).toEqual({ name: "Standard_B1ms", tier: "Burstable" });
    // per replica: the server admin's password and the dedicated sync account's
    expect(byType("random:index/randomPassword:RandomPassword")).toHaveLength(6);
  });

  it("sets the server parameters the sync needs on every server (rule 6)", () => {
    const conf = byType("azure-native:dbformysql:Configuration");
    for (const server of ["orders-westeurope", "orders-northeurope", "orders-eastus"]) {
      const mine = conf.filter((c) => c.inputs.serverName === server);
      expect(Object.fromEntries(mine.map((c) => [c.inputs.configurationName, c.inputs.value]))).toEqual({ sql_generate_invisible_primary_key: "OFF", lower_case_table_names: "0" });
      for (const c of mine) expect(c.inputs.source).toBe("user-override");
    }
  });

  it("opens the firewall only to the configured ranges", () => {
    const fw = byType("azure-native:dbformysql:FirewallRule");
    expect(fw).toHaveLength(6);
    expect(new Set(fw.map((f) => `${f.inputs.firewallRuleName}:${f.inputs.startIpAddress}-${f.inputs.endIpAddress}`))).toEqual(new Set(["corp-egress:203.0.113.10-203.0.113.10", "agent-egress:198.51.100.20-198.51.100.20"]));
  });

  it("runs the agent in a container group: image, secure config, probes, restart Always, resources", () => {
    const [cg] = byType("azure-native:containerinstance:ContainerGroup");
    expect(cg.inputs.restartPolicy).toBe("Always");
    expect(cg.inputs.osType).toBe("Linux");
    expect(cg.inputs.location).toBe("westeurope");
    // secureValue inside `containers` makes the whole property secret
    expect(isSecretEnvelope(cg.inputs.containers)).toBe(true);
    const [c] = reveal(cg.inputs.containers);
    expect(c.image).toBe("ghcr.io/datasync/datasync-agent:0.1.0");
    expect(c.resources.requests).toEqual({ cpu: 1, memoryInGB: 1.5 });
    expect(c.livenessProbe.httpGet).toEqual({ path: "/healthz", port: 9464, scheme: "http" });
    expect(c.readinessProbe.httpGet).toEqual({ path: "/readyz", port: 9464, scheme: "http" });
    const env = Object.fromEntries(c.environmentVariables.map((e: any) => [e.name, e]));
    expect(env.DATASYNC_CONFIG.value).toBeUndefined();
    const cfg = JSON.parse(env.DATASYNC_CONFIG.secureValue);
    expect(cfg.http.listen).toBe("0.0.0.0:9464");
    expect(cfg.source).toMatchObject({ host: "mysql.corp.example.com", password: "prod-primary-secret", tls: { mode: "verify-identity" } });
    // the agent writes with the dedicated sync account of each replica, never the server admin (least privilege)
    expect(cfg.replicas.map((r: any) => [r.name, r.host, r.user, r.password])).toEqual([
      ["westeurope", "orders-westeurope.mysql.database.azure.com", "datasync_orders", "generated-Pa55word"],
      ["northeurope", "orders-northeurope.mysql.database.azure.com", "datasync_orders", "generated-Pa55word"],
      ["eastus", "orders-eastus.mysql.database.azure.com", "datasync_orders", "generated-Pa55word"],
    ]);
    expect(cfg.databases).toEqual(["shop", "billing"]);
  });

  it("declares the memberships and the group with Azure replica specs (MySQL, the primary's version)", () => {
    const members = byType("pulumi-nodejs:dynamic/datasync:ReplicaServer");
    expect(members.map((m) => m.inputs.replicaName)).toEqual(["westeurope", "northeurope", "eastus"]);
    for (const m of members) expect(m.inputs).toMatchObject({ version: "8.0", flavor: "mysql", port: 3306, tls: { mode: "verify-identity" }, syncUser: "datasync_orders" });
    // the membership creates the sync account with the admin; its password is a secret input
    for (const m of members) expect(isSecretEnvelope(m.inputs.syncPassword)).toBe(true);
    const [g] = byType("pulumi-nodejs:dynamic/datasync:SyncGroup");
    expect(reveal(g.inputs.replicas).map((r: any) => r.version)).toEqual(["8.0", "8.0", "8.0"]);
  });

  it("keeps every password secret", () => {
    for (const r of run.registered) {
      expect(plaintextLeaks(r.inputs, "prod-primary-secret"), `${r.type} ${r.name}`).toEqual([]);
      expect(plaintextLeaks(r.inputs, "generated-Pa55word"), `${r.type} ${r.name}`).toEqual([]);
    }
    expect(run.secret.agentConfig).toBe(true);
  });

  it("outputs a Mermaid topology listing every server", () => {
    const t = String(run.outputs.topology);
    expect(t).toContain("primary<br/>mysql.corp.example.com:3306<br/>MySQL 8.0");
    for (const r of ["westeurope", "northeurope", "eastus"]) expect(t).toContain(`${r}<br/>orders-${r}.mysql.database.azure.com:3306<br/>MySQL 8.0`);
    expect(run.outputs.replicaNames).toEqual(["westeurope", "northeurope", "eastus"]);
  });
});
