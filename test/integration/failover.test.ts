// Positions that survive a change of source server (DESIGN.md "Server identity"): the source fails over to a
// native replica of it (MariaDB CHANGE MASTER … MASTER_USE_GTID=slave_pos, MySQL CHANGE REPLICATION SOURCE …
// SOURCE_AUTO_POSITION=1), the agent's config moves to it, and the replica resumes without a snapshot and ends
// identical; a source whose history does not hold the checkpoint puts the replica in needs-snapshot instead.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentProcess, endpoint, makeConfig, waitFor, writeConfig } from "../support/agent.js";
import { defaultFlavor, startServers, type TestServer } from "../support/servers.js";

const flavor = defaultFlavor();

async function rows(s: TestServer): Promise<string> {
  return JSON.stringify(await s.query("SELECT * FROM shop.t ORDER BY id"));
}

/** b becomes a native replica of a, keeping a's GTIDs in its own binlog */
async function replicate(a: TestServer, b: TestServer): Promise<void> {
  if (flavor === "mariadb") {
    await b.query(`CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${a.port}, MASTER_USER='root', MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos`);
    await b.query("START SLAVE");
  } else {
    await b.query(`CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT=${a.port}, SOURCE_USER='root', SOURCE_PASSWORD='', SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1`);
    await b.query("START REPLICA");
  }
}

async function caughtUpNative(a: TestServer, b: TestServer): Promise<void> {
  await waitFor(async () => (await rows(a)) === (await rows(b)), 30_000, "native replica caught up");
}

describe(`source failover (${flavor})`, () => {
  let servers: TestServer[] = [];
  let agent: AgentProcess | null = null;
  beforeAll(async () => {
    const extra = flavor === "mariadb" ? ["--log-slave-updates=ON"] : [];
    servers = await startServers([
      { name: "a", flavor },
      { name: "b", flavor, args: extra },
      { name: "rep", flavor },
      { name: "other", flavor },
    ]);
  }, 300_000);
  afterAll(async () => {
    await agent?.kill("SIGTERM");
    await Promise.all(servers.map((s) => s.destroy()));
  });

  it("resumes on the promoted native replica without a snapshot; refuses a source whose history lacks the checkpoint", async () => {
    const [a, b, rep, other] = servers;
    await replicate(a, b);
    await a.query("CREATE DATABASE shop");
    await a.query("CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(20))");
    await a.query("INSERT INTO shop.t VALUES (1, 'a1'), (2, 'a2')");
    const cfg = makeConfig(a, [rep], { group: "fo" });
    agent = new AgentProcess(writeConfig(cfg));
    await agent.waitStreaming(["r1"], 180_000);
    for (let i = 3; i <= 50; i++) await a.query("INSERT INTO shop.t VALUES (?, ?)", [i, `a${i}`]);
    await a.query("UPDATE shop.t SET v = 'changed' WHERE id <= 10");
    await waitFor(async () => (await rows(a)) === (await rows(rep)), 30_000, "agent caught up");
    await caughtUpNative(a, b);
    await agent.kill("SIGTERM");
    agent = null;
    const cpBefore = (await rep.query<any[]>("SELECT source_id, gtid FROM _datasync.checkpoints WHERE group_name = 'fo'"))[0];
    expect(cpBefore.source_id).toMatch(flavor === "mysql" ? /^mysql:[0-9a-f-]{36}$/ : /^mariadb:\d+@.+:\d+\//);

    // failover: b is promoted (its replication stopped), the config's source moves to it, writes go on there
    await b.query(flavor === "mariadb" ? "STOP SLAVE" : "STOP REPLICA");
    await a.query("INSERT INTO shop.t VALUES (999, 'lost with a')"); // never reaches b: a is gone for the app
    await b.query("INSERT INTO shop.t VALUES (51, 'b51')");
    await b.query("UPDATE shop.t SET v = 'on b' WHERE id = 2");
    agent = new AgentProcess(writeConfig({ ...cfg, source: endpoint(b) }));
    await agent.waitForLog((l) => /another source server; resuming/.test(String(l.msg)), 30_000);
    await waitFor(async () => (await rows(b)) === (await rows(rep)), 30_000, "replica identical to the new source");
    expect(agent.logs.some((l) => /snapshot|seeding/i.test(String(l.msg)))).toBe(false);
    expect(await rows(rep)).not.toContain("lost with a");
    const cpAfter = (await rep.query<any[]>("SELECT source_id FROM _datasync.checkpoints WHERE group_name = 'fo'"))[0];
    expect(cpAfter.source_id).not.toBe(cpBefore.source_id);
    await agent.kill("SIGTERM");
    agent = null;

    // a server with another history (same schema, its own transactions): needs-snapshot, nothing applied
    await other.query("CREATE DATABASE shop");
    await other.query("CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(20))");
    for (let i = 0; i < 80; i++) await other.query("INSERT INTO shop.t VALUES (?, 'other')", [1000 + i]);
    const before = await rows(rep);
    agent = new AgentProcess(writeConfig({ ...cfg, source: endpoint(other), http: { listen: "127.0.0.1:0" } }));
    const err = await agent.waitForLog((l) => /cannot be proven to hold its last transaction/.test(String(l.msg)), 30_000);
    expect(err.msg).toContain("datasync resnapshot");
    const ready = await agent.http("/readyz");
    expect(ready.status).toBe(503);
    expect(ready.body.replicas[0].state).toBe("needs-snapshot");
    expect(await rows(rep)).toBe(before);
  }, 480_000);
});
