// Fidelity to what applications really write (issue 15, the DDL and apply half): statements, sessions
// and values that real applications, ORMs, dump files and DBAs produce, each applied as native
// replication would, or the replica stops naming the statement and the fix. One source, one replica and
// one agent per flavor, shared by the cases (each works in its own tables); the packet case stops the
// replica on purpose and runs last.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connection } from "mysql2/promise";
import { defaultFlavor, startServers, type TestServer } from "../support/servers.js";
import { AgentProcess, makeConfig, waitFor, writeConfig } from "../support/agent.js";

const flavor = defaultFlavor();
const mysql = flavor === "mysql";
let src: TestServer;
let rep: TestServer;
let agent: AgentProcess;

/** SRID 4326 columns exist on MySQL; MariaDB keeps an SRID in the value only */
const GEO_DDL = mysql
  ? "CREATE TABLE shop.geo (id INT PRIMARY KEY, g GEOMETRY NULL, p POINT SRID 4326 NULL)"
  : "CREATE TABLE shop.geo (id INT PRIMARY KEY, g GEOMETRY NULL, p POINT NULL)";

const config = () => makeConfig(src, [rep], { databases: ["shop", "fresh"], tables: { exclude: ["shop.stage_*"] } });

beforeAll(async () => {
  [src, rep] = await startServers([{ name: "fa-src" }, { name: "fa-rep" }]);
  // rows a dump file loaded with foreign key checks off (children first, and an orphan): the snapshot
  // must copy them all; spatial values with their SRIDs
  await src.query("CREATE DATABASE shop");
  await src.query("CREATE TABLE shop.snap_parent (id INT PRIMARY KEY)");
  await src.query("CREATE TABLE shop.snap_child (id INT PRIMARY KEY, pid INT NOT NULL, FOREIGN KEY (pid) REFERENCES shop.snap_parent (id))");
  await src.query("SET SESSION foreign_key_checks = 0; INSERT INTO shop.snap_child VALUES (1, 10), (2, 99); INSERT INTO shop.snap_parent VALUES (10); SET SESSION foreign_key_checks = 1");
  await src.query(GEO_DDL);
  await src.query(
    "INSERT INTO shop.geo VALUES (1, ST_GeomFromText('POINT(1 2)'), ST_GeomFromText('POINT(3 4)', 4326)), (2, ST_GeomFromText('LINESTRING(0 0, 1 1, 2 0)', 4326), NULL)",
  );
  // a small packet on the replica, so the packet case needs MiBs, not tens of them
  await rep.query("SET GLOBAL max_allowed_packet = 4194304");
  agent = new AgentProcess(writeConfig(config()), { DATASYNC_TEST_APPLY_DELAY_MS: "60" });
  await agent.waitStreaming(["r1"]);
}, 120_000);

afterAll(async () => {
  await agent?.kill("SIGKILL");
  await Promise.all([src, rep].map((s) => s?.destroy()));
});

/** the source's binlog end (MySQL 8.4+ renamed SHOW MASTER STATUS) */
async function sourceEnd(): Promise<{ file: string; pos: number }> {
  const [st] = await src.query<any[]>(mysql ? "SHOW BINARY LOG STATUS" : "SHOW MASTER STATUS");
  return { file: String(st.File), pos: Number(st.Position) };
}

async function caughtUp(): Promise<void> {
  try {
    const end = await sourceEnd();
    const num = (f: string) => Number(/(\d+)$/.exec(f)?.[1] ?? 0);
    await waitFor(
      async () => {
        const [r] = await rep.query<any[]>("SELECT binlog_file, binlog_pos FROM _datasync.checkpoints WHERE group_name = 'test'");
        return r && (num(r.binlog_file) > num(end.file) || (num(r.binlog_file) === num(end.file) && Number(r.binlog_pos) >= end.pos));
      },
      30_000,
      `replica to reach ${end.file}:${end.pos}`,
    );
  } catch (e) {
    throw new Error(`${(e as Error).message}\nagent logs:\n${agent.stdoutText.slice(-4000)}`);
  }
}

