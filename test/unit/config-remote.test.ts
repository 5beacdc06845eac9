// Credentials and CAs travel (issue 12): the agent config generated for a remote target (the Azure container)
// carries CA/cert/key file contents inline, and refuses passwordEnv/passwordFile that only exist where
// `pulumi up` runs, unless the target provides them.
import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { remoteAgentConfig } from "../../provider/spec.js";
import { containerConfig } from "../../provider/syncAgent.js";
import { validateConfig } from "../../agent/config.js";

const dir = mkdtempSync(join(tmpdir(), "datasync-remote-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const CA = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n";
const KEY = "-----BEGIN PRIVATE KEY-----\nMIIEvQ-key-material\n-----END PRIVATE KEY-----\n";
const caFile = join(dir, "ca.pem");
const keyFile = join(dir, "client.key");
writeFileSync(caFile, CA);
writeFileSync(keyFile, KEY);

function config(source: Record<string, unknown>, replica: Record<string, unknown> = {}) {
  return JSON.stringify({
    group: "orders",
    source: { host: "onprem.example.com", port: 3306, user: "sync", ...source },
    replicas: [{ name: "west", host: "west.mysql.database.azure.com", port: 3306, user: "datasync", password: "pw", ...replica }],
    databases: ["shop"],
  });
}

describe("the agent config of a container", () => {
  it("inlines CA, cert and key files as PEM, so the config works where the paths do not exist", () => {
    const ca = join(dir, "only-here-ca.pem");
    writeFileSync(ca, CA);
    const out = JSON.parse(containerConfig(config({ password: "p", tls: { mode: "verify-identity", ca, cert: caFile, key: keyFile } }, { tls: { ca } })));
    rmSync(ca);
    expect(out.source.tls).toEqual({ mode: "verify-identity", ca: CA, cert: CA, key: KEY });
    expect(out.replicas[0].tls).toEqual({ ca: CA });
    expect(out.http.listen).toBe("0.0.0.0:9464");
    // what the container receives passes the agent's own load check after the files are gone
    expect(() => validateConfig(out)).not.toThrow();
  });

  it("keeps PEM text as it is", () => {
    const out = JSON.parse(containerConfig(config({ password: "p", tls: { ca: CA } })));
    expect(out.source.tls.ca).toBe(CA);
  });

  it("refuses a CA path that cannot be read, naming the key and the fix", () => {
    expect(() => containerConfig(config({ password: "p", tls: { ca: "/nowhere/ca.pem" } }))).toThrow(
      /primary\.tls\.ca: cannot inline \/nowhere\/ca\.pem for the agent's Azure container \(ENOENT\); give a readable PEM file or the PEM text itself/,
    );
    const notPem = join(dir, "readme.txt");
    writeFileSync(notPem, "hello");
    expect(() => containerConfig(config({ password: "p" }, { tls: { ca: notPem } }))).toThrow(/replicas\[0\]\.tls\.ca: cannot inline .*no PEM block/);
  });

  it("refuses passwordEnv and passwordFile, naming each key and the fix (password as a Pulumi secret)", () => {
    let msg = "";
    try {
      containerConfig(config({ passwordEnv: "SRC_PW" }, { password: undefined, passwordFile: "/run/secrets/west" }));
    } catch (e: any) {
      msg = e.message;
    }
    expect(msg).toContain("primary.passwordEnv: the environment variable SRC_PW exists where pulumi runs, not in the agent's Azure container");
    expect(msg).toContain("replicas[0].passwordFile: the file /run/secrets/west exists where pulumi runs");
    expect(msg).toContain("give primary.password as a Pulumi secret");
  });

  it("accepts passwordEnv and passwordFile that the target provides", () => {
    const out = JSON.parse(remoteAgentConfig(config({ passwordEnv: "SRC_PW" }, { password: undefined, passwordFile: "/mnt/pw" }), { name: "t", env: ["SRC_PW"], files: ["/mnt/pw"] }, () => ""));
    expect(out.source.passwordEnv).toBe("SRC_PW");
    expect(out.replicas[0].passwordFile).toBe("/mnt/pw");
  });

  it("never puts a password or key material in its error messages", () => {
    let msg = "";
    try {
      remoteAgentConfig(config({ password: "hunter2-secret", tls: { key: "/nope.key" } }), { name: "t" }, () => {
        throw Object.assign(new Error("x"), { code: "ENOENT" });
      });
    } catch (e: any) {
      msg = e.message;
    }
    expect(msg).toContain("primary.tls.key: cannot inline the key file");
    expect(msg).not.toContain("hunter2-secret");
    expect(msg).not.toContain("/nope.key");
  });
});
