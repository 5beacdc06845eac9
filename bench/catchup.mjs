// catchup-large / catchup-small: one replica each for native (SQL thread, relay log pre-fetched) and the agent,
// the same binlog range, one after the other. See bench/README.md.
import { loadavg, cpus } from "node:os";
import {
  startServers, prepareOrders, genLarge, orderInsert, orderUpdate, masterStatus, writeCheckpoint, runNativeCatchup,
  startAgent, waitCheckpoints, settle, CheckpointPoller, serverPid, cpuSeconds, allIdentical, mb, log, now, stealMeter,
} from "./lib.mjs";
import { goalMet, round } from "./stats.mjs";

/** what applies on the native replica: MariaDB's one SQL thread (slave_parallel_threads=0), MySQL's multi-threaded applier */
export const nativeApplier = (flavor, n = 1) =>
  flavor === "mysql" ? `${n > 1 ? "appliers" : "applier"} (4 workers${n > 1 ? " each" : ""})` : `SQL thread${n > 1 ? "s" : ""}`;

export const CATCHUP = {
  "catchup-large": { title: "1,000,000 rows in 1,000-row transactions (inserts)", goal: 0.5 },
  "catchup-small": { title: "40,000 single-row transactions (50% inserts, 50% updates by key)", goal: 1.0 },
  "catchup-durable": { title: "40,000 single-row transactions, durable replicas (flush 1, sync_binlog 1), native with 4 parallel workers", goal: 1.5 },
};

/**
 * catchup-durable: both replicas write a binlog and make every commit durable (innodb_flush_log_at_trx_commit=1,
 * sync_binlog=1); the native one applies with 4 parallel workers (MariaDB slave_parallel_threads=4 in its default
 * optimistic mode; MySQL has replica_parallel_workers=4 in every scenario, lib.mjs flavorArgs).
 */
const DURABLE = ["--innodb-flush-log-at-trx-commit=1", "--sync-binlog=1"];

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
      stmts.push(i % 2 === 0 ? orderInsert(seedRows + 1 + i / 2) : orderUpdate(((i * 7919) % seedRows) + 1, i));
      if (stmts.length >= 500) await flush();
    }
    await flush();
  } finally {
    await c.end();
  }
  return { rows: txns, txns };
}

