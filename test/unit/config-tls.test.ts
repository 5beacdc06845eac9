// TLS settings at config load and the driver options built from them (issue 12): a tls.ca/cert/key that is
// neither PEM text nor a readable PEM file is refused at load with its key path; verify-identity asks the
// driver for a name check, verify-ca for the chain only; a TLS handshake failure is explained.
import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { redactConfig, validateConfig } from "../../agent/config.js";
import { connectionOptions, explainTlsError, tlsOptions } from "../../agent/db.js";
import { ConfigError } from "../../agent/errors.js";

const dir = mkdtempSync(join(tmpdir(), "datasync-config-tls-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n";
const KEY = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC-very-secret\n-----END PRIVATE KEY-----\n";
const caFile = join(dir, "ca.pem");
writeFileSync(caFile, PEM);
const notPem = join(dir, "notes.txt");
writeFileSync(notPem, "this is not a certificate\n");

function cfg(tls: Record<string, unknown>, host = "db.example.com"): any {
  return {
    group: "orders",
    source: { host, user: "u", password: "p", tls },
    replicas: [{ name: "west", host: "10.0.1.5", user: "u", password: "p" }],
    databases: ["shop"],
  };
}

function problems(raw: unknown): string[] {
  try {
    validateConfig(raw);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

describe("tls.ca, tls.cert, tls.key at load", () => {
  it("accepts PEM text and a readable PEM file", () => {
    expect(problems(cfg({ ca: PEM }))).toEqual([]);
    expect(problems(cfg({ ca: caFile, cert: caFile, key: KEY }))).toEqual([]);
  });

  it("refuses a path that does not exist (a path valid only where pulumi ran), naming the key and the fix", () => {
    const p = problems(cfg({ ca: "/home/me/certs/ca.pem" }));
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^source\.tls\.ca: "\/home\/me\/certs\/ca\.pem" is neither PEM text nor a readable file \(ENOENT\); give the path of a readable PEM file or the PEM text itself/);
  });

  it("refuses a readable file without a PEM block and a non-PEM string", () => {
    expect(problems(cfg({ ca: notPem }))[0]).toContain(`source.tls.ca: the file ${notPem} holds no PEM block`);
    const replica = { ...cfg({}), replicas: [{ name: "west", host: "10.0.1.5", user: "u", password: "p", tls: { ca: "MIIBszCCAVmgAwIBAgIU" } }] };
    expect(problems(replica)[0]).toMatch(/^replicas\[0\]\.tls\.ca: "MIIBszCCAVmgAwIBAgIU" is neither PEM text nor a readable file/);
  });

  it("refuses truncated PEM text", () => {
    expect(problems(cfg({ ca: "-----BEGIN CERTIFICATE-----\nMIIB" }))[0]).toContain("source.tls.ca: the PEM text is incomplete");
  });

  it("never echoes the value of a bad key, and wants cert and key together", () => {
    const secretish = "not-a-key-but-secret-material";
    const p = problems(cfg({ cert: caFile, key: secretish }));
    expect(p.join("\n")).toContain("source.tls.key: the value is neither PEM text nor a readable file");
    expect(p.join("\n")).not.toContain(secretish);
    expect(problems(cfg({ cert: caFile }))).toEqual(["source.tls: cert is given without key; a client certificate needs both tls.cert and tls.key"]);
  });

  it("redacts an inline key", () => {
    const c = validateConfig(cfg({ ca: PEM, cert: PEM, key: KEY }));
    expect(JSON.stringify(redactConfig(c))).not.toContain("very-secret");
  });
});

describe("driver TLS options (agent/db.ts, the one place)", () => {
  const ep = (host: string, tls?: Record<string, string>) => validateConfig(cfg(tls ?? {}, host)).source;

  it("verify-identity checks the chain and the name", () => {
    const ssl: any = tlsOptions(ep("db.example.com", { ca: caFile }), "source");
    expect(ssl).toMatchObject({ ca: PEM, rejectUnauthorized: true, verifyIdentity: true });
  });

  it("the default on 127.0.0.2 (not one of the three loopback names) is verify-identity", () => {
    expect((tlsOptions(ep("127.0.0.2"), "source") as any).verifyIdentity).toBe(true);
    expect(tlsOptions(ep("127.0.0.1"), "source")).toBeUndefined();
  });

  it("verify-ca checks the chain only; required checks nothing", () => {
    expect(tlsOptions(ep("db", { mode: "verify-ca", ca: PEM }), "source")).toMatchObject({ rejectUnauthorized: true, verifyIdentity: false });
    expect(tlsOptions(ep("db", { mode: "required" }), "source")).toMatchObject({ rejectUnauthorized: false, verifyIdentity: false });
  });

  it("every connection (queries and the binlog reader's options) carries the same TLS options", () => {
    const o: any = connectionOptions(ep("db.example.com", { ca: caFile }), "source");
    expect(o.ssl).toMatchObject({ verifyIdentity: true, rejectUnauthorized: true, ca: PEM });
  });
});

describe("explainTlsError", () => {
  const e = { host: "db.example.com", port: 3306, tls: { mode: "verify-identity" as const } };
  it("a name mismatch names the host, the certificate's names and the fix", () => {
    const err = Object.assign(new Error("Hostname/IP does not match certificate's altnames"), {
      code: "HANDSHAKE_SSL_ERROR",
      reason: "Host: db.example.com. is not in the cert's altnames: DNS:other.example",
      cert: { subjectaltname: "DNS:other.example, IP Address:10.0.0.9", subject: { CN: "other.example" } },
    });
    const m = explainTlsError(err, e)!;
    expect(m).toContain('the certificate of db.example.com:3306 is not issued for "db.example.com" (it names DNS:other.example, IP Address:10.0.0.9, CN=other.example)');
    expect(m).toContain("tls.mode: verify-ca");
  });
  it("an untrusted chain names the CA fix; other errors are not TLS", () => {
    const err = Object.assign(new Error("self-signed certificate in certificate chain"), { code: "HANDSHAKE_SSL_ERROR" });
    expect(explainTlsError(err, e)).toContain("is not signed by a trusted CA");
    expect(explainTlsError(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }), e)).toBeUndefined();
  });
});
