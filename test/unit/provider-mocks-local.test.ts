// The dev stack (Pulumi.dev.yaml, target local) under mocks: which resources the root program declares,
// with which inputs, and what stays secret.
import { beforeAll, describe, expect, it } from "vitest";
import { runUnderMocks, stackConfig, isSecretEnvelope, plaintextLeaks, reveal, type Registered } from "../support/provider-mocks.js";

let run: Awaited<ReturnType<typeof runUnderMocks>>;
const byType = (t: string): Registered[] => run.registered.filter((r) => r.type === t);

beforeAll(async () => {
  run = await runUnderMocks("dev", stackConfig("Pulumi.dev.yaml", { "datasync:primary": { host: "127.0.0.1", port: 3306, user: "datasync", password: "dev-secret", version: "10.11" } }), ["datasync:primary"]);
});

describe("root program, dev stack (local)", () => {
  it("declares a SyncGroup, a ReplicaServer per replica and a LocalAgent", () => {
    expect(byType("pulumi-nodejs:dynamic/datasync:SyncGroup").map((r) => r.name)).toEqual(["orders-dev"]);
    expect(byType("pulumi-nodejs:dynamic/datasync:ReplicaServer").map((r) => r.name)).toEqual(["orders-dev-reporting", "orders-dev-staging-copy"]);
    expect(byType("pulumi-nodejs:dynamic/datasync:LocalAgent")).toHaveLength(1);
    expect(run.registered.some((r) => r.type.startsWith("azure-native:"))).toBe(false);
  });

  it("gives each replica the documented defaults and the primary's version", () => {
    const [rep, stg] = byType("pulumi-nodejs:dynamic/datasync:ReplicaServer");
    expect(rep.inputs).toMatchObject({ group: "orders-dev", replicaName: "reporting", host: "127.0.0.1", port: 3307, user: "datasync", version: "10.11", databases: ["shop"] });
    expect(stg.inputs.port).toBe(3308);
    expect(isSecretEnvelope(rep.inputs.password)).toBe(true);
    expect(typeof rep.inputs.__provider).toBe("string");
  });

  it("keeps passwords secret: no plaintext password in any resource's inputs or in the topology", () => {
    // (the mock monitor lifts a nested secret to its top-level property; the engine keeps it nested)
    for (const r of run.registered) expect(plaintextLeaks(r.inputs, "dev-secret"), `${r.type} ${r.name}`).toEqual([]);
    const [g] = byType("pulumi-nodejs:dynamic/datasync:SyncGroup");
    expect(reveal(g.inputs.primary)).toMatchObject({ host: "127.0.0.1", password: "dev-secret" });
    expect(isSecretEnvelope(g.inputs.agentConfig)).toBe(true);
    expect(g.inputs.topology).not.toContain("dev-secret");
    expect(isSecretEnvelope(g.inputs.topology)).toBe(false);
    expect(run.secret.agentConfig).toBe(true);
    expect(run.secret.topology).toBe(false);
    expect(run.secret.replicaNames).toBe(false);
  });

  it("passes the SyncGroup's agent config to the LocalAgent as a secret", () => {
    const [a] = byType("pulumi-nodejs:dynamic/datasync:LocalAgent");
    expect(isSecretEnvelope(a.inputs.config)).toBe(true);
    const cfg = JSON.parse(a.inputs.config.value);
    expect(cfg).toMatchObject({ group: "orders-dev", databases: ["shop"], tables: { exclude: ["shop.audit_*"] }, http: { listen: "127.0.0.1:9464" } });
    expect(cfg.replicas.map((r: any) => `${r.name}@${r.port}`)).toEqual(["reporting@3307", "staging-copy@3308"]);
    expect(a.inputs.entry).toMatch(/bin\/datasync\.js$/);
    expect(a.inputs.args).toEqual(["agent"]);
  });

  it("outputs a Mermaid topology listing every server", () => {
    const t = String(run.outputs.topology);
    expect(t.startsWith("flowchart LR")).toBe(true);
    for (const s of ["primary<br/>127.0.0.1:3306", "reporting<br/>127.0.0.1:3307", "staging-copy<br/>127.0.0.1:3308"]) expect(t).toContain(s);
    expect(run.outputs.replicaNames).toEqual(["reporting", "staging-copy"]);
  });
});
