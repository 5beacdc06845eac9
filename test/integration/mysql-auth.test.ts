// MySQL 9 accounts, against real MySQL servers (registered in the mysql vitest project only): the source and
// replica accounts use caching_sha2_password (the only password plugin left: mysql_native_password is gone in
// 9.x). Over plain TCP the first login of an account is a full authentication through the server's RSA key;
// over TLS the password travels in the encrypted channel. `check`, the binlog connection and the applier work both
// ways; verify-identity against the server's self-signed auto-generated certificate fails with a clear message.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startServers, type TestServer } from "../support/servers.js";
import { AgentProcess, endpoint, makeConfig, runCli, waitCaughtUp, writeConfig } from "../support/agent.js";
import { sourceGrants } from "../support/sql.js";

let src: TestServer;
let rep: TestServer;
let agent: AgentProcess | null = null;

beforeAll(async () => {
  [src, rep] = await startServers([{ name: "my-auth-src" }, { name: "my-auth-r1" }]);
  if (src.flavor !== "mysql") throw new Error("mysql-auth.test.ts runs in the mysql project only (DATASYNC_TEST_FLAVOR=mysql)");
  await src.query(`CREATE USER 'sync'@'%' IDENTIFIED WITH caching_sha2_password BY 'Src-pass-1'; GRANT ${sourceGrants("mysql")} ON *.* TO 'sync'@'%'`);
  await rep.query("CREATE USER 'apply'@'%' IDENTIFIED WITH caching_sha2_password BY 'Rep-pass-1'; GRANT ALL PRIVILEGES ON *.* TO 'apply'@'%'");
  await src.query("CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO shop.t VALUES (1, 'before')");
});

afterEach((ctx) => {
  // keep the agent's story with a failure
  if (ctx.task.result?.state === "fail" && agent) ctx.task.result.errors?.forEach((e) => (e.message += `\n--- agent log (tail) ---\n${agent!.stdoutText.slice(-6000)}`));
});

afterAll(async () => {
  await agent?.kill("SIGKILL");
  await Promise.all([src, rep].map((s) => s?.destroy()));
});

/** a fresh login must do the full caching_sha2_password exchange: FLUSH PRIVILEGES empties the server's cache */
async function forgetLogins(): Promise<void> {
  await Promise.all([src, rep].map((s) => s.query("FLUSH PRIVILEGES")));
}

/** tls: a TLS setting for both servers; ca "server" stands for each server's own auto-generated CA file */
function config(tls?: { mode: string; ca?: string }) {
  const tlsOf = (s: TestServer) => (tls ? { tls: { ...tls, ...(tls.ca === "server" ? { ca: join(s.datadir, "ca.pem") } : {}) } } : {});
  return makeConfig(src, [rep], {
    source: { ...endpoint(src), user: "sync", password: "Src-pass-1", ...tlsOf(src) },
    replicas: [{ name: "r1", ...endpoint(rep), user: "apply", password: "Rep-pass-1", ...tlsOf(rep) }],
  });
}

describe("MySQL: caching_sha2_password accounts", () => {
  it("has no mysql_native_password and uses caching_sha2_password for the accounts", async () => {
    await expect(src.query("CREATE USER 'old'@'%' IDENTIFIED WITH mysql_native_password BY 'x'")).rejects.toThrow(/mysql_native_password/);
    expect(await src.query("SELECT plugin FROM mysql.user WHERE user = 'sync'")).toEqual([{ plugin: "caching_sha2_password" }]);
  });

  it("over plain TCP (RSA key exchange): check passes, the agent snapshots and streams", async () => {
    await forgetLogins();
    const cfgFile = writeConfig(config());
    const check = runCli(["check", "--config", cfgFile]);
    expect(check.stdout + check.stderr).toMatch(/All rules pass/);
    expect(check.code).toBe(0);
    await forgetLogins();
    agent = new AgentProcess(cfgFile);
    await agent.waitForLog((l) => l.replica === "r1" && /snapshot complete/.test(l.msg ?? ""), 60_000);
    await src.query("INSERT INTO shop.t VALUES (2, 'streamed over tcp')");
    await waitCaughtUp(src, rep);
    expect(await rep.query("SELECT id, v FROM shop.t ORDER BY id")).toEqual([
      { id: 1, v: "before" },
      { id: 2, v: "streamed over tcp" },
    ]);
    expect(agent.stdoutText).not.toMatch(/Src-pass-1|Rep-pass-1/);
    // the agent reconnects with a full exchange again (a restarted source forgets every login)
    await agent.kill("SIGTERM");
    await forgetLogins();
    agent = new AgentProcess(cfgFile);
    await agent.waitStreaming(["r1"], 60_000);
    await src.query("INSERT INTO shop.t VALUES (3, 'after a fresh login')");
    await waitCaughtUp(src, rep);
    expect(await rep.query("SELECT v FROM shop.t WHERE id = 3")).toEqual([{ v: "after a fresh login" }]);
    await agent.kill("SIGTERM");
    expect(await agent.exited).toBe(0);
  });

  it("over TLS (verify-ca with the server's CA): check passes, the agent streams over encrypted connections", async () => {
    expect(existsSync(join(src.datadir, "ca.pem"))).toBe(true);
    // the accounts may only log in over TLS from here: a connection that works is an encrypted one
    await src.query("ALTER USER 'sync'@'%' REQUIRE SSL");
    await rep.query("ALTER USER 'apply'@'%' REQUIRE SSL");
    try {
      const plain = runCli(["check", "--config", writeConfig(config())]);
      expect(plain.code).not.toBe(0);
      expect(plain.stdout + plain.stderr).toMatch(/access denied/);
      await forgetLogins();
      const cfgFile = writeConfig(config({ mode: "verify-ca", ca: "server" }));
      const check = runCli(["check", "--config", cfgFile]);
      expect(check.stdout + check.stderr).toMatch(/All rules pass/);
      expect(check.code).toBe(0);
      agent = new AgentProcess(cfgFile);
      await agent.waitStreaming(["r1"], 60_000);
      await src.query("INSERT INTO shop.t VALUES (4, 'streamed over tls')");
      await waitCaughtUp(src, rep);
      expect(await rep.query("SELECT v FROM shop.t WHERE id = 4")).toEqual([{ v: "streamed over tls" }]);
      await agent.kill("SIGTERM");
      expect(await agent.exited).toBe(0);
    } finally {
      await src.query("ALTER USER 'sync'@'%' REQUIRE NONE");
      await rep.query("ALTER USER 'apply'@'%' REQUIRE NONE");
    }
  });

  it("refuses verify-identity against the auto-generated certificate (its name is not 127.0.0.1), naming TLS", async () => {
    const cfgFile = writeConfig(config({ mode: "verify-identity", ca: "server" }));
    const check = runCli(["check", "--config", cfgFile]);
    expect(check.code).not.toBe(0);
    expect(check.stdout + check.stderr).toMatch(/TLS|certificate/);
    expect(check.stdout + check.stderr).not.toContain("Src-pass-1");
  });
});
