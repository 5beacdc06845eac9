// fanout: one agent, five replicas, vs five native replicas (each its own SQL thread, all concurrently),
// on the SAME five servers: native first, then the bench schema is dropped and re-created on them and the
// agent runs (6 servers, not 11). memory: the same agent run without native, 2,000,000 rows, peak RSS.
import { loadavg, cpus } from "node:os";
import {
  startServers, prepareOrders, genLarge, masterStatus, writeCheckpoint, runNativeCatchup,
  startAgent, waitCheckpoints, CheckpointPoller, serverPid, cpuSeconds, allIdentical, mb, log, now, replCmd, flavorArgs, stealMeter,
} from "./lib.mjs";
import { nativeApplier } from "./catchup.mjs";
import { goalMet, round } from "./stats.mjs";

const N = 5;

async function runAgentOn(ctx, src, reps, end, tag) {
  const pids = reps.map(serverPid);
  const cpu0 = pids.map(cpuSeconds);
  const agent = await startAgent({ src, replicas: reps, tag, base: ctx.base, resultsDir: ctx.resultsDir, opt: ctx.opt });
  const poller = new CheckpointPoller(reps);
  const rss = [];
  let done, agentCpu, serverCpu;
  try {
    let lastSample = 0;
    done = await waitCheckpoints(agent, poller, end, {
      onPoll: () => {
        const t = now();
        if (t - lastSample >= 1000) {
          lastSample = t;
          const ps = agent.sample();
          if (ps) rss.push({ t: round((t - agent.t0) / 1000, 1), mb: mb(ps.rssKb) });
        }
      },
    });
    agentCpu = agent.cpuSeconds();
    serverCpu = pids.reduce((a, p, i) => a + (cpuSeconds(p) - cpu0[i]), 0);
  } finally {
    await poller.close();
    await agent.stop();
  }
  agent.assertNoErrors();
  const streamingAt = agent.streamingStart;
  const last = Math.max(...done);
  return {
    seconds: (last - streamingAt) / 1000,
    wallSeconds: (last - agent.t0) / 1000,
    startupSeconds: (streamingAt - agent.t0) / 1000,
    perReplicaSeconds: done.map((d) => round((d - streamingAt) / 1000)),
    peakRssMb: mb(agent.peakRssKb),
    cpuSeconds: agentCpu,
    serverCpuSeconds: serverCpu,
    rss,
  };
}

