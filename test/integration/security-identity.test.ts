// Server identity before any write (issue 12, DESIGN.md "Server identity"): a replica given as another address
// of the source server (here a loopback TCP proxy on another port: a DNS alias, a LAN address or a port
// forward look the same to the agent) is refused by `datasync check`, by the agent at start, by a replica
// session's reconnect and by the provider's create, each message naming both endpoints; the source's data
// is untouched. Runs on the flavor of DATASYNC_TEST_FLAVOR.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServers, type TestServer } from "../support/servers.js";
import { TcpProxy } from "../support/proxy.js";
import { spawn } from "node:child_process";
import { AgentProcess, BIN, checksums, ROOT, waitFor, writeConfig } from "../support/agent.js";
import { dist, type ProviderIndex } from "../support/provider-dist.js";

const PW = "Idn-s3cret-PW-42";
let src: TestServer, rep: TestServer;
let toSource: TcpProxy, toReplica: TcpProxy;

const ep = (port: number) => ({ host: "127.0.0.1", port, user: "sync", password: PW });
function config(replicas: { name: string; port: number }[]) {
  return {
    group: "idn",
    source: ep(src.port),
    replicas: replicas.map((r) => ({ name: r.name, ...ep(r.port) })),
    databases: ["shop"],
    http: { listen: "127.0.0.1:0" },
    heartbeatSeconds: 0.2,
  };
}

async function sourceUntouched(): Promise<void> {
  expect(await src.query<any[]>("SELECT CAST(COUNT(*) AS CHAR) AS n FROM shop.items")).toEqual([{ n: "3" }]);
  expect(await checksums(src, ["shop.items"])).toEqual(before);
  // the agent's first write on a replica creates `_datasync`: it must not exist on the source
  expect(await src.query<any[]>("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '_datasync'")).toEqual([]);
}

let before: Record<string, string>;

/** `datasync <args>` without blocking this process: the proxies forward from this event loop */
function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { cwd: ROOT });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

beforeAll(async () => {
  [src, rep] = await startServers([{ name: "idn-src" }, { name: "idn-rep", noBinlog: true }]);
  const grants =
    src.flavor === "mariadb" ? "REPLICATION SLAVE, BINLOG MONITOR, SELECT" : "REPLICATION SLAVE, REPLICATION CLIENT, SELECT";
  await src.query(
    `CREATE USER 'sync'@'127.0.0.1' IDENTIFIED BY '${PW}'; GRANT ${grants} ON *.* TO 'sync'@'127.0.0.1';
     GRANT ALL PRIVILEGES ON shop.* TO 'sync'@'127.0.0.1'; GRANT ALL PRIVILEGES ON _datasync.* TO 'sync'@'127.0.0.1';
     CREATE DATABASE shop; CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(20));
     INSERT INTO shop.items VALUES (1,'a'),(2,'b'),(3,'c');`,
  );
  await rep.query(`CREATE USER 'sync'@'127.0.0.1' IDENTIFIED BY '${PW}'; GRANT ALL PRIVILEGES ON *.* TO 'sync'@'127.0.0.1'`);
  before = await checksums(src, ["shop.items"]);
  toSource = await TcpProxy.start(src.port, "alias-of-source");
  toReplica = await TcpProxy.start(rep.port, "alias-of-replica");
}, 120_000);

afterAll(async () => {
  await Promise.all([toSource?.close(), toReplica?.close()]);
  await Promise.all([src, rep].filter(Boolean).map((s) => s.destroy()));
});

