// The providers' live side against real servers of the flavor under test (direct calls of the compiled
// provider objects): create/update/delete of a SyncGroup and a ReplicaServer with `_datasync` bookkeeping, each
// live rule failing create with the rule's message, and the LocalAgent process lifecycle.
// The version mismatch needs a server that runs another version: MariaDB reports what `--version=` says (an
// old 10.6 on the same binary); mysqld has no such override, so on MySQL the other server is a real MariaDB
// (another flavor: the same live rule, flavor and major.minor compared from `SELECT VERSION()`).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fileURLToPath } from "node:url";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServers, freePort, defaultFlavor, type TestServer } from "../support/servers.js";
import { dist, type ProviderIndex } from "../support/provider-dist.js";

const { syncGroupProvider: sg, replicaServerProvider: rs, localAgentProvider: la } = dist<ProviderIndex>("index");

let primary: TestServer, r1: TestServer, r2: TestServer, old: TestServer;
let tmp: string;

const flavor = defaultFlavor();
const FLAVOR = flavor === "mariadb" ? "MariaDB" : "MySQL";
/** the source-side privilege that MariaDB calls BINLOG MONITOR */
const MONITOR = flavor === "mariadb" ? "BINLOG MONITOR" : "REPLICATION CLIENT";
/** major.minor the servers under test run (read live: "10.11", "9.7"), and the other server's full version and label */
let V: string;
let oldRaw: string, oldV: string, OLD: string;
const esc = (t: string) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

const SYNC_PW = "sync-Pw-1";
const ep = (s: TestServer, extra: object = {}) => ({ host: "127.0.0.1", port: s.port, user: "root", password: "", version: V, ...extra });

function group(extra: Record<string, unknown> = {}): any {
  return {
    group: "orders",
    primary: ep(primary, { user: "sync", password: SYNC_PW }),
    replicas: [
      { name: "r1", ...ep(r1) },
      { name: "r2", ...ep(r2) },
    ],
    databases: ["shop"],
    ...extra,
  };
}

async function members(s: TestServer): Promise<string[]> {
  const rows = await s.query<any[]>("SELECT group_name, replica FROM _datasync.members ORDER BY 1");
  return rows.map((r) => `${r.group_name}/${r.replica}`);
}

async function createFails(inputs: any): Promise<string> {
  const err = await sg.create!(inputs).then(
    () => null,
    (e: Error) => e,
  );
  expect(err, "create should fail").toBeInstanceOf(Error);
  return err!.message;
}

beforeAll(async () => {
  [primary, r1, r2] = await startServers([{ name: "pv-primary" }, { name: "pv-r1", noBinlog: true }, { name: "pv-r2", noBinlog: true }]);
  // a replica that runs another version: on MariaDB the server reports what --version says; on MySQL a MariaDB
  [old] = await startServers([
    flavor === "mariadb" ? { name: "pv-old", noBinlog: true, args: ["--version=10.6.99-MariaDB"] } : { name: "pv-old", noBinlog: true, flavor: "mariadb" },
  ]);
  V = /^(\d+\.\d+)/.exec((await primary.query<any[]>("SELECT VERSION() AS v"))[0].v)![1];
  oldRaw = (await old.query<any[]>("SELECT VERSION() AS v"))[0].v;
  oldV = /^(\d+\.\d+)/.exec(oldRaw)![1];
  OLD = `MariaDB ${oldV}`;
  expect(`${FLAVOR} ${V}`).not.toBe(OLD); // the test is about a difference
  await primary.query(
    `CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, total DECIMAL(10,2));
     CREATE USER 'sync'@'127.0.0.1' IDENTIFIED BY '${SYNC_PW}';
     GRANT REPLICATION SLAVE, ${MONITOR}, SELECT ON *.* TO 'sync'@'127.0.0.1';
     CREATE USER 'nobinlog'@'127.0.0.1' IDENTIFIED BY 'x'; GRANT SELECT ON shop.* TO 'nobinlog'@'127.0.0.1';`,
  );
  await r1.query("CREATE USER 'weak'@'127.0.0.1' IDENTIFIED BY 'w'; GRANT SELECT, INSERT ON shop.* TO 'weak'@'127.0.0.1'");
  tmp = mkdtempSync(join(tmpdir(), "datasync-la-"));
});

