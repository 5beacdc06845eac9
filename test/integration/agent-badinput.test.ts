// Bad input at start: a non-zero exit within seconds, a message naming the problem and the fix, and no
// change on any replica. A replica that is down or refuses the password is reported and retried while
// the others sync.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultFlavor, startServers, TestServer } from "../support/servers.js";
import { AgentProcess, endpoint, makeConfig, runCli, waitCaughtUp, waitFor, writeConfig } from "../support/agent.js";
import { sourceGrants } from "../support/sql.js";

let src: TestServer;
let r1: TestServer;
let r2: TestServer;

beforeAll(async () => {
  [src, r1, r2] = await startServers([{ name: "bad-src" }, { name: "bad-r1" }, { name: "bad-r2" }]);
  for (const s of [src, r1, r2]) await s.query("CREATE DATABASE shop; CREATE TABLE shop.items (id INT PRIMARY KEY, v VARCHAR(20))");
  await src.query(`CREATE USER 'sync'@'%' IDENTIFIED BY 'right-pass'; GRANT ${sourceGrants(src.flavor)} ON *.* TO 'sync'@'%'`);
});

afterAll(async () => {
  await Promise.all([src, r1, r2].map((s) => s?.destroy()));
});

async function replicasUntouched(): Promise<void> {
  for (const r of [r1, r2]) {
    const rows = await r.query<any[]>("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '_datasync'");
    expect(rows).toEqual([]);
    const [c] = await r.query<any[]>("SELECT COUNT(*) AS n FROM shop.items");
    expect(Number(c.n)).toBe(0);
  }
}

function expectRefused(cfg: unknown, pattern: RegExp, env: NodeJS.ProcessEnv = {}) {
  const f = writeConfig(cfg);
  const res = runCli(["agent", "--config", f], { env, timeout: 30_000 });
  expect(res.code, res.stderr + res.stdout).not.toBe(0);
  expect(res.code).not.toBeNull();
  expect(res.ms).toBeLessThan(15_000);
  expect(res.stderr).toMatch(pattern);
  return res;
}

describe("the agent refuses bad input at start and changes nothing", () => {
  it("a table without a primary key in scope", async () => {
    await src.query("CREATE TABLE shop.nokey (a INT, b INT)");
    try {
      expectRefused(makeConfig(src, [r1, r2]), /shop\.nokey has no primary key.*(Add a primary key|tables\.exclude)/s);
      await replicasUntouched();
      // excluded by the filter, it is fine: the check passes
      const ok = runCli(["check", "--config", writeConfig(makeConfig(src, [r1], { tables: { exclude: ["shop.nokey"] } }))]);
      expect(ok.stdout).toMatch(/All rules pass/);
      expect(ok.code).toBe(0);
    } finally {
      await src.query("DROP TABLE shop.nokey");
    }
  });

  it("a wrong source password (never echoed)", async () => {
    const res = expectRefused(makeConfig(src, [r1], { source: { ...endpoint(src), user: "sync", password: "wrong-pass-123" } }), /source \(sync@127\.0\.0\.1:\d+\): access denied; check the user and password/);
    expect(res.stderr + res.stdout).not.toContain("wrong-pass-123");
    await replicasUntouched();
  });

  it("an unreachable source", async () => {
    const dead = new TestServer({ name: "never-started" });
    dead.port = 1; // nothing listens on port 1
    expectRefused(makeConfig(src, [r1], { source: endpoint(dead) }), /source .*connection refused; is the server running/);
    await replicasUntouched();
  });

  it("six replicas", async () => {
    const cfg = makeConfig(src, [r1, r2]);
    cfg.replicas = Array.from({ length: 6 }, (_, i) => ({ name: `r${i}`, host: "127.0.0.1", port: 20000 + i, user: "root", password: "" }));
    expectRefused(cfg, /replicas: .*at most 5/);
  });

  it("a missing key and an unknown key, with their paths", async () => {
    const cfg: any = makeConfig(src, [r1]);
    delete cfg.databases;
    cfg.source.hots = "x";
    const res = expectRefused(cfg, /databases: required key is missing/);
    expect(res.stderr).toMatch(/source\.hots: unknown key "hots" in source/);
    await replicasUntouched();
  });

  it("a system schema in databases", async () => {
    expectRefused(makeConfig(src, [r1], { databases: ["shop", "mysql"] }), /databases\[1\]: "mysql" is a system schema/);
  });

  it("no configuration at all, and DATASYNC_CONFIG holding JSON", async () => {
    const none = runCli(["agent"], { env: { DATASYNC_CONFIG: "" } });
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/pass --config FILE or set DATASYNC_CONFIG/);
    const viaEnv = runCli(["check"], { env: { DATASYNC_CONFIG: JSON.stringify(makeConfig(src, [r1])) } });
    expect(viaEnv.stdout).toMatch(/All rules pass/);
    expect(viaEnv.code).toBe(0);
  });

  const settings: [string, string, RegExp, string][] = [
    ["binlog_format", "'STATEMENT'", /binlog_format is STATEMENT, required ROW/, "'ROW'"],
    ["binlog_row_image", "'MINIMAL'", /binlog_row_image is MINIMAL, required FULL/, "'FULL'"],
    ["binlog_row_metadata", "'MINIMAL'", /binlog_row_metadata is MINIMAL, required FULL/, "'FULL'"],
    // what the reader cannot decode: MariaDB's compressed events; MySQL's compressed transactions and partial JSON
    ...((defaultFlavor() === "mariadb"
      ? [["log_bin_compress", "ON", /log_bin_compress is ON, required OFF/, "OFF"]]
      : [
          ["binlog_transaction_compression", "ON", /binlog_transaction_compression is ON, required OFF\. The reader cannot decode compressed transactions/, "OFF"],
          ["binlog_row_value_options", "'PARTIAL_JSON'", /binlog_row_value_options is PARTIAL_JSON, required '' \(empty\)\. The reader cannot decode partial JSON updates/, "''"],
        ]) as [string, string, RegExp, string][]),
  ];
  for (const [name, value, pattern, good] of settings) {
    it(`${name}=${value} on the source`, async () => {
      await src.query(`SET GLOBAL ${name} = ${value}`);
      try {
        expectRefused(makeConfig(src, [r1, r2]), pattern);
        const check = runCli(["check", "--config", writeConfig(makeConfig(src, [r1]))]);
        expect(check.code).toBe(1);
        expect(check.stdout).toMatch(pattern);
        await replicasUntouched();
      } finally {
        await src.query(`SET GLOBAL ${name} = ${good}`);
      }
    });
  }
});

