// The prod stack (Pulumi.prod.yaml, target azure) under mocks: every resource the root program declares and
// the inputs Azure must accept. Each cloud fact asserted names the Azure document it comes from.
import { beforeAll, describe, expect, it } from "vitest";
import { runUnderMocks, stackConfig, isSecretEnvelope, plaintextLeaks, reveal, MOCK_EGRESS_IP, MOCK_WORKSPACE_CUSTOMER_ID, MOCK_WORKSPACE_KEY, type Registered } from "../support/provider-mocks.js";
import YAML from "yaml";
import { readFileSync } from "node:fs";

let run: Awaited<ReturnType<typeof runUnderMocks>>;
const byType = (t: string): Registered[] => run.registered.filter((r) => r.type === t);
const one = (t: string, name?: string): Registered => {
  const all = byType(t).filter((r) => name === undefined || r.name === name);
  expect(all, `${t} ${name ?? ""}`).toHaveLength(1);
  return all[0];
};
const prod = YAML.parse(readFileSync("Pulumi.prod.yaml", "utf8")).config;
const SERVERS = ["orders-westeurope", "orders-northeurope", "orders-eastus"];

beforeAll(async () => {
  const primary = { ...prod["datasync:primary"], password: "prod-primary-secret" };
  run = await runUnderMocks("prod", stackConfig("Pulumi.prod.yaml", { "datasync:primary": primary }), ["datasync:primary"]);
});

