// End-to-end lag: a heartbeat probe on the source and a trigger on each replica (same machine, same clock),
// plus the two lag scenarios: replica-down and sysbench. See bench/README.md.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadavg, cpus } from "node:os";
import {
  startServers, prepareOrders, orderInsert, orderUpdate, masterStatus, writeCheckpoint, changeMaster, slaveStatus, executed,
  startAgent, waitCheckpoints, CheckpointPoller, allIdentical, mb, log, now, sleep, settle, scrapeLag, replCmd, clientBinary,
} from "./lib.mjs";
import { goalMet, perSecondMax, positionReached, round, summarize } from "./stats.mjs";

// ------------------------------------------------------------------ heartbeat

export const HEARTBEAT = "CREATE TABLE IF NOT EXISTS bench.heartbeat (id BIGINT NOT NULL PRIMARY KEY, ts DATETIME(6) NOT NULL) ENGINE=InnoDB";

/**
 * Replica-only: the log table and the triggers. SYSDATE(6), not NOW(6): a replication SQL thread runs with the
 * source event's timestamp (SET TIMESTAMP), so NOW() on a native replica would be the source's time, not the
 * apply time. SYSDATE(6) is the wall clock when the row is applied on either kind of replica.
 */
export async function installHeartbeatLog(rep) {
  await rep.query(
    [
      "CREATE TABLE IF NOT EXISTS bench.heartbeat_log (seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, hb_id BIGINT NOT NULL, source_ts DATETIME(6) NOT NULL, applied_ts DATETIME(6) NOT NULL) ENGINE=InnoDB",
      "CREATE TRIGGER bench.heartbeat_ai AFTER INSERT ON bench.heartbeat FOR EACH ROW INSERT INTO bench.heartbeat_log (hb_id, source_ts, applied_ts) VALUES (NEW.id, NEW.ts, SYSDATE(6))",
      "CREATE TRIGGER bench.heartbeat_au AFTER UPDATE ON bench.heartbeat FOR EACH ROW INSERT INTO bench.heartbeat_log (hb_id, source_ts, applied_ts) VALUES (NEW.id, NEW.ts, SYSDATE(6))",
    ].join(";\n"),
  );
}

/** Inserts a new heartbeat row (id = a counter, ts = NOW(6)) on the source every `ms` milliseconds until stopped. */
export function startProbe(src, ms = 100) {
  const p = { sent: 0, errors: 0, stopped: false, t0: Date.now() / 1000, commitMs: [] };
  p.done = (async () => {
    const c = await src.connect();
    const t0 = now();
    try {
      while (!p.stopped) {
        try {
          const q0 = Date.now();
          await c.query("INSERT INTO bench.heartbeat (id, ts) VALUES (?, NOW(6))", [++p.sent]);
          // the source's own time to insert and commit each heartbeat: part of the end-to-end lag (measured from
          // the row's NOW(6)) that no replica can shorten
          p.commitMs.push({ t: q0 / 1000, ms: Date.now() - q0 });
        } catch {
          p.errors++;
        }
        const next = t0 + p.sent * ms;
        await sleep(Math.max(0, next - now()));
      }
    } finally {
      await c.end();
    }
  })();
  p.stop = async () => {
    p.stopped = true;
    await p.done;
    p.t1 = Date.now() / 1000;
  };
  return p;
}

/** Lag samples from a replica's heartbeat_log: { t: source epoch s, ms } (the first application of each heartbeat). */
export async function readLag(rep) {
  const rows = await rep.query(
    "SELECT hb_id, UNIX_TIMESTAMP(MIN(source_ts)) AS st, TIMESTAMPDIFF(MICROSECOND, MIN(source_ts), MIN(applied_ts)) AS us FROM bench.heartbeat_log GROUP BY hb_id ORDER BY hb_id",
  );
  return rows.map((r) => ({ id: Number(r.hb_id), t: Number(r.st), ms: Number(r.us) / 1000 }));
}

