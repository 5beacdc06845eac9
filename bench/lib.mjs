// Shared pieces of the benchmark: servers and their processes, the orders workload, the agent as a child
// process with RSS/CPU sampling, checkpoints, native replication set-up, checksums. See bench/README.md.
// Every server helper follows the flavor of the TestServer it is given (MariaDB or MySQL, `--flavor`).
/* global fetch, AbortSignal */
import { spawn, spawnSync } from "node:child_process";
import { createInterface } from "node:readline";
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import { positionReached } from "./stats.mjs";

export const here = dirname(fileURLToPath(import.meta.url));
export const root = join(here, "..");
const servers = await import("../dist/dev/servers.js");
export const { freePort, clientBinary } = servers;
const { ensureBookkeeping, checkpointSql } = await import("../dist/agent/bookkeeping.js");
const { positionOf } = await import("../dist/agent/ops/cutover.js");
const { readServerIdentity, identityKey } = await import("../dist/agent/identity.js");
const { containerNodeOptions } = await import("../dist/dev/soak.js");

/**
 * The scenario's servers, all of one flavor. Options are written in MariaDB's terms and translated for MySQL:
 * `--innodb-log-file-size` is `--innodb-redo-log-capacity` there; MySQL has no `--slave-run-triggers-for-rbr`
 * (a MySQL replica never runs triggers for row events) and its applier is `replica_parallel_workers` (4, the
 * default since 8.0.27, set explicitly) where the MariaDB anchor runs one SQL thread.
 */
export function startServers(specs, flavor) {
  return servers.startServers(
    specs.map((s) => {
      const f = s.flavor ?? flavor ?? servers.defaultFlavor();
      return { ...s, flavor: f, args: flavorArgs(f, s.args ?? []) };
    }),
  );
}

export function flavorArgs(flavor, args) {
  if (flavor !== "mysql") return args;
  const out = args.flatMap((a) => {
    if (a.startsWith("--innodb-log-file-size=")) return [`--innodb-redo-log-capacity=${a.slice(a.indexOf("=") + 1)}`];
    if (a.startsWith("--slave-run-triggers-for-rbr") || a.startsWith("--slave-parallel-threads")) return [];
    return [a];
  });
  // relay_log_recovery: the crash-safe setting for the replica that replica-down SIGKILLs
  return [...out, "--replica-parallel-workers=4", "--relay-log-recovery=ON"];
}

