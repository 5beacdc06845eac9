// `datasync plan` end to end: the CLI (bin/datasync.js → dist/provider/plan-cli.js) runs the stack program
// under Pulumi mocks in a child node process; these tests check what a reviewer gets and the exit codes.
import { beforeAll, describe, expect, it } from "vitest";
import { appendFileSync, cpSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import YAML from "yaml";
import { devConfig, DIST_PROGRAM, ensureBuilt, git, plan, project, ROOT } from "../support/plan-cli.js";
import { mermaidBlocks, parseMermaid } from "../support/plan-mermaid.js";

beforeAll(() => ensureBuilt(), 120_000);

const devWith = (change: (c: Record<string, any>) => void) => {
  const c = devConfig();
  change(c);
  return c;
};

describe.concurrent("datasync plan", () => {
  it("plans the committed dev stack cleanly, every server in a diagram that mermaid parses", async () => {
    const r = await plan(["--stack", "dev"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("✅ **The preview rules pass.**");
    const [diagram, ...more] = mermaidBlocks(r.stdout);
    expect(more).toEqual([]);
    await expect(parseMermaid(diagram)).resolves.toMatchObject({ diagramType: "flowchart-v2" });
    for (const s of ["primary<br/>127.0.0.1:3306<br/>MariaDB 10.11", "reporting<br/>127.0.0.1:3307", "staging-copy<br/>127.0.0.1:3308", "local process"]) expect(diagram).toContain(s);
    expect(r.stdout).toMatch(/\| replica \| reporting \| 127\.0\.0\.1:3307 \| MariaDB 10\.11 \|/);
    expect(r.stdout).toMatch(/\| 2 · flavor and major\.minor .* \| ✅ pass \|/);
    expect(r.stdout).toContain("full online snapshot of `shop`");
  });

  it("plans the committed prod stack as JSON: regions, versions, agent placement; hosts deferred", async () => {
    const r = await plan(["--stack", "prod", "--format", "json"]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.ok).toBe(true);
    const [g] = j.groups;
    expect(g.group).toBe("orders");
    expect(g.replicas.map((x: any) => [x.name, x.location, x.version, x.host ?? "after create"])).toEqual([
      ["westeurope", "westeurope", "8.0", "after create"],
      ["northeurope", "northeurope", "8.0", "after create"],
      ["eastus", "eastus", "8.0", "after create"],
    ]);
    expect(g.agent).toMatchObject({ kind: "Azure Container Instances", location: "westeurope" });
    expect(g.rules.find((x: any) => x.id === "1").status).toBe("deferred");
    for (const n of ["westeurope", "northeurope", "eastus", "mysql.corp.example.com:3306"]) expect(g.mermaid).toContain(n);
    await parseMermaid(g.mermaid);
    expect(j.resources.some((x: any) => x.type === "azure-native:dbformysql:Server")).toBe(true);
    // the network a reviewer must see: the agent's static egress (NAT gateway) and how the servers are reached
    expect(g.agent.detail).toContain("in a VNet subnet, logs to Log Analytics");
    expect(g.network.egress).toMatch(/^a NAT gateway on its subnet 10\.42\.0\.0\/24: one static public IP \(stack output agentEgressIp/);
    expect(g.network.serverAccess).toBe("public, firewall open to: corp-egress 203.0.113.10, agent-egress (the NAT IP, known after create)");
    // the declared binlog retention (7 days) covers the tolerated outage (2 days): no warning
    expect(g.rules.find((x: any) => x.id === "3")).toMatchObject({ status: "live" });
  }, 240_000);

  it("runs the program, not just the YAML: a replica added in code appears; secure values stay opaque", async () => {
    const config = devWith((c) => {
      delete c["datasync:primary"].passwordEnv;
      c["datasync:primary"].password = { secure: "v1:AAAAciphertextNEVERshownAAAA" };
    });
    const dir = project(
      { dev: config },
      `// the root program plus one replica declared in code, not in the stack file
import { loadStackConfig, runProgram } from ${JSON.stringify(DIST_PROGRAM)};
export default async function main() {
  const c = loadStackConfig();
  c.replicas.push({ name: "analytics", port: 3309 });
  return runProgram(c);
}
`,
    );
    expect(YAML.stringify(config)).not.toContain("analytics");
    const r = await plan(["--stack", "dev"], dir);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Program `program.mjs`");
    const [diagram] = mermaidBlocks(r.stdout);
    expect(diagram).toContain("analytics<br/>127.0.0.1:3309<br/>MariaDB 10.11");
    await parseMermaid(diagram);
    expect(r.stdout).toMatch(/\| replica \| analytics \| 127\.0\.0\.1:3309 \|/);
    expect(r.stdout).toMatch(/\| primary \| primary \| 127\.0\.0\.1:3306 \| MariaDB 10\.11 \| – \| datasync \| secret \|/);
    expect(r.stdout + r.stderr).not.toContain("ciphertext");
  });

  it("exits 1 with the rule's message when the stack grows to six replicas", async () => {
    const dir = project({ dev: devWith((c) => (c["datasync:replicas"] = [1, 2, 3, 4, 5, 6].map((i) => ({ name: `r${i}`, port: 3306 + i })))) });
    const r = await plan(["--stack", "dev"], dir);
    expect(r.code).toBe(1);
    const msg = "replicas: 6 replicas are declared, at most 5 are allowed per primary";
    expect(r.stdout).toContain(msg);
    expect(r.stderr).toContain(msg);
    expect(r.stdout).toMatch(/\| 1 · at most 5 replicas.* \| ❌ fail \|/);
    expect(r.stdout).toContain("❌ **1 preview rule failure");
    for (let i = 1; i <= 6; i++) expect(mermaidBlocks(r.stdout)[0]).toContain(`r${i}<br/>`);
  });

  it("exits 1 with the rule's message when a replica runs another version", async () => {
    const dir = project({ dev: devWith((c) => (c["datasync:replicas"][1].version = "10.6")) });
    const r = await plan(["--stack", "dev"], dir);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/replicas\[1\]\.version: MariaDB 10\.6 .*differs from the primary's MariaDB 10\.11/);
    expect(r.stderr).toMatch(/datasync plan: group orders-dev: replicas\[1\]\.version: .*differs/);
    expect(r.stdout).toMatch(/\| 2 · flavor and major\.minor .* \| ❌ fail \|/);
  });

  it("exits 2 naming the fix: unknown stack lists the stack files; a broken program shows its error", async () => {
    const r = await plan(["--stack", "staging"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown stack "staging"');
    expect(r.stderr).toContain("Available stacks: dev, prod");
    const dir = project({ dev: devWith((c) => (c["datasync:replicas"][0].prot = 1)) });
    const bad = await plan(["--stack", "dev"], dir);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("datasync:replicas[0]: unknown key prot");
  });

  it("--base REF: a diff section with the added replica and the changed version", async () => {
    const dir = project({ dev: devConfig() });
    git(dir, "init", "-q");
    git(dir, "add", ".");
    git(dir, "commit", "-qm", "base");
    const head = devWith((c) => {
      c["datasync:primary"].version = "11.4";
      c["datasync:replicas"].push({ name: "analytics", port: 3309 });
    });
    writeFileSync(join(dir, "Pulumi.dev.yaml"), YAML.stringify({ config: head }));
    const r = await plan(["--stack", "dev", "--base", "HEAD"], dir);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const diff = r.stdout.slice(r.stdout.indexOf("### Changes against `HEAD`"));
    expect(diff).toContain("#### Group `orders-dev` (changed)");
    expect(diff).toContain("➕ replica `analytics` added (127.0.0.1:3309, MariaDB 11.4)");
    expect(diff).toContain("✏️ primary changed: version 10.11 → 11.4");
    expect(diff).toContain("✏️ replica `reporting` changed: version 10.11 → 11.4");
    expect(diff).toContain("evaluated with the current program");
    expect(r.stdout).toContain("New replica `analytics` (group `orders-dev`): the agent first copies all of `shop`");
    expect(r.stdout).toMatch(/Version change \(group `orders-dev`: primary 10\.11 → 11\.4; .*means replacement/);
    const [diagram] = mermaidBlocks(r.stdout);
    expect(diagram).toMatch(/class replica2 added/);
    expect(diagram).toMatch(/class replica0 changed/);
    await parseMermaid(diagram);
    const bad = await plan(["--stack", "dev", "--base", "no-such-ref"], dir);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--base no-such-ref: no such commit");
  });

  it("examples/azure as shipped: its program plans under mocks (33 resources, the NAT egress) and type-checks", async () => {
    // what `npm install` in examples/azure makes: node_modules/datasync a link to the repository
    const dir = mkdtempSync(join(tmpdir(), "datasync-example-azure-"));
    try {
      cpSync(join(ROOT, "examples/azure"), dir, { recursive: true });
      mkdirSync(join(dir, "node_modules"));
      symlinkSync(ROOT, join(dir, "node_modules/datasync"));
      for (const m of ["@pulumi", "@types", "typescript"]) symlinkSync(realpathSync(join(ROOT, "node_modules", m)), join(dir, "node_modules", m));
      appendFileSync(join(dir, "Pulumi.example.yaml"), "  datasync-azure-example:primaryPassword:\n    secure: v1:AAAAciphertextAAAA\n");
      const r = await plan(["--stack", "example"], dir);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("✅ **The preview rules pass.** Program `index.js` run under Pulumi mocks");
      expect(r.stdout).toContain("33 resources declared");
      expect(r.stdout).toContain("in a VNet subnet, logs to Log Analytics.");
      expect(r.stdout).toContain("Network: agent egress via a NAT gateway on its subnet 10.42.0.0/24: one static public IP");
      const tsc = spawnSync(process.execPath, [join(dir, "node_modules/typescript/bin/tsc"), "-p", join(dir, "tsconfig.json")], { encoding: "utf8" });
      expect(tsc.stdout + tsc.stderr).toBe("");
      expect(tsc.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});