const lagStats = (samples) => {
  const s = summarize(samples.map((x) => x.ms));
  return { count: s.count, p50: round(s.p50, 1), p95: round(s.p95, 1), p99: round(s.p99, 1), max: round(s.max, 1), mean: round(s.mean, 1) };
};

/** Per-second max lag for the chart, t relative to t0 (epoch s). */
const series = (samples, t0, name) => perSecondMax(samples.map((x) => ({ t: x.t - t0, v: x.ms }))).map(({ t, v }) => ({ t, ms: round(v, 1), series: name }));

// ------------------------------------------------------------------ a rate-limited mixed writer

/** ~rate tx/s on bench.orders from `conns` connections: 40% insert, 40% update by key, 20% insert+update in one transaction. */
export function startWriter(src, { rate, seedRows, conns = 4, firstId }) {
  const w = { issued: 0, done: 0, errors: 0, stopped: false, lastError: null };
  const t0 = now();
  let nextId = firstId;
  const one = async (c) => {
    while (!w.stopped) {
      const k = w.issued++;
      const due = t0 + (k * 1000) / rate;
      const wait = due - now();
      if (wait > 0) await sleep(wait);
      if (w.stopped) break;
      const kind = k % 5;
      const upd = orderUpdate(((k * 7919) % seedRows) + 1, k);
      const sql = kind < 2 ? orderInsert(nextId++) : kind < 4 ? upd : `START TRANSACTION; ${orderInsert(nextId++)}; ${upd}; COMMIT`;
      try {
        await c.query(sql);
        w.done++;
      } catch (e) {
        w.errors++;
        w.lastError = String(e?.message ?? e);
      }
    }
  };
  w.promise = (async () => {
    const cs = await Promise.all(Array.from({ length: conns }, () => src.connect()));
    try {
      await Promise.all(cs.map(one));
    } finally {
      await Promise.all(cs.map((c) => c.end()));
    }
  })();
  w.stop = async () => {
    w.stopped = true;
    await w.promise;
    w.seconds = (now() - t0) / 1000;
    return w;
  };
  return w;
}

async function waitNative(rep, end, deadlineMs = 30 * 60_000) {
  const c = await rep.connect();
  const deadline = Date.now() + deadlineMs;
  try {
    for (;;) {
      const st = await slaveStatus(c, rep.flavor);
      if (st?.Last_SQL_Error) throw new Error(`native SQL thread: ${st.Last_SQL_Error}`);
      if (st && positionReached(executed(st), end)) return now();
      if (Date.now() > deadline) throw new Error("the native replica did not catch up in time");
      await sleep(10);
    }
  } finally {
    await c.end();
  }
}

/**
 * Why sysbench is not measured against MySQL's applier: its anchor is the native replica's end-to-end lag, which
 * the heartbeat triggers record, and a MySQL replica never runs triggers for row events (MariaDB's
 * slave_run_triggers_for_rbr has no MySQL counterpart); polling the replica instead would measure the polling.
 */
export const SYSBENCH_NOT_ON_MYSQL =
  "not measured on MySQL: the anchor (the native replica's end-to-end lag) is recorded by heartbeat triggers on the replica, and a MySQL replica never runs triggers for row events (no slave_run_triggers_for_rbr); see bench/README.md";

// ------------------------------------------------------------------ replica-down