/** Replication statements of the flavor (MySQL 8.4+ has only the REPLICA/SOURCE forms). */
export function replCmd(flavor) {
  const my = flavor === "mysql";
  return {
    start: my ? "START REPLICA" : "START SLAVE",
    startIo: my ? "START REPLICA IO_THREAD" : "START SLAVE IO_THREAD",
    startSql: my ? "START REPLICA SQL_THREAD" : "START SLAVE SQL_THREAD",
    stop: my ? "STOP REPLICA" : "STOP SLAVE",
    resetAll: my ? "RESET REPLICA ALL" : "RESET SLAVE ALL",
    status: my ? "SHOW REPLICA STATUS" : "SHOW SLAVE STATUS",
    skipStart: my ? "--skip-replica-start" : "--skip-slave-start",
    workers: my ? "@@replica_parallel_workers" : "@@slave_parallel_threads",
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const now = () => performance.now();
export const log = (...a) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${a.join(" ")}\n`);

// ------------------------------------------------------------------ orders workload

export const ORDERS = `CREATE TABLE IF NOT EXISTS bench.orders (
  id INT NOT NULL PRIMARY KEY,
  customer_id INT NOT NULL,
  status VARCHAR(16) NOT NULL,
  sku VARCHAR(32) NOT NULL,
  qty INT NOT NULL,
  price DECIMAL(12,2) NOT NULL,
  note VARCHAR(100) NULL,
  created_at DATETIME NOT NULL,
  updated_at DATETIME NOT NULL,
  KEY (customer_id)
) ENGINE=InnoDB`;

/**
 * The integers lo..hi as a row source with one column `seq`, server side (no client overhead): MariaDB's
 * sequence engine; on MySQL (no sequence engine) a recursive CTE. `INSERT` must carry `recursionHint(flavor)`:
 * MySQL stops a recursive CTE at cte_max_recursion_depth (1,000) otherwise.
 */
export function seqRows(lo, hi, flavor, db = "bench") {
  return flavor === "mysql" ? `(WITH RECURSIVE s (seq) AS (SELECT ${lo} UNION ALL SELECT seq + 1 FROM s WHERE seq < ${hi}) SELECT seq FROM s) AS q` : `${db}.seq_${lo}_to_${hi}`;
}
export const recursionHint = (flavor) => (flavor === "mysql" ? "/*+ SET_VAR(cte_max_recursion_depth = 100000000) */ " : "");

/**
 * Deterministic rows id in [lo, hi]. The note's hash is SHA2 cut to MD5's 32 characters: MySQL 9 has no MD5(),
 * and the rows stay the size (and the binlog the volume) they had when the MariaDB figures were first taken.
 */
export function insertSelect(lo, hi, flavor = "mariadb") {
  return (
    `INSERT ${recursionHint(flavor)}INTO bench.orders (id, customer_id, status, sku, qty, price, note, created_at, updated_at) ` +
    `SELECT seq, seq % 50000 + 1, ELT(seq % 4 + 1, 'new', 'paid', 'shipped', 'closed'), CONCAT('SKU-', LPAD(seq % 5000, 6, '0')), seq % 10 + 1, ` +
    `(seq % 100000) / 100 + 0.99, CONCAT('order ', seq, ' ', LEFT(SHA2(seq, 256), 32)), TIMESTAMP('2024-01-01') + INTERVAL seq SECOND, TIMESTAMP('2024-01-01') + INTERVAL seq SECOND ` +
    `FROM ${seqRows(lo, hi, flavor)}`
  );
}

/** bench.orders with the same deterministic seed on every server (before the start position). */
export async function prepareOrders(servers, seedRows) {
  await Promise.all(
    servers.map(async (s) => {
      await s.query("CREATE DATABASE IF NOT EXISTS bench");
      await s.query(ORDERS);
      for (let lo = 1; lo <= seedRows; lo += 10_000) await s.query(insertSelect(lo, Math.min(seedRows, lo + 9_999), s.flavor));
    }),
  );
}

/** `rows` rows in `txnRows`-row transactions (one multi-row INSERT each, autocommit), ids from `first`. */
export async function genLarge(src, rows, txnRows, first = 1) {
  const c = await src.connect();
  try {
    const last = first + rows - 1;
    for (let lo = first; lo <= last; lo += txnRows) await c.query(insertSelect(lo, Math.min(last, lo + txnRows - 1), src.flavor));
  } finally {
    await c.end();
  }
  return { rows, txns: Math.ceil(rows / txnRows) };
}

export function orderInsert(id) {
  return `INSERT INTO bench.orders VALUES (${id}, ${(id % 50000) + 1}, 'new', 'SKU-${String(id % 5000).padStart(6, "0")}', ${(id % 10) + 1}, ${((id % 100000) / 100 + 0.99).toFixed(2)}, 'order ${id}', '2024-06-01 00:00:00', '2024-06-01 00:00:00')`;
}
export function orderUpdate(id, i) {
  return `UPDATE bench.orders SET qty = qty + 1, status = 'paid', updated_at = '2024-06-02 00:00:00' + INTERVAL ${i % 1000000} SECOND WHERE id = ${id}`;
}

// ------------------------------------------------------------------ servers, processes

/** The source's binlog end with its GTID position, as the agent reads it (SHOW BINARY LOG STATUS on MySQL 8.4+). */
export async function masterStatus(s) {
  const c = await s.connect();
  try {
    return await positionOf(c, s.flavor);
  } finally {
    await c.end();
  }
}

export async function checksum(s, tables = ["bench.orders"]) {
  const out = {};
  for (const t of tables) {
    const [r] = await s.query(`CHECKSUM TABLE ${t}`);
    const [n] = await s.query(`SELECT COUNT(*) AS n FROM ${t}`);
    out[t] = `${r.Checksum}/${n.n}`;
  }
  return out;
}

/** Every server's checksums equal the first's. */
export async function allIdentical(servers, tables, tag) {
  const sums = await Promise.all(servers.map((s) => checksum(s, tables)));
  const ok = sums.every((s) => JSON.stringify(s) === JSON.stringify(sums[0]));
  if (!ok) log(`${tag}: WARNING servers differ: ${JSON.stringify(sums)}`);
  return ok;
}

/** the machine's CPU ticks so far (all cores, /proc/stat's "cpu" line): total and stolen by the hypervisor */
function cpuTicks() {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n", 1)[0].trim().split(/\s+/).slice(1, 9).map(Number);
    return { total: f.reduce((a, x) => a + x, 0), steal: f[7] ?? 0, idle: (f[3] ?? 0) + (f[4] ?? 0) };
  } catch {
    return null;
  }
}

/**
 * A meter of CPU steal: the share (%) of the machine's CPU time that the hypervisor gave to other guests between
 * now and each call. On a shared VM it swings from 2% to 50% within minutes (bench/results.md, "Issue 17,
 * 2026-12-03 day"), and a phase that lost a third of its cores is not comparable with one that did not: each timed
 * phase reports it (a native catch-up's phase includes its untimed relay-log fetch). Null where /proc/stat is
 * unreadable.
 */
export function stealMeter() {
  const t0 = cpuTicks();
  return () => {
    const t1 = cpuTicks();
    if (!t0 || !t1 || t1.total <= t0.total) return null;
    return Math.round(((t1.steal - t0.steal) / (t1.total - t0.total)) * 1000) / 10;
  };
}

/** the page cache's dirty and under-writeback MB (/proc/meminfo), null where unreadable */
export function dirtyMb() {
  try {
    const t = readFileSync("/proc/meminfo", "utf8");
    const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(t)?.[1] ?? 0);
    return Math.round((kb("Dirty") + kb("Writeback")) / 1024);
  } catch {
    return null;
  }
}

const CLK_TCK = 100;
/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
export function cpuSeconds(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
    return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/**
 * Waits until the given servers are quiet: together under `quietCpu` CPU seconds per second (5% of a core) over a
 * 1 s window, for at most `maxMs`. A server that has just applied or generated a million rows keeps flushing dirty
 * pages and purging for seconds after its last statement; the next timed phase must not share the cores with that.
 * Returns the seconds waited and whether the servers got quiet.
 */
export async function settle(servers, { maxMs = 90_000, quietCpu = 0.05, quietMachine = 0.4 } = {}) {
  const pids = servers.map(serverPid).filter((p) => p !== null);
  const total = () => pids.reduce((a, p) => a + (cpuSeconds(p) || 0), 0);
  // the whole machine too (under `quietMachine` busy cores, steal aside): what the previous scenario left running
  // (servers shutting down, their datadirs removed and written back) shares the cores with the next timed phase
  const busy = () => {
    const t = cpuTicks();
    return t ? (t.total - t.idle - t.steal) / CLK_TCK : null;
  };
  const t0 = now();
  // and the disk: the page cache the previous phases dirtied (gigabytes of datadirs) is written back first, so the
  // timed phase's own writes and fsyncs do not queue behind it
  const d0 = dirtyMb();
  spawnSync("sync", { timeout: maxMs });
  let prev = total();
  let prevBusy = busy();
  for (;;) {
    await sleep(1000);
    const cur = total();
    const curBusy = busy();
    const machineQuiet = curBusy === null || prevBusy === null || curBusy - prevBusy < quietMachine;
    if (cur - prev < quietCpu && machineQuiet) return { seconds: (now() - t0) / 1000, quiet: true, dirtyMb: d0 };
    if (now() - t0 >= maxMs) return { seconds: (now() - t0) / 1000, quiet: false, dirtyMb: d0 };
    prev = cur;
    prevBusy = curBusy;
  }
}

/** The pid of a TestServer's mariadbd or mysqld (found by its datadir). */
export function serverPid(s) {
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, "utf8").includes(`--datadir=${s.datadir}\0`)) return Number(d);
    } catch {}
  }
  return null;
}

export function readProcStatus(pid) {
  try {
    const t = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(t)?.[1] ?? 0);
    return { hwmKb: kb("VmHWM"), rssKb: kb("VmRSS") };
  } catch {
    return null;
  }
}

export const mb = (kb) => Math.round(kb / 102.4) / 10;

// ------------------------------------------------------------------ checkpoints

/** A streaming checkpoint at `start` (from masterStatus: file, pos, GTID position) on each replica, as the agent would have written it. */
export async function writeCheckpoint(src, reps, start, group = "bench") {
  const sc = await src.connect();
  let sourceId;
  try {
    sourceId = identityKey(await readServerIdentity(sc));
  } finally {
    await sc.end();
  }
  for (const rep of Array.isArray(reps) ? reps : [reps]) {
    const c = await rep.connect();
    try {
      await ensureBookkeeping(c);
      await c.query(checkpointSql(group, sourceId, src.flavor, start, Date.now(), 0, 0, null, "streaming", null));
    } finally {
      await c.end();
    }
  }
}

/** Reads each replica's checkpoint; a connection that fails (a replica down) yields null and reconnects next time. */
export class CheckpointPoller {
  constructor(servers, group = "bench") {
    this.servers = servers;
    this.group = group;
    this.conns = servers.map(() => null);
  }
  async one(i) {
    try {
      if (!this.conns[i]) this.conns[i] = await this.servers[i].connect({ connectTimeout: 1000 });
      const [rows] = await this.conns[i].query("SELECT binlog_file AS file, binlog_pos AS pos FROM _datasync.checkpoints WHERE group_name = ?", [this.group]);
      return rows[0] ? { file: String(rows[0].file), pos: Number(rows[0].pos) } : null;
    } catch {
      const c = this.conns[i];
      this.conns[i] = null;
      c?.destroy();
      return null;
    }
  }
  poll() {
    return Promise.all(this.servers.map((_, i) => this.one(i)));
  }
  async close() {
    await Promise.all(this.conns.map((c) => c?.end().catch(() => c.destroy())));
  }
}

// ------------------------------------------------------------------ native replication

/**
 * Native replication on `rep` from `src` at `start`. MariaDB: CHANGE MASTER at file/pos, or GTID slave_pos with
 * gtid: true (crash-safe). MySQL: always GTID auto-position (crash-safe): the source's transactions up to `start`
 * are declared purged on the replica (it holds them from the seed), then CHANGE REPLICATION SOURCE … SOURCE_AUTO_POSITION=1.
 */
export async function changeMaster(rep, src, start, { gtid = false } = {}) {
  const c = await rep.connect();
  try {
    if (rep.flavor === "mysql") {
      if (!start.gtid) throw new Error("the MySQL source has no GTID position (gtid_mode=ON is needed for auto-position)");
      await c.query("SET GLOBAL gtid_purged = ?", [`+${start.gtid}`]);
      await c.query(
        `CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT=${src.port}, SOURCE_USER='root', SOURCE_PASSWORD='', SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1`,
      );
    } else if (gtid) {
      const [g] = await src.query("SELECT BINLOG_GTID_POS(?, ?) AS g", [start.file, start.pos]);
      await c.query("SET GLOBAL gtid_slave_pos = ?", [g.g ?? ""]);
      await c.query(`CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${src.port}, MASTER_USER='root', MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos`);
    } else {
      await c.query(
        `CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${src.port}, MASTER_USER='root', MASTER_PASSWORD='', ` +
          `MASTER_LOG_FILE='${start.file}', MASTER_LOG_POS=${start.pos}, MASTER_USE_GTID=no`,
      );
    }
  } finally {
    await c.end();
  }
}

export async function slaveStatus(c, flavor = "mariadb") {
  const [[st]] = await c.query(replCmd(flavor).status);
  return st;
}
// MySQL 8.0.22+ names the columns Source_*, MariaDB Master_*
export const fetched = (st) => ({ file: String(st.Master_Log_File ?? st.Source_Log_File), pos: Number(st.Read_Master_Log_Pos ?? st.Read_Source_Log_Pos) });
export const executed = (st) => ({ file: String(st.Relay_Master_Log_File ?? st.Relay_Source_Log_File), pos: Number(st.Exec_Master_Log_Pos ?? st.Exec_Source_Log_Pos) });

/** Native catch-up on several replicas at once: IO threads fetch first (untimed), then all SQL threads timed until each reaches `end`. */
export async function runNativeCatchup(src, reps, start, end) {
  const cmd = replCmd(src.flavor);
  await Promise.all(reps.map((r) => changeMaster(r, src, start)));
  const conns = await Promise.all(reps.map((r) => r.connect()));
  try {
    const f0 = now();
    await Promise.all(conns.map((c) => c.query(cmd.startIo)));
    for (;;) {
      const sts = await Promise.all(conns.map((c) => slaveStatus(c, src.flavor)));
      const e = sts.find((s) => s.Last_IO_Error);
      if (e) throw new Error(`native IO thread: ${e.Last_IO_Error}`);
      if (sts.every((s) => positionReached(fetched(s), end))) break;
      await sleep(20);
    }
    const fetchSeconds = (now() - f0) / 1000;
    const pids = reps.map(serverPid);
    const cpu0 = pids.map(cpuSeconds);
    const t0 = now();
    await Promise.all(conns.map((c) => c.query(cmd.startSql)));
    const done = reps.map(() => null);
    while (done.some((d) => d === null)) {
      const sts = await Promise.all(conns.map((c) => slaveStatus(c, src.flavor)));
      sts.forEach((st, i) => {
        if (st.Last_SQL_Error) throw new Error(`native SQL thread on ${reps[i].name}: ${st.Last_SQL_Error}`);
        if (done[i] === null && positionReached(executed(st), end)) done[i] = (now() - t0) / 1000;
      });
      if (done.some((d) => d === null)) await sleep(5);
    }
    const serverCpuSeconds = pids.reduce((a, p, i) => a + (cpuSeconds(p) - cpu0[i]), 0);
    await Promise.all(conns.map((c) => c.query(cmd.stop)));
    const [[threads]] = await conns[0].query(`SELECT ${cmd.workers} AS p`);
    return { seconds: Math.max(...done), perReplicaSeconds: done, fetchSeconds, serverCpuSeconds, parallelThreads: Number(threads.p) };
  } finally {
    await Promise.all(conns.map((c) => c.end()));
  }
}

// ------------------------------------------------------------------ the agent as a child process

/**
 * Start `node bin/datasync.js agent --config F` with the given replicas. The handle samples the child's RSS
 * (sample()), counts "streaming" log lines, and stop() ends it and writes its log to bench/results/agent-<tag>.log.
 */
/**
 * The node flags the agent's container runs with (agent/Dockerfile, NODE_OPTIONS): the agent under benchmark runs as
 * deployed unless --node-flags says otherwise (--node-flags "" runs it with node's defaults).
 */
export function containerNodeFlags() {
  // read as the soak reads them (dev/soak.ts), strictly: a benchmark of another agent than the deployed one is no figure
  const flags = containerNodeOptions();
  if (!flags) throw new Error("agent/Dockerfile sets no NODE_OPTIONS=\"…\": the benchmark cannot run the agent as the container does");
  return flags;
}

/** the agent's node flags in a run: --node-flags, else the container's */
export function agentNodeFlags(opt) {
  return opt["node-flags"] ?? containerNodeFlags();
}

export async function startAgent({ src, replicas, tag, base, resultsDir, opt, config = {} }) {
  const apply = {};
  if (opt["max-rows"]) apply.maxRows = Number(opt["max-rows"]);
  if (opt["max-bytes"]) apply.maxBytes = Number(opt["max-bytes"]);
  if (opt["queue-bytes"]) apply.queueBytes = Number(opt["queue-bytes"]);
  if (opt["no-parallel"]) apply.parallel = false;
  if (opt["reader-thread"]) apply.readerThread = true;
  const cfg = {
    group: "bench",
    source: { host: "127.0.0.1", port: src.port, user: "root", password: "" },
    replicas: replicas.map((r, i) => ({ name: replicas.length === 1 ? "agent" : `r${i + 1}`, host: "127.0.0.1", port: r.port, user: "root", password: "" })),
    databases: ["bench"],
    http: { listen: `127.0.0.1:${await freePort()}` },
    ...(Object.keys(apply).length ? { apply } : {}),
    ...config,
  };
  const cfgFile = join(base, `agent-${tag}.json`);
  writeFileSync(cfgFile, JSON.stringify(cfg));
  const logFile = join(resultsDir, `agent-${tag}.log`);
  const profDir = join(resultsDir, `prof-${tag}`);
  const nodeArgs = [...(opt.profile ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`] : []), ...agentNodeFlags(opt).split(" ").filter(Boolean)];
  if (opt.profile) rmSync(profDir, { recursive: true, force: true });

  const t0 = now();
  const child = spawn(process.execPath, [...nodeArgs, join(root, "bin/datasync.js"), "agent", "--config", cfgFile], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env } });
  const h = {
    child,
    pid: child.pid,
    t0,
    cfg,
    logFile,
    profileDir: opt.profile ? profDir : undefined,
    logLines: [],
    streamingAt: [],
    stderr: "",
    exit: null,
    peakRssKb: 0,
    sample() {
      const ps = readProcStatus(child.pid);
      if (!ps) return null;
      h.peakRssKb = Math.max(h.peakRssKb, ps.hwmKb, ps.rssKb);
      return ps;
    },
    get firstStreamingAt() {
      return h.streamingAt.length ? Math.min(...h.streamingAt) : null;
    },
    checkAlive() {
      if (h.exit) throw new Error(`agent exited early (${h.exit.code ?? h.exit.sig}): ${h.stderr.trim() || h.logLines.slice(-5).join("\n")}`);
    },
    cpuSeconds: () => cpuSeconds(child.pid),
    errorLines: () => h.logLines.filter((l) => /"level":"(error|fatal)"|"level":(50|60)\b/.test(l)),
    /** after the run: throws when the agent logged an error */
    assertNoErrors() {
      const failed = this.errorLines();
      if (failed.length) throw new Error(`agent logged errors:\n${failed.slice(0, 3).join("\n")}`);
    },
    /** when streaming started (process start when it never logged it) */
    get streamingStart() {
      return this.firstStreamingAt ?? h.t0;
    },
    async stop() {
      if (!h.exit) child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(killer);
      writeFileSync(logFile, h.logLines.join("\n") + "\n" + h.stderr);
      return h.exit;
    },
  };
  child.stderr.on("data", (d) => (h.stderr += d));
  createInterface({ input: child.stdout }).on("line", (line) => {
    h.logLines.push(line);
    if (line.includes('"msg":"streaming"')) h.streamingAt.push(now());
  });
  const exited = new Promise((r) => child.once("exit", (code, sig) => r({ code, sig })));
  exited.then((e) => (h.exit = e));
  return h;
}