/** name: "fanout" (native vs agent) or "memory" (agent only, larger backlog). */
export async function runFanout(ctx, name, tag) {
  const { opt, scale, base, flavor } = ctx;
  const memory = name === "memory";
  const rows = Math.round(Number(opt.rows ?? (memory ? 2_000_000 : 500_000)) * scale);
  const txnRows = Number(opt["txn-rows"] ?? 1000);
  const args = [`--innodb-buffer-pool-size=${opt["fanout-buffer-pool"]}`, `--innodb-log-file-size=${opt["log-file-size"]}`];
  log(`${tag}: starting ${N + 1} servers (buffer pool ${opt["fanout-buffer-pool"]} each)`);
  const servers = await startServers([
    { name: "src", baseDir: base, args },
    ...Array.from({ length: N }, (_, i) => ({ name: `r${i + 1}`, baseDir: base, noBinlog: !opt["replica-binlog"], args })),
  ], flavor);
  const [src, ...reps] = servers;
  try {
    const [v] = await src.query("SELECT VERSION() AS v");
    await prepareOrders(servers, 0);
    const start = await masterStatus(src);
    log(`${tag}: generating ${rows} rows in ${txnRows}-row transactions`);
    const g0 = now();
    const work = await genLarge(src, rows, txnRows);
    const genSeconds = (now() - g0) / 1000;
    const end = await masterStatus(src);
    log(`${tag}: backlog generated in ${genSeconds.toFixed(1)} s`);

    let nat = null;
    let nativeIdentical = null;
    /** CPU steal % during each timed phase (lib.mjs stealMeter) */
    const steal = { native: null, agent: null };
    if (!memory && !opt["no-native"]) {
      log(`${tag}: ${N} native replicas (IO threads first, then the ${N} ${nativeApplier(flavor, N)} timed together)`);
      const st = stealMeter();
      nat = await runNativeCatchup(src, reps, start, end);
      steal.native = st();
      log(`${tag}: native all ${N} done in ${nat.seconds.toFixed(2)} s`);
      nativeIdentical = await allIdentical(servers, ["bench.orders"], `${tag} native`);
      // the same five servers, back to the seed state for the agent
      await Promise.all(
        reps.map(async (r) => {
          const cmd = replCmd(flavor);
          await r.query(`${cmd.stop}; ${cmd.resetAll}; DROP DATABASE bench`);
        }),
      );
      await prepareOrders(reps, 0);
    }
    await writeCheckpoint(src, reps, start);
    const load = loadavg()[0];
    log(`${tag}: one agent, ${N} replicas`);
    const agentSteal = stealMeter();
    const ag = await runAgentOn(ctx, src, reps, end, tag);
    steal.agent = agentSteal();
    log(`${tag}: agent all ${N} done in ${ag.seconds.toFixed(2)} s (+${ag.startupSeconds.toFixed(2)} s start-up), peak RSS ${ag.peakRssMb} MB`);
    const identical = (await allIdentical(servers, ["bench.orders"], tag)) && nativeIdentical !== false;
    const rps = (s) => Math.round(work.rows / s);
    const ratio = nat ? round(nat.seconds / ag.seconds, 2) : null;
    const common = {
      scenario: name,
      peakRssMb: ag.peakRssMb,
      identical,
      loadAvg1m: round(load, 2),
      cores: cpus().length,
      server: String(v.v),
      flavor,
      rows: work.rows,
      transactions: work.txns,
      rowsPerTransaction: txnRows,
      replicas: N,
      serverArgs: flavorArgs(flavor, args),
      generateSeconds: round(genSeconds),
      agent: { seconds: round(ag.seconds), rowsPerSec: rps(ag.seconds), wallSeconds: round(ag.wallSeconds), startupSeconds: round(ag.startupSeconds), perReplicaSeconds: ag.perReplicaSeconds, peakRssMb: ag.peakRssMb, cpuSeconds: round(ag.cpuSeconds), serverCpuSeconds: round(ag.serverCpuSeconds) },
      rssSeries: ag.rss,
      stealPct: steal,
    };
    if (memory) {
      return {
        ...common,
        description: `${work.rows.toLocaleString("en-US")} rows (${txnRows}-row transactions) to ${N} replicas by one agent: peak RSS`,
        headline: { measure: "agent peak RSS MB", anchorName: "none", anchor: null, agent: ag.peakRssMb, ratio: null, ratioDef: "–", goal: "≤ 300 MB", met: goalMet(ag.peakRssMb, 300, true) },
        throughput: { unit: "rows/s", agent: rps(ag.seconds), anchor: null },
      };
    }
    return {
      ...common,
      description: `${work.rows.toLocaleString("en-US")} rows (${txnRows}-row transactions) to ${N} replicas: one agent vs ${N} native ${nativeApplier(flavor, N)}`,
      headline: { measure: `wall s, all ${N} caught up`, anchorName: `${N} native ${nativeApplier(flavor, N)}`, anchor: nat ? round(nat.seconds, 2) : null, agent: round(ag.seconds, 2), ratio, ratioDef: "native s / agent s", goal: "ratio ≥ 0.5", met: goalMet(ratio, 0.5) },
      throughput: { unit: "rows/s", agent: rps(ag.seconds), anchor: nat ? rps(nat.seconds) : null },
      native: nat ? { seconds: round(nat.seconds), perReplicaSeconds: nat.perReplicaSeconds.map((x) => round(x)), ioFetchSeconds: round(nat.fetchSeconds), serverCpuSeconds: round(nat.serverCpuSeconds), slaveParallelThreads: nat.parallelThreads, rowsPerSec: rps(nat.seconds) } : null,
    };
  } finally {
    if (opt.keep) log(`${tag}: servers kept: ${servers.map((s) => `${s.name} ${s.port}`).join(", ")}`);
    else await Promise.all(servers.map((s) => s.destroy()));
  }
}
