#!/usr/bin/env node
// Catch-up benchmark: the SAME source binlog applied by MariaDB's native replication (SQL thread only)
// and by the datasync agent (the CLI as a child process), on private servers with identical settings.
// Usage: npm run bench [-- --scenario catchup-large|catchup-small] [--scale 0.1] [--rows N] [--txns N]
//        [--profile] [--repeat N] [--max-rows N --max-bytes N --queue-bytes N] [--keep]
// Writes bench/results.json, bench/results.md and prints the Markdown table. See bench/README.md.
import { spawn } from "node:child_process";
import { cpus, loadavg, tmpdir } from "node:os";
import { createInterface } from "node:readline";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
if (!existsSync(join(root, "dist/agent/servers.js"))) {
  console.error("bench: dist/ is missing; run `npm run build` first (npm run bench does it)");
  process.exit(2);
}
const { startServers } = await import("../dist/agent/servers.js");
const { ensureBookkeeping, checkpointSql } = await import("../dist/agent/checkpoint.js");

const SCENARIOS = {
  "catchup-large": {
    title: "1,000,000 rows in 1,000-row transactions (inserts)",
    goal: 0.5,
  },
  "catchup-small": {
    title: "40,000 single-row transactions (50% inserts, 50% updates by key)",
    goal: 1.5,
  },
};

