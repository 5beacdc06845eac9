// `datasync cutover` against real servers (either flavor, DATASYNC_TEST_FLAVOR): a cutover under a concurrent
// writer with the JSON report and identical data, the way back (an agent started with the reverse config
// resumes with no snapshot and the old source ends identical to the new primary), and each failure point:
// refused before the fence (exit 1, nothing changed; --dry-run names the missing grants), drain and verify
// failures (exit 2, fence lifted), a failing switch command (exit 3, the old source stays read-only).
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { AgentProcess, BIN, makeConfig, ROOT, runCli, waitFor, writeConfig } from "../support/agent.js";
import { AUDIT_TRIGGERS, SCHEMA_SQL, Writer } from "../support/load.js";
import { defaultFlavor, freePort, startServers, type TestServer } from "../support/servers.js";

const flavor = defaultFlavor();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const TABLES = ["customers", "orders", "order_lines", "ledger"];

/** every row of the synced tables, in key order, as text */
async function dump(s: TestServer): Promise<string> {
  const out: string[] = [];
  for (const t of TABLES) {
    const cols = (await s.query<any[]>("SELECT COLUMN_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION", [t])).map((r) => r.c);
    const rows = await s.query<any[]>(`SELECT ${cols.map((c) => `\`${c}\``).join(", ")} FROM shop.${t} ORDER BY 1, 2`);
    out.push(`${t}:${rows.length}:${JSON.stringify(rows)}`);
  }
  return out.join("\n");
}

const readOnly = async (s: TestServer) => Number((await s.query<any[]>("SELECT @@GLOBAL.read_only AS r"))[0].r);

/** an application account without a privilege that bypasses read_only (the fence must stop it) */
async function appUser(s: TestServer): Promise<void> {
  await s.query("CREATE USER IF NOT EXISTS 'app'@'127.0.0.1' IDENTIFIED BY 'app-pw'");
  await s.query("GRANT SELECT, INSERT, UPDATE, DELETE ON shop.* TO 'app'@'127.0.0.1'");
  await s.query("GRANT SELECT, INSERT ON audit.* TO 'app'@'127.0.0.1'");
}

function appWriter(src: TestServer): Writer {
  const asApp = { connect: () => src.connect({ user: "app", password: "app-pw" }), query: (sql: string) => src.query(sql) } as unknown as TestServer;
  return new Writer(asApp);
}

/** `datasync <args>` without blocking this process (the writer runs here and must keep writing) */
function runCliAsync(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

async function setup(src: TestServer, reps: TestServer[], group: string) {
  for (const s of SCHEMA_SQL) await src.query(s);
  for (const t of AUDIT_TRIGGERS) await src.query(t);
  await appUser(src);
  for (const r of reps) {
    // the audit schema is not synced: each server has its own (the triggers write there once installed)
    await r.query(SCHEMA_SQL[1]);
    await r.query(SCHEMA_SQL[SCHEMA_SQL.length - 1]);
  }
  const dir = mkdtempSync(join(tmpdir(), "datasync-cutover-"));
  const port = await freePort();
  const cfg = makeConfig(src, reps, { group, http: { listen: `127.0.0.1:${port}` } });
  const cfgFile = writeConfig(cfg);
  const agent = new AgentProcess(cfgFile);
  await agent.waitStreaming(reps.map((_, i) => `r${i + 1}`), 180_000);
  // past the snapshot: a cutover refuses a replica still being seeded
  for (const r of reps) {
    await waitFor(async () => (await r.query<any[]>("SELECT state FROM _datasync.checkpoints WHERE group_name = ?", [group]))[0]?.state === "streaming", 60_000, "snapshot done");
  }
  return { dir, cfgFile, agent, port };
}

async function waitCaughtUp(cfgFile: string, replica: string): Promise<void> {
  await waitFor(async () => {
    const r = runCli(["status", "--config", cfgFile, "--json"]);
    const st = JSON.parse(r.stdout);
    const row = st.replicas.find((x: any) => x.name === replica);
    return row && row.behindSource === false;
  }, 60_000, `${replica} caught up`);
}

describe(`cutover under load and the way back (${flavor})`, () => {
  let servers: TestServer[] = [];
  let agent: AgentProcess | null = null;
  let back: AgentProcess | null = null;
  beforeAll(async () => {
    servers = await startServers([{ name: "src", flavor }, { name: "r1", flavor }, { name: "r2", flavor }]);
  }, 300_000);
  afterAll(async () => {
    await agent?.kill("SIGTERM");
    await back?.kill("SIGTERM");
    await Promise.all(servers.map((s) => s.destroy()));
  });

  it("fences, drains, verifies, promotes r1 under a writer; the reverse config resumes with no snapshot", async () => {
    const [src, r1, r2] = servers;
    const s = await setup(src, [r1, r2], "shop");
    agent = s.agent;
    // an enabled event reaches the replicas disabled; promote enables it on r1
    await src.query("CREATE EVENT shop.ev_tick ON SCHEDULE EVERY 1 HOUR DO UPDATE shop.ledger SET payload = payload WHERE id = -1");
    await src.query("ALTER EVENT shop.ev_tick ENABLE");
    const writer = appWriter(src);
    writer.start(2);
    await sleep(3000);
    const out = join(s.dir, "switched.txt");
    const rev = join(s.dir, "rev.json");
    const r = await runCliAsync(["cutover", "--config", s.cfgFile, "--to", "r1", "--json", "--reverse-config", rev, "--switch-command", `echo "$DATASYNC_NEW_PRIMARY_NAME $DATASYNC_NEW_PRIMARY_PORT $DATASYNC_OLD_PRIMARY_PORT" > ${out}`]);
    const stats = await writer.stop();
    console.log(JSON.stringify({ freezeSeconds: JSON.parse(r.stdout).freezeSeconds, stats, steps: JSON.parse(r.stdout).steps.map((x: any) => `${x.name} ${x.seconds}`), killed: JSON.parse(r.stdout).killed.length }));
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const rep = JSON.parse(r.stdout);
    expect(rep.replica).toBe("r1");
    expect(rep.verified).toBe(true);
    expect(rep.freezeSeconds).toBeGreaterThan(0);
    expect(rep.freezeSeconds).toBeLessThan(5);
    expect(rep.finalPosition.file).toMatch(/binlog/);
    expect(rep.steps.map((x: any) => x.name)).toEqual(["preconditions", "verify-before", "fence", "drain", "verify", "promote", "switch", "way-back"]);
    expect(rep.steps.every((x: any) => typeof x.seconds === "number" && x.ok)).toBe(true);
    expect(rep.verify.keysCompared + rep.verify.tablesWhole.length).toBeGreaterThan(0);
    expect(rep.promoted.triggers.sort()).toEqual(["shop.ledger_ai", "shop.ledger_au"]);
    expect(rep.promoted.events).toEqual(["shop.ev_tick"]);
    expect(stats.committed).toBeGreaterThan(20);
    expect(readFileSync(out, "utf8").trim()).toBe(`r1 ${r1.port} ${src.port}`);
    // the source is fenced, r1 is writable and holds exactly the source's data
    expect(await readOnly(src)).toBe(1);
    expect(await readOnly(r1)).toBe(0);
    const srcData = await dump(src);
    expect(await dump(r1)).toBe(srcData);
    expect((await r1.query<any[]>("SELECT STATUS AS s FROM information_schema.EVENTS WHERE EVENT_NAME = 'ev_tick'"))[0].s).toBe("ENABLED");
    // the forward agent stops applying: state cut-over in /readyz and status
    await waitFor(async () => {
      const h = await agent!.http("/readyz");
      return h.body.replicas.every((x: any) => x.state === "cut-over") ? h : null;
    }, 20_000, "forward agent in state cut-over");
    const st = JSON.parse(runCli(["status", "--config", s.cfgFile, "--json"]).stdout);
    expect(st.replicas.find((x: any) => x.name === "r1").cutover.state).toBe("done");
    await agent.kill("SIGTERM");
    agent = null;

    // the way back: old source's triggers held in the reverse group, its event disabled
    expect(Number((await src.query<any[]>("SELECT COUNT(*) AS n FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'shop'"))[0].n)).toBe(0);
    expect(Number((await src.query<any[]>("SELECT COUNT(*) AS n FROM _datasync.held_ddl WHERE group_name = 'shop-rev'"))[0].n)).toBe(2);
    expect((await src.query<any[]>("SELECT STATUS AS s FROM information_schema.EVENTS WHERE EVENT_NAME = 'ev_tick'"))[0].s).not.toBe("ENABLED");
    const revCfg = JSON.parse(readFileSync(rev, "utf8"));
    expect(revCfg.group).toBe("shop-rev");
    expect(revCfg.source.port).toBe(r1.port);
    expect(revCfg.replicas.map((x: any) => [x.name, x.port])).toEqual([["source", src.port], ["r2", r2.port]]);
    revCfg.http = { listen: `127.0.0.1:${await freePort()}` };
    writeFileSync(rev, JSON.stringify(revCfg));
    back = new AgentProcess(rev);
    await back.waitStreaming(["source", "r2"]);
    // writes on the new primary (r1) reach the old source and r2, with no snapshot
    const app = await r1.connect();
    await app.query("INSERT INTO shop.customers (id, name) VALUES (9000001, 'after cutover')");
    await app.query("UPDATE shop.ledger SET version = version + 100 ORDER BY id LIMIT 5");
    await app.end();
    await waitCaughtUp(rev, "source");
    await waitCaughtUp(rev, "r2");
    expect(back.logs.some((l) => /snapshot|seeding/i.test(String(l.msg)))).toBe(false);
    const newData = await dump(r1);
    expect(newData).not.toBe(srcData);
    expect(await dump(src)).toBe(newData);
    expect(await dump(r2)).toBe(newData);
    // the triggers on r1 fired (audit on r1); none on the old source (its triggers are held)
    expect(Number((await r1.query<any[]>("SELECT COUNT(*) AS n FROM audit.applied"))[0].n)).toBeGreaterThan(0);
    expect(Number((await src.query<any[]>("SELECT COUNT(*) AS n FROM audit.applied WHERE version > 100"))[0].n)).toBe(0);
  }, 480_000);
});

describe(`cutover failure points (${flavor})`, () => {
  let servers: TestServer[] = [];
  let agent: AgentProcess | null = null;
  beforeAll(async () => {
    servers = await startServers([{ name: "src", flavor }, { name: "r1", flavor }]);
  }, 300_000);
  afterAll(async () => {
    await agent?.kill("SIGTERM");
    await Promise.all(servers.map((s) => s.destroy()));
  });

  it("refuses before the fence (exit 1), aborts with the fence lifted (exit 2), keeps the old source read-only when the switch fails (exit 3)", async () => {
    const [src, r1] = servers;
    const s = await setup(src, [r1], "fail");
    agent = s.agent;
    await src.query("INSERT INTO shop.customers (id, name) VALUES (1, 'a'), (2, 'b')");
    await waitCaughtUp(s.cfgFile, "r1");
    const cp = async () => JSON.stringify(await r1.query("SELECT binlog_file, binlog_pos FROM _datasync.checkpoints WHERE group_name = 'fail'"));

    // a restricted source account: --dry-run names the missing grants, and a real run is refused the same way
    await src.query("CREATE USER 'limited'@'127.0.0.1' IDENTIFIED BY 'pw'");
    await src.query(`GRANT REPLICATION SLAVE, ${flavor === "mariadb" ? "BINLOG MONITOR" : "REPLICATION CLIENT"}, SELECT ON *.* TO 'limited'@'127.0.0.1'`);
    const limited = JSON.parse(readFileSync(s.cfgFile, "utf8"));
    limited.source = { ...limited.source, user: "limited", password: "pw" };
    const limitedFile = writeConfig(limited);
    let r: { code: number | null; stdout: string; stderr: string } = runCli(["cutover", "--config", limitedFile, "--to", "r1", "--dry-run"]);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.stdout).toContain(flavor === "mariadb" ? "READ_ONLY ADMIN or SUPER" : "SYSTEM_VARIABLES_ADMIN or SUPER");
    expect(r.stdout).toContain(flavor === "mariadb" ? "CONNECTION ADMIN or SUPER" : "CONNECTION_ADMIN or SUPER");
    expect(r.stdout).toContain("limited");
    r = runCli(["cutover", "--config", limitedFile, "--to", "r1", "--json"]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).failures.join("\n")).toMatch(/read_only/);
    expect(await readOnly(src)).toBe(0);

    // the full account's dry run passes, changes nothing
    const before = await cp();
    r = runCli(["cutover", "--config", s.cfgFile, "--to", "r1", "--dry-run", "--json"]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).verified).toBe(true);
    expect(await readOnly(src)).toBe(0);

    // a replica that differs: refused by the verify before the fence
    await r1.query("UPDATE shop.customers SET name = 'drift' WHERE id = 2");
    r = runCli(["cutover", "--config", s.cfgFile, "--to", "r1", "--json"]);
    expect(r.code, r.stdout).toBe(1);
    expect(JSON.parse(r.stdout).failures.join("\n")).toContain("shop.customers");
    await r1.query("UPDATE shop.customers SET name = 'b' WHERE id = 2");
    expect(await readOnly(src)).toBe(0);
    expect(await cp()).toBe(before);
    r = runCli(["cutover", "--config", s.cfgFile, "--to", "nosuch"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('no replica is named "nosuch"');

    // drain and verify failures after the fence: exit 2, fence lifted, the source takes writes, nothing promoted
    for (const fault of ["drain", "verify"]) {
      r = await runCliAsync(["cutover", "--config", s.cfgFile, "--to", "r1", "--json"], { DATASYNC_TEST_CUTOVER_FAULT: fault });
      expect(r.code, r.stdout + r.stderr).toBe(2);
      const rep = JSON.parse(r.stdout);
      expect(rep.fenceLifted).toBe(true);
      expect(rep.steps.find((x: any) => x.name === fault).ok).toBe(false);
      expect(rep.steps.some((x: any) => x.name === "promote")).toBe(false);
      expect(await readOnly(src)).toBe(0);
      await src.query(`INSERT INTO shop.customers (id, name) VALUES (${fault === "drain" ? 3 : 4}, 'writable again')`);
      expect((await r1.query<any[]>("SELECT state FROM _datasync.cutover WHERE group_name = 'fail'"))[0].state).toBe("aborted");
      expect(Number((await r1.query<any[]>("SELECT COUNT(*) AS n FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'shop'"))[0].n)).toBe(0);
    }
    // a source fenced beforehand (Azure: read_only is a server parameter set through the API): the cutover sets
    // nothing, and an abort leaves it read-only
    await src.query("SET GLOBAL read_only = ON");
    r = await runCliAsync(["cutover", "--config", s.cfgFile, "--to", "r1", "--json"], { DATASYNC_TEST_CUTOVER_FAULT: "verify" });
    expect(r.code, r.stdout + r.stderr).toBe(2);
    expect(JSON.parse(r.stdout).warnings.join("\n")).toContain("read_only is already ON");
    expect(await readOnly(src)).toBe(1);
    await src.query("SET GLOBAL read_only = OFF");

    // the agent still applies after an aborted cutover
    await waitCaughtUp(s.cfgFile, "r1");
    expect(Number((await r1.query<any[]>("SELECT COUNT(*) AS n FROM shop.customers WHERE name = 'writable again'"))[0].n)).toBe(2);

    // an open write transaction of the application is killed by the fence and named in the report
    const app = await src.connect({ user: "app", password: "app-pw" });
    app.on("error", () => undefined);
    await app.query("START TRANSACTION");
    await app.query("INSERT INTO shop.customers (id, name) VALUES (50, 'never committed')");
    // the switch command fails: exit 3, r1 stays primary, the old source read-only
    r = await runCliAsync(["cutover", "--config", s.cfgFile, "--to", "r1", "--json", "--switch-command", "echo switching; exit 7"]);
    expect(r.code, r.stdout + r.stderr).toBe(3);
    const rep = JSON.parse(r.stdout);
    expect(rep.switch.exitCode).toBe(7);
    expect(rep.switch.output).toContain("switching");
    expect(rep.killed.map((k: any) => k.user)).toEqual(["app"]);
    expect(rep.killed[0].rowsModified).toBeGreaterThan(0);
    await expect(app.query("COMMIT")).rejects.toThrow();
    expect(await readOnly(src)).toBe(1);
    expect((await r1.query<any[]>("SELECT state FROM _datasync.cutover WHERE group_name = 'fail'"))[0].state).toBe("switch-failed");
    expect(Number((await src.query<any[]>("SELECT COUNT(*) AS n FROM shop.customers WHERE id = 50"))[0].n)).toBe(0);
    expect(await dump(r1)).toBe(await dump(src));
    await expect(src.connect({ user: "app", password: "app-pw" }).then((c) => c.query("INSERT INTO shop.customers (id, name) VALUES (51, 'x')"))).rejects.toThrow(/read.only/i);
  }, 480_000);
});
