// TLS that checks names (issue 12): a private CA made with the openssl CLI signs two server certificates,
// one issued for another name (not-this-host.example) and one for 127.0.0.1 (IP SAN). verify-identity refuses
// the wrong name with a message naming the host, the certificate's names and the fix; verify-ca accepts it
// (chain only); a certificate from another CA is refused by both; the right name is accepted by check, the
// agent (queries and the binlog reader), status, verify and the provider's live check. Runs on the flavor of
// DATASYNC_TEST_FLAVOR.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServers, type TestServer } from "../support/servers.js";
import { AgentProcess, runCli, waitFor, writeConfig } from "../support/agent.js";
import { dist, type ProviderIndex } from "../support/provider-dist.js";

const PW = "Tls-s3cret-PW-77";
let src: TestServer, rep: TestServer;
let dir: string;
const pki = (f: string) => join(dir, f);

function openssl(...args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
}

/** a CA, and a server certificate signed by it for the given subjectAltName */
function makePki(): void {
  openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=datasync test CA");
  openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other-ca.key", "-out", "other-ca.pem", "-days", "2", "-subj", "/CN=another CA");
  for (const [name, san] of [
    ["wrong", "DNS:not-this-host.example"],
    ["right", "IP:127.0.0.1,DNS:localhost"],
  ]) {
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name === "wrong" ? "not-this-host.example" : "127.0.0.1"}`);
    writeFileSync(pki(`${name}.ext`), `subjectAltName=${san}\n`);
    openssl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${name}.pem`, "-days", "2", "-extfile", `${name}.ext`);
  }
}

const sslArgs = (name: string) => [`--ssl-ca=${pki("ca.pem")}`, `--ssl-cert=${pki(`${name}.pem`)}`, `--ssl-key=${pki(`${name}.key`)}`];

function config(tls: Record<string, unknown>) {
  return {
    group: "tls",
    source: { host: "127.0.0.1", port: src.port, user: "sync", password: PW, tls },
    replicas: [{ name: "r1", host: "127.0.0.1", port: rep.port, user: "root", password: "" }],
    databases: ["shop"],
    http: { listen: "127.0.0.1:0" },
    heartbeatSeconds: 0.2,
  };
}

function check(tls: Record<string, unknown>) {
  const r = runCli(["check", "--config", writeConfig(config(tls))]);
  return { code: r.code, out: r.stdout + r.stderr };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "datasync-pki-"));
  makePki();
  [src, rep] = await startServers([{ name: "tls-src", args: sslArgs("wrong") }, { name: "tls-rep", noBinlog: true }]);
  const grants = src.flavor === "mariadb" ? "REPLICATION SLAVE, BINLOG MONITOR, SELECT" : "REPLICATION SLAVE, REPLICATION CLIENT, SELECT";
  await src.query(
    `CREATE USER 'sync'@'127.0.0.1' IDENTIFIED BY '${PW}' REQUIRE SSL; GRANT ${grants} ON *.* TO 'sync'@'127.0.0.1';
     CREATE DATABASE shop; CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(20)); INSERT INTO shop.items VALUES (1,'a');`,
  );
}, 120_000);

