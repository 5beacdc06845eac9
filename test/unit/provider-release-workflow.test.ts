// The release workflow in examples/ci: it builds agent/Dockerfile, pushes, and pins the stack by digest.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import YAML from "yaml";

const wf = YAML.parse(readFileSync("examples/ci/.github/workflows/datasync-agent-release.yml", "utf8"));
const steps: any[] = wf.jobs.release.steps;

describe("examples/ci agent release workflow", () => {
  it("builds agent/Dockerfile for linux/amd64 and pushes it", () => {
    const build = steps.find((s) => String(s.uses).startsWith("docker/build-push-action@"));
    expect(build.with).toMatchObject({ context: ".", file: "agent/Dockerfile", push: true, platforms: "linux/amd64" });
  });
  it("logs in with OpenID Connect (ACR) or a username and password", () => {
    expect(wf.permissions["id-token"]).toBe("write");
    expect(steps.some((s) => String(s.uses).startsWith("azure/login@"))).toBe(true);
    expect(steps.some((s) => String(s.uses).startsWith("docker/login-action@"))).toBe(true);
  });
  it("pins the stack file's agentImage to the pushed digest through a pull request", () => {
    const check = steps.find((s) => s.name === "Check the pushed digest");
    expect(check.env.DIGEST).toBe("${{ steps.build.outputs.digest }}");
    expect(check.run).toContain('IMAGE=$REGISTRY/$IMAGE_NAME@$DIGEST');
    const pin = steps.find((s) => s.name?.startsWith("Pin the stack"));
    expect(pin.run).toContain(`.config["datasync:azure"].agentImage = strenv(IMAGE)`);
    expect(pin.run).toContain("gh pr create");
  });
  it("the committed prod stack runs an image pinned by digest", () => {
    const prod = YAML.parse(readFileSync("Pulumi.prod.yaml", "utf8")).config;
    expect(prod["datasync:azure"].agentImage).toMatch(/@sha256:[0-9a-f]{64}$/);
  });
});