const { values: opt } = parseArgs({
  options: {
    scenario: { type: "string", multiple: true },
    scale: { type: "string", default: "1" },
    rows: { type: "string" },
    "txn-rows": { type: "string" },
    txns: { type: "string" },
    seed: { type: "string" },
    repeat: { type: "string", default: "1" },
    profile: { type: "boolean", default: false },
    "max-rows": { type: "string" },
    "max-bytes": { type: "string" },
    "queue-bytes": { type: "string" },
    "buffer-pool": { type: "string", default: "512M" },
    "log-file-size": { type: "string", default: "256M" },
    "no-native": { type: "boolean", default: false },
    "node-flags": { type: "string", default: "" },
    "replica-binlog": { type: "boolean", default: false },
    keep: { type: "boolean", default: false },
    out: { type: "string", default: join(here, "results.json") },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (opt.help) {
  console.log(readFileSync(fileURLToPath(import.meta.url), "utf8").split("\n").slice(1, 6).join("\n"));
  process.exit(0);
}

const scale = Number(opt.scale);
const names = (opt.scenario ?? Object.keys(SCENARIOS)).flatMap((s) => s.split(","));
for (const n of names) {
  if (!SCENARIOS[n]) {
    console.error(`bench: unknown scenario "${n}"; known: ${Object.keys(SCENARIOS).join(", ")}`);
    process.exit(2);
  }
}
const repeat = Math.max(1, Number(opt.repeat));
const base = join(tmpdir(), `datasync-bench-${process.pid}`);
const resultsDir = join(here, "results");
mkdirSync(resultsDir, { recursive: true });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();
const log = (...a) => process.stderr.write(`[bench] ${a.join(" ")}\n`);

// Both replicas get exactly these settings (on top of the servers module's defaults).
const innodb = [`--innodb-buffer-pool-size=${opt["buffer-pool"]}`, `--innodb-log-file-size=${opt["log-file-size"]}`];

// ------------------------------------------------------------------ workload

const TABLE = `CREATE TABLE IF NOT EXISTS bench.orders (
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

/** Deterministic rows id in [lo, hi] from MariaDB's sequence engine (server side, no client overhead). */
function insertSelect(lo, hi) {
  return (
    `INSERT INTO bench.orders (id, customer_id, status, sku, qty, price, note, created_at, updated_at) ` +
    `SELECT seq, seq % 50000 + 1, ELT(seq % 4 + 1, 'new', 'paid', 'shipped', 'closed'), CONCAT('SKU-', LPAD(seq % 5000, 6, '0')), seq % 10 + 1, ` +
    `(seq % 100000) / 100 + 0.99, CONCAT('order ', seq, ' ', MD5(seq)), TIMESTAMP('2024-01-01') + INTERVAL seq SECOND, TIMESTAMP('2024-01-01') + INTERVAL seq SECOND ` +
    `FROM bench.seq_${lo}_to_${hi}`
  );
}

async function prepareSchema(servers, seedRows) {
  await Promise.all(
    servers.map(async (s) => {
      await s.query("CREATE DATABASE IF NOT EXISTS bench");
      await s.query(TABLE);
      // the same deterministic seed everywhere (before the start position: not part of the backlog)
      for (let lo = 1; lo <= seedRows; lo += 10_000) await s.query(insertSelect(lo, Math.min(seedRows, lo + 9_999)));
    }),
  );
}

/** catchup-large: `rows` rows in `txnRows`-row transactions (one multi-row INSERT each, autocommit). */
async function genLarge(src, rows, txnRows) {
  const c = await src.connect();
  try {
    for (let lo = 1; lo <= rows; lo += txnRows) await c.query(insertSelect(lo, Math.min(rows, lo + txnRows - 1)));
  } finally {
    await c.end();
  }
  return { rows, txns: Math.ceil(rows / txnRows) };
}

/** catchup-small: `txns` single-row autocommit transactions; even i inserts a new row, odd i updates a seeded row by key. */
async function genSmall(src, txns, seedRows) {
  const c = await src.connect();
  let stmts = [];
  const flush = async () => {
    if (stmts.length) await c.query(stmts.join(";\n"));
    stmts = [];
  };
  try {
    for (let i = 0; i < txns; i++) {
      if (i % 2 === 0) {
        const id = seedRows + 1 + i / 2;
        stmts.push(
          `INSERT INTO bench.orders VALUES (${id}, ${(id % 50000) + 1}, 'new', 'SKU-${String(id % 5000).padStart(6, "0")}', ${(id % 10) + 1}, ${((id % 100000) / 100 + 0.99).toFixed(2)}, 'order ${id}', '2024-06-01 00:00:00', '2024-06-01 00:00:00')`,
        );
      } else {
        const id = ((i * 7919) % seedRows) + 1;
        stmts.push(`UPDATE bench.orders SET qty = qty + 1, status = 'paid', updated_at = '2024-06-02 00:00:00' + INTERVAL ${i} SECOND WHERE id = ${id}`);
      }
      if (stmts.length >= 500) await flush();
    }
    await flush();
  } finally {
    await c.end();
  }
  return { rows: txns, txns };
}

// ------------------------------------------------------------------ helpers

async function masterStatus(s) {
  const [st] = await s.query("SHOW MASTER STATUS");
  return { file: String(st.File), pos: Number(st.Position) };
}

const reached = (p, end) => p.file === end.file && p.pos >= end.pos;

async function checksum(s) {
  const [r] = await s.query("CHECKSUM TABLE bench.orders");
  const [n] = await s.query("SELECT COUNT(*) AS n FROM bench.orders");
  return { checksum: String(r.Checksum), rows: Number(n.n) };
}

// ------------------------------------------------------------------ native replication

async function runNative(src, rep, start, end) {
  const c = await rep.connect();
  try {
    await c.query(
      `CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${src.port}, MASTER_USER='root', MASTER_PASSWORD='', ` +
        `MASTER_LOG_FILE='${start.file}', MASTER_LOG_POS=${start.pos}, MASTER_USE_GTID=no`,
    );
    await c.query("START SLAVE IO_THREAD");
    const fetchStart = now();
    for (;;) {
      const [[st]] = await c.query("SHOW SLAVE STATUS");
      if (st.Last_IO_Error) throw new Error(`native IO thread: ${st.Last_IO_Error}`);
      if (reached({ file: st.Master_Log_File, pos: Number(st.Read_Master_Log_Pos) }, end)) break;
      await sleep(20);
    }
    const fetchSeconds = (now() - fetchStart) / 1000;
    const pid = serverPid(rep);
    const cpu0 = cpuSeconds(pid);
    const t0 = now();
    await c.query("START SLAVE SQL_THREAD");
    for (;;) {
      const [[st]] = await c.query("SHOW SLAVE STATUS");
      if (st.Last_SQL_Error) throw new Error(`native SQL thread: ${st.Last_SQL_Error}`);
      if (reached({ file: st.Relay_Master_Log_File, pos: Number(st.Exec_Master_Log_Pos) }, end)) break;
      await sleep(5);
    }
    const seconds = (now() - t0) / 1000;
    const serverCpuSeconds = cpuSeconds(pid) - cpu0;
    await c.query("STOP SLAVE");
    const [[threads]] = await c.query("SELECT @@slave_parallel_threads AS p");
    return { seconds, fetchSeconds, serverCpuSeconds, parallelThreads: Number(threads.p) };
  } finally {
    await c.end();
  }
}

// ------------------------------------------------------------------ agent

const CLK_TCK = 100;
/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
function cpuSeconds(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
    return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/** The pid of a TestServer's mariadbd (found by its datadir). */
function serverPid(s) {
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, "utf8").includes(`--datadir=${s.datadir}\0`)) return Number(d);
    } catch {}
  }
  return null;
}

function readProcStatus(pid) {
  try {
    const t = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(t)?.[1] ?? 0);
    return { hwmKb: kb("VmHWM"), rssKb: kb("VmRSS") };
  } catch {
    return null;
  }
}

async function writeCheckpoint(src, rep, start) {
  const [id] = await src.query("SELECT @@server_id AS id, @@hostname AS h");
  const [g] = await src.query("SELECT BINLOG_GTID_POS(?, ?) AS g", [start.file, start.pos]);
  const c = await rep.connect();
  try {
    await ensureBookkeeping(c);
    await c.query(checkpointSql("bench", `mariadb:${id.id}@${id.h}`, "mariadb", { ...start, gtid: g.g || null }, Date.now(), 0, 0));
  } finally {
    await c.end();
  }
}

async function runAgent(src, rep, end, tag) {
  const apply = {};
  if (opt["max-rows"]) apply.maxRows = Number(opt["max-rows"]);
  if (opt["max-bytes"]) apply.maxBytes = Number(opt["max-bytes"]);
  if (opt["queue-bytes"]) apply.queueBytes = Number(opt["queue-bytes"]);
  const { freePort } = await import("../dist/agent/servers.js");
  const cfg = {
    group: "bench",
    source: { host: "127.0.0.1", port: src.port, user: "root", password: "" },
    replicas: [{ name: "agent", host: "127.0.0.1", port: rep.port, user: "root", password: "" }],
    databases: ["bench"],
    http: { listen: `127.0.0.1:${await freePort()}` },
    ...(Object.keys(apply).length ? { apply } : {}),
  };
  const cfgFile = join(base, `agent-${tag}.json`);
  writeFileSync(cfgFile, JSON.stringify(cfg));
  const logFile = join(resultsDir, `agent-${tag}.log`);
  const profDir = join(resultsDir, `prof-${tag}`);
  const nodeArgs = [...(opt.profile ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`] : []), ...opt["node-flags"].split(" ").filter(Boolean)];
  if (opt.profile) rmSync(profDir, { recursive: true, force: true });

  const poll = await rep.connect();
  const repPid = serverPid(rep);
  const repCpu0 = cpuSeconds(repPid);
  const t0 = now();
  const child = spawn(process.execPath, [...nodeArgs, join(root, "bin/datasync.js"), "agent", "--config", cfgFile], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env } });
  const logLines = [];
  let streamingAt = null;
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  createInterface({ input: child.stdout }).on("line", (line) => {
    logLines.push(line);
    if (streamingAt === null && line.includes('"msg":"streaming"')) streamingAt = now();
  });
  const exited = new Promise((r) => child.once("exit", (code, sig) => r({ code, sig })));
  let exit = null;
  exited.then((e) => (exit = e));

  let peakRssKb = 0;
  let agentCpu = NaN;
  let serverCpu = NaN;
  let doneAt = null;
  let lastStatus = null;
  const deadline = Date.now() + 30 * 60_000;
  try {
    while (doneAt === null) {
      if (exit) throw new Error(`agent exited early (${exit.code ?? exit.sig}): ${stderr.trim() || logLines.slice(-5).join("\n")}`);
      if (Date.now() > deadline) throw new Error("agent did not catch up within 30 minutes");
      const ps = readProcStatus(child.pid);
      if (ps) peakRssKb = Math.max(peakRssKb, ps.hwmKb, ps.rssKb);
      const [rows] = await poll.query("SELECT binlog_file AS f, binlog_pos AS p, state FROM _datasync.checkpoints WHERE group_name = 'bench'");
      if (rows[0]) {
        lastStatus = rows[0];
        if (reached({ file: rows[0].f, pos: Number(rows[0].p) }, end)) doneAt = now();
      }
      if (doneAt === null) await sleep(10);
    }
    const ps = readProcStatus(child.pid);
    if (ps) peakRssKb = Math.max(peakRssKb, ps.hwmKb);
    agentCpu = cpuSeconds(child.pid);
    serverCpu = cpuSeconds(repPid) - repCpu0;
  } finally {
    await poll.end().catch(() => undefined);
    if (!exit) child.kill("SIGTERM");
    const killer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    exit = await exited;
    clearTimeout(killer);
    writeFileSync(logFile, logLines.join("\n") + "\n" + stderr);
  }
  const failed = logLines.filter((l) => /"level":"(error|fatal)"/.test(l));
  if (failed.length) throw new Error(`agent logged errors:\n${failed.slice(0, 3).join("\n")}`);
  return {
    seconds: (doneAt - (streamingAt ?? t0)) / 1000,
    wallSeconds: (doneAt - t0) / 1000,
    startupSeconds: ((streamingAt ?? t0) - t0) / 1000,
    peakRssMb: Math.round(peakRssKb / 102.4) / 10,
    cpuSeconds: agentCpu,
    serverCpuSeconds: serverCpu,
    exitCode: exit.code,
    log: logFile,
    profileDir: opt.profile ? profDir : undefined,
    lastStatus,
  };
}