export async function runCatchup(ctx, name, tag) {
  const { opt, scale, base, innodb, flavor } = ctx;
  const large = name === "catchup-large";
  const durable = name === "catchup-durable";
  const replicaArgs = durable ? [...innodb, ...DURABLE] : innodb;
  const rows = Math.round(Number(opt.rows ?? 1_000_000) * scale);
  const txnRows = Number(opt["txn-rows"] ?? 1000);
  const txns = Math.round(Number(opt.txns ?? 40_000) * scale);
  const seedRows = large ? 0 : Math.max(1000, Math.round(Number(opt.seed ?? 100_000) * scale));

  log(`${tag}: starting 3 servers in ${base}`);
  const [src, native, agentRep] = await startServers([
    { name: "src", baseDir: base, args: innodb },
    { name: "native", baseDir: base, noBinlog: !opt["replica-binlog"] && !durable, args: durable && flavor !== "mysql" ? [...replicaArgs, "--slave-parallel-threads=4"] : replicaArgs },
    { name: "agent", baseDir: base, noBinlog: !opt["replica-binlog"] && !durable, args: replicaArgs },
  ], flavor);
  try {
    const [v] = await src.query("SELECT VERSION() AS v");
    if (durable) {
      // the replicas really are durable (a later default or option must not make this scenario a relaxed one)
      for (const r of [native, agentRep]) {
        const [d] = await r.query("SELECT @@innodb_flush_log_at_trx_commit AS f, @@sync_binlog AS s, @@log_bin AS b");
        if (Number(d.f) !== 1 || Number(d.s) !== 1 || Number(d.b) !== 1) throw new Error(`${tag}: replica ${r.name} is not durable: innodb_flush_log_at_trx_commit=${d.f}, sync_binlog=${d.s}, log_bin=${d.b}`);
      }
    }
    await prepareOrders([src, native, agentRep], seedRows);
    const start = await masterStatus(src);
    await writeCheckpoint(src, agentRep, start);

    log(`${tag}: generating the backlog on the source`);
    const g0 = now();
    const work = large ? await genLarge(src, rows, txnRows) : await genSmall(src, txns, seedRows);
    const genSeconds = (now() - g0) / 1000;
    const end = await masterStatus(src);
    const binlogBytes = end.file === start.file ? end.pos - start.pos : null;
    log(`${tag}: ${work.rows} rows in ${work.txns} transactions, ${binlogBytes === null ? "?" : (binlogBytes / 1048576).toFixed(1)} MiB of binlog, generated in ${genSeconds.toFixed(1)} s`);

    // each timed phase starts on quiet servers (the source's generation, then the native replica's apply, leave
    // seconds of page flushing and purge behind: bench/results.md "Settled phases")
    const quiet = async (phase) => {
      if (opt["no-settle"]) return null;
      const q = await settle([src, native, agentRep]);
      log(`${tag}: servers ${q.quiet ? "quiet" : "still busy"} after ${q.seconds.toFixed(1)} s (${q.dirtyMb ?? "?"} MB of dirty pages synced first), before the ${phase}`);
      return round(q.seconds, 1);
    };
    const others = (list) => {
      const pids = list.map(serverPid);
      const c0 = pids.map(cpuSeconds);
      return () => round(pids.reduce((a, p, i) => a + (cpuSeconds(p) - c0[i]), 0), 2);
    };
    const settled = {};
    let nat = null;
    let nativeOthers = null;
    /** CPU steal % during each timed phase (lib.mjs stealMeter) */
    const steal = { native: null, agent: null };
    if (!opt["no-native"]) {
      settled.native = await quiet("native apply");
      log(`${tag}: native replication (IO thread first, then the ${nativeApplier(flavor)} timed)`);
      const bg = others([src, agentRep]);
      const st = stealMeter();
      nat = await runNativeCatchup(src, [native], start, end);
      nativeOthers = bg();
      steal.native = st();
      log(`${tag}: native ${nativeApplier(flavor)} ${nat.seconds.toFixed(2)} s`);
    }
    settled.agent = await quiet("agent");
    const load = loadavg()[0];
    log(`${tag}: agent (CLI child process${opt.profile ? ", --cpu-prof" : ""})`);
    const agentBg = others([src, native]);
    const agentSteal = stealMeter();
    const repPid = serverPid(agentRep);
    const repCpu0 = cpuSeconds(repPid);
    const agent = await startAgent({ src, replicas: [agentRep], tag, base: ctx.base, resultsDir: ctx.resultsDir, opt });
    const poller = new CheckpointPoller([agentRep]);
    let doneAt, agentCpu, serverCpu;
    try {
      [doneAt] = await waitCheckpoints(agent, poller, end);
      agentCpu = agent.cpuSeconds();
      serverCpu = cpuSeconds(repPid) - repCpu0;
      settled.agentOthersCpu = agentBg();
      steal.agent = agentSteal();
      settled.nativeOthersCpu = nativeOthers;
    } finally {
      await poller.close();
      await agent.stop();
    }
    agent.assertNoErrors();
    const streamingAt = agent.streamingStart;
    const ag = { seconds: (doneAt - streamingAt) / 1000, wallSeconds: (doneAt - agent.t0) / 1000, startupSeconds: (streamingAt - agent.t0) / 1000, peakRssMb: mb(agent.peakRssKb) };
    log(`${tag}: agent ${ag.seconds.toFixed(2)} s (+${ag.startupSeconds.toFixed(2)} s start-up), peak RSS ${ag.peakRssMb} MB`);

    const identical = await allIdentical(nat ? [src, native, agentRep] : [src, agentRep], ["bench.orders"], tag);
    const rate = (secs) => ({ rowsPerSec: Math.round(work.rows / secs), txPerSec: Math.round(work.txns / secs) });
    const ratio = nat ? round(nat.seconds / ag.seconds, 2) : null;
    const goal = CATCHUP[name].goal;
    return {
      scenario: name,
      description: large
        ? `${work.rows.toLocaleString("en-US")} rows in ${txnRows.toLocaleString("en-US")}-row transactions (inserts)`
        : `${work.txns.toLocaleString("en-US")} single-row transactions (50% inserts, 50% updates by key) on ${seedRows.toLocaleString("en-US")} seeded rows${durable ? `, both replicas durable (binlog on, ${DURABLE.join(" ")})` : ""}`,
      headline: {
        measure: "catch-up wall s",
        anchorName: durable && flavor !== "mysql" ? "native SQL thread (4 parallel workers)" : `native ${nativeApplier(flavor)}`,
        anchor: nat ? round(nat.seconds, 2) : null,
        agent: round(ag.seconds, 2),
        ratio,
        ratioDef: "native s / agent s",
        goal: `ratio ≥ ${goal}`,
        met: goalMet(ratio, goal),
      },
      throughput: { unit: "rows/s", agent: rate(ag.seconds).rowsPerSec, anchor: nat ? rate(nat.seconds).rowsPerSec : null },
      peakRssMb: ag.peakRssMb,
      identical,
      loadAvg1m: round(load, 2),
      cores: cpus().length,
      server: String(v.v),
      flavor,
      rows: work.rows,
      transactions: work.txns,
      rowsPerTransaction: large ? txnRows : 1,
      seedRows,
      binlogBytes,
      generateSeconds: round(genSeconds),
      native: nat ? { seconds: round(nat.seconds), ...rate(nat.seconds), ioFetchSeconds: round(nat.fetchSeconds), serverCpuSeconds: round(nat.serverCpuSeconds), slaveParallelThreads: nat.parallelThreads } : null,
      agent: { seconds: round(ag.seconds), ...rate(ag.seconds), wallSeconds: round(ag.wallSeconds), startupSeconds: round(ag.startupSeconds), peakRssMb: ag.peakRssMb, cpuSeconds: round(agentCpu), serverCpuSeconds: round(serverCpu), profileDir: agent.profileDir },
      goals: { ratio: goal, rssMb: 300, rssMet: ag.peakRssMb <= 300 },
      settled,
      stealPct: steal,
    };
  } finally {
    if (opt.keep) log(`${tag}: servers kept: source ${src.port}, native ${native.port}, agent replica ${agentRep.port}`);
    else await Promise.all([src.destroy(), native.destroy(), agentRep.destroy()]);
  }
}