describe("a replica that fails at start is reported and retried while the others sync", () => {
  it("wrong replica password, then a replica that is down, both recover", async () => {
    await r1.query("CREATE USER 'rep'@'%' IDENTIFIED BY 'rep-pass'; GRANT ALL PRIVILEGES ON *.* TO 'rep'@'%'");
    await r2.stop();
    const cfg = makeConfig(src, [r1, r2]);
    (cfg.replicas[0] as any) = { name: "r1", ...endpoint(r1), user: "rep", password: "not-the-pass" };
    const f = writeConfig(cfg);
    const agent = new AgentProcess(f);
    try {
      const denied = await agent.waitForLog((l) => l.replica === "r1" && /access denied/.test(l.msg ?? ""));
      expect(denied.level).toBe("warn");
      await agent.waitForLog((l) => l.replica === "r2" && /connection refused/.test(l.msg ?? ""));
      expect(agent.stdoutText).not.toContain("not-the-pass");
      const ready = await agent.http("/readyz");
      expect(ready.status).toBe(503);
      // between retries "down"; while a retry starts or connects, "starting"/"connecting" (a loaded machine catches that)
      for (const r of ready.body.replicas) expect(["down", "starting", "connecting"]).toContain(r.state);
      expect(ready.body.replicas).toHaveLength(2);
      const m = await agent.http("/metrics");
      expect(m.text).toMatch(/datasync_replica_up\{group="test",replica="r1"\} 0/);
      expect(m.text).toMatch(/datasync_errors_total\{group="test",replica="r2",kind="connection"\} [1-9]/);
      // r2 comes back: it syncs while r1 still refuses
      await r2.start();
      await agent.waitForLog((l) => l.replica === "r2" && l.msg === "streaming", 40_000);
      await src.query("INSERT INTO shop.items VALUES (1, 'while r1 is refused')");
      await waitCaughtUp(src, r2);
      expect(await r2.query("SELECT v FROM shop.items")).toEqual([{ v: "while r1 is refused" }]);
      // r1's password is fixed on the server side: it recovers on its next retry
      await r1.query("ALTER USER 'rep'@'%' IDENTIFIED BY 'not-the-pass'");
      await agent.waitForLog((l) => l.replica === "r1" && l.msg === "streaming", 40_000);
      await src.query("INSERT INTO shop.items VALUES (2, 'both')");
      await waitCaughtUp(src, r1);
      // r1 joined late: its online snapshot copied the row written while it refused
      expect(await r1.query("SELECT id FROM shop.items ORDER BY id")).toEqual([{ id: 1 }, { id: 2 }]);
      await waitFor(async () => (await agent.http("/readyz")).status === 200, 10_000, "readyz 200");
    } finally {
      await agent.kill("SIGTERM");
    }
    expect(await agent.exited).toBe(0);
  });
});
