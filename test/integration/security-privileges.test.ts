// Least privilege (issue 12): `datasync check` names every privilege DDL replication needs on a replica before
// the first such DDL fails; the provider's ReplicaServer creates a dedicated sync account (grants on the synced
// schemas and `_datasync` only) with which the agent replicates views, routines, events and foreign keys; the
// account's password stays out of outputs and messages. Runs on the flavor of DATASYNC_TEST_FLAVOR.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServers, type TestServer } from "../support/servers.js";
import { AgentProcess, runCli, waitFor, writeConfig } from "../support/agent.js";
import { dist, type ProviderIndex } from "../support/provider-dist.js";

const PW = "Priv-s3cret-PW-19";
let src: TestServer, rep: TestServer;
let version: string;

function config(replica: { user: string; password: string }) {
  return {
    group: "priv",
    source: { host: "127.0.0.1", port: src.port, user: "root", password: "" },
    replicas: [{ name: "r1", host: "127.0.0.1", port: rep.port, ...replica }],
    databases: ["shop"],
    http: { listen: "127.0.0.1:0" },
    heartbeatSeconds: 0.2,
  };
}

async function as(user: string, password: string, sql: string): Promise<string | null> {
  const c = await rep.connect({ user, password });
  try {
    await c.query(sql);
    return null;
  } catch (e: any) {
    return String(e.message);
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  [src, rep] = await startServers([{ name: "priv-src" }, { name: "priv-rep", noBinlog: true }]);
  await src.query("CREATE DATABASE shop; CREATE TABLE shop.parent (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO shop.parent VALUES (1),(2)");
  // rows and table DDL only: what rule 6 asked before this change
  await rep.query(
    `CREATE USER 'narrow'@'%' IDENTIFIED BY '${PW}';
     GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX ON shop.* TO 'narrow'@'%';
     GRANT ALL PRIVILEGES ON _datasync.* TO 'narrow'@'%'; CREATE DATABASE shop`,
  );
  const [{ v }] = await src.query<any[]>("SELECT VERSION() AS v");
  version = /^(\d+\.\d+)/.exec(String(v))![1];
}, 120_000);

afterAll(async () => {
  await Promise.all([src, rep].filter(Boolean).map((s) => s.destroy()));
});

