// What `datasync plan` reads: the stack file's config as the runtime sees it (secure values opaque), the
// project's program, and the errors that name the fix.
import { describe, expect, it } from "vitest";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { availableStacks, loadProject, PlanError, runtimeConfig, SECRET_PLACEHOLDER, stackFile } from "../../provider/plan-config.js";

describe("runtimeConfig", () => {
  it("keeps namespaces, prefixes bare keys with the project, and writes objects as JSON text", () => {
    const { config, secretKeys } = runtimeConfig("datasync", "config:\n  datasync:target: local\n  port: 3306\n  datasync:databases: [shop]\n", "Pulumi.x.yaml");
    expect(config).toEqual({ "datasync:target": "local", "datasync:port": "3306", "datasync:databases": '["shop"]' });
    expect(secretKeys).toEqual([]);
  });

  it("replaces every secure value by an opaque placeholder and lists its key as secret; the ciphertext never passes", () => {
    const yaml = "config:\n  aws:token:\n    secure: v1:TOP\n  datasync:primary:\n    host: h\n    password:\n      secure: v1:NESTED\n";
    const { config, secretKeys } = runtimeConfig("datasync", yaml, "Pulumi.x.yaml");
    expect(config["aws:token"]).toBe(SECRET_PLACEHOLDER);
    expect(JSON.parse(config["datasync:primary"])).toEqual({ host: "h", password: SECRET_PLACEHOLDER });
    expect(secretKeys.sort()).toEqual(["aws:token", "datasync:primary"]);
    expect(JSON.stringify(config)).not.toMatch(/TOP|NESTED/);
  });

  it("names the file when the YAML is broken", () => {
    expect(() => runtimeConfig("p", "config: [", "HEAD~1:Pulumi.dev.yaml")).toThrow(/HEAD~1:Pulumi\.dev\.yaml is not valid YAML/);
  });
});

describe("project and stack files", () => {
  const dir = mkdtempSync(join(tmpdir(), "plan-config-"));
  writeFileSync(join(dir, "Pulumi.yaml"), "name: demo\nruntime: nodejs\nmain: src/index.ts\n");
  writeFileSync(join(dir, "Pulumi.dev.yaml"), "config: {}\n");
  writeFileSync(join(dir, "Pulumi.prod.yaml"), "config: {}\n");

  it("lists the stacks and names them when the stack is unknown", () => {
    expect(availableStacks(dir)).toEqual(["dev", "prod"]);
    expect(stackFile(dir, "dev")).toBe(join(dir, "Pulumi.dev.yaml"));
    expect(() => stackFile(dir, "qa")).toThrow(/unknown stack "qa".*Available stacks: dev, prod/);
  });

  it("refuses a TypeScript main with the fix, and a missing program with where to build it", () => {
    expect(() => loadProject(dir)).toThrow(PlanError);
    expect(() => loadProject(dir)).toThrow(/is TypeScript; .*Compile it/);
    expect(() => loadProject(dir, join(dir, "dist/provider/program.js"))).toThrow(/does not exist\. Build it first: npm run build/);
    expect(() => loadProject(tmpdir() + "/nonexistent-plan-dir")).toThrow(/no Pulumi\.yaml/);
  });

  it("resolves main like the Node.js runtime: a file, or a directory's package.json main / index.js", () => {
    writeFileSync(join(dir, "index.js"), "export default () => ({});\n");
    writeFileSync(join(dir, "Pulumi.yaml"), "name: demo\nruntime: nodejs\n");
    expect(loadProject(dir)).toMatchObject({ name: "demo", main: join(dir, "index.js") });
  });
});