afterAll(async () => {
  await Promise.all([primary, r1, r2, old].filter(Boolean).map((s) => s.destroy()));
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("SyncGroup against real servers", () => {
  it("creates: checks live, prepares _datasync on each replica, outputs no credentials but the agent config", async () => {
    const inputs = { ...group(), ...(await sg.check!({}, group())).inputs };
    const { id, outs } = await sg.create!(inputs);
    expect(id).toBe("orders");
    expect(outs.liveVersions.primary).toMatch(new RegExp(`^${esc(V)}\\.`));
    expect(Object.keys(outs.liveVersions.replicas)).toEqual(["r1", "r2"]);
    expect(await members(r1)).toEqual(["orders/r1"]);
    expect(await members(r2)).toEqual(["orders/r2"]);
    const { agentConfig, ...visible } = outs;
    expect(JSON.stringify(visible)).not.toContain(SYNC_PW);
    expect(JSON.parse(agentConfig).source.password).toBe(SYNC_PW);
    expect(outs.topology).toContain(`r2<br/>127.0.0.1:${r2.port}`);
    expect(outs.stateVersion).toBe(2);

    // update: r2 leaves (its bookkeeping goes), r1 stays
    const news = { ...group({ replicas: [group().replicas[0]] }) };
    expect(await sg.diff!("orders", outs, news)).toMatchObject({ changes: true, replaces: [] });
    const upd = await sg.update!("orders", outs, news);
    expect(upd.outs.replicaNames).toEqual(["r1"]);
    expect(await members(r1)).toEqual(["orders/r1"]);
    expect(await members(r2)).toEqual([]);

    await sg.delete!("orders", upd.outs);
    expect(await members(r1)).toEqual([]);
  });

  it("fails create on a live version mismatch, naming server, versions and fix", async () => {
    const msg = await createFails(group({ replicas: [{ name: "old", ...ep(old) }] }));
    expect(msg).toMatch(new RegExp(`\\[rule 2\\] replica old \\(127\\.0\\.0\\.1:\\d+\\): ${esc(OLD)} \\(${esc(oldRaw)}\\) differs from the primary's ${esc(`${FLAVOR} ${V}`)} .*Run the replica on ${esc(`${FLAVOR} ${V}`)}`));
    expect(msg).toMatch(
      new RegExp(`\\[rule 2\\] replicas\\[0\\]\\.version: declared ${esc(`${FLAVOR} ${V}`)} \\("${esc(V)}"\\) but replica old .* runs ${esc(OLD)} .*Set replicas\\[0\\]\\.version to "${esc(oldV)}"${flavor === "mysql" ? ' and flavor to "mariadb"' : ""}, `),
    );
    expect(await old.query<any[]>("SHOW DATABASES LIKE '_datasync'")).toEqual([]); // nothing prepared
  });

  it("fails create on a table without a primary key in scope, and passes once it is excluded", async () => {
    await primary.query("CREATE TABLE shop.audit_log (at DATETIME, what TEXT)");
    try {
      const msg = await createFails(group());
      expect(msg).toMatch(/\[rule 4\] source \(127\.0\.0\.1:\d+\): table shop\.audit_log has no primary key.*Add a primary key .* or exclude it with tables\.exclude/);
      const { outs } = await sg.create!(group({ tables: { exclude: ["shop.audit_*"] } }));
      await sg.delete!("orders", outs);
    } finally {
      await primary.query("DROP TABLE shop.audit_log");
    }
  });

  it("fails create on wrong binlog settings, listing every one", async () => {
    await primary.query("SET GLOBAL binlog_format = 'STATEMENT'; SET GLOBAL binlog_row_image = 'MINIMAL'; SET GLOBAL binlog_row_metadata = 'MINIMAL'");
    try {
      const msg = await createFails(group());
      expect(msg).toMatch(/3 rules fail/);
      expect(msg).toMatch(/\[rule 3\] source .*binlog_format is STATEMENT, required ROW\. Set binlog_format=ROW/);
      expect(msg).toMatch(/binlog_row_image is MINIMAL, required FULL/);
      expect(msg).toMatch(/binlog_row_metadata is MINIMAL, required FULL/);
    } finally {
      await primary.query("SET GLOBAL binlog_format = 'ROW'; SET GLOBAL binlog_row_image = 'FULL'; SET GLOBAL binlog_row_metadata = 'FULL'");
    }
  });

  it("fails create on missing privileges on the source and on a replica", async () => {
    const g = group();
    g.primary = { ...g.primary, user: "nobinlog", password: "x" };
    g.replicas[0] = { ...g.replicas[0], user: "weak", password: "w" };
    const msg = await createFails(g);
    expect(msg).toMatch(new RegExp(`\\[rule 6\\] source .*: the sync user lacks REPLICATION SLAVE, ${MONITOR}.*GRANT REPLICATION SLAVE, ${MONITOR} ON \\*\\.\\*`));
    expect(msg).toMatch(/\[rule 6\] replica r1 .*: the sync user lacks UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, REFERENCES, CREATE VIEW, CREATE ROUTINE, ALTER ROUTINE, EVENT, TRIGGER on `shop`/);
    expect(msg).toMatch(/lacks .* on `_datasync`/);
  });

  it("fails create on an unreachable replica", async () => {
    const msg = await createFails(group({ replicas: [{ name: "gone", host: "127.0.0.1", port: await freePort(), user: "root", password: "", version: V }] }));
    expect(msg).toMatch(/replica gone \(root@127\.0\.0\.1:\d+\): connection refused; is the server running/);
  });
});

describe("ReplicaServer against real servers", () => {
  const member = (s: TestServer, name: string) => ({ group: "billing", replicaName: name, ...ep(s), primary: { version: V, host: "127.0.0.1", port: primary.port }, databases: ["shop"] });

  it("joins on create (version parity, privileges, _datasync) and leaves on delete", async () => {
    const { id, outs } = await rs.create!(member(r2, "r2"));
    expect(id).toBe("billing/r2");
    expect(outs.liveVersion).toMatch(new RegExp(`^${esc(V)}\\.`));
    expect(await members(r2)).toEqual(["billing/r2"]);
    expect(await rs.diff!(id, outs, member(r2, "r2"))).toMatchObject({ changes: false });
    expect(await rs.diff!(id, outs, { ...member(r2, "r2"), port: 1 })).toMatchObject({ changes: true, replaces: ["port"] });
    await rs.delete!(id, outs);
    expect(await members(r2)).toEqual([]);
  });

  it("refuses a server on another version", async () => {
    const err = await rs.create!(member(old, "old")).catch((e: Error) => e);
    expect(String((err as Error).message)).toMatch(new RegExp(`${esc(OLD)} \\(${esc(oldRaw)}\\) differs from the primary's ${esc(`${FLAVOR} ${V}`)}`));
  });
});

describe("LocalAgent process lifecycle", () => {
  const fake = fileURLToPath(new URL("../support/provider-fake-agent.mjs", import.meta.url));

  it("starts, notices a dead process in diff, restarts, and stops cleanly on delete", async () => {
    const port = await freePort();
    const inputs = { config: JSON.stringify({ group: "orders", http: { listen: `127.0.0.1:${port}` } }), entry: fake, args: [], logFile: join(tmp, "agent.log"), startTimeoutSeconds: 10, stopTimeoutSeconds: 5 };
    expect((await la.check!({}, inputs)).failures).toEqual([]);
    const first = await la.create!(inputs);
    expect((await fetch(first.outs.healthUrl)).status).toBe(200);
    expect(await la.diff!(first.id, first.outs, inputs)).toMatchObject({ changes: false });

    process.kill(first.outs.pid, "SIGKILL");
    await new Promise((r) => setTimeout(r, 300));
    expect(await la.diff!(first.id, first.outs, inputs)).toMatchObject({ changes: true, replaces: ["pid"], deleteBeforeReplace: true });

    await la.delete!(first.id, first.outs); // already dead: nothing to do
    const second = await la.create!(inputs);
    expect(second.outs.pid).not.toBe(first.outs.pid);
    await la.delete!(second.id, second.outs);
    await expect(fetch(second.outs.healthUrl)).rejects.toThrow();
    const log = readFileSync(inputs.logFile, "utf8");
    expect(log).toMatch(new RegExp(`"msg":"stopped cleanly".*"pid":${second.outs.pid}`));
    expect(log).not.toContain(`"msg":"stopped cleanly","group":"orders","pid":${first.outs.pid}`);
  });

  it("runs the real agent from a SyncGroup's agent config: rows reach the replicas, delete stops it cleanly", async () => {
    const created = await sg.create!(group({ group: "live" }));
    const cfg = JSON.parse(created.outs.agentConfig);
    cfg.http = { listen: `127.0.0.1:${await freePort()}` };
    const entry = fileURLToPath(new URL("../../bin/datasync.js", import.meta.url));
    const inputs = { config: JSON.stringify(cfg), entry, args: ["agent"], logFile: join(tmp, "real.log"), startTimeoutSeconds: 30, stopTimeoutSeconds: 20 };
    const agent = await la.create!(inputs);
    try {
      expect((await fetch(agent.outs.healthUrl)).status).toBe(200);
      await primary.query("INSERT INTO shop.orders VALUES (4242, 42.42)");
      const deadline = Date.now() + 30_000;
      let got: any[] = [];
      while (Date.now() < deadline) {
        got = await r2.query<any[]>("SELECT id, total FROM shop.orders WHERE id = 4242").catch(() => []);
        if (got.length) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(got).toEqual([{ id: 4242, total: "42.42" }]);
    } finally {
      await la.delete!(agent.id, agent.outs);
      await sg.delete!(created.id, created.outs);
    }
    await expect(fetch(agent.outs.healthUrl)).rejects.toThrow();
    expect(readFileSync(inputs.logFile, "utf8")).toMatch(/"msg":"stopped; checkpoints saved"/);
  });

  it("fails create with the log when the agent exits at start", async () => {
    const dying = join(tmp, "dying.mjs");
    writeFileSync(dying, 'console.log(JSON.stringify({ level: "fatal", msg: "source unreachable" })); process.exit(3);\n');
    const inputs = { config: JSON.stringify({ group: "orders", http: { listen: `127.0.0.1:${await freePort()}` } }), entry: dying, args: [], logFile: join(tmp, "bad.log"), startTimeoutSeconds: 10, stopTimeoutSeconds: 2 };
    const err = await la.create!(inputs).catch((e: Error) => e);
    expect(String((err as Error).message)).toMatch(/the agent exited at start \(code 3\); log .*bad\.log:\n.*source unreachable/s);
  });
});
