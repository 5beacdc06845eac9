// Pure rules and helpers of the Azure target and the provider state: rule 6 (lower_case_table_names 0 → 1,
// InnoDB only on Azure), rule 3 (binlog retention), the parameters set per version, the state version,
// the membership diff with unknowns, the stack config's Azure checks, registry access. Cloud facts name
// the Azure document they come from.
import { describe, expect, it } from "vitest";
import {
  binlogRetentionSeconds,
  checkBinlogRetention,
  checkLowerCaseTableNames,
  checkStorageEngines,
  hasInvisiblePrimaryKeySetting,
  isAzureMySqlHost,
  parseVersion,
} from "../../agent/rules.js";
import { diffSyncGroup, migrateState, STATE_VERSION, stateVersionOf, UNKNOWN, warnSyncGroup, derive } from "../../provider/spec.js";
import { diffReplicaServer } from "../../provider/replicaServer.js";
import { requiredParameters } from "../../provider/azureReplica.js";
import { registryAccess, ACI_REPLACE_ON_CHANGES } from "../../provider/syncAgent.js";
import { lagQuery, errorQuery } from "../../provider/azureMonitoring.js";
import { parseStackConfig, ProgramConfigError } from "../../provider/program.js";

const R = "replica westeurope (orders-westeurope.mysql.database.azure.com:3306)";

describe("rule 6: lower_case_table_names (read, never set)", () => {
  it("passes equal values", () => {
    expect(checkLowerCaseTableNames(R, "1", "1", ["Shop", "Shop.Orders"])).toEqual([]);
    expect(checkLowerCaseTableNames(R, "0", "0", ["Shop.Orders"])).toEqual([]);
  });

  it("lets a source with 0 sync to Azure's fixed 1 when every name in scope is lower case", () => {
    // Azure: "lower_case_table_names value can only be set to 1" ("Limitations in Azure Database for MySQL -
    // Flexible Server", https://learn.microsoft.com/azure/mysql/flexible-server/concepts-limitations)
    expect(checkLowerCaseTableNames(R, "0", "1", ["shop", "shop.orders", "shop.order_items"])).toEqual([]);
  });

  it("refuses names with upper case, naming them and the fix", () => {
    const [f] = checkLowerCaseTableNames(R, "0", "1", ["shop", "shop.Orders", "shop.items", "Billing", "Billing.invoices"]);
    expect(f).toMatchObject({ rule: 6, code: "lower-case-table-names", where: R });
    expect(f.message).toContain("not lower case: shop.Orders, Billing, Billing.invoices");
    expect(f.message).toMatch(/RENAME TABLE.*tables\.exclude/);
  });

  it("refuses names that collide ignoring case", () => {
    const f = checkLowerCaseTableNames(R, "0", "1", ["shop", "shop.orders", "shop.ORDERS"]);
    expect(f.map((x) => x.code)).toEqual(["lower-case-table-names", "lower-case-table-names-clash"]);
    expect(f[1].message).toContain("shop.orders / shop.ORDERS");
  });

  it("refuses other combinations (1 → 0, 2 → 1) with the values", () => {
    expect(checkLowerCaseTableNames(R, "1", "0", ["shop"])[0].message).toMatch(/lower_case_table_names is 0, the source has 1/);
    expect(checkLowerCaseTableNames(R, "2", "1", ["shop"])).toHaveLength(1);
  });

  it("knows Azure hosts", () => {
    expect(isAzureMySqlHost("orders-eastus.mysql.database.azure.com")).toBe(true);
    expect(isAzureMySqlHost("db.example.com")).toBe(false);
  });
});

describe("rule 6: only InnoDB tables in scope on Azure targets", () => {
  it("names the tables that are not InnoDB and the fix", () => {
    // Azure supports InnoDB (and MEMORY); MyISAM, ARCHIVE, BLACKHOLE, FEDERATED are not supported
    // ("Limitations in Azure Database for MySQL - Flexible Server", section Storage engines)
    expect(checkStorageEngines(R, [{ name: "shop.orders", engine: "InnoDB" }])).toEqual([]);
    const [f] = checkStorageEngines(R, [
      { name: "shop.orders", engine: "InnoDB" },
      { name: "shop.legacy", engine: "MyISAM" },
      { name: "shop.log", engine: "ARCHIVE" },
    ]);
    expect(f).toMatchObject({ rule: 6, code: "storage-engine" });
    expect(f.message).toContain("shop.legacy (MyISAM), shop.log (ARCHIVE)");
    expect(f.message).toContain("ENGINE=InnoDB");
  });
});