describe(`server identity before any write (${process.env.DATASYNC_TEST_FLAVOR ?? "mariadb"})`, () => {
  it("check: a replica that is the source under another address fails, naming both endpoints", async () => {
    const r = await runCli(["check", "--config", writeConfig(config([{ name: "west", port: rep.port }, { name: "alias", port: toSource.port }]))]);
    const out = r.stdout + r.stderr;
    expect(r.code, out).toBe(1);
    expect(out).toContain(`replica alias (127.0.0.1:${toSource.port}) is the same server as source (127.0.0.1:${src.port})`);
    expect(out).toMatch(src.flavor === "mysql" ? /server_uuid [0-9a-f-]{36}/ : /server_id \d+ on host .*, port \d+, datadir /);
    expect(out).toContain("point replicas[1] at a different server");
    expect(out).not.toContain(`replica west (127.0.0.1:${rep.port}) is the same`);
    expect(out).not.toContain(PW);
  });

  it("check: one server given twice as two replicas fails, naming both", async () => {
    const r = await runCli(["check", "--config", writeConfig(config([{ name: "west", port: rep.port }, { name: "east", port: toReplica.port }]))]);
    const out = r.stdout + r.stderr;
    expect(r.code, out).toBe(1);
    expect(out).toMatch(new RegExp(`replica (west|east) \\(127\\.0\\.0\\.1:(${rep.port}|${toReplica.port})\\) is the same server as replica (west|east) \\(127\\.0\\.0\\.1:(${rep.port}|${toReplica.port})\\)`));
    expect(out).not.toContain(PW);
  });

  it("check: distinct servers pass", async () => {
    const r = await runCli(["check", "--config", writeConfig(config([{ name: "west", port: rep.port }]))]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
  });

  it("the agent refuses to start; the source's data is untouched", async () => {
    const a = new AgentProcess(writeConfig(config([{ name: "west", port: rep.port }, { name: "alias", port: toSource.port }])));
    const code = await Promise.race([a.exited, new Promise((r) => setTimeout(() => r("still running"), 30_000))]);
    if (code === "still running") await a.kill();
    expect(code, a.stderr + a.stdoutText).not.toBe("still running");
    expect(code).not.toBe(0);
    const text = a.stderr + a.stdoutText;
    expect(text).toContain(`replica alias (127.0.0.1:${toSource.port}) is the same server as source (127.0.0.1:${src.port})`);
    expect(text).not.toContain(PW);
    await sourceUntouched();
    // nothing was written to the real replica either: the refusal comes before any session starts
    expect(await rep.query<any[]>("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ('_datasync','shop')")).toEqual([]);
  });

  it("a replica session that reconnects to an address that now reaches the source stops before writing", async () => {
    // the replica's address first reaches the real replica; the agent seeds it and streams
    const moving = await TcpProxy.start(rep.port, "moving");
    const port = moving.port;
    const a = new AgentProcess(writeConfig(config([{ name: "moving", port }])));
    try {
      await a.waitStreaming(["moving"], 60_000);
      await waitFor(async () => (await rep.query<any[]>("SELECT CAST(COUNT(*) AS CHAR) AS n FROM shop.items"))[0].n == 3, 30_000, "the seed");
      // then the same address reaches the source (a DNS record or port forward changed): the session's
      // reconnect proves the server's identity again before its first write
      await moving.close();
      const alias = await TcpProxy.start(src.port, "moved", port);
      try {
        await src.query("INSERT INTO shop.items VALUES (4,'d')");
        const refused = await a.waitForLog((l) => l.replica === "moving" && /is the same server as source/.test(JSON.stringify(l)), 60_000);
        expect(JSON.stringify(refused)).toContain(`(127.0.0.1:${port}) is the same server as source (127.0.0.1:${src.port})`);
        const ready = await a.http("/readyz");
        expect(ready.status).toBe(503);
        expect(ready.text).not.toContain(PW);
        expect((await a.http("/metrics")).text).not.toContain(PW);
      } finally {
        await alias.close();
      }
    } finally {
      await a.kill("SIGTERM");
    }
    expect(a.stdoutText + a.stderr).not.toContain(PW);
    expect(await src.query<any[]>("SELECT CAST(COUNT(*) AS CHAR) AS n FROM shop.items")).toEqual([{ n: "4" }]);
    await src.query("DELETE FROM shop.items WHERE id = 4");
    await sourceUntouched();
  }, 120_000);

  it("the provider's create refuses the group and prepares nothing", async () => {
    const { syncGroupProvider: sg } = dist<ProviderIndex>("index");
    const [[{ v }]] = [await src.query<any[]>("SELECT VERSION() AS v")];
    const m = /^(\d+\.\d+)/.exec(String(v))!;
    const version = m[1];
    const spec = (port: number) => ({ ...ep(port), version, flavor: src.flavor });
    const news = { group: "idn", primary: spec(src.port), replicas: [{ name: "alias", ...spec(toSource.port) }], databases: ["shop"] };
    const inputs = { ...news, ...(await sg.check!({}, news)).inputs };
    const err = await sg.create!(inputs).then(
      () => null,
      (e: Error) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toContain(`replica alias (127.0.0.1:${toSource.port}) is the same server as source (127.0.0.1:${src.port})`);
    expect(err!.message).not.toContain(PW);
    await sourceUntouched();
  });
});