export async function runReplicaDown(ctx, tag) {
  const { opt, scale, base, flavor } = ctx;
  const cmd = replCmd(flavor);
  const downSeconds = Number(opt["down-minutes"]) * 60;
  const rate = Number(opt["down-rate"]);
  const seedRows = Math.max(1000, Math.round(100_000 * scale));
  const args = [`--innodb-buffer-pool-size=${opt["fanout-buffer-pool"]}`, `--innodb-log-file-size=${opt["log-file-size"]}`];
  const repArgs = [...args, "--slave-run-triggers-for-rbr=YES"];
  const withNative = !opt["no-native"];
  log(`${tag}: starting ${withNative ? 7 : 6} servers (buffer pool ${opt["fanout-buffer-pool"]} each)`);
  const servers = await startServers([
    { name: "src", baseDir: base, args },
    ...Array.from({ length: 5 }, (_, i) => ({ name: `r${i + 1}`, baseDir: base, noBinlog: true, args: repArgs })),
    ...(withNative ? [{ name: "native", baseDir: base, noBinlog: true, args: repArgs }] : []),
  ], flavor);
  const [src, ...rest] = servers;
  const reps = rest.slice(0, 5);
  const native = withNative ? rest[5] : null;
  const down = reps[4];
  const writerState = { w: null, probe: null };
  let agent = null;
  try {
    const [{ v: server }] = await src.query("SELECT VERSION() AS v");
    await prepareOrders(servers, seedRows);
    await Promise.all(servers.map((s) => s.query(HEARTBEAT)));
    await Promise.all(rest.map(installHeartbeatLog));
    const start = await masterStatus(src);
    await writeCheckpoint(src, reps, start);
    if (native) {
      await changeMaster(native, src, start, { gtid: true });
      await native.query(cmd.start);
    }
    agent = await startAgent({ src, replicas: reps, tag, base, resultsDir: ctx.resultsDir, opt, config: { heartbeatSeconds: Number(opt["agent-heartbeat"]) } });
    const poller = new CheckpointPoller(reps);
    await waitCheckpoints(agent, poller, start, { deadlineMs: 60_000 });
    while (agent.streamingAt.length < 5) {
      agent.checkAlive();
      await sleep(50);
    }
    const load = loadavg()[0];
    log(`${tag}: agent streaming to 5 replicas; writer ${rate} tx/s + heartbeat every 100 ms; warm-up 5 s`);
    writerState.probe = startProbe(src, 100);
    writerState.w = startWriter(src, { rate, seedRows, firstId: seedRows + 1 });
    await sleep(5000);

    const rss = [];
    const metricLag = []; // the agent's own datasync_replica_lag_seconds, once a second, for comparison
    const sampleRss = (phase) => {
      const ps = agent.sample();
      if (ps) rss.push({ t: round((now() - agent.t0) / 1000, 1), mb: mb(ps.rssKb), phase });
    };
    sampleRss("before");
    log(`${tag}: SIGKILL replica r5${native ? " and the native replica" : ""}; down for ${downSeconds} s`);
    const downT0 = Date.now() / 1000;
    await Promise.all([down.kill(), native?.kill()]);
    const tEnd = now() + downSeconds * 1000;
    while (now() < tEnd) {
      agent.checkAlive();
      sampleRss("down");
      const ml = await scrapeLag(agent);
      if (ml) metricLag.push(ml);
      await sleep(Math.min(1000, Math.max(0, tEnd - now())));
    }
    await writerState.probe.stop();
    const w = await writerState.w.stop();
    const downT1 = Date.now() / 1000;
    const end = await masterStatus(src);
    log(`${tag}: writer stopped: ${w.done} tx in ${w.seconds.toFixed(1)} s (${Math.round(w.done / w.seconds)} tx/s, ${w.errors} errors); restarting r5`);
    sampleRss("down");

    // the returning agent replica (the native one restarts after it, so the two catch-ups do not share the CPU)
    const streamingBefore = agent.streamingAt.length;
    await down.start();
    const r0 = now();
    const done = await waitCheckpoints(agent, poller, end, {
      onPoll: () => {
        if (rss.length && now() - agent.t0 - rss[rss.length - 1].t * 1000 >= 1000) sampleRss("catch-up");
      },
    });
    const agentCatchup = (done[4] - r0) / 1000;
    // the agent's retry back-off is part of the catch-up; its "streaming" line for r5 splits it off
    const back = agent.streamingAt.slice(streamingBefore).find((t) => t >= r0) ?? null;
    const reconnectSeconds = back === null ? null : (back - r0) / 1000;
    const applySeconds = back === null ? null : (done[4] - back) / 1000;
    sampleRss("end");
    log(`${tag}: r5 caught up in ${agentCatchup.toFixed(2)} s (restart to checkpoint at the source's end; reconnect ${reconnectSeconds?.toFixed(2)} s + apply ${applySeconds?.toFixed(2)} s)`);
    await poller.close();

    let nativeCatchup = null;
    if (native) {
      await native.start([cmd.skipStart]);
      const n0 = now();
      await native.query(cmd.start);
      nativeCatchup = (await waitNative(native, end)) - n0;
      nativeCatchup /= 1000;
      log(`${tag}: native replica caught up in ${nativeCatchup.toFixed(2)} s (restart to Exec_Master_Log_Pos at the source's end)`);
    }
    const peakRssMb = mb(agent.peakRssKb);
    await agent.stop();
    agent = null;

    const identical = await allIdentical(servers, ["bench.orders", "bench.heartbeat"], tag);
    // lag of the four live replicas while r5 was down
    const lags = await Promise.all(reps.slice(0, 4).map(readLag));
    const inWindow = lags.map((l) => l.filter((x) => x.t >= downT0 && x.t <= downT1));
    const all = inWindow.flat();
    // heartbeats sent in the window that a live replica never logged (ids between the window's first and last seen)
    const ids = inWindow.flat().map((x) => x.id);
    const expected = ids.length ? Math.max(...ids) - Math.min(...ids) + 1 : 0;
    const missing = inWindow.map((l) => expected - l.length);
    const stats = lagStats(all);
    const perReplica = inWindow.map(lagStats);
    const lagSeries = [];
    for (let i = 0; i < 4; i++) lagSeries.push(...series(inWindow[i], downT0, `replica-down r${i + 1}`));
    const ratio = nativeCatchup !== null ? round(nativeCatchup / agentCatchup, 2) : null;
    const rssMbs = rss.map((x) => x.mb);
    return {
      scenario: "replica-down",
      description: `5 replicas, ${rate} tx/s mixed load for ${downSeconds} s with r5 killed (SIGKILL) at the start and restarted at the end`,
      headline: {
        measure: "catch-up s of the returning replica",
        anchorName: native ? "native replica, same down-time" : "none",
        anchor: nativeCatchup !== null ? round(nativeCatchup, 2) : null,
        agent: round(agentCatchup, 2),
        ratio,
        ratioDef: "native catch-up s / agent catch-up s",
        goal: "lag p99 of the 4 others < 1000 ms",
        met: goalMet(stats.p99, 1000, true) === null ? null : stats.p99 < 1000,
      },
      lagMs: stats,
      lagMsPerReplica: perReplica,
      agentMetricLagSecondsMax: Object.fromEntries(["r1", "r2", "r3", "r4", "r5"].map((n) => [n, metricLag.length ? Math.max(...metricLag.map((m) => m[n] ?? NaN).filter(Number.isFinite)) : null])),
      heartbeatsMissing: missing,
      rssMb: { start: rssMbs[0] ?? null, peak: peakRssMb, end: rssMbs[rssMbs.length - 1] ?? null },
      peakRssMb,
      writer: { targetTxPerSec: rate, transactions: w.done, seconds: round(w.seconds), txPerSec: Math.round(w.done / w.seconds), errors: w.errors, lastError: w.lastError },
      downSeconds,
      catchupSeconds: { agent: round(agentCatchup, 2), agentReconnect: round(reconnectSeconds, 2), agentApply: round(applySeconds, 2), native: nativeCatchup !== null ? round(nativeCatchup, 2) : null },
      server,
      identical,
      loadAvg1m: round(load, 2),
      cores: cpus().length,
      serverArgs: repArgs,
      lagSeries,
      rssSeries: rss,
    };
  } finally {
    if (writerState.w && !writerState.w.stopped) await writerState.w.stop().catch(() => undefined);
    if (writerState.probe && !writerState.probe.stopped) await writerState.probe.stop().catch(() => undefined);
    if (agent) await agent.stop();
    if (opt.keep) log(`${tag}: servers kept: ${servers.map((s) => `${s.name} ${s.port}`).join(", ")}`);
    else await Promise.all(servers.map((s) => s.destroy()));
  }
}

