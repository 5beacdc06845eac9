// An XA transaction already prepared on the source when a replica's online snapshot starts (issue 15):
// its rows are invisible to the copy and its XA PREPARE lies before the snapshot's position, so a stream
// started there sees only the XA COMMIT and the rows were silently lost. The snapshot now waits (logging
// the XIDs) until no XA transaction is prepared before it takes its position.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultFlavor, startServers, type TestServer } from "../support/servers.js";
import { AgentProcess, endpoint, makeConfig, waitCaughtUp, waitFor, writeConfig } from "../support/agent.js";

const flavor = defaultFlavor();
let src: TestServer;
let rep: TestServer;
let agent: AgentProcess | undefined;

beforeAll(async () => {
  [src, rep] = await startServers([{ name: "xs-src" }, { name: "xs-rep" }]);
  await src.query("CREATE DATABASE shop");
  await src.query("CREATE TABLE shop.xa_t (id INT PRIMARY KEY, v INT)");
  await src.query("INSERT INTO shop.xa_t VALUES (1, 1)");
}, 120_000);

afterAll(async () => {
  await agent?.kill("SIGKILL");
  await Promise.all([src, rep].map((s) => s?.destroy()));
});

describe(`snapshot with XA transactions prepared on the source (${flavor})`, () => {
  it("an XA transaction prepared before the snapshot and committed after it started reaches the replica exactly once; the wait is logged with the XID", async () => {
    const c = await src.connect({ multipleStatements: false });
    try {
      await c.query("XA START 'snap1'");
      await c.query("INSERT INTO shop.xa_t VALUES (2, 2), (3, 3)");
      await c.query("UPDATE shop.xa_t SET v = v + 100 WHERE id = 1");
      await c.query("XA END 'snap1'");
      await c.query("XA PREPARE 'snap1'");
      // ordinary writes before the snapshot, around the prepared one
      await src.query("INSERT INTO shop.xa_t VALUES (4, 4)");
      agent = new AgentProcess(writeConfig(makeConfig(src, [rep])));
      // the snapshot logs its wait; without it (before the fix) the copy finishes first and the XA COMMIT below
      // reaches a stream that never saw the prepared rows (the data assertions fail, not only the log's)
      const a = agent;
      const waitLog = a.waitForLog((l) => /XA transactions are prepared on the source/.test(String(l.msg)), 60_000);
      const copied = waitFor(async () => (await rep.query<any[]>("SELECT state FROM _datasync.checkpoints").catch(() => []))[0]?.state === "streaming", 60_000, "snapshot done");
      waitLog.catch(() => undefined);
      copied.catch(() => undefined);
      const waited = await Promise.race([waitLog, copied.then(() => null)]);
      if (waited) {
        // X'736e617031' is 'snap1'
        expect(waited.xids).toEqual(["X'736E617031',X'',1"]);
        expect(waited.replica).toBe("r1");
        // the snapshot has not taken its position: nothing is registered for the copy yet
        await new Promise((r) => setTimeout(r, 1500));
        expect(agent.logs.some((l) => /seeding it with an online snapshot/.test(String(l.msg)))).toBe(false);
      }
      await c.query("XA COMMIT 'snap1'");
    } finally {
      await c.end();
    }
    await agent.waitStreaming(["r1"], 60_000);
    await src.query("INSERT INTO shop.xa_t VALUES (5, 5)");
    await waitFor(async () => (await rep.query<any[]>("SELECT state FROM _datasync.checkpoints"))[0]?.state === "streaming", 30_000, "snapshot done");
    await waitCaughtUp(src, rep, "test", 30_000);
    const q = "SELECT id, v FROM shop.xa_t ORDER BY id";
    expect(await rep.query(q)).toEqual(await src.query(q));
    expect(await rep.query(q)).toEqual([
      { id: 1, v: 101 },
      { id: 2, v: 2 },
      { id: 3, v: 3 },
      { id: 4, v: 4 },
      { id: 5, v: 5 },
    ]);
    const sum = "CHECKSUM TABLE shop.xa_t";
    expect((await rep.query<any[]>(sum))[0].Checksum).toEqual((await src.query<any[]>(sum))[0].Checksum);
    // the wait was logged once for that set of XIDs, and the agent logged no error
    expect(agent.logs.filter((l) => /XA transactions are prepared on the source/.test(String(l.msg)))).toHaveLength(1);
    expect(agent.logs.filter((l) => l.level >= 50)).toEqual([]);
  }, 180_000);

  it("an XA transaction left prepared past the bounded wait stops the replica with an error naming the XID and the fix; after XA ROLLBACK it is seeded", async () => {
    await agent?.kill("SIGKILL");
    await rep.query("DROP DATABASE IF EXISTS shop");
    await rep.query("DROP DATABASE IF EXISTS _datasync");
    const c = await src.connect({ multipleStatements: false });
    try {
      await c.query("XA START 'stuck', 'b2', 7");
      await c.query("INSERT INTO shop.xa_t VALUES (20, 20)");
      await c.query("XA END 'stuck', 'b2', 7");
      await c.query("XA PREPARE 'stuck', 'b2', 7");
      agent = new AgentProcess(writeConfig(makeConfig(src, [rep])), { DATASYNC_XA_WAIT_MS: "2000" });
      const stopped = await agent.waitForLog((l) => /replica unavailable, retrying/.test(String(l.msg)) && l.kind === "xa-prepared", 60_000);
      // X'737475636b' is 'stuck', X'6232' is 'b2'
      expect(stopped.msg).toContain("X'737475636B',X'6232',7 still prepared");
      expect(stopped.msg).toContain("XA ROLLBACK");
      expect(Number((await rep.query<any[]>("SELECT COUNT(*) AS n FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'shop'"))[0].n)).toBe(0);
      await c.query("XA ROLLBACK 'stuck', 'b2', 7");
    } finally {
      await c.end();
    }
    await agent.waitStreaming(["r1"], 90_000);
    await waitFor(async () => (await rep.query<any[]>("SELECT state FROM _datasync.checkpoints"))[0]?.state === "streaming", 30_000, "snapshot done");
    await waitCaughtUp(src, rep, "test", 30_000);
    const q = "SELECT id, v FROM shop.xa_t ORDER BY id";
    expect(await rep.query(q)).toEqual(await src.query(q));
    expect((await rep.query<any[]>(q)).map((r) => r.id)).toEqual([1, 2, 3, 4, 5]);
  }, 180_000);

  if (flavor === "mysql") {
    it("MySQL: a sync user without XA_RECOVER_ADMIN gets a warning naming the grant, and the snapshot goes on (MySQL)", async () => {
      await agent?.kill("SIGKILL");
      await rep.query("DROP DATABASE IF EXISTS shop");
      await rep.query("DROP DATABASE IF EXISTS _datasync");
      await src.query("CREATE USER IF NOT EXISTS xsync@'%' IDENTIFIED BY 'xs-pw'");
      await src.query("GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO xsync@'%'");
      agent = new AgentProcess(writeConfig(makeConfig(src, [rep], { source: endpoint(src, { user: "xsync", password: "xs-pw" }) })));
      const warned = await agent.waitForLog((l) => /may not run XA RECOVER/.test(String(l.msg)), 60_000);
      expect(warned.msg).toContain("XA_RECOVER_ADMIN");
      expect(warned.msg).not.toContain("xs-pw");
      await agent.waitStreaming(["r1"], 60_000);
      await waitFor(async () => (await rep.query<any[]>("SELECT state FROM _datasync.checkpoints"))[0]?.state === "streaming", 30_000, "snapshot done");
      await waitCaughtUp(src, rep, "test", 30_000);
      const q = "SELECT id, v FROM shop.xa_t ORDER BY id";
      expect(await rep.query(q)).toEqual(await src.query(q));
    }, 180_000);
  }
});
