// The prod stack switched to private access under mocks: a subnet delegated to flexible servers, a private
// DNS zone linked to the network, servers without public access and without firewall rules.
import { beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import YAML from "yaml";
import { runUnderMocks, stackConfig, type Registered } from "../support/provider-mocks.js";

let run: Awaited<ReturnType<typeof runUnderMocks>>;
const byType = (t: string): Registered[] => run.registered.filter((r) => r.type === t);

beforeAll(async () => {
  const prod = YAML.parse(readFileSync("Pulumi.prod.yaml", "utf8")).config;
  const azure = { ...prod["datasync:azure"], network: { access: "private" } };
  delete azure.firewallRules;
  run = await runUnderMocks(
    "prod",
    stackConfig("Pulumi.prod.yaml", {
      "datasync:primary": { ...prod["datasync:primary"], password: "pw" },
      "datasync:replicas": [{ name: "reporting" }, { name: "analytics" }], // both in the agent's region
      "datasync:azure": azure,
    }),
    ["datasync:primary"],
  );
});

describe("root program, azure target with private access", () => {
  it("puts the servers in a delegated subnet with a private DNS zone linked to the network", () => {
    const subnets = byType("azure-native:network:Subnet");
    // "Private Network Access using virtual network integration" (https://learn.microsoft.com/azure/mysql/flexible-server/concepts-networking-vnet):
    // a subnet delegated to Microsoft.DBforMySQL/flexibleServers, a private DNS zone ending in .mysql.database.azure.com
    const mysql = subnets.find((s) => s.name === "orders-net-mysql")!;
    expect(mysql.inputs.delegations).toEqual([{ name: "mysql", serviceName: "Microsoft.DBforMySQL/flexibleServers" }]);
    expect(mysql.inputs.addressPrefix).toBe("10.42.1.0/24");
    const [zone] = byType("azure-native:privatedns:PrivateZone");
    expect(zone.inputs.privateZoneName).toBe("orders.private.mysql.database.azure.com");
    const [link] = byType("azure-native:privatedns:VirtualNetworkLink");
    expect(link.inputs).toMatchObject({ privateZoneName: "orders-net-dns", registrationEnabled: false, virtualNetwork: { id: "orders-net-vnet-id" } });
    for (const s of byType("azure-native:dbformysql:Server")) {
      expect(s.inputs.network).toEqual({ delegatedSubnetResourceId: "orders-net-mysql-id", privateDnsZoneResourceId: "orders-net-dns-id", publicNetworkAccess: "Disabled" });
      expect(s.options!.dependsOn.join("\n")).toContain("privatedns:VirtualNetworkLink::orders-net-dns-link");
    }
    expect(byType("azure-native:dbformysql:FirewallRule")).toEqual([]);
    expect(run.outputs.serverAccess).toBe("private");
  });
});