// ------------------------------------------------------------------ sysbench

const SYSBENCH = "/usr/bin/sysbench";
export function sysbenchBinary() {
  const found = existsSync(SYSBENCH) ? SYSBENCH : (spawnSync("sh", ["-c", "command -v sysbench"], { encoding: "utf8" }).stdout.trim() || null);
  if (!found) throw new Error("install sysbench: apt-get install sysbench");
  return found;
}

function runProc(cmd, args, { input, out } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: [input ? "pipe" : "ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("error", reject);
    p.on("exit", (code) => {
      if (out) writeFileSync(out, stdout + stderr);
      if (code === 0) resolve(stdout);
      else reject(new Error(`${cmd} ${args.slice(0, 3).join(" ")} … exited ${code}: ${(stderr || stdout).trim().split("\n").slice(-5).join("\n")}`));
    });
  });
}

/** Copies database `db` from `src` into each target with mariadb-dump --single-transaction | mariadb (parallel; MySQL: mysqldump | mysql). */
async function copyDatabase(src, targets, db) {
  await Promise.all(
    targets.map(
      (t) =>
        new Promise((resolve, reject) => {
          const gtid = src.flavor === "mysql" ? ["--set-gtid-purged=OFF"] : [];
          const dump = spawn(clientBinary(src.flavor, "dump"), ["--no-defaults", "-h127.0.0.1", `-P${src.port}`, "-uroot", "--single-transaction", "--skip-lock-tables", ...gtid, "--databases", db], { stdio: ["ignore", "pipe", "inherit"] });
          const load = spawn(clientBinary(t.flavor, "client"), ["--no-defaults", "-h127.0.0.1", `-P${t.port}`, "-uroot"], { stdio: ["pipe", "inherit", "inherit"] });
          dump.stdout.pipe(load.stdin);
          load.on("exit", (c) => (c === 0 ? resolve() : reject(new Error(`mariadb load exited ${c}`))));
        }),
    ),
  );
}