describe(`replica privileges (${process.env.DATASYNC_TEST_FLAVOR ?? "mariadb"})`, () => {
  it("check names each privilege DDL replication needs, and the GRANT that fixes it", () => {
    const r = runCli(["check", "--config", writeConfig(config({ user: "narrow", password: PW }))]);
    const out = r.stdout + r.stderr;
    console.log(`$ datasync check (replica account with rows and table DDL only) → exit ${r.code}\n${out}`);
    expect(r.code).toBe(1);
    expect(out).toContain(
      `replica r1 (127.0.0.1:${rep.port}): the sync user lacks REFERENCES, CREATE VIEW, CREATE ROUTINE, ALTER ROUTINE, EVENT, TRIGGER on \`shop\``,
    );
    expect(out).toContain("GRANT REFERENCES, CREATE VIEW, CREATE ROUTINE, ALTER ROUTINE, EVENT, TRIGGER ON `shop`.* TO 'narrow'@'%'");
    expect(out).not.toContain("on `_datasync`");
    expect(out).not.toContain(PW);
  });

  it("each named privilege is one the replicated DDL really needs (the server refuses it without)", async () => {
    expect(await as("narrow", PW, "CREATE VIEW shop.v AS SELECT 1 AS one")).toMatch(/denied/i);
    expect(await as("narrow", PW, "CREATE PROCEDURE shop.p() SELECT 1")).toMatch(/denied/i);
    expect(await as("narrow", PW, "CREATE EVENT shop.e ON SCHEDULE EVERY 1 DAY DISABLE DO SELECT 1")).toMatch(/denied/i);
  });

  it("a bookkeeping privilege missing on _datasync is named too", () => {
    return (async () => {
      await rep.query("CREATE USER 'nobook'@'%' IDENTIFIED BY 'x'; GRANT ALL PRIVILEGES ON shop.* TO 'nobook'@'%'; GRANT SELECT ON _datasync.* TO 'nobook'@'%'");
      const r = runCli(["check", "--config", writeConfig(config({ user: "nobook", password: "x" }))]);
      expect(r.code).toBe(1);
      expect(r.stdout).toContain("the sync user lacks INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX on `_datasync`");
      expect(r.stdout).not.toContain("on `shop`");
    })();
  });

  describe("the provider's dedicated sync account", () => {
    const { replicaServerProvider: rs } = dist<ProviderIndex>("index");
    const inputs = () => ({
      group: "priv",
      replicaName: "r1",
      host: "127.0.0.1",
      port: rep.port,
      user: "root",
      password: "",
      version,
      flavor: rep.flavor,
      primary: { version, flavor: src.flavor, host: "127.0.0.1", port: src.port },
      databases: ["shop"],
      syncUser: "datasync_priv",
      syncPassword: PW,
    });

    it("create makes the account with grants on the synced schemas and _datasync only", async () => {
      const { outs } = await rs.create!(inputs());
      const grants = (await rep.query<any[]>("SHOW GRANTS FOR 'datasync_priv'@'%'")).map((r) => String(Object.values(r)[0]));
      console.log(`SHOW GRANTS FOR 'datasync_priv'@'%':\n  ${grants.join("\n  ")}`);
      const on = grants.map((g) => /\sON\s+(\S+)\s+TO/i.exec(g)![1].replace(/`/g, "")).sort();
      expect(on).toEqual(["*.*", "_datasync.*", "shop.*"]);
      expect(grants.find((g) => / ON \*\.\* /.test(g))).toMatch(/^GRANT USAGE ON/);
      expect(grants.find((g) => /shop/.test(g))).toMatch(/CREATE VIEW/);
      const { password: _a, syncPassword: _b, ...visible } = outs;
      expect(JSON.stringify(visible)).not.toContain(PW);
      expect(outs.syncUser).toBe("datasync_priv");
    });

    it("the agent replicates tables, views, routines, events and foreign keys with that account", async () => {
      const r = runCli(["check", "--config", writeConfig(config({ user: "datasync_priv", password: PW }))]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const a = new AgentProcess(writeConfig(config({ user: "datasync_priv", password: PW })));
      try {
        await a.waitStreaming(["r1"], 60_000);
        // (a child row streamed while its parent is still being copied fails the replica's foreign key check:
        // a snapshot/streaming issue apart from privileges, so the DDL waits for the snapshot here)
        await a.waitForLog((l) => /snapshot complete/.test(l.msg ?? ""), 60_000);
        await src.query(
          `CREATE TABLE shop.child (id INT PRIMARY KEY, parent_id INT, FOREIGN KEY (parent_id) REFERENCES shop.parent(id)) ENGINE=InnoDB;
           INSERT INTO shop.child VALUES (10, 1);
           CREATE VIEW shop.v AS SELECT id FROM shop.parent;
           CREATE PROCEDURE shop.p() SELECT 1;
           CREATE EVENT shop.e ON SCHEDULE EVERY 1 DAY DO DELETE FROM shop.child WHERE id < 0;`,
        );
        await waitFor(
          async () => {
            const objs = await rep.query<any[]>(
              `SELECT 'v' AS k FROM information_schema.VIEWS WHERE TABLE_SCHEMA='shop' AND TABLE_NAME='v'
               UNION ALL SELECT 'p' FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA='shop' AND ROUTINE_NAME='p'
               UNION ALL SELECT 'e' FROM information_schema.EVENTS WHERE EVENT_SCHEMA='shop' AND EVENT_NAME='e'
               UNION ALL SELECT 'fk' FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA='shop' AND TABLE_NAME='child'
               UNION ALL SELECT 'row' FROM shop.child WHERE id = 10`,
            );
            return objs.length === 5;
          },
          30_000,
          "the view, procedure, event, foreign key and row on the replica",
        ).catch((e) => {
          throw new Error(`${e.message}\nagent log:\n${a.stdoutText.slice(-4000)}`);
        });
        const errors = a.logs.filter((l) => l.level >= 50);
        expect(errors, JSON.stringify(errors)).toEqual([]);
        expect(a.stdoutText + a.stderr).not.toContain(PW);
      } finally {
        await a.kill("SIGTERM");
      }
    }, 120_000);

    it("delete drops the account (the admin stays)", async () => {
      await rs.delete!("priv/r1", { ...inputs() });
      expect(await rep.query<any[]>("SELECT User FROM mysql.user WHERE User = 'datasync_priv'")).toEqual([]);
      expect((await rep.query<any[]>("SELECT User FROM mysql.user WHERE User = 'root'")).length).toBeGreaterThan(0);
    });
  });
});
