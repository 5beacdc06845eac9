// Pure provider logic: preview rules (all failures at once, property paths, deferred unknowns), the agent
// config, diff (replace versus in place), topology, stack-config errors, Azure version mapping.
import { describe, expect, it } from "vitest";
import { validateConfig } from "../../agent/config.js";
import { buildAgentConfig, checkSyncGroup, derive, diffSyncGroup, STATE_VERSION, UNKNOWN } from "../../provider/spec.js";
import { renderMermaid } from "../../provider/topology.js";
import { parseStackConfig, collectTopology, ProgramConfigError } from "../../provider/program.js";
import { azureVersionFor } from "../../provider/azureReplica.js";
import { containerConfig } from "../../provider/syncAgent.js";

const server = (i: number, version = "8.0") => ({ name: `r${i}`, host: `10.0.0.${10 + i}`, user: "sync", password: "pw", version });
const valid = () => ({
  group: "orders",
  primary: { host: "10.0.0.5", user: "sync", password: "pw", version: "8.0" },
  replicas: [server(1), server(2)],
  databases: ["shop"],
});

describe("checkSyncGroup (preview rules)", () => {
  it("passes a valid group", () => {
    expect(checkSyncGroup(valid())).toEqual([]);
  });

  it("returns every failure at once, each naming its property, the values and the fix", () => {
    const g: any = valid();
    g.replicas = [1, 2, 3, 4, 5, 6].map((i) => server(i, i === 3 ? "8.4" : "8.0"));
    g.replicas[4].name = "r1"; // duplicate name
    g.replicas[5].host = "10.0.0.5"; // the primary itself
    g.databases = ["shop", "mysql"];
    g.group = "Orders!";
    const f = checkSyncGroup(g);
    const by = Object.fromEntries(f.map((x) => [x.property, x.reason]));
    expect(by.replicas).toMatch(/6 replicas are declared, at most 5.*Remove 1/);
    expect(by["replicas[2].version"]).toMatch(/MySQL 8\.4 \(8\.4\) differs from the primary's MySQL 8\.0.*Run the replica on MySQL 8\.0/);
    expect(by["replicas[4].name"]).toMatch(/"r1" is already the name of replicas\[0\]/);
    expect(by["replicas[5].host"]).toMatch(/10\.0\.0\.5:3306 is the primary itself/);
    expect(by["databases[1]"]).toMatch(/"mysql" is a system schema/);
    expect(by.group).toMatch(/"Orders!" is not a valid group name/);
    expect(f).toHaveLength(6);
  });

  it("checks flavor parity with flavor defaulted from the version", () => {
    const g: any = valid();
    g.primary.version = "10.11";
    g.replicas[0].version = "10.11";
    g.replicas[1] = { ...server(2, "10.11"), flavor: "mysql" };
    const f = checkSyncGroup(g);
    expect(f).toHaveLength(1);
    expect(f[0].property).toBe("replicas[1].version");
    expect(f[0].reason).toMatch(/MySQL 10\.11 .* differs from the primary's MariaDB 10\.11/);
  });

  it("defers unknown values to create, never fails them", () => {
    const g: any = valid();
    g.replicas[0].host = UNKNOWN;
    g.replicas[1].version = UNKNOWN;
    g.replicas.push(UNKNOWN);
    g.primary.host = UNKNOWN;
    g.databases = [UNKNOWN];
    expect(checkSyncGroup(g)).toEqual([]);
    expect(checkSyncGroup({ ...valid(), replicas: UNKNOWN })).toEqual([]);
    // but a known mismatch next to unknowns still fails
    g.replicas[0].version = "5.7";
    expect(checkSyncGroup(g).map((x) => x.property)).toEqual(["replicas[0].version"]);
  });

  it("names missing and malformed fields", () => {
    const f = checkSyncGroup({ group: "g", primary: { host: "h", user: "u" }, replicas: [{ host: "x", user: "u", version: "8.0", port: 70000 }] });
    const props = f.map((x) => x.property).sort();
    expect(props).toEqual(["databases", "primary.version", "replicas[0].name", "replicas[0].port"]);
  });
});

describe("agent config and derived outputs", () => {
  it("builds a config that passes the agent's validateConfig, credentials included", () => {
    const g: any = { ...valid(), tables: { exclude: ["shop.audit_*"] }, agent: { readyLagSeconds: 10, http: { listen: "127.0.0.1:9999" } } };
    const cfg = validateConfig(buildAgentConfig(g));
    expect(cfg.group).toBe("orders");
    expect(cfg.source).toMatchObject({ host: "10.0.0.5", port: 3306, password: "pw" });
    expect(cfg.replicas.map((r) => r.name)).toEqual(["r1", "r2"]);
    expect(cfg.readyLagSeconds).toBe(10);
    expect(cfg.tables?.exclude).toEqual(["shop.audit_*"]);
    expect(cfg.http.listen).toBe("127.0.0.1:9999");
  });

  it("derives the topology and names even while some values are unknown, the config only when all are known", () => {
    const g: any = valid();
    g.replicas[1].host = UNKNOWN;
    const d = derive(g);
    expect(d.replicaNames).toEqual(["r1", "r2"]);
    expect(d.topology).toContain("10.0.0.11:3306");
    expect(d.topology).toContain("(known after create)");
    expect(d.agentConfig).toBeUndefined();
    expect(JSON.parse(derive(valid()).agentConfig!).replicas).toHaveLength(2);
  });

  it("renders a Mermaid flowchart with every server", () => {
    const m = renderMermaid("orders", { name: "primary", host: "db", version: "8.0", flavor: "mysql" }, [{ name: 'we"st', host: "a" }, { name: "north", host: "b", version: "8.0", flavor: "mysql" }], ["shop"]);
    expect(m.split("\n")[0]).toBe("flowchart LR");
    expect(m).toContain('primary[("primary<br/>db:3306<br/>MySQL 8.0")]');
    expect(m).toContain("we#quot;st");
    expect(m).toContain("agent --> replica1");
    expect(m).toContain('"binlog: shop"');
  });
});

describe("diffSyncGroup", () => {
  // stored state carries the state version it was written with
  const olds = () => ({ ...valid(), agentConfig: derive(valid()).agentConfig, stateVersion: STATE_VERSION });
  it("replaces on a new group name or primary endpoint", () => {
    expect(diffSyncGroup(olds(), { ...valid(), group: "billing" }).replaces).toEqual(["group"]);
    const n: any = valid();
    n.primary.port = 3307;
    expect(diffSyncGroup(olds(), n)).toMatchObject({ changes: true, replaces: ["primary"] });
  });
  it("updates replicas, databases and passwords in place", () => {
    const n: any = valid();
    n.replicas.push(server(3));
    n.databases = ["shop", "billing"];
    expect(diffSyncGroup(olds(), n)).toEqual({ changes: true, replaces: [], updates: ["replicas", "databases"] });
    const p: any = valid();
    p.primary.password = "new";
    expect(diffSyncGroup(olds(), p)).toEqual({ changes: true, replaces: [], updates: ["agentConfig"] });
  });
  it("sees no change for the same inputs, whatever the key order", () => {
    const n: any = valid();
    n.primary = { version: "8.0", password: "pw", user: "sync", host: "10.0.0.5" };
    expect(diffSyncGroup(olds(), n)).toEqual({ changes: false, replaces: [], updates: [] });
  });
});

describe("stack config", () => {
  const base = () => ({ target: "local", primary: { host: "127.0.0.1", port: 3306, user: "root", version: "10.11" }, replicas: [{ name: "a", port: 3307 }], databases: ["shop"] });
  it("names the key and the fix", () => {
    const err = (raw: any) => {
      try {
        parseStackConfig(raw);
      } catch (e) {
        expect(e).toBeInstanceOf(ProgramConfigError);
        return (e as ProgramConfigError).problems;
      }
      throw new Error("no error");
    };
    expect(err({ ...base(), target: "gcp" })[0]).toMatch(/^datasync:target: .*local.*azure/);
    const { primary: _p, ...noPrimary } = base();
    expect(err(noPrimary)[0]).toMatch(/^datasync:primary: required and missing; set it, e\.g\. pulumi config set --path datasync:primary\.host/);
    expect(err({ ...base(), replicas: [{ name: "a" }] })[0]).toMatch(/^datasync:replicas\[0\]\.port: required .* pulumi config set --path 'datasync:replicas\[0\]\.port' 3307/);
    expect(err({ ...base(), replicas: [{ name: "a", port: 3307, colour: 1 }] })[0]).toMatch(/^datasync:replicas\[0\]: unknown key colour/);
    expect(err({ ...base(), target: "azure" })[0]).toMatch(/^datasync:azure: required for target azure/);
  });
  it("collects the topology and the rule results without resources", () => {
    const t = collectTopology(parseStackConfig({ ...base(), group: "orders", replicas: [{ name: "a", port: 3307 }, { name: "b", port: 3308, version: "10.6" }] }));
    expect(t.mermaid).toContain("127.0.0.1:3308");
    expect(t.failures.map((f) => f.property)).toEqual(["replicas[1].version"]);
  });
});

describe("azure helpers", () => {
  it("maps the primary's version to the flexible server version and refuses MariaDB", () => {
    expect(azureVersionFor("8.0")).toBe("8.0.21");
    expect(azureVersionFor("5.7")).toBe("5.7");
    expect(() => azureVersionFor("10.11")).toThrow(/Azure Database for MySQL runs MySQL only/);
    expect(() => azureVersionFor("5.6")).toThrow(/not offered .* 5\.7, 8\.0, 8\.4/);
  });
  it("runs the container's HTTP on all interfaces for the probes", () => {
    expect(JSON.parse(containerConfig(JSON.stringify({ group: "g", http: { listen: "127.0.0.1:1" } }))).http.listen).toBe("0.0.0.0:9464");
  });
});
