// The records the plan keeps of registered resources (never a credential) and the per-group plan: the
// same rules as SyncGroup.check, grouped by DESIGN.md rule, with unknowns deferred.
import { describe, expect, it } from "vitest";
import { buildPlan, planPasses, recordOf, ruleOf, SYNC_GROUP_TYPE } from "../../provider/plan-model.js";
import { UNKNOWN } from "../../provider/spec.js";
import { group, meta, secret } from "../support/plan-fixtures.js";

describe("recordOf", () => {
  it("unwraps secret envelopes, keeps unknowns as UNKNOWN and never copies a password or the agent config", () => {
    const r = recordOf(SYNC_GROUP_TYPE, "g", {
      group: "g",
      primary: secret({ host: "h", user: "u", version: "8.0", password: "hunter2" }),
      replicas: secret([{ name: "a", host: { __pulumiUnknown: true }, user: "u", version: "8.0", password: { __pulumiUnknown: true } }]),
      databases: ["shop"],
      agentConfig: secret('{"password":"hunter2"}'),
      __provider: "serialized",
    });
    expect(JSON.stringify(r)).not.toMatch(/hunter2|serialized|agentConfig/);
    expect(r.inputs.primary).toEqual({ host: "h", user: "u", version: "8.0", password: "[secret]" });
    expect(r.inputs.replicas[0].host).toBe(UNKNOWN);
  });

  it("keeps only region and size of Azure servers and the agent's image", () => {
    expect(recordOf("azure-native:dbformysql:Server", "s", { location: "eastus", version: "8.0.21", administratorLoginPassword: secret("pw"), sku: { name: "B1", tier: "Burstable" } }).inputs).toEqual({ location: "eastus", version: "8.0.21", sku: { name: "B1", tier: "Burstable" } });
    const aci = recordOf("azure-native:containerinstance:ContainerGroup", "a", { location: "westeurope", containers: [{ image: "img:1", environmentVariables: [{ name: "DATASYNC_CONFIG", secureValue: secret("x") }], resources: { requests: { cpu: 1, memoryInGB: 1.5 } } }] });
    expect(aci.inputs).toEqual({ location: "westeurope", container: { image: "img:1", cpu: 1, memoryInGB: 1.5 } });
  });
});

describe("buildPlan", () => {
  it("evaluates the SyncGroup rules: six replicas fail rule 1, another version fails rule 2", () => {
    const six = buildPlan(meta, [group([1, 2, 3, 4, 5, 6].map((i) => ({ name: `r${i}`, host: "127.0.0.1", port: 3306 + i, user: "u", version: "10.11" })))]);
    expect(planPasses(six)).toBe(false);
    expect(six.groups[0].rules.find((r) => r.id === "1")).toMatchObject({ status: "fail", notes: [expect.stringMatching(/6 replicas are declared, at most 5/)] });
    const mixed = buildPlan(meta, [group([{ name: "a", host: "127.0.0.1", port: 3307, user: "u", version: "10.6" }])]);
    expect(mixed.groups[0].rules.find((r) => r.id === "2")?.status).toBe("fail");
    expect(mixed.groups[0].rules.find((r) => r.id === "1")?.status).toBe("pass");
  });

  it("defers what is known only after create, and shows credentials only by kind", () => {
    const p = buildPlan(meta, [
      group([{ name: "westeurope", host: UNKNOWN, port: 3306, user: "u", version: "8.0", password: "[secret]" }], { host: "db", user: "u", version: "8.0", passwordEnv: "PW" }),
      recordOf("azure-native:dbformysql:Server", "g-westeurope", { location: "westeurope", sku: { name: "Standard_B1ms", tier: "Burstable" } }),
    ]);
    const [g] = p.groups;
    expect(planPasses(p)).toBe(true);
    expect(g.replicas[0]).toMatchObject({ name: "westeurope", host: undefined, location: "westeurope", sku: "Burstable Standard_B1ms", credential: "secret" });
    expect(g.primary.credential).toBe("env PW");
    expect(g.rules.find((r) => r.id === "1")).toMatchObject({ status: "deferred", notes: [expect.stringContaining("westeurope are known after create")] });
    expect(p.target).toBe("azure");
    expect(g.agent.kind).toBe("not declared");
  });

  it("maps failures to DESIGN.md rules by property", () => {
    expect(ruleOf({ property: "replicas[1].version", reason: "x differs from the primary's" })).toBe("2");
    expect(ruleOf({ property: "replicas", reason: "6 replicas are declared, at most 5" })).toBe("1");
    expect(ruleOf({ property: "databases[0]", reason: '"mysql" is a system schema' })).toBe("5");
    expect(ruleOf({ property: "primary.user", reason: "required" })).toBe("inputs");
  });
});