describe("rule 3: binlog retention versus the outage a replica may have", () => {
  it("reads the retention from binlog_expire_logs_seconds, else expire_logs_days; 0 is never purged", () => {
    expect(binlogRetentionSeconds({ binlog_expire_logs_seconds: "2592000" })).toBe(2592000);
    expect(binlogRetentionSeconds({ binlog_expire_logs_seconds: "0", expire_logs_days: "3" })).toBe(3 * 86400);
    expect(binlogRetentionSeconds({ expire_logs_days: "0" })).toBe(Infinity);
    expect(binlogRetentionSeconds({ binlog_expire_logs_seconds: "0", expire_logs_days: "0" })).toBe(Infinity);
    expect(binlogRetentionSeconds({})).toBeUndefined();
  });

  it("fails a retention shorter than the tolerated outage, naming both and the fix", () => {
    expect(checkBinlogRetention("source", 604800, 86400)).toEqual([]);
    expect(checkBinlogRetention("source", Infinity, 86400)).toEqual([]);
    const [f] = checkBinlogRetention("source (10.0.0.5:3306)", 3600, 86400);
    expect(f).toMatchObject({ rule: 3, code: "binlog-retention" });
    expect(f.message).toMatch(/kept 1 h .* less than the 24 h .*binlog_expire_logs_seconds to at least 86400/);
  });

  it("warns at preview with the declared values (not a failure: the live value decides)", () => {
    expect(warnSyncGroup({ primary: { binlogExpireSeconds: 3600 } })[0]).toMatch(/primary\.binlogExpireSeconds: binlogs are kept 1 h/);
    expect(warnSyncGroup({ primary: { binlogExpireSeconds: 3600 }, tolerateOutageSeconds: 1800 })).toEqual([]);
    expect(warnSyncGroup({ primary: { binlogExpireSeconds: 0 } })).toEqual([]);
    expect(warnSyncGroup({ primary: {} })).toEqual([]);
  });
});

describe("server parameters by version", () => {
  it("sets sql_generate_invisible_primary_key OFF on 8.0 and 8.4, never on 5.7", () => {
    // "For MySQL version 8.0 and above, Generated Invisible Primary Keys (GIPK) is enabled by default"
    // ("Limitations in Azure Database for MySQL - Flexible Server"); the variable exists from MySQL 8.0.30
    expect(requiredParameters("8.0")).toEqual({ sql_generate_invisible_primary_key: "OFF" });
    expect(requiredParameters("8.4")).toEqual({ sql_generate_invisible_primary_key: "OFF" });
    expect(requiredParameters("5.7")).toEqual({});
    expect(hasInvisiblePrimaryKeySetting(parseVersion("8.0.29")!)).toBe(false);
    expect(hasInvisiblePrimaryKeySetting(parseVersion("8.0.30")!)).toBe(true);
    expect(hasInvisiblePrimaryKeySetting(parseVersion("10.11.6-MariaDB")!)).toBe(false);
  });
});

describe("state version (read and honoured)", () => {
  it("is current, migrated when older or absent, refused when newer", () => {
    expect(stateVersionOf({ stateVersion: STATE_VERSION }, "x")).toBe("current");
    expect(stateVersionOf({ stateVersion: 1 }, "x")).toBe("migrate");
    expect(stateVersionOf({}, "x")).toBe("migrate");
    expect(() => stateVersionOf({ stateVersion: STATE_VERSION + 1 }, 'sync group "orders"')).toThrow(/newer datasync \(state version 3; this one understands up to 2\)\. Upgrade the datasync package/);
    expect(migrateState({ group: "orders", stateVersion: 1 })).toEqual({ group: "orders", stateVersion: STATE_VERSION });
  });

  it("diff turns older state into an update (so the new provider code is stored) and refuses newer state", () => {
    const g = { group: "orders", primary: { host: "10.0.0.5", user: "u", version: "8.0" }, replicas: [{ name: "r1", host: "10.0.0.6", user: "u", version: "8.0" }], databases: ["shop"] };
    const olds = { ...g, agentConfig: derive(g).agentConfig };
    expect(diffSyncGroup({ ...olds, stateVersion: 1 }, g)).toEqual({ changes: true, replaces: [], updates: ["stateVersion"] });
    expect(diffSyncGroup({ ...olds, stateVersion: STATE_VERSION }, g).changes).toBe(false);
    expect(() => diffSyncGroup({ ...olds, stateVersion: 99 }, g)).toThrow(/newer datasync/);
  });
});