/** a source session with its own settings (a dump, an ORM, a DBA's client) */
async function session(charset = "utf8mb4"): Promise<Connection> {
  return src.connect({ multipleStatements: true, charset });
}

const both = async <T>(q: string): Promise<[T, T]> => [await src.query<T>(q), await rep.query<T>(q)];

describe(`fidelity of applied DDL and rows (${flavor})`, () => {
  it("the initial snapshot copies rows loaded with foreign key checks off, and spatial values with their SRID", async () => {
    await caughtUp();
    await waitFor(async () => (await rep.query<any[]>("SELECT state FROM _datasync.checkpoints"))[0]?.state === "streaming", 30_000, "snapshot done");
    expect(await rep.query("SELECT id, pid FROM shop.snap_child ORDER BY id")).toEqual([
      { id: 1, pid: 10 },
      { id: 2, pid: 99 },
    ]);
    const geo = "SELECT id, HEX(g) AS g, HEX(p) AS p, ST_SRID(g) AS sg FROM shop.geo ORDER BY id";
    const [s, r] = await both<any[]>(geo);
    expect(r).toEqual(s);
    expect(Number(s[1].sg)).toBe(4326);
  });

  it("applies DDL with the statement's sql_mode, timestamp, time zone and character sets", async () => {
    const c = await session();
    try {
      // a database created without a charset takes the session's collation_server
      await c.query("SET SESSION collation_server = 'utf8mb4_bin'");
      await c.query("CREATE DATABASE fresh");
      await c.query("CREATE TABLE fresh.t (id INT PRIMARY KEY, s VARCHAR(10))");
      await c.query("INSERT INTO fresh.t VALUES (1, 'Ab😀')");
      // NO_BACKSLASH_ESCAPES: the DEFAULT is the four characters a\nb, not a newline
      await c.query("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')");
      await c.query("CREATE TABLE shop.nbe (id INT PRIMARY KEY, v VARCHAR(20) DEFAULT 'a\\nb')");
      await c.query("INSERT INTO shop.nbe (id) VALUES (1)");
      // ANSI_QUOTES: "…" quotes names
      await c.query("SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')");
      await c.query('CREATE TABLE "shop"."ansi" ("id" INT PRIMARY KEY, "v" VARCHAR(10) DEFAULT \'x\')');
      await c.query('INSERT INTO "shop"."ansi" ("id") VALUES (1), (2)');
      // ADD COLUMN … DEFAULT CURRENT_TIMESTAMP fills existing rows with the statement's time in its zone
      await c.query("SET SESSION sql_mode = DEFAULT, time_zone = '+09:30'");
      await c.query("CREATE TABLE shop.stamped (id INT PRIMARY KEY)");
      await c.query("INSERT INTO shop.stamped VALUES (1), (2)");
      await new Promise((r) => setTimeout(r, 1100));
      await c.query("ALTER TABLE shop.stamped ADD COLUMN at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)");
    } finally {
      await c.end();
    }
    await caughtUp();
    const [sdb, rdb] = await both<any[]>("SELECT DEFAULT_COLLATION_NAME AS c FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'fresh'");
    expect(rdb).toEqual(sdb);
    expect(rdb[0].c).toBe("utf8mb4_bin");
    for (const q of ["SELECT id, s FROM fresh.t", "SELECT id, v FROM shop.nbe", "SELECT id, v FROM shop.ansi ORDER BY id", "SELECT id, at FROM shop.stamped ORDER BY id"]) {
      const [s, r] = await both(q);
      expect(r, q).toEqual(s);
    }
    expect(await rep.query("SELECT v FROM shop.nbe")).toEqual([{ v: "a\\nb" }]);
  });

  it("syncs tables whatever the spelling: KEY as primary key, quotes in names, comments, a latin1 client", async () => {
    const c = await session();
    const l1 = await session("latin1");
    try {
      await c.query("CREATE TABLE shop.keyed (id INT NOT NULL KEY, v INT)");
      await c.query("INSERT INTO shop.keyed VALUES (1, 1), (2, 2)");
      await c.query("CREATE TABLE shop.`it's` (id INT PRIMARY KEY, v VARCHAR(5) DEFAULT 'x')");
      await c.query("INSERT INTO shop.`it's` (id) VALUES (1)");
      await c.query("CREATE TABLE /* generated by the ORM */ shop.commented (id INT PRIMARY KEY)");
      await c.query("INSERT INTO shop.commented VALUES (7)");
      await c.query("CREATE TABLE shop.nokey (v INT)");
      await c.query("INSERT INTO shop.nokey VALUES (1)");
      // the statement's bytes are latin1: the name and the ENUM label are é, not U+FFFD
      await l1.query("CREATE TABLE shop.`café` (id INT PRIMARY KEY, e ENUM('é', 'b') CHARACTER SET utf8mb4)");
      await l1.query("INSERT INTO shop.`café` VALUES (1, 'é'), (2, 'b')");
    } finally {
      await c.end();
      await l1.end();
    }
    await caughtUp();
    for (const q of ["SELECT * FROM shop.keyed ORDER BY id", "SELECT * FROM shop.`it's`", "SELECT * FROM shop.commented", "SELECT id, e FROM shop.`café` ORDER BY id"]) {
      const [s, r] = await both(q);
      expect(r, q).toEqual(s);
    }
    const [sc, rc] = await both<any[]>("SHOW CREATE TABLE shop.`café`");
    expect(rc).toEqual(sc);
    // a table really without a key is still quarantined (not created on the replica)
    expect(await rep.query("SELECT tbl FROM _datasync.quarantine WHERE db = 'shop'")).toEqual([{ tbl: "nokey" }]);
    expect(await rep.query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'nokey'")).toEqual([]);
    await src.query("DROP TABLE shop.nokey"); // a restart's preflight refuses key-less tables in scope
  });

  it("applies rows with the source session's foreign key checks, and deletes of a self-referencing table in source order", async () => {
    await src.query("CREATE TABLE shop.parent (id INT PRIMARY KEY)");
    await src.query("CREATE TABLE shop.child (id INT PRIMARY KEY, pid INT NOT NULL, FOREIGN KEY (pid) REFERENCES shop.parent (id))");
    await src.query("CREATE TABLE shop.tree (id INT PRIMARY KEY, parent_id INT NULL, FOREIGN KEY (parent_id) REFERENCES shop.tree (id))");
    await src.query("INSERT INTO shop.tree VALUES (1, NULL), (2, 1), (3, 2), (4, 3)");
    await caughtUp();
    const c = await session();
    try {
      // a dump loads children before parents, with checks off
      await c.query("SET SESSION foreign_key_checks = 0");
      await c.query("INSERT INTO shop.child VALUES (1, 10), (2, 20), (3, 99)");
      await c.query("INSERT INTO shop.parent VALUES (10), (20)");
      await c.query("SET SESSION foreign_key_checks = 1");
      // leaf first, one transaction each (the applier groups them into one target transaction)
      for (const id of [4, 3, 2, 1]) await c.query(`DELETE FROM shop.tree WHERE id = ${id}`);
    } finally {
      await c.end();
    }
    await caughtUp();
    for (const q of ["SELECT * FROM shop.child ORDER BY id", "SELECT * FROM shop.parent ORDER BY id", "SELECT * FROM shop.tree"]) {
      const [s, r] = await both(q);
      expect(r, q).toEqual(s);
    }
    expect(await rep.query("SELECT id FROM shop.child ORDER BY id")).toEqual([{ id: 1 }, { id: 2 }, { id: 3 }]);
  });

  it("streams spatial values with their SRID", async () => {
    await src.query("INSERT INTO shop.geo VALUES (3, ST_GeomFromText('POLYGON((0 0, 0 1, 1 1, 0 0))', 4326), ST_GeomFromText('POINT(5 6)', 4326)), (4, ST_GeomFromText('MULTIPOINT(0 0, 1 1)'), NULL)");
    await src.query("UPDATE shop.geo SET g = ST_GeomFromText('POINT(9 9)', 4326) WHERE id = 1");
    await caughtUp();
    const [s, r] = await both<any[]>("SELECT id, HEX(g) AS g, HEX(p) AS p FROM shop.geo ORDER BY id");
    expect(r).toEqual(s);
    expect(s).toHaveLength(4);
  });

  it("sysbench-shaped transactions (update, update, delete + insert of one key) gathered per table, and the cases that must not merge, land row for row (issue 17)", async () => {
    // sb*: sysbench's table (AUTO_INCREMENT key, a non-unique index): rows of these gather into one upsert per table
    // and target transaction. fk_*: a parent whose delete cascades; uq: a second unique key; mini: rows written with
    // binlog_row_image=MINIMAL (an INSERT without every column). Merging a DELETE and an INSERT of one key there
    // would leave the children, collide on the email, keep the old b: each check below fails for such a merge.
    const sb = [1, 2, 3].map((n) => `shop.sb${n}`);
    const seed = Array.from({ length: 200 }, (_, i) => `(${i + 1}, ${i % 17}, 'c${i + 1}', 'pad')`).join(",");
    for (const t of sb) {
      await src.query(`CREATE TABLE ${t} (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, k INT NOT NULL DEFAULT 0, c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '', KEY k_1 (k))`);
      await src.query(`INSERT INTO ${t} VALUES ${seed}`);
    }
    await src.query("CREATE TABLE shop.fk_parent (id INT PRIMARY KEY, v INT)");
    await src.query("CREATE TABLE shop.fk_child (id INT PRIMARY KEY, pid INT, FOREIGN KEY (pid) REFERENCES shop.fk_parent (id) ON DELETE CASCADE)");
    await src.query("INSERT INTO shop.fk_parent VALUES (1, 1), (2, 2)");
    await src.query("INSERT INTO shop.fk_child VALUES (10, 1), (11, 1), (20, 2)");
    await src.query("CREATE TABLE shop.uq (id INT PRIMARY KEY, email VARCHAR(20) NOT NULL UNIQUE, n INT)");
    await src.query("INSERT INTO shop.uq VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3), (4, 'd', 4)");
    await src.query("CREATE TABLE shop.mini (id INT PRIMARY KEY, a INT, b INT DEFAULT 7)");
    await src.query("INSERT INTO shop.mini VALUES (1, 1, 99), (2, 2, 99)");
    await caughtUp();

    // four sessions of sysbench's oltp_write_only transactions on random keys (the agent applies with a delay, so
    // each target transaction holds many of them)
    let seedN = 17;
    const rnd = (n: number) => {
      seedN = (seedN * 1103515245 + 12345) % 2147483648;
      return 1 + (seedN % n);
    };
    const work = async (w: number) => {
      const c = await session();
      try {
        for (let i = 0; i < 60; i++) {
          const id = rnd(200);
          const q = [
            `UPDATE ${sb[rnd(3) - 1]} SET k = k + 1 WHERE id = ${rnd(200)}`,
            `UPDATE ${sb[rnd(3) - 1]} SET c = 'w${w}-${i}' WHERE id = ${rnd(200)}`,
            `DELETE FROM ${sb[(w + i) % 3]} WHERE id = ${id}`,
            `INSERT INTO ${sb[(w + i) % 3]} (id, k, c, pad) VALUES (${id}, ${rnd(50)}, 'i${w}-${i}', 'p${i}')`,
          ];
          // four sessions on random keys deadlock now and then on the source (InnoDB rolls one back): retry
          // it, as sysbench does
          for (let attempt = 0; ; attempt++) {
            try {
              await c.query(`START TRANSACTION; ${q.join("; ")}; COMMIT`);
              break;
            } catch (e: any) {
              if (e?.errno !== 1213 || attempt >= 20) throw e;
              await c.query("ROLLBACK");
            }
          }
        }
      } finally {
        await c.end();
      }
    };
    await Promise.all([1, 2, 3, 4].map(work));
    const c = await session();
    try {
      // one key touched again and again in one transaction: insert of a new key then its delete (the source's
      // AUTO_INCREMENT counter moved past it), delete + insert + delete, update + delete + insert
      await c.query(
        "START TRANSACTION; INSERT INTO shop.sb1 VALUES (5000, 1, 'new', 'p'); DELETE FROM shop.sb1 WHERE id = 5000; " +
          "DELETE FROM shop.sb1 WHERE id = 5; INSERT INTO shop.sb1 VALUES (5, 1, 'again', 'p'); DELETE FROM shop.sb1 WHERE id = 5; " +
          "UPDATE shop.sb2 SET c = 'u' WHERE id = 6; DELETE FROM shop.sb2 WHERE id = 6; INSERT INTO shop.sb2 (id, c) VALUES (6, 'defaults'); COMMIT",
      );
      // the parent's delete cascades to its children on the source (not logged), and must on the replica
      await c.query("START TRANSACTION; DELETE FROM shop.fk_parent WHERE id = 1; INSERT INTO shop.fk_parent VALUES (1, 100); INSERT INTO shop.sb3 VALUES (6000, 1, 'x', 'p'); COMMIT");
      // emails swap between keys, and a freed email moves to a new key
      await c.query(
        "START TRANSACTION; DELETE FROM shop.uq WHERE id IN (1, 2); INSERT INTO shop.uq VALUES (1, 'b', 10), (2, 'a', 20); " +
          "DELETE FROM shop.uq WHERE id = 4; INSERT INTO shop.uq VALUES (5, 'd', 50); INSERT INTO shop.uq VALUES (4, 'e', 40); COMMIT",
      );
      // MINIMAL: the INSERT's image holds id and a only; b takes its default on the source
      await c.query("SET SESSION binlog_row_image = 'MINIMAL'");
      await c.query("START TRANSACTION; DELETE FROM shop.mini WHERE id = 1; INSERT INTO shop.mini (id, a) VALUES (1, 5); UPDATE shop.mini SET a = 3 WHERE id = 2; COMMIT");
      await c.query("SET SESSION binlog_row_image = 'FULL'");
    } finally {
      await c.end();
    }
    await caughtUp();
    for (const t of [...sb, "shop.fk_parent", "shop.fk_child", "shop.uq", "shop.mini"]) {
      const [s, r] = await both<any[]>(`SELECT * FROM ${t} ORDER BY id`);
      expect({ t, rows: r }).toEqual({ t, rows: s });
    }
    expect(await rep.query("SELECT * FROM shop.fk_child ORDER BY id")).toEqual([{ id: 20, pid: 2 }]);
    expect(await rep.query("SELECT id, email FROM shop.uq ORDER BY id")).toEqual([
      { id: 1, email: "b" },
      { id: 2, email: "a" },
      { id: 3, email: "c" },
      { id: 4, email: "e" },
      { id: 5, email: "d" },
    ]);
    expect(await rep.query("SELECT id, a, b FROM shop.mini ORDER BY id")).toEqual([
      { id: 1, a: 5, b: 7 },
      { id: 2, a: 3, b: 99 },
    ]);
    // the insert that a later delete removed still moved the replica's AUTO_INCREMENT counter, as the source's
    // (MySQL caches information_schema's AUTO_INCREMENT unless the session's stats expiry is 0)
    const counters = async (server: TestServer) => {
      const conn = await server.connect({ multipleStatements: true });
      try {
        const [res] = await conn.query<any[]>(
          `${mysql ? "SET SESSION information_schema_stats_expiry = 0; " : "DO 0; "}SELECT TABLE_NAME AS t, AUTO_INCREMENT AS ai FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME LIKE 'sb_' ORDER BY TABLE_NAME`,
        );
        return res[1].map((r: any) => ({ t: r.t, ai: Number(r.ai) }));
      } finally {
        await conn.end();
      }
    };
    const [sa, ra] = [await counters(src), await counters(rep)];
    expect(ra).toEqual(sa);
    expect(sa[0]).toEqual({ t: "sb1", ai: 5001 });
  });

  it("RENAME TABLE across the scope: a staging swap seeds the table renamed in, drops the one renamed out", async () => {
    await src.query("CREATE TABLE shop.live (id INT PRIMARY KEY, v VARCHAR(10))");
    await src.query("INSERT INTO shop.live VALUES (1, 'old'), (2, 'old')");
    await src.query("CREATE TABLE shop.stage_live (id INT PRIMARY KEY, v VARCHAR(10))"); // excluded
    await src.query("INSERT INTO shop.stage_live VALUES (1, 'new'), (3, 'new'), (4, 'new')");
    await caughtUp();
    await src.query("RENAME TABLE shop.live TO shop.stage_old, shop.stage_live TO shop.live");
    await src.query("INSERT INTO shop.live VALUES (5, 'after')");
    await src.query("UPDATE shop.live SET v = 'upd' WHERE id = 3");
    await waitFor(async () => (await rep.query<any[]>("SELECT COUNT(*) AS n FROM _datasync.snapshot WHERE db = 'shop' AND tbl = 'live' AND state = 'done'"))[0].n > 0, 30_000, "live seeded").catch((e) => {
      throw new Error(`${e.message}\n${agent.stdoutText.slice(-3000)}`);
    });
    await caughtUp();
    const [s, r] = await both("SELECT * FROM shop.live ORDER BY id");
    expect(r).toEqual(s);
    expect(await rep.query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME LIKE 'stage%'")).toEqual([]);
  });

  if (flavor === "mariadb") {
    it("applies rows written with check_constraint_checks=OFF as the source did (MariaDB)", async () => {
      await src.query("CREATE TABLE shop.chk (id INT PRIMARY KEY, v INT, CHECK (v > 0))");
      const c = await session();
      try {
        await c.query("SET SESSION check_constraint_checks = 0");
        await c.query("INSERT INTO shop.chk VALUES (1, -5)");
        await c.query("ALTER TABLE shop.chk ADD CONSTRAINT v_small CHECK (v < -10)");
      } finally {
        await c.end();
      }
      await caughtUp();
      const [s, r] = await both("SELECT * FROM shop.chk");
      expect(r).toEqual(s);
      const [sc, rc] = await both("SHOW CREATE TABLE shop.chk");
      expect(rc).toEqual(sc);
    });
  }

  it("CREATE TABLE … SELECT with the agent killed between the DDL and its rows: the rows land after the restart", async () => {
    await caughtUp();
    await agent.kill("SIGTERM");
    const faulty = new AgentProcess(writeConfig(config()), { DATASYNC_FAULT: "ddl-ran" });
    await faulty.waitStreaming(["r1"]);
    await src.query("CREATE TABLE shop.ctas (PRIMARY KEY (id)) SELECT id, pid FROM shop.child");
    expect(await faulty.exited).not.toBe(0); // killed right after the CREATE ran on the replica
    agent = new AgentProcess(writeConfig(config()));
    await agent.waitStreaming(["r1"]);
    await caughtUp();
    const [s, r] = await both("SELECT * FROM shop.ctas ORDER BY id");
    expect(r).toEqual(s);
    expect(r).toHaveLength(3);
  });

  it("a restart with a narrower scope does not copy what an unfinished snapshot had registered", async () => {
    const rep2 = (await startServers([{ name: "fa-rep2" }]))[0];
    try {
      const cfg = (exclude: string[]) => writeConfig(makeConfig(src, [rep2], { group: "narrow", databases: ["shop"], tables: { exclude } }));
      // the snapshot registers its tables, then the agent dies before copying
      const a = new AgentProcess(cfg(["shop.stage_*"]), { DATASYNC_TEST_COPY_START_DELAY_MS: "60000" });
      await a.waitStreaming(["r1"]);
      await a.kill("SIGKILL");
      const count = async (q: string) => Number((await rep2.query<any[]>(q))[0].n);
      expect(await count("SELECT COUNT(*) AS n FROM _datasync.snapshot WHERE tbl = 'snap_child' AND state = 'pending'")).toBe(1);
      // restarted without the table (say its copy failed): the others are copied, it is not
      const b = new AgentProcess(cfg(["shop.stage_*", "shop.snap_child"]));
      try {
        await waitFor(async () => (await rep2.query<any[]>("SELECT state FROM _datasync.checkpoints WHERE group_name = 'narrow'"))[0]?.state === "streaming", 60_000, "snapshot done").catch((e) => {
          throw new Error(`${e.message}\n${b.stdoutText.slice(-3000)}`);
        });
        expect(await count("SELECT COUNT(*) AS n FROM _datasync.snapshot WHERE tbl = 'snap_child'")).toBe(0);
        expect(await count("SELECT COUNT(*) AS n FROM shop.snap_child")).toBe(0);
        const [s, r] = [await src.query("SELECT * FROM shop.snap_parent"), await rep2.query("SELECT * FROM shop.snap_parent")];
        expect(r).toEqual(s);
      } finally {
        await b.kill("SIGKILL");
      }
    } finally {
      await rep2.destroy();
    }
  });

  it("splits statements under the replica's max_allowed_packet; a row above it stops the replica naming the setting", async () => {
    await src.query("CREATE TABLE shop.blobs (id INT PRIMARY KEY, b LONGBLOB)");
    // five 1 MiB rows in one transaction: 10 MiB of hex, more than the replica's 4 MiB packet
    await src.query("START TRANSACTION; INSERT INTO shop.blobs VALUES (1, REPEAT('a', 1048576)), (2, REPEAT('b', 1048576)); INSERT INTO shop.blobs VALUES (3, REPEAT('c', 1048576)), (4, REPEAT('d', 1048576)), (5, REPEAT('e', 1048576)); COMMIT");
    await caughtUp();
    const sums = "SELECT id, LENGTH(b) AS n, SHA2(b, 256) AS h FROM shop.blobs ORDER BY id";
    const [s, r] = await both(sums);
    expect(r).toEqual(s);
    // one 3 MiB row needs a 6 MiB statement: the replica stops with the table, the size, the setting and the fix
    await src.query("INSERT INTO shop.blobs VALUES (6, REPEAT('f', 3145728))");
    const stop = await agent.waitForLog((l) => l.replica === "r1" && /max_allowed_packet/.test(String(l.msg)), 30_000);
    expect(stop.msg).toMatch(/`shop`\.`blobs`/);
    expect(stop.msg).toMatch(/Raise max_allowed_packet on the replica to at least \d+M/);
    const ready = await agent.http("/readyz");
    expect(ready.body.replicas?.[0]?.state ?? JSON.stringify(ready.body)).toMatch(/failed/);
    // the fix named in the message, then a restart: the row lands
    await rep.query("SET GLOBAL max_allowed_packet = 16777216");
    await agent.kill("SIGTERM");
    agent = new AgentProcess(writeConfig(config()));
    await agent.waitStreaming(["r1"]);
    await caughtUp();
    const [s2, r2] = await both(sums);
    expect(r2).toEqual(s2);
  });
});