// ------------------------------------------------------------------ one scenario

async function runScenario(name, iteration) {
  const tag = `${name}${repeat > 1 ? `-${iteration + 1}` : ""}`;
  const large = name === "catchup-large";
  const rows = Math.round(Number(opt.rows ?? 1_000_000) * scale);
  const txnRows = Number(opt["txn-rows"] ?? 1000);
  const txns = Math.round(Number(opt.txns ?? 40_000) * scale);
  const seedRows = large ? 0 : Math.max(1000, Math.round(Number(opt.seed ?? 100_000) * scale));

  log(`${tag}: starting servers in ${base}`);
  const [src, native, agentRep] = await startServers([
    { name: "src", baseDir: base, args: innodb },
    { name: "native", baseDir: base, noBinlog: !opt["replica-binlog"], args: innodb },
    { name: "agent", baseDir: base, noBinlog: !opt["replica-binlog"], args: innodb },
  ]);
  try {
    const [v] = await src.query("SELECT VERSION() AS v");
    await prepareSchema([src, native, agentRep], seedRows);
    const start = await masterStatus(src);
    await writeCheckpoint(src, agentRep, start);

    log(`${tag}: generating the backlog on the source`);
    const g0 = now();
    const work = large ? await genLarge(src, rows, txnRows) : await genSmall(src, txns, seedRows);
    const genSeconds = (now() - g0) / 1000;
    const end = await masterStatus(src);
    if (end.file !== start.file) throw new Error(`the backlog spans binlog files (${start.file} → ${end.file}); raise max_binlog_size`);
    const binlogBytes = end.pos - start.pos;
    log(`${tag}: ${work.rows} rows in ${work.txns} transactions, ${(binlogBytes / 1048576).toFixed(1)} MiB of binlog, generated in ${genSeconds.toFixed(1)} s`);

    let nat = null;
    if (!opt["no-native"]) {
      log(`${tag}: native replication (IO thread first, then the SQL thread timed)`);
      nat = await runNative(src, native, start, end);
      log(`${tag}: native SQL thread ${nat.seconds.toFixed(2)} s`);
    }
    const load = loadavg()[0];
    log(`${tag}: agent (CLI child process${opt.profile ? ", --cpu-prof" : ""})`);
    const ag = await runAgent(src, agentRep, end, tag);
    log(`${tag}: agent ${ag.seconds.toFixed(2)} s (+${ag.startupSeconds.toFixed(2)} s start-up), peak RSS ${ag.peakRssMb} MB`);

    const sums = await Promise.all([checksum(src), nat ? checksum(native) : null, checksum(agentRep)]);
    const identical = sums.every((s) => s === null || (s.checksum === sums[0].checksum && s.rows === sums[0].rows));
    if (!identical) log(`${tag}: WARNING replicas differ from the source: ${JSON.stringify(sums)}`);

    const rate = (secs) => ({ rowsPerSec: Math.round(work.rows / secs), txPerSec: Math.round(work.txns / secs) });
    const ratio = nat ? Math.round((nat.seconds / ag.seconds) * 100) / 100 : null;
    return {
      scenario: name,
      iteration: iteration + 1,
      description: SCENARIOS[name].title,
      rows: work.rows,
      transactions: work.txns,
      rowsPerTransaction: large ? txnRows : 1,
      seedRows,
      binlogBytes,
      generateSeconds: round(genSeconds),
      native: nat ? { seconds: round(nat.seconds), ...rate(nat.seconds), ioFetchSeconds: round(nat.fetchSeconds), serverCpuSeconds: round(nat.serverCpuSeconds), slaveParallelThreads: nat.parallelThreads } : null,
      agent: {
        seconds: round(ag.seconds),
        ...rate(ag.seconds),
        wallSeconds: round(ag.wallSeconds),
        startupSeconds: round(ag.startupSeconds),
        peakRssMb: ag.peakRssMb,
        cpuSeconds: round(ag.cpuSeconds),
        serverCpuSeconds: round(ag.serverCpuSeconds),
        exitCode: ag.exitCode,
        profileDir: ag.profileDir,
      },
      ratio,
      goal: { ratio: SCENARIOS[name].goal, ratioMet: ratio === null ? null : ratio >= SCENARIOS[name].goal, rssMb: 300, rssMet: ag.peakRssMb <= 300 },
      identical,
      loadAvg1m: round(load),
      server: String(v.v),
    };
  } finally {
    if (opt.keep) log(`${tag}: servers kept: source ${src.port}, native ${native.port}, agent replica ${agentRep.port}`);
    else await Promise.all([src.destroy(), native.destroy(), agentRep.destroy()]);
  }
}