afterAll(async () => {
  await Promise.all([src, rep].filter(Boolean).map((s) => s.destroy()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe(`TLS names (${process.env.DATASYNC_TEST_FLAVOR ?? "mariadb"})`, () => {
  describe("a certificate signed by the CA but issued for another name", () => {
    it("verify-identity refuses it, naming the host, the certificate's names and the fix", () => {
      const r = check({ mode: "verify-identity", ca: pki("ca.pem") });
      console.log(`$ datasync check (source tls.mode verify-identity, wrong-name certificate) → exit ${r.code}\n${r.out}`);
      expect(r.code).toBe(1);
      expect(r.out).toContain(`FAIL  source (127.0.0.1:${src.port})`);
      expect(r.out).toContain(`the certificate of 127.0.0.1:${src.port} is not issued for "127.0.0.1" (it names DNS:not-this-host.example, CN=not-this-host.example)`);
      expect(r.out).toContain("set tls.mode: verify-ca");
      expect(r.out).not.toContain(PW);
    });

    it("verify-ca accepts it (the chain only)", () => {
      const r = check({ mode: "verify-ca", ca: pki("ca.pem") });
      console.log(`$ datasync check (source tls.mode verify-ca, wrong-name certificate) → exit ${r.code}\n${r.out}`);
      expect(r.code, r.out).toBe(0);
    });

    it("the CA given as PEM text works like the file", () => {
      const r = check({ mode: "verify-identity", ca: readFileSync(pki("ca.pem"), "utf8") });
      expect(r.code).toBe(1);
      expect(r.out).toContain("DNS:not-this-host.example");
    });

    it("a CA that did not sign it is refused by verify-ca and verify-identity", () => {
      for (const mode of ["verify-ca", "verify-identity"]) {
        const r = check({ mode, ca: pki("other-ca.pem") });
        expect(r.code, r.out).toBe(1);
        expect(r.out).toContain(`the certificate of 127.0.0.1:${src.port} is not signed by a trusted CA`);
        expect(r.out).toContain("set tls.ca to the CA that signed the server's certificate");
      }
    });

    it("the provider's live check refuses it the same way", async () => {
      const { syncGroupProvider: sg } = dist<ProviderIndex>("index");
      const [{ v }] = await src.query<any[]>("SELECT VERSION() AS v");
      const version = /^(\d+\.\d+)/.exec(String(v))![1];
      const news = {
        group: "tls",
        primary: { host: "127.0.0.1", port: src.port, user: "sync", password: PW, version, flavor: src.flavor, tls: { mode: "verify-identity", ca: pki("ca.pem") } },
        replicas: [{ name: "r1", host: "127.0.0.1", port: rep.port, user: "root", password: "", version, flavor: src.flavor }],
        databases: ["shop"],
      };
      const inputs = { ...news, ...(await sg.check!({}, news)).inputs };
      const err = await sg.create!(inputs).then(
        () => null,
        (e: Error) => e,
      );
      expect(err?.message).toContain("it names DNS:not-this-host.example");
      expect(err?.message).not.toContain(PW);
    });
  });

  it("the agent refuses at start a tls.ca that is neither PEM nor a readable file, naming the key", () => {
    const r = runCli(["agent", "--config", writeConfig(config({ mode: "verify-identity", ca: "/home/ops/certs/ca.pem" }))], { timeout: 20_000 });
    const out = r.stdout + r.stderr;
    expect(r.code, out).not.toBe(0);
    expect(r.code).not.toBeNull();
    expect(out).toContain('source.tls.ca: "/home/ops/certs/ca.pem" is neither PEM text nor a readable file (ENOENT)');
    expect(out).not.toContain(PW);
  });

  describe("a certificate issued for 127.0.0.1 (IP SAN)", () => {
    beforeAll(async () => {
      await src.restart(sslArgs("right"));
    }, 60_000);

    it("verify-identity accepts it: check", () => {
      const r = check({ mode: "verify-identity", ca: pki("ca.pem") });
      console.log(`$ datasync check (source tls.mode verify-identity, certificate for IP:127.0.0.1) → exit ${r.code}\n${r.out}`);
      expect(r.code, r.out).toBe(0);
    });

    it("the agent syncs over verify-identity (queries, snapshot and the binlog reader); status and verify connect", async () => {
      const file = writeConfig(config({ mode: "verify-identity", ca: pki("ca.pem") }));
      const a = new AgentProcess(file);
      try {
        await a.waitStreaming(["r1"], 60_000);
        await src.query("INSERT INTO shop.items VALUES (2,'b')");
        await waitFor(async () => (await rep.query<any[]>("SELECT name FROM shop.items WHERE id = 2")).length === 1, 30_000, "the streamed row");
        // the sync user is created REQUIRE SSL: every one of its connections (binlog reader included) is encrypted
        const st = runCli(["status", "--config", file]);
        expect(st.code, st.stdout + st.stderr).toBe(0);
        const vr = runCli(["verify", "--config", file]);
        expect(vr.code, vr.stdout + vr.stderr).toBe(0);
        expect(a.stdoutText + a.stderr + st.stdout + st.stderr).not.toContain(PW);
      } finally {
        await a.kill("SIGTERM");
      }
    }, 120_000);
  });
});
