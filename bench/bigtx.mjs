// bigtx: one source transaction far larger than the agent's memory budget (issue 15). Starts a source and a
// replica, the agent as a child process under a fixed heap (`--max-old-space-size`), writes ROWS rows in one
// INSERT … SELECT transaction, and reports the agent's peak RSS (/proc/<pid>/status VmHWM), the apply time
// and whether the replica's table is identical (CHECKSUM TABLE). With --kill the agent is killed with SIGKILL
// while the transaction is half applied and restarted; replica-side triggers count inserts and updates, so a
// transaction applied twice (an upsert replay) shows.
//
//   npm run build && node bench/bigtx.mjs [--rows 2000000] [--heap 512] [--flavor mariadb|mysql] [--kill]
//       [--queue-bytes 16777216]
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { startServers } = await import("../dist/dev/servers.js");

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const ROWS = Number(arg("rows", 2_000_000));
const HEAP = Number(arg("heap", 512));
const FLAVOR = arg("flavor", process.env.DATASYNC_TEST_FLAVOR ?? "mariadb");
const KILL = process.argv.includes("--kill");
const QUEUE = Number(arg("queue-bytes", 16 << 20));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => process.stderr.write(`[bigtx ${new Date().toISOString().slice(11, 19)}] ${a.join(" ")}\n`);