describe("membership diff", () => {
  const olds = { group: "orders", replicaName: "westeurope", host: "orders-westeurope.mysql.database.azure.com", port: 3306, user: "datasync", version: "8.0", stateVersion: STATE_VERSION };
  it("shows a host unknown at preview as an update, not a replace", () => {
    const d = diffReplicaServer(olds, { ...olds, host: UNKNOWN });
    expect(d).toMatchObject({ changes: true, replaces: [], deleteBeforeReplace: false });
    expect(d.diffs).toEqual(["host"]);
  });
  it("replaces on a known new endpoint or name", () => {
    expect(diffReplicaServer(olds, { ...olds, host: "other.mysql.database.azure.com" }).replaces).toEqual(["host"]);
    expect(diffReplicaServer(olds, { ...olds, replicaName: "weu" }).replaces).toEqual(["replicaName"]);
    expect(diffReplicaServer(olds, { ...olds }).changes).toBe(false);
  });
});

describe("stack config, azure target", () => {
  const base = () => ({
    target: "azure",
    primary: { host: "mysql.corp.example.com", user: "datasync", version: "8.0" },
    replicas: [{ name: "westeurope" }, { name: "eastus", location: "eastus" }],
    databases: ["shop"],
    azure: { location: "westeurope", agentImage: "r.azurecr.io/datasync-agent@sha256:" + "0".repeat(64) } as Record<string, unknown>,
  });
  const problems = (c: any) => {
    try {
      parseStackConfig(c);
      return [];
    } catch (e) {
      return (e as ProgramConfigError).problems;
    }
  };
  it("refuses lowerCaseTableNames: Azure fixes it at creation", () => {
    const c = base();
    c.azure.lowerCaseTableNames = "0";
    expect(problems(c)).toEqual([expect.stringMatching(/^datasync:azure\.lowerCaseTableNames: Azure fixes lower_case_table_names .*\(pulumi config rm --path datasync:azure\.lowerCaseTableNames\)/)]);
  });
  it("refuses private access for a replica outside the agent's region", () => {
    // the delegated subnet must be in the server's region ("Private Network Access using virtual network
    // integration", https://learn.microsoft.com/azure/mysql/flexible-server/concepts-networking-vnet)
    const c = base();
    c.azure.network = { access: "private" };
    expect(problems(c)).toEqual([expect.stringMatching(/^datasync:replicas\[1\]\.location: eastus differs from the agent's region westeurope/)]);
  });
  it("needs the agent image (nothing publishes a default one)", () => {
    const c = base();
    delete c.azure.agentImage;
    expect(problems(c)).toEqual([expect.stringMatching(/^datasync:azure\.agentImage: required for target azure.*datasync-agent-release\.yml/)]);
  });
  it("needs registry credentials or an identity, not both", () => {
    const c = base();
    c.azure.registry = { server: "x.azurecr.io" };
    expect(problems(c)[0]).toMatch(/datasync:azure\.registry: give identityId/);
    c.azure.registry = { server: "x.azurecr.io", identityId: "/id", username: "u", password: "p" };
    expect(problems(c)[0]).toMatch(/not both/);
    c.azure.registry = { server: "x.azurecr.io", username: "u", password: { secure: "v1:abc" } };
    expect(problems(c)).toEqual([]);
  });
});

describe("agent container group helpers", () => {
  it("pulls with a user-assigned identity, or username and a secret password", () => {
    expect(registryAccess({ server: "r.azurecr.io", identityId: "/id" }, "a")).toEqual({
      identity: { type: "UserAssigned", userAssignedIdentities: ["/id"] },
      imageRegistryCredentials: [{ server: "r.azurecr.io", identity: "/id" }],
    });
    const creds: any = registryAccess({ server: "r.azurecr.io", username: "u", password: "p" }, "a").imageRegistryCredentials;
    expect(creds[0]).toMatchObject({ server: "r.azurecr.io", username: "u" });
    expect(() => registryAccess({ server: "r", identityId: "/id", username: "u" }, "a")).toThrow(/not both/);
    expect(() => registryAccess({ server: "r" }, "a")).toThrow(/needs identityId/);
  });
  it("lists the properties ACI cannot update in place", () => {
    // "Update containers in Azure Container Instances", section Properties that require container delete
    expect(ACI_REPLACE_ON_CHANGES).toEqual(expect.arrayContaining(["osType", "restartPolicy", "containers[*].resources", "containers[*].ports"]));
  });
  it("queries the ACI log table for status lines and errors", () => {
    const q = lagQuery("orders-agent", 120);
    expect(q).toMatch(/^let lines = ContainerInstanceLog_CL\n\| where ContainerGroup_s == "orders-agent"/);
    expect(q).toContain("todouble(r.lagSeconds) > 120");
    expect(q).toContain('"no status line"');
    expect(errorQuery("orders-agent")).toContain("toint(j.level) >= 50");
  });
});