function round(x) {
  return Math.round(x * 1000) / 1000;
}

function table(results, meta) {
  const fmt = (n) => (n === null || n === undefined ? "–" : n.toLocaleString("en-US"));
  const lines = [
    `Machine: ${meta.cores} cores (${meta.cpu}), Node ${meta.node}, ${meta.server}; command: \`${meta.command}\``,
    "",
    "| scenario | rows | tx | native s | native rows/s | native tx/s | agent s | agent rows/s | agent tx/s | ratio native/agent (goal) | agent peak RSS MB (goal ≤300) | CPU s: native server / agent / agent's server | start-up s | identical | load 1m |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---|---:|",
  ];
  for (const r of results) {
    const ok = (b) => (b === null ? "" : b ? " ✅" : " ❌");
    lines.push(
      `| ${r.scenario}${r.iteration > 1 || repeat > 1 ? ` #${r.iteration}` : ""} | ${fmt(r.rows)} | ${fmt(r.transactions)} | ${r.native ? r.native.seconds.toFixed(2) : "–"} | ${fmt(r.native?.rowsPerSec)} | ${fmt(r.native?.txPerSec)} | ${r.agent.seconds.toFixed(2)} | ${fmt(r.agent.rowsPerSec)} | ${fmt(r.agent.txPerSec)} | ${r.ratio ?? "–"} (≥${r.goal.ratio})${ok(r.goal.ratioMet)} | ${r.agent.peakRssMb}${ok(r.goal.rssMet)} | ${r.native ? r.native.serverCpuSeconds.toFixed(2) : "–"} / ${r.agent.cpuSeconds.toFixed(2)} / ${r.agent.serverCpuSeconds.toFixed(2)} | ${r.agent.startupSeconds.toFixed(2)} | ${r.identical ? "yes" : "NO"} | ${r.loadAvg1m} |`,
    );
  }
  return lines.join("\n") + "\n";
}

// ------------------------------------------------------------------ main

const results = [];
let failed = false;
for (const n of names) {
  for (let i = 0; i < repeat; i++) {
    try {
      results.push(await runScenario(n, i));
    } catch (err) {
      failed = true;
      log(`${n}: FAILED: ${err?.stack ?? err}`);
    }
  }
}
rmSync(base, { recursive: true, force: true });
const meta = {
  date: new Date().toISOString(),
  command: `npm run bench -- ${process.argv.slice(2).join(" ")}`.trim(),
  cores: cpus().length,
  cpu: cpus()[0]?.model ?? "?",
  node: process.version,
  server: results[0]?.server ?? "?",
  settings: { replicaArgs: innodb, replicaBinlog: opt["replica-binlog"], apply: { maxRows: opt["max-rows"], maxBytes: opt["max-bytes"], queueBytes: opt["queue-bytes"] } },
  scale,
};
const md = table(results, meta);
writeFileSync(opt.out, JSON.stringify({ ...meta, results }, null, 2) + "\n");
writeFileSync(opt.out.replace(/\.json$/, ".md"), md);
process.stdout.write(md);
process.exit(failed ? 1 : 0);
