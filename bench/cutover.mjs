// Cutover write freeze under load: a writer at a target rate (sysbench oltp_write_only's shape: BEGIN, two
// UPDATEs, DELETE, INSERT, COMMIT, as an account without SUPER so read_only stops it) while the agent syncs; then
// `datasync cutover` (a child process, --json) to the replica. Each run goes the other way through the reverse
// config of the previous one (the way back, with no snapshot), so N runs are N cutovers between two servers.
// Reports the freeze (read_only=ON to promoted) per run, its median and worst. Goal: worst ≤ 5 s, median ≤ 1 s.
// Usage: node bench/cutover.mjs [--runs 10] [--rate 1000] [--rows 100000] [--load-seconds 8] [--flavor mariadb]
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { root, startServers, freePort, log, sleep } from "./lib.mjs";

const { values: opt } = parseArgs({
  options: {
    runs: { type: "string", default: "10" },
    rate: { type: "string", default: "1000" },
    rows: { type: "string", default: "100000" },
    "load-seconds": { type: "string", default: "8" },
    flavor: { type: "string", default: process.env.DATASYNC_TEST_FLAVOR ?? "mariadb" },
    out: { type: "string" },
  },
});
const RUNS = Number(opt.runs);
const RATE = Number(opt.rate);
const ROWS = Number(opt.rows);
const LOAD_S = Number(opt["load-seconds"]);
const BIN = join(root, "bin/datasync.js");

function cli(args) {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { cwd: root });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