/** Wait until every replica's checkpoint reaches `end`; returns the time (now()) each got there. */
export async function waitCheckpoints(agent, poller, end, { deadlineMs = 30 * 60_000, pollMs = 10, onPoll } = {}) {
  const done = poller.servers.map(() => null);
  const deadline = Date.now() + deadlineMs;
  while (done.some((d) => d === null)) {
    agent.checkAlive();
    if (Date.now() > deadline) throw new Error(`the agent did not catch up within ${deadlineMs / 60000} minutes`);
    agent.sample();
    const ps = await poller.poll();
    const t = now();
    ps.forEach((p, i) => {
      if (done[i] === null && positionReached(p, end)) done[i] = t;
    });
    onPoll?.(ps);
    if (done.some((d) => d === null)) await sleep(pollMs);
  }
  agent.sample();
  return done;
}

/** The agent's own lag gauge per replica (datasync_replica_lag_seconds from /metrics), or null if unreachable. */
export async function scrapeLag(agent) {
  try {
    const res = await fetch(`http://${agent.cfg.http.listen}/metrics`, { signal: AbortSignal.timeout(1000) });
    const text = await res.text();
    const out = {};
    for (const m of text.matchAll(/^datasync_replica_lag_seconds\{[^}]*replica="([^"]+)"[^}]*\}\s+(\S+)$/gm)) out[m[1]] = Number(m[2]);
    return out;
  } catch {
    return null;
  }
}