/** the agent's peak and current resident set (kB) */
function rss(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/status`, "utf8");
    return { hwm: Number(/VmHWM:\s+(\d+)/.exec(s)?.[1] ?? 0), rss: Number(/VmRSS:\s+(\d+)/.exec(s)?.[1] ?? 0) };
  } catch {
    return { hwm: 0, rss: 0 };
  }
}

function startAgent(cfgFile) {
  const proc = spawn(process.execPath, [`--max-old-space-size=${HEAP}`, join(root, "bin", "datasync.js"), "agent", "--config", cfgFile], {
    cwd: root,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const a = { proc, lines: [], stderr: "", peak: 0, exited: null };
  let buf = "";
  proc.stdout.on("data", (d) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      a.lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  proc.stderr.on("data", (d) => (a.stderr += d.toString()));
  a.exit = new Promise((r) => proc.on("exit", (code, sig) => r((a.exited = code ?? sig))));
  // sample VmHWM until the end (it is the kernel's own peak; sampling only catches it before exit)
  a.timer = setInterval(() => (a.peak = Math.max(a.peak, rss(proc.pid).hwm)), 100);
  return a;
}

async function stopAgent(a, sig) {
  a.peak = Math.max(a.peak, rss(a.proc.pid).hwm);
  clearInterval(a.timer);
  if (a.exited === null) a.proc.kill(sig);
  return a.exit;
}

async function waitFor(fn, what, ms = 600_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await fn().catch(() => false);
    if (v) return v;
    await sleep(100);
  }
  throw new Error(`timed out: ${what}`);
}

const status = async (s) => (await s.query(s.flavor === "mysql" ? "SHOW BINARY LOG STATUS" : "SHOW MASTER STATUS"))[0];
async function caughtUp(src, rep, ms) {
  const st = await status(src);
  await waitFor(async () => {
    const [r] = await rep.query("SELECT binlog_file, binlog_pos FROM _datasync.checkpoints WHERE group_name = 'bigtx'");
    return r && (r.binlog_file > st.File || (r.binlog_file === st.File && Number(r.binlog_pos) >= Number(st.Position)));
  }, `replica at ${st.File}:${st.Position}`, ms);
}

const [src, rep] = await startServers([
  { name: `bigtx-src-${FLAVOR}`, flavor: FLAVOR },
  { name: `bigtx-rep-${FLAVOR}`, flavor: FLAVOR },
]);
let agent = null;
try {
  const dir = mkdtempSync(join(tmpdir(), "datasync-bigtx-"));
  const cfgFile = join(dir, "config.json");
  const ep = (s) => ({ host: "127.0.0.1", port: s.port, user: "root", password: "" });
  writeFileSync(cfgFile, JSON.stringify({ group: "bigtx", source: ep(src), replicas: [{ name: "r1", ...ep(rep) }], databases: ["shop"], http: { listen: "127.0.0.1:0" }, heartbeatSeconds: 0.5, apply: { queueBytes: QUEUE } }));
  // digits for the generator, outside the synced schema
  await src.query("CREATE DATABASE gen");
  await src.query("CREATE TABLE gen.k (n INT PRIMARY KEY)");
  await src.query("INSERT INTO gen.k SELECT a.n + 10 * b.n + 100 * c.n + 1000 * d.n FROM (SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5 UNION SELECT 6 UNION SELECT 7 UNION SELECT 8 UNION SELECT 9) a, (SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5 UNION SELECT 6 UNION SELECT 7 UNION SELECT 8 UNION SELECT 9) b, (SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5 UNION SELECT 6 UNION SELECT 7 UNION SELECT 8 UNION SELECT 9) c, (SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5 UNION SELECT 6 UNION SELECT 7 UNION SELECT 8 UNION SELECT 9) d");
  await src.query("CREATE DATABASE shop");
  await src.query("CREATE TABLE shop.big (id INT PRIMARY KEY, customer INT NOT NULL, status VARCHAR(16) NOT NULL, note VARCHAR(120) NOT NULL, amount DECIMAL(12,2) NOT NULL, created DATETIME NOT NULL) ENGINE=InnoDB");
  agent = startAgent(cfgFile);
  await waitFor(async () => agent.lines.some((l) => l.includes('"msg":"streaming"')), "agent streaming", 60_000);
  await caughtUp(src, rep, 60_000);
  // on the replica only: count every insert and update the agent makes (with --kill: triggers slow the apply)
  await rep.query("CREATE DATABASE audit");
  await rep.query("CREATE TABLE audit.cnt (id INT PRIMARY KEY, ins BIGINT NOT NULL, upd BIGINT NOT NULL)");
  await rep.query(`INSERT INTO audit.cnt VALUES (1, ${KILL ? 0 : ROWS}, 0)`);
  if (KILL) {
    await rep.query("CREATE TRIGGER shop.big_ai AFTER INSERT ON shop.big FOR EACH ROW UPDATE audit.cnt SET ins = ins + 1 WHERE id = 1");
    await rep.query("CREATE TRIGGER shop.big_au AFTER UPDATE ON shop.big FOR EACH ROW UPDATE audit.cnt SET upd = upd + 1 WHERE id = 1");
  }

  const before = await status(src);
  const t0 = Date.now();
  await src.query(
    "INSERT INTO shop.big SELECT a.n * 10000 + b.n + 1, (a.n * 10000 + b.n) % 50000, ELT(b.n % 4 + 1, 'new', 'paid', 'shipped', 'closed'), " +
      "CONCAT('order ', a.n * 10000 + b.n, ' ', REPEAT('x', 60 + b.n % 40)), (b.n % 100000) / 100 + 0.99, TIMESTAMP('2024-01-01') + INTERVAL (a.n * 10000 + b.n) SECOND " +
      `FROM gen.k a, gen.k b WHERE a.n < ${Math.ceil(ROWS / 10000)} AND a.n * 10000 + b.n < ${ROWS}`,
  );
  const after = await status(src);
  const binlogMiB = before.File === after.File ? (Number(after.Position) - Number(before.Position)) / 1048576 : NaN;
  log(`source: ${ROWS} rows in one transaction, ${binlogMiB.toFixed(1)} MiB of binlog, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const t1 = Date.now();
  let killedAt = null;
  let peakBeforeKill = null;
  if (KILL) {
    // SIGKILL while the target transaction holds about half the rows
    await waitFor(async () => {
      const [r] = await rep.query("SELECT COALESCE(MAX(trx_rows_modified), 0) AS n FROM information_schema.innodb_trx");
      return Number(r.n) >= ROWS / 2 && r;
    }, "half the rows applied in the open target transaction");
    const [r] = await rep.query("SELECT COALESCE(MAX(trx_rows_modified), 0) AS n FROM information_schema.innodb_trx");
    killedAt = Number(r.n);
    await stopAgent(agent, "SIGKILL");
    peakBeforeKill = agent.peak;
    const [c] = await rep.query("SELECT COUNT(*) AS n FROM shop.big");
    log(`killed with SIGKILL at ~${killedAt} rows modified in the open target transaction; the replica holds ${c.n} rows after the kill`);
    agent = startAgent(cfgFile);
  }
  await caughtUp(src, rep, 3_600_000);
  const seconds = (Date.now() - t1) / 1000;
  await stopAgent(agent, "SIGTERM");
  const [cs] = await src.query("CHECKSUM TABLE shop.big EXTENDED");
  const [cr] = await rep.query("CHECKSUM TABLE shop.big EXTENDED");
  const [cnt] = await rep.query("SELECT ins, upd FROM audit.cnt WHERE id = 1");
  const applied = agent.lines.filter((l) => l.includes("applied in pieces")).map((l) => JSON.parse(l));
  const out = {
    flavor: FLAVOR,
    pieces: applied.map((a) => a.pieces),
    agentSeconds: applied.map((a) => a.seconds),
    waitingForSourceSeconds: applied.map((a) => a.waitingForSourceSeconds),
    rows: ROWS,
    binlogMiB: Math.round(binlogMiB * 10) / 10,
    heapFlag: `--max-old-space-size=${HEAP}`,
    queueBytes: QUEUE,
    peakRssMiB: Math.round(agent.peak / 102.4) / 10,
    peakRssMiBBeforeKill: peakBeforeKill === null ? undefined : Math.round(peakBeforeKill / 102.4) / 10,
    applySeconds: seconds,
    killedAtRows: killedAt ?? undefined,
    identical: String(cs.Checksum) === String(cr.Checksum),
    replicaInserts: KILL ? Number(cnt.ins) : undefined,
    replicaUpdates: KILL ? Number(cnt.upd) : undefined,
    agentExit: agent.exited,
  };
  console.log(JSON.stringify(out));
  if (!out.identical || (KILL && (out.replicaInserts !== ROWS || out.replicaUpdates !== 0))) process.exitCode = 1;
} catch (e) {
  log(String(e?.stack ?? e));
  if (agent) log(`agent stderr: ${agent.stderr.slice(-2000)}\nlast logs:\n${agent.lines.slice(-10).join("\n")}`);
  process.exitCode = 1;
} finally {
  if (agent && agent.exited === null) await stopAgent(agent, "SIGKILL");
  await Promise.all([src.destroy(), rep.destroy()]);
}