describe("root program, prod stack (azure)", () => {
  it("declares exactly this resource list", () => {
    const counts: Record<string, number> = {};
    for (const r of run.registered) counts[r.type] = (counts[r.type] ?? 0) + 1;
    expect(counts).toEqual({
      "azure-native:resources:ResourceGroup": 1,
      "datasync:azure:AzureNetwork": 1,
      "azure-native:network:VirtualNetwork": 1,
      "azure-native:network:PublicIPAddress": 1,
      "azure-native:network:NatGateway": 1,
      "azure-native:network:Subnet": 1,
      "datasync:azure:AzureMonitoring": 1,
      "azure-native:operationalinsights:Workspace": 1,
      "azure-native:monitor:ActionGroup": 1,
      "azure-native:monitor:ScheduledQueryRule": 2,
      "datasync:azure:AzureReplica": 3,
      "random:index/randomPassword:RandomPassword": 6, // per replica: the server admin's and the sync account's
      "azure-native:dbformysql:Server": 3,
      "azure-native:dbformysql:Configuration": 3,
      "azure-native:dbformysql:FirewallRule": 6,
      "azure-native:monitor:MetricAlert": 5,
      "pulumi-nodejs:dynamic/datasync:ReplicaServer": 3,
      "pulumi-nodejs:dynamic/datasync:SyncGroup": 1,
      "datasync:azure:SyncAgent": 1,
      "azure-native:containerinstance:ContainerGroup": 1,
    });
  });

  it("declares a protected flexible server per replica in its region, on the primary's version", () => {
    const servers = byType("azure-native:dbformysql:Server");
    expect(servers.map((s) => s.name)).toEqual(SERVERS);
    expect(servers.map((s) => s.inputs.location)).toEqual(["westeurope", "northeurope", "eastus"]);
    for (const s of servers) {
      // "8.0.21" is the API's name of the 8.0 line (azure-native dbformysql.ServerVersion: "5.7", "8.0.21", "8.4")
      expect(s.inputs.version).toBe("8.0.21");
      expect(s.inputs.network).toEqual({ publicNetworkAccess: "Enabled" });
      expect(isSecretEnvelope(s.inputs.administratorLoginPassword)).toBe(true);
      expect(s.inputs.administratorLogin).toBe("datasync");
      // a renamed group or stack must not silently replace (delete) a server with its data
      expect(s.options?.protect).toBe(true);
    }
    expect(servers[2].inputs.sku).toEqual({ name: "Standard_D2ds_v4", tier: "GeneralPurpose" });
    expect(servers[0].inputs.sku).toEqual({ name: "Standard_B1ms", tier: "Burstable" });
    // per replica: the server admin's password and the dedicated sync account's
    expect(byType("random:index/randomPassword:RandomPassword")).toHaveLength(6);

  });

  it("sets only the parameters Azure lets a user set: GIPK OFF, never lower_case_table_names", () => {
    const conf = byType("azure-native:dbformysql:Configuration");
    for (const server of SERVERS) {
      const mine = conf.filter((c) => c.inputs.serverName === server);
      // "Limitations in Azure Database for MySQL - Flexible Server" (https://learn.microsoft.com/azure/mysql/flexible-server/concepts-limitations):
      // GIPK is ON by default on 8.0+ and can be set OFF; lower_case_table_names "can only be set to 1" and is
      // fixed once the server is initialized, so it is never a Configuration resource
      expect(Object.fromEntries(mine.map((c) => [c.inputs.configurationName, c.inputs.value]))).toEqual({ sql_generate_invisible_primary_key: "OFF" });
      for (const c of mine) expect(c.inputs.source).toBe("user-override");
    }
    expect(conf.some((c) => c.inputs.configurationName === "lower_case_table_names")).toBe(false);
  });

  it("gives the agent a static egress IP: a NAT gateway on the ACI-delegated subnet, exported for the on-prem firewall", () => {
    const pip = one("azure-native:network:PublicIPAddress");
    // a NAT gateway takes Standard, static public IPs ("Azure NAT Gateway resource", https://learn.microsoft.com/azure/nat-gateway/nat-gateway-resource)
    expect(pip.inputs).toMatchObject({ sku: { name: "Standard" }, publicIPAllocationMethod: "Static", location: "westeurope" });
    const nat = one("azure-native:network:NatGateway");
    expect(nat.inputs.sku).toEqual({ name: "Standard" });
    expect(nat.inputs.publicIpAddresses).toEqual([{ id: "orders-net-egress-ip-id" }]);
    // TCP idle timeout: 4 minutes by default, configurable up to 120 (same page); a quiet binlog stream must survive it
    expect(nat.inputs.idleTimeoutInMinutes).toBe(120);
    const subnet = one("azure-native:network:Subnet");
    // the ACI subnet is delegated to Microsoft.ContainerInstance/containerGroups and holds only container groups
    // ("Virtual network scenarios and resources", https://learn.microsoft.com/azure/container-instances/container-instances-virtual-network-concepts);
    // egress through the subnet's NAT gateway ("Configure Container Group Egress with NAT Gateway",
    // https://learn.microsoft.com/azure/container-instances/container-instances-nat-gateway)
    expect(subnet.inputs.delegations).toEqual([{ name: "aci", serviceName: "Microsoft.ContainerInstance/containerGroups" }]);
    expect(subnet.inputs.natGateway).toEqual({ id: "orders-net-nat-id" });
    expect(subnet.inputs.virtualNetworkName).toBe("orders-net-vnet");
    expect(run.outputs.agentEgressIp).toBe(MOCK_EGRESS_IP);
    expect(run.outputs.serverAccess).toBe("public");
  });

  it("opens each server's firewall to the agent's NAT address and the deployer's range only", () => {
    const fw = byType("azure-native:dbformysql:FirewallRule");
    for (const server of SERVERS) {
      const mine = fw.filter((f) => f.inputs.serverName === server);
      // public access with firewall rules ("Public Network Access for Azure Database for MySQL - Flexible Server",
      // https://learn.microsoft.com/azure/mysql/flexible-server/concepts-networking-public); no 0.0.0.0 "allow Azure services" rule
      expect(new Set(mine.map((f) => `${f.inputs.firewallRuleName}:${f.inputs.startIpAddress}-${f.inputs.endIpAddress}`))).toEqual(
        new Set([`corp-egress:203.0.113.10-203.0.113.10`, `agent-egress:${MOCK_EGRESS_IP}-${MOCK_EGRESS_IP}`]),
      );
    }
    expect(fw.some((f) => f.inputs.startIpAddress === "0.0.0.0")).toBe(false);
  });

  it("checks a membership live only after its server's firewall rules and parameters exist", () => {
    for (const name of ["westeurope", "northeurope", "eastus"]) {
      const m = one("pulumi-nodejs:dynamic/datasync:ReplicaServer", `orders-${name}`);
      const deps = m.options!.dependsOn.join("\n");
      expect(deps).toContain(`dbformysql:FirewallRule::orders-${name}-fw-agent-egress`);
      expect(deps).toContain(`dbformysql:FirewallRule::orders-${name}-fw-corp-egress`);
      expect(deps).toContain(`dbformysql:Configuration::orders-${name}-sql-generate-invisible-primary-key`);
    }
  });

  it("runs the agent in the subnet: private IP, pulled by a managed identity, logs to Log Analytics, no probes (VNet)", () => {
    const cg = one("azure-native:containerinstance:ContainerGroup");
    expect(cg.inputs.restartPolicy).toBe("Always");
    expect(cg.inputs.osType).toBe("Linux");
    expect(cg.inputs.location).toBe("westeurope");
    expect(cg.inputs.subnetIds).toEqual([{ id: "orders-net-agent-id" }]);
    expect(cg.inputs.ipAddress).toMatchObject({ type: "Private", ports: [{ port: 9464, protocol: "TCP" }] });
    // a user-assigned identity with AcrPull, assigned to the group and named in imageRegistryCredentials
    // ("Deploy to Azure Container Instances from Azure Container Registry using a managed identity",
    // https://learn.microsoft.com/azure/container-instances/using-azure-container-registry-mi)
    const id = prod["datasync:azure"].registry.identityId;
    expect(cg.inputs.identity).toEqual({ type: "UserAssigned", userAssignedIdentities: [id] });
    expect(cg.inputs.imageRegistryCredentials).toEqual([{ server: "datasyncprod.azurecr.io", identity: id }]);
    // diagnostics.logAnalytics takes the workspace's customer ID (a GUID) and a shared key
    // ("Container group and instance logging with Azure Monitor logs", https://learn.microsoft.com/azure/container-instances/container-instances-log-analytics)
    const la = reveal(cg.inputs.diagnostics).logAnalytics;
    expect(la).toMatchObject({ workspaceId: MOCK_WORKSPACE_CUSTOMER_ID, workspaceKey: MOCK_WORKSPACE_KEY, logType: "ContainerInsights" });
    expect(plaintextLeaks(cg.inputs, MOCK_WORKSPACE_KEY)).toEqual([]);
    const [c] = reveal(cg.inputs.containers);
    expect(c.image).toMatch(/^datasyncprod\.azurecr\.io\/datasync-agent@sha256:[0-9a-f]{64}$/); // pinned by digest
    expect(c.resources.requests).toEqual({ cpu: 1, memoryInGB: 1.5 });
    // "You can't enable a liveness probe or readiness probe in a container group deployed to a virtual network"
    // ("Virtual network scenarios and resources", https://learn.microsoft.com/azure/container-instances/container-instances-virtual-network-concepts)
    expect(c.livenessProbe).toBeUndefined();
    expect(c.readinessProbe).toBeUndefined();
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

  it("replaces the container group delete-first on the properties ACI cannot update", () => {
    const cg = one("azure-native:containerinstance:ContainerGroup");
    // "Properties that require container delete: OS type, CPU, memory, restart policy, ports"
    // ("Update containers in Azure Container Instances", https://learn.microsoft.com/azure/container-instances/container-instances-update)
    expect(cg.options!.replaceOnChanges).toEqual(expect.arrayContaining(["osType", "restartPolicy", "containers[*].resources", "containers[*].ports", "subnetIds", "ipAddress"]));
    // the old group is deleted before the new one starts: never two agents from one `pulumi up`
    expect(cg.options!.deleteBeforeReplace).toBe(true);
  });

  it("sends alerts: an e-mail action group, log alerts on lag/readiness and errors, server metric alerts", () => {
    const ws = one("azure-native:operationalinsights:Workspace");
    expect(ws.inputs).toMatchObject({ sku: { name: "PerGB2018" }, retentionInDays: 30 });
    const ag = one("azure-native:monitor:ActionGroup");
    // groupShortName: at most 12 characters ("Action groups", https://learn.microsoft.com/azure/azure-monitor/alerts/action-groups)
    expect(ag.inputs.groupShortName.length).toBeLessThanOrEqual(12);
    expect(ag.inputs.emailReceivers).toEqual([{ name: "datasync-oncall", emailAddress: "dba-oncall@example.com", useCommonAlertSchema: true }]);
    const rules = byType("azure-native:monitor:ScheduledQueryRule");
    for (const r of rules) {
      expect(r.inputs).toMatchObject({ kind: "LogAlert", scopes: ["orders-ops-logs-id"], actions: { actionGroups: ["orders-ops-ag-id"] }, evaluationFrequency: "PT5M", windowSize: "PT15M" });
      expect(r.inputs.criteria.allOf[0].query).toContain('ContainerInstanceLog_CL\n| where ContainerGroup_s == "orders-agent"');
    }
    expect(rules.find((r) => r.name === "orders-ops-lag")!.inputs.criteria.allOf[0].query).toContain("todouble(r.lagSeconds) > 300");
    // metric names of "Supported metrics for Microsoft.DBforMySQL/flexibleServers"
    // (https://learn.microsoft.com/azure/azure-monitor/reference/supported-metrics/microsoft-dbformysql-flexibleservers-metrics)
    const alerts = byType("azure-native:monitor:MetricAlert");
    const metric = (a: Registered) => `${a.inputs.scopes[0]}:${a.inputs.criteria.allOf[0].metricName}`;
    expect(alerts.map(metric).sort()).toEqual(
      ["orders-eastus-id:storage_percent", "orders-northeurope-id:cpu_credits_remaining", "orders-northeurope-id:storage_percent", "orders-westeurope-id:cpu_credits_remaining", "orders-westeurope-id:storage_percent"],
    );
    for (const a of alerts) {
      expect(a.inputs.location).toBe("global");
      expect(a.inputs.criteria.odataType).toBe("Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria");
      expect(a.inputs.actions).toEqual([{ actionGroupId: "orders-ops-ag-id" }]);
    }
  });

  it("declares the memberships and the group with Azure replica specs (MySQL, the primary's version)", () => {
    const members = byType("pulumi-nodejs:dynamic/datasync:ReplicaServer");
    expect(members.map((m) => m.inputs.replicaName)).toEqual(["westeurope", "northeurope", "eastus"]);
    for (const m of members) expect(m.inputs).toMatchObject({ version: "8.0", flavor: "mysql", port: 3306, tls: { mode: "verify-identity" }, syncUser: "datasync_orders" });
    // the membership creates the sync account with the admin; its password is a secret input
    for (const m of members) expect(isSecretEnvelope(m.inputs.syncPassword)).toBe(true);
    const [g] = byType("pulumi-nodejs:dynamic/datasync:SyncGroup");
    expect(reveal(g.inputs.replicas).map((r: any) => r.version)).toEqual(["8.0", "8.0", "8.0"]);
    expect(g.inputs.tolerateOutageSeconds).toBe(172800);
    expect(reveal(g.inputs.primary).binlogExpireSeconds).toBe(604800);
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