export async function runSysbench(ctx, tag) {
  const { opt, scale, base, innodb, flavor } = ctx;
  const sb = sysbenchBinary();
  const seconds = Number(opt.seconds);
  const rate = Number(opt.rate);
  const tables = Number(opt["sb-tables"]);
  const tableSize = Math.max(1000, Math.round(Number(opt["sb-table-size"]) * scale));
  const threads = Number(opt["sb-threads"]);
  // MySQL: the agent's replica alone. Its lag is measured (the agent applies statements, whose triggers a MySQL
  // replica runs); the native anchor is not (SYSBENCH_NOT_ON_MYSQL)
  const withNative = !opt["no-native"] && flavor !== "mysql";
  const repArgs = [...innodb, "--slave-run-triggers-for-rbr=YES", "--slave-parallel-threads=0"];
  log(`${tag}: starting ${withNative ? 3 : 2} servers`);
  const servers = await startServers([
    { name: "src", baseDir: base, args: innodb },
    { name: "agent", baseDir: base, noBinlog: true, args: repArgs },
    ...(withNative ? [{ name: "native", baseDir: base, noBinlog: true, args: repArgs }] : []),
  ], flavor);
  const [src, agentRep, native] = servers;
  const reps = servers.slice(1);
  let agent = null;
  let probe = null;
  const sbConn = ["--db-driver=mysql", "--mysql-host=127.0.0.1", `--mysql-port=${src.port}`, "--mysql-user=root", "--mysql-password=", "--mysql-db=bench", `--tables=${tables}`, `--table-size=${tableSize}`];
  try {
    const [{ v: server }] = await src.query("SELECT VERSION() AS v");
    await src.query("CREATE DATABASE bench");
    await src.query(HEARTBEAT);
    log(`${tag}: sysbench prepare: ${tables} tables × ${tableSize} rows, copied to the replicas with mariadb-dump | mariadb`);
    await runProc(sb, ["oltp_write_only", ...sbConn, "--threads=1", "prepare"], { out: join(ctx.resultsDir, `sysbench-prepare-${tag}.log`) });
    await copyDatabase(src, reps, "bench");
    await Promise.all(reps.map(installHeartbeatLog));
    const start = await masterStatus(src);
    await writeCheckpoint(src, agentRep, start);
    if (native) {
      await changeMaster(native, src, start);
      await native.query(replCmd(flavor).start);
    }
    agent = await startAgent({ src, replicas: [agentRep], tag, base, resultsDir: ctx.resultsDir, opt, config: { heartbeatSeconds: Number(opt["agent-heartbeat"]) } });
    const poller = new CheckpointPoller([agentRep]);
    await waitCheckpoints(agent, poller, start, { deadlineMs: 60_000 });
    while (!agent.streamingAt.length) {
      agent.checkAlive();
      await sleep(50);
    }
    // --sb-warmup S: a sysbench burst of S seconds before the measured run (the agent applies it, then the bench
    // waits until both replicas caught up); with --sb-warmup-restart the agent is restarted after it (servers warm,
    // agent process cold): together they tell a first-use cost of the servers from one of the agent process
    const warmup = Number(opt["sb-warmup"] ?? 0);
    if (warmup > 0) {
      log(`${tag}: warm-up: sysbench ${warmup} s at ${rate} tx/s${opt["sb-warmup-restart"] ? ", then the agent restarts" : ""}`);
      await runProc(sb, ["oltp_write_only", ...sbConn, `--threads=${threads}`, `--rate=${rate}`, `--time=${warmup}`, "--rand-seed=2", "run"]);
      const wEnd = await masterStatus(src);
      await waitCheckpoints(agent, poller, wEnd, { deadlineMs: 5 * 60_000 });
      if (native) await waitNative(native, wEnd);
      if (opt["sb-warmup-restart"]) {
        await agent.stop();
        agent = await startAgent({ src, replicas: [agentRep], tag: `${tag}-2`, base, resultsDir: ctx.resultsDir, opt, config: { heartbeatSeconds: Number(opt["agent-heartbeat"]) } });
        while (!agent.streamingAt.length) {
          agent.checkAlive();
          await sleep(50);
        }
      }
      await sleep(2000);
    }
    // the measured run starts on quiet servers, as the catch-up phases do: right after prepare and the dump copy
    // the source and the replicas still flush the loaded pages for seconds (bench/results.md "Settled phases")
    let settledSeconds = null;
    if (!opt["no-settle"]) {
      const q = await settle(servers);
      settledSeconds = round(q.seconds, 1);
      log(`${tag}: servers ${q.quiet ? "quiet" : "still busy"} after ${q.seconds.toFixed(1)} s (${q.dirtyMb ?? "?"} MB of dirty pages synced first), before sysbench`);
    }
    const load = loadavg()[0];
    probe = startProbe(src, 100);
    await sleep(1000);
    log(`${tag}: sysbench oltp_write_only --rate=${rate} --threads=${threads} --time=${seconds}`);
    const t0 = Date.now() / 1000;
    const rssSamples = [];
    const metricLag = [];
    const rssTimer = setInterval(() => {
      const ps = agent.sample();
      if (ps) rssSamples.push(mb(ps.rssKb));
      scrapeLag(agent).then((m) => m && metricLag.push(m.agent));
    }, 1000);
    let out;
    try {
      out = await runProc(sb, ["oltp_write_only", ...sbConn, `--threads=${threads}`, `--rate=${rate}`, `--time=${seconds}`, "--report-interval=10", "--rand-seed=1", "run"], { out: join(ctx.resultsDir, `sysbench-run-${tag}.log`) });
    } finally {
      clearInterval(rssTimer);
    }
    const t1 = Date.now() / 1000;
    await sleep(1000);
    await probe.stop();
    const end = await masterStatus(src);
    await waitCheckpoints(agent, poller, end, { deadlineMs: 10 * 60_000 });
    await poller.close();
    if (native) await waitNative(native, end);
    const peakRssMb = mb(agent.peakRssKb);
    await agent.stop();
    const agentErrors = agent.errorLines();
    agent = null;
    if (agentErrors.length) throw new Error(`agent logged errors:\n${agentErrors.slice(0, 3).join("\n")}`);

    const m = /transactions:\s+(\d+)\s+\(([\d.]+) per sec/.exec(out);
    const achieved = m ? Number(m[2]) : null;
    const lat = /95th percentile:\s+([\d.]+)/.exec(out);
    const inRun = (l) => l.filter((x) => x.t >= t0 && x.t <= t1);
    const agentLag = inRun(await readLag(agentRep));
    const nativeLag = native ? inRun(await readLag(native)) : null;
    const a = lagStats(agentLag);
    const commit = lagStats(inRun(probe.commitMs));
    const n = nativeLag ? lagStats(nativeLag) : null;
    const names = Array.from({ length: tables }, (_, i) => `bench.sbtest${i + 1}`);
    const identical = await allIdentical(servers, [...names, "bench.heartbeat"], tag);
    const ratio = n && a.p99 ? round(n.p99 / a.p99, 2) : null;
    log(`${tag}: ${achieved} tx/s; lag ms agent p50 ${a.p50} p99 ${a.p99} max ${a.max}${n ? `; native p50 ${n.p50} p99 ${n.p99} max ${n.max}` : ""}; the source's own insert-and-commit of a heartbeat p99 ${commit.p99} max ${commit.max}`);
    return {
      scenario: "sysbench",
      description: `sysbench oltp_write_only --rate=${rate} for ${seconds} s (${tables} tables × ${tableSize.toLocaleString("en-US")} rows), ${native ? "agent and native replica at the same time" : "the agent's replica alone"}`,
      headline: {
        measure: "end-to-end lag p99 ms",
        anchorName: native ? "native replica (same time)" : flavor === "mysql" ? SYSBENCH_NOT_ON_MYSQL : "none",
        anchor: n ? n.p99 : null,
        agent: a.p99,
        ratio,
        ratioDef: "native p99 / agent p99",
        goal: `agent p99 ≤ 250 ms at ${rate} tx/s`,
        met: goalMet(a.p99, 250, true),
      },
      lagMs: { agent: a, native: n },
      heartbeatsSent: probe.sent,
      sourceCommitMs: commit,
      settledSeconds,
      agentMetricLagSeconds: summarize(metricLag.filter(Number.isFinite)),
      sysbench: { rateTarget: rate, txPerSec: achieved, threads, seconds, tables, tableSize, latencyP95Ms: lat ? Number(lat[1]) : null },
      peakRssMb,
      rssMb: { peak: peakRssMb, samples: rssSamples.length },
      identical,
      loadAvg1m: round(load, 2),
      cores: cpus().length,
      server,
      lagSeries: [...series(agentLag, t0, "sysbench agent"), ...(nativeLag ? series(nativeLag, t0, "sysbench native") : [])],
    };
  } finally {
    if (probe && !probe.stopped) await probe.stop().catch(() => undefined);
    if (agent) await agent.stop();
    if (opt.keep) log(`${tag}: servers kept: ${servers.map((s) => `${s.name} ${s.port}`).join(", ")}`);
    else await Promise.all(servers.map((s) => s.destroy()));
  }
}