function agent(cfgFile) {
  const p = spawn(process.execPath, [BIN, "agent", "--config", cfgFile], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  const h = { p, lines: [], exited: new Promise((r) => p.on("exit", r)) };
  let buf = "";
  p.stdout.on("data", (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      h.lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  h.waitFor = async (re, ms = 120_000) => {
    const t = Date.now();
    while (Date.now() - t < ms) {
      if (h.lines.some((l) => re.test(l))) return;
      await sleep(100);
    }
    throw new Error(`agent: no log line ${re} within ${ms} ms`);
  };
  h.stop = async () => {
    p.kill("SIGTERM");
    await h.exited;
  };
  return h;
}

/** oltp_write_only-shaped transactions at `rate` per second over `conns` connections, as the app account */
function startLoad(server, rate, conns = 8) {
  const st = { committed: 0, failed: 0, stop: false };
  let next = 0;
  const t0 = performance.now();
  st.done = Promise.all(
    Array.from({ length: conns }, async (_, w) => {
      let c = null;
      while (!st.stop) {
        const due = t0 + (next++ * 1000) / rate;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        try {
          c ??= await server.connect({ user: "app", password: "app-pw", multipleStatements: true });
          const id = 1 + Math.floor(Math.random() * ROWS);
          await c.query(
            `BEGIN; UPDATE bench.sbtest SET k = k + 1 WHERE id = ${id}; UPDATE bench.sbtest SET c = LEFT(SHA2(RAND(), 256), 32) WHERE id = ${1 + ((id * 7) % ROWS)}; ` +
              `DELETE FROM bench.sbtest WHERE id = ${1 + ((id * 13) % ROWS)}; INSERT INTO bench.sbtest (id, k, c, pad) VALUES (${1 + ((id * 13) % ROWS)}, ${w}, 'c', 'pad') ON DUPLICATE KEY UPDATE k = k; COMMIT`,
          );
          st.committed++;
        } catch (e) {
          st.failed++;
          st.lastError = String(e?.message ?? e);
          // a refused statement (read_only after the fence, a deadlock) keeps the session; a lost one reconnects
          if (e?.fatal || !c) {
            c?.destroy();
            c = null;
          } else await c.query("ROLLBACK").catch(() => undefined);
          await sleep(50);
        }
      }
      c?.end().catch(() => undefined);
    }),
  );
  return st;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const dir = mkdtempSync(join(tmpdir(), "datasync-bench-cutover-"));
const servers = await startServers([{ name: "a", flavor: opt.flavor }, { name: "b", flavor: opt.flavor }]);
const results = [];
let current = null;
try {
  const [a, b] = servers;
  for (const s of servers) {
    await s.query("CREATE USER IF NOT EXISTS 'app'@'127.0.0.1' IDENTIFIED BY 'app-pw'");
    await s.query("GRANT SELECT, INSERT, UPDATE, DELETE ON bench.* TO 'app'@'127.0.0.1'");
  }
  await a.query("CREATE DATABASE bench");
  await a.query("CREATE TABLE bench.sbtest (id INT NOT NULL PRIMARY KEY, k INT NOT NULL DEFAULT 0, c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '', KEY k (k)) ENGINE=InnoDB");
  await a.query(
    `INSERT INTO bench.sbtest (id, k, c, pad) WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ${ROWS}) SELECT n, n % 1000, LEFT(SHA2(n, 256), 32), 'pad' FROM s`,
  ).catch(async () => {
    for (let i = 0; i < ROWS; i += 1000) {
      const vals = Array.from({ length: Math.min(1000, ROWS - i) }, (_, j) => `(${i + j + 1}, ${(i + j) % 1000}, LEFT(SHA2(${i + j}, 256), 32), 'pad')`).join(",");
      await a.query(`INSERT INTO bench.sbtest (id, k, c, pad) VALUES ${vals}`);
    }
  });
  let cfg = {
    group: "cut0",
    source: { host: "127.0.0.1", port: a.port, user: "root", password: "" },
    replicas: [{ name: "b", host: "127.0.0.1", port: b.port, user: "root", password: "" }],
    databases: ["bench"],
    http: { listen: `127.0.0.1:${await freePort()}` },
    heartbeatSeconds: 0.2,
  };
  let cfgFile = join(dir, "cut0.json");
  writeFileSync(cfgFile, JSON.stringify(cfg));
  let src = a;
  let to = "b";
  current = agent(cfgFile);
  await current.waitFor(/snapshot complete|"msg":"streaming"/);
  for (let i = 0; i < RUNS; i++) {
    // past the snapshot before the cutover (the first run seeds b)
    for (let t = Date.now(); Date.now() - t < 300_000; await sleep(500)) {
      const r = JSON.parse((await cli(["status", "--config", cfgFile, "--json"])).stdout);
      if (r.replicas[0].state === "streaming") break;
    }
    const load = startLoad(src, RATE);
    await sleep(LOAD_S * 1000);
    const rev = join(dir, `cut${i + 1}.json`);
    const t0 = Date.now();
    let r = await cli(["cutover", "--config", cfgFile, "--to", to, "--json", "--reverse-config", rev, "--reverse-group", `cut${i + 1}`]);
    // a loaded machine can time out a connection before the fence (exit 1, nothing changed): try again
    for (let retry = 0; retry < 2 && r.code === 1 && /ETIMEDOUT|unreachable/.test(r.stdout); retry++) {
      log(`run ${i + 1}: refused for a connection timeout before the fence; again`);
      r = await cli(["cutover", "--config", cfgFile, "--to", to, "--json", "--reverse-config", rev, "--reverse-group", `cut${i + 1}`]);
    }
    const loadSeconds = (Date.now() - t0) / 1000 + LOAD_S;
    load.stop = true;
    await load.done;
    let rep;
    try {
      rep = JSON.parse(r.stdout);
    } catch {
      throw new Error(`cutover printed no JSON (exit ${r.code}): ${r.stderr}`);
    }
    const achieved = Math.round(load.committed / loadSeconds);
    results.push({ run: i + 1, exitCode: rep.exitCode, freezeSeconds: rep.freezeSeconds, txPerSec: achieved, steps: Object.fromEntries(rep.steps.map((s) => [s.name, s.seconds])), killed: rep.killed.length, loadFailed: load.failed, loadLastError: load.lastError ?? null, changedRows: rep.verify?.keysCompared ?? null });
    log(`run ${i + 1}: exit ${rep.exitCode}, freeze ${rep.freezeSeconds} s at ~${achieved} tx/s (killed ${rep.killed.length}) ${rep.error ?? ""}`);
    if (rep.exitCode !== 0) break;
    await current.stop();
    // the way back becomes the next run's forward direction
    const next = JSON.parse(readFileSync(rev, "utf8"));
    next.http = { listen: `127.0.0.1:${await freePort()}` };
    writeFileSync(rev, JSON.stringify(next));
    cfgFile = rev;
    cfg = next;
    src = src === a ? b : a;
    to = "source";
    current = agent(cfgFile);
    await current.waitFor(/"msg":"streaming"/);
    if (current.lines.some((l) => /seeding it with an online snapshot|"snapshot":true/.test(l))) throw new Error("the reverse agent took a snapshot");
  }
} finally {
  await current?.stop().catch(() => undefined);
  await Promise.all(servers.map((s) => s.destroy()));
}
const ok = results.filter((r) => r.exitCode === 0).map((r) => r.freezeSeconds);
const summary = {
  scenario: "cutover",
  flavor: opt.flavor,
  rateTarget: RATE,
  rows: ROWS,
  runs: results,
  freezeMedianSeconds: ok.length ? median(ok) : null,
  freezeWorstSeconds: ok.length ? Math.max(...ok) : null,
  goal: "worst ≤ 5 s, median ≤ 1 s",
};
summary.goalMet = ok.length === results.length && summary.freezeWorstSeconds <= 5 && summary.freezeMedianSeconds <= 1;
process.stdout.write(JSON.stringify(summary, null, 2) + "\n");
if (opt.out) writeFileSync(opt.out, JSON.stringify(summary, null, 2) + "\n");
