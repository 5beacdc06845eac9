#!/usr/bin/env node
// The benchmark suite: each scenario measures the agent against its anchor in the same run (ratio), on private
// MariaDB and/or MySQL servers of this machine. Usage: npm run bench [-- --flavor mariadb|mysql|both]
//   [--scenario NAME[,NAME]] [--scale 0.1] [--repeat N] [--profile] [--keep] [--out FILE] [--rows N] … (bench/README.md)
// Scenarios: catchup-large, catchup-small, catchup-durable, fanout, replica-down, sysbench, snapshot, memory (default: all).
// Writes bench/results.json, bench/results.md (also on stdout) and bench/results.svg.
import { cpus, loadavg, tmpdir } from "node:os";
import { mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const here = dirname(fileURLToPath(import.meta.url));
if (!existsSync(join(here, "../dist/dev/servers.js"))) {
  console.error("bench: dist/ is missing; run `npm run build` first (npm run bench does it)");
  process.exit(2);
}
const { log, agentNodeFlags, stealMeter } = await import("./lib.mjs");
const { CATCHUP, runCatchup } = await import("./catchup.mjs");
const { runFanout } = await import("./fanout.mjs");
const { runReplicaDown, runSysbench, sysbenchBinary } = await import("./lag.mjs");
const { runSnapshot } = await import("./snapshot-bench.mjs");

const SCENARIOS = {
  "catchup-large": { run: (ctx, tag) => runCatchup(ctx, "catchup-large", tag), title: CATCHUP["catchup-large"].title },
  "catchup-small": { run: (ctx, tag) => runCatchup(ctx, "catchup-small", tag), title: CATCHUP["catchup-small"].title },
  "catchup-durable": { run: (ctx, tag) => runCatchup(ctx, "catchup-durable", tag), title: CATCHUP["catchup-durable"].title },
  fanout: { run: (ctx, tag) => runFanout(ctx, "fanout", tag), title: "500,000 rows to 5 replicas: one agent vs 5 native SQL threads" },
  "replica-down": { run: (ctx, tag) => runReplicaDown(ctx, tag), title: "one of 5 replicas down under load: lag of the others, RSS, catch-up" },
  sysbench: { run: (ctx, tag) => runSysbench(ctx, tag), title: "sysbench oltp_write_only at 1,000 tx/s: end-to-end lag agent vs native" },
  snapshot: { run: (ctx, tag) => runSnapshot(ctx, tag), title: "online snapshot of 1,000,000 rows vs mariadb-dump | mariadb" },
  memory: { run: (ctx, tag) => runFanout(ctx, "memory", tag), title: "2,000,000-row backlog to 5 replicas: agent peak RSS" },
};

const { values: opt } = parseArgs({
  options: {
    flavor: { type: "string", default: "both" },
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
    "fanout-buffer-pool": { type: "string", default: "128M" },
    "log-file-size": { type: "string", default: "256M" },
    "no-native": { type: "boolean", default: false },
    "no-settle": { type: "boolean", default: false },
    "no-parallel": { type: "boolean", default: false },
    "reader-thread": { type: "boolean", default: false },
    "node-flags": { type: "string" },
    "replica-binlog": { type: "boolean", default: false },
    "down-minutes": { type: "string", default: "5" },
    "down-rate": { type: "string", default: "500" },
    "agent-heartbeat": { type: "string", default: "1" },
    seconds: { type: "string", default: "60" },
    rate: { type: "string", default: "1000" },
    "sb-tables": { type: "string", default: "4" },
    "sb-table-size": { type: "string", default: "100000" },
    "sb-threads": { type: "string", default: "8" },
    "sb-warmup": { type: "string", default: "0" },
    "sb-warmup-restart": { type: "boolean", default: false },
    "snapshot-rows": { type: "string", default: "1000000" },
    /** the snapshot's second run: this many parallel writers (the agent's default, snapshot.writers) */
    "snapshot-writers": { type: "string", default: "2" },
    chunk: { type: "string", default: "10000" },
    "no-chart": { type: "boolean", default: false },
    merge: { type: "boolean", default: false },
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
const names = (opt.scenario ?? Object.keys(SCENARIOS)).flatMap((s) => s.split(",")).filter(Boolean);
for (const n of names) {
  if (!SCENARIOS[n]) {
    console.error(`bench: unknown scenario "${n}"; known: ${Object.keys(SCENARIOS).join(", ")}`);
    process.exit(2);
  }
}
// asked for by name: stop at once without sysbench; in a full run only that scenario fails (its row says why)
if (opt.scenario && names.includes("sysbench") && opt.flavor !== "mysql") {
  try {
    sysbenchBinary();
  } catch (e) {
    console.error(`bench: ${e.message}`);
    process.exit(2);
  }
}
const flavors = opt.flavor === "both" ? ["mariadb", "mysql"] : [opt.flavor];
if (!flavors.every((f) => f === "mariadb" || f === "mysql")) {
  console.error(`bench: --flavor ${opt.flavor}: use mariadb, mysql or both`);
  process.exit(2);
}
if (flavors.includes("mysql")) {
  const { serverBinary } = await import("../dist/dev/servers.js");
  try {
    serverBinary("mysql");
  } catch (e) {
    console.error(`bench: ${e.message} (or run only MariaDB: --flavor mariadb)`);
    process.exit(2);
  }
}
const repeat = Math.max(1, Number(opt.repeat));
const base = join(tmpdir(), `datasync-bench-${process.pid}`);
const resultsDir = join(here, "results");
mkdirSync(resultsDir, { recursive: true });
// catch-up and sysbench replicas get exactly these settings (on top of the servers module's defaults)
const innodb = [`--innodb-buffer-pool-size=${opt["buffer-pool"]}`, `--innodb-log-file-size=${opt["log-file-size"]}`];
const contexts = flavors.map((flavor) => ({ opt, scale, base, resultsDir, innodb, flavor }));

/** the settling before each timed phase and the CPU the servers not under test used during it (catchup.mjs, fanout.mjs) */
function settledText(st) {
  if (!st) return "";
  const parts = [];
  if (st.native != null || st.agent != null) parts.push(`settled s before native ${st.native ?? "–"}, before agent ${st.agent ?? "–"}`);
  else parts.push("not settled (--no-settle)");
  if (st.nativeOthersCpu != null || st.agentOthersCpu != null) parts.push(`CPU s of the servers not under test during native ${st.nativeOthersCpu ?? "–"}, during agent ${st.agentOthersCpu ?? "–"}`);
  return `; ${parts.join("; ")}`;
}

// ------------------------------------------------------------------ report

const fmt = (n) => (n === null || n === undefined ? "–" : typeof n === "number" ? n.toLocaleString("en-US") : String(n));
const cell = (x) => String(x ?? "–").replace(/\|/g, "\\|");
const ok = (b) => (b === null || b === undefined ? "–" : b ? "✅ met" : "❌ not met");

function details(r) {
  switch (r.scenario) {
    case "catchup-large":
    case "catchup-small":
    case "catchup-durable":
      return `${fmt(r.rows)} rows / ${fmt(r.transactions)} tx; rows/s native ${fmt(r.native?.rowsPerSec)} agent ${fmt(r.agent.rowsPerSec)}; CPU s native server ${fmt(r.native?.serverCpuSeconds)}, agent ${fmt(r.agent.cpuSeconds)}, agent's server ${fmt(r.agent.serverCpuSeconds)}; start-up ${fmt(r.agent.startupSeconds)} s${settledText(r.settled)}`;
    case "fanout":
      return `${fmt(r.rows)} rows × 5 replicas; rows/s native ${fmt(r.native?.rowsPerSec)} agent ${fmt(r.agent.rowsPerSec)}; agent per replica s ${r.agent.perReplicaSeconds.join("/")}; CPU s native servers ${fmt(r.native?.serverCpuSeconds)}, agent ${fmt(r.agent.cpuSeconds)}, agent's servers ${fmt(r.agent.serverCpuSeconds)}${settledText(r.settled)}; servers ${r.serverArgs.join(" ")}`;
    case "memory":
      return `${fmt(r.rows)} rows × 5 replicas in ${fmt(r.agent.seconds)} s = ${fmt(r.agent.rowsPerSec)} rows/s; agent CPU ${fmt(r.agent.cpuSeconds)} s; servers ${r.serverArgs.join(" ")}`;
    case "replica-down":
      return `down ${r.downSeconds} s; writer ${fmt(r.writer.txPerSec)} tx/s (target ${r.writer.targetTxPerSec}); lag ms of the 4 live p50 ${fmt(r.lagMs.p50)} p99 ${fmt(r.lagMs.p99)} max ${fmt(r.lagMs.max)} (${fmt(r.lagMs.count)} samples); agent RSS MB start ${fmt(r.rssMb.start)} peak ${fmt(r.rssMb.peak)} end ${fmt(r.rssMb.end)}; agent's lag gauge max s ${Object.entries(r.agentMetricLagSecondsMax ?? {}).map(([k, v]) => `${k} ${fmt(v)}`).join(", ")}; catch-up s agent ${fmt(r.catchupSeconds.agent)} (reconnect ${fmt(r.catchupSeconds.agentReconnect)} + apply ${fmt(r.catchupSeconds.agentApply)}) native ${fmt(r.catchupSeconds.native)}`;
    case "sysbench":
      return `achieved ${fmt(r.sysbench.txPerSec)} tx/s (target ${r.sysbench.rateTarget}); lag ms agent p50 ${fmt(r.lagMs.agent.p50)} p95 ${fmt(r.lagMs.agent.p95)} p99 ${fmt(r.lagMs.agent.p99)} max ${fmt(r.lagMs.agent.max)}; native p50 ${fmt(r.lagMs.native?.p50)} p95 ${fmt(r.lagMs.native?.p95)} p99 ${fmt(r.lagMs.native?.p99)} max ${fmt(r.lagMs.native?.max)}; the agent's own lag gauge (1/s) p99 ${fmt(r.agentMetricLagSeconds?.p99)} s max ${fmt(r.agentMetricLagSeconds?.max)} s; on the source: sysbench's own transaction latency p95 ${fmt(r.sysbench.latencyP95Ms)} ms, a heartbeat's insert-and-commit p99 ${fmt(r.sourceCommitMs?.p99)} ms`;
    case "snapshot":
      return `${fmt(r.rows)} rows; snapshot.writers ${r.writers ?? "–"}; rows/s dump ${fmt(r.throughput.anchor)} snapshot ${fmt(r.throughput.agent)}; peak RSS is the bench process (agent in process)`;
    default:
      return "";
  }
}

/** the CPU steal of a result (lib.mjs stealMeter): each timed phase's (anchor / agent) where the scenario has them, else the whole scenario's */
function stealText(st) {
  if (!st) return "–";
  if (st.native != null || st.agent != null) return `${fmt(st.native)} / ${fmt(st.agent)}`;
  return fmt(st.scenario);
}

function table(results, meta, failures, notMeasured) {
  const lines = [
    `Machine: ${meta.cores} cores (${meta.cpu}), Node ${meta.node}, ${meta.server}; load 1m at start ${meta.loadAvgStart}; agent node flags \`${meta.agentNodeFlags ?? "(none recorded)"}\`; command: \`${meta.command}\``,
    "",
    "| scenario | flavor | measure | anchor | anchor figure | agent figure | ratio | goal | met | agent peak RSS MB | identical | load 1m | CPU steal % | cores |",
    "|---|---|---|---|---:|---:|---|---|---|---:|---|---:|---|---:|",
  ];
  for (const r of results) {
    const h = r.headline;
    lines.push(
      `| ${r.scenario}${repeat > 1 ? ` #${r.iteration}` : ""} | ${r.flavor} | ${cell(h.measure)} | ${cell(h.anchorName)} | ${fmt(h.anchor)} | ${fmt(h.agent)} | ${h.ratio === null ? "–" : `${h.ratio} (${cell(h.ratioDef)})`} | ${cell(h.goal)} | ${ok(h.met)} | ${fmt(r.peakRssMb)} | ${r.identical ? "yes" : "NO"} | ${fmt(r.loadAvg1m)} | ${stealText(r.stealPct)} | ${r.cores} |`,
    );
  }
  for (const f of failures) lines.push(`| ${f.scenario} | ${f.flavor} | FAILED: ${f.error.split("\n")[0].replace(/\|/g, "/")} | | | | | | ❌ | | | | | |`);
  for (const m of notMeasured) lines.push(`| ${m.scenario} | ${m.flavor} | ${cell(m.reason)} | | | | | | – | | | | | |`);
  lines.push("", "Details:", "");
  for (const r of results) lines.push(`- **${r.scenario}${repeat > 1 ? ` #${r.iteration}` : ""} (${r.flavor})**: ${r.description}. ${details(r)}`);
  return lines.join("\n") + "\n";
}

// ------------------------------------------------------------------ main

const loadAvgStart = Math.round(loadavg()[0] * 100) / 100;
const results = [];
const failures = [];
/** scenarios that have no meaningful anchor on a flavor (the row says why; not a failure) */
const notMeasured = [];
// --merge: the scenarios of this run replace theirs (same scenario and flavor) in the existing results file; the others stay
const prior = opt.merge && existsSync(opt.out) ? JSON.parse(readFileSync(opt.out, "utf8")) : null;
const rerun = (x) => names.includes(String(x.scenario).split(" #")[0]) && flavors.includes(x.flavor);
/** this run's entries, or with --merge the file's others and this run's, in scenario order per flavor */
function merged(key, now) {
  if (!prior) return now;
  const order = (x) => ["mariadb", "mysql"].indexOf(x.flavor) * 100 + Object.keys(SCENARIOS).indexOf(String(x.scenario).split(" #")[0]);
  return [...(prior[key] ?? []).filter((x) => !rerun(x)), ...now].sort((a, b) => order(a) - order(b));
}
const t0 = Date.now();
for (const ctx of contexts) {
  for (const n of names) {
    for (let i = 0; i < repeat; i++) {
      // MariaDB keeps its file names (bench/results/agent-<scenario>.log); MySQL's are prefixed
      const tag = `${ctx.flavor === "mysql" ? "mysql-" : ""}${n}${repeat > 1 ? `-${i + 1}` : ""}`;
      const s0 = Date.now();
      try {
        const steal = stealMeter();
        // a scenario gives one result, or several (the snapshot: one writer, then parallel writers)
        const out = [].concat(await SCENARIOS[n].run(ctx, tag));
        const whole = steal();
        // scenarios with timed phases report each phase's steal; the others the whole scenario's
        for (const r of out) results.push({ ...r, stealPct: { ...r.stealPct, scenario: whole }, flavor: ctx.flavor, iteration: i + 1, elapsedSeconds: Math.round((Date.now() - s0) / 1000) });
      } catch (err) {
        if (err?.notMeasured) {
          notMeasured.push({ scenario: n, flavor: ctx.flavor, reason: err.message });
          log(`${tag}: ${err.message}`);
          break;
        }
        failures.push({ scenario: `${n}${repeat > 1 ? ` #${i + 1}` : ""}`, flavor: ctx.flavor, error: String(err?.stack ?? err) });
        log(`${tag}: FAILED: ${err?.stack ?? err}`);
      }
      log(`${tag}: ${Math.round((Date.now() - s0) / 1000)} s`);
      // after every scenario: a run stopped part-way (Ctrl-C, a deadline) keeps what it measured
      writeResults(false);
    }
  }
}
if (!opt.keep) rmSync(base, { recursive: true, force: true });
else log(`servers and their datadirs kept under ${base}; stop them by pid (see the ports above)`);
const { meta, md, all } = writeResults(true);
if (!opt["no-chart"]) {
  try {
    const { renderChart } = await import("./chart.mjs");
    const svgFile = opt.out.replace(/\.json$/, ".svg");
    // one bar per scenario and flavor when both ran
    // the snapshot's two rows (one writer, parallel writers) are two bars
    const shown = all.results.map((r) => (r.writers ? { ...r, scenario: `${r.scenario} ${r.writers}w` } : r));
    const labelled = new Set(shown.map((r) => r.flavor)).size > 1 ? shown.map((r) => ({ ...r, scenario: `${r.scenario} (${r.flavor})` })) : shown;
    writeFileSync(svgFile, await renderChart(labelled, meta));
    log(`chart: ${svgFile}`);
  } catch (e) {
    log(`chart not written: ${e?.message ?? e} (npm install brings vega and vega-lite)`);
  }
}
process.stdout.write(md);
process.exit(failures.length ? 1 : 0);

/** results.json and results.md of what ran so far; `complete` is false while scenarios are still to run */
function writeResults(complete) {
  const all = { results: merged("results", results), failures: merged("failures", failures), notMeasured: merged("notMeasured", notMeasured) };
  const command = `npm run bench -- ${process.argv.slice(2).join(" ")}`.trim();
  const meta = {
    date: new Date().toISOString(),
    command: prior ? `${prior.command}; then ${command} (merged: ${[...new Set(names)].join(", ")} on ${flavors.join(", ")} at ${new Date().toISOString()})` : command,
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? "?",
    node: process.version,
    server: [...new Set(all.results.map((r) => r.server).filter(Boolean))].join(", ") || "?",
    flavors: prior ? [...new Set([...(prior.flavors ?? []), ...flavors])] : flavors,
    loadAvgStart: prior?.loadAvgStart ?? loadAvgStart,
    elapsedSeconds: Math.round((Date.now() - t0) / 1000),
    agentNodeFlags: agentNodeFlags(opt),
    settings: {
      replicaArgs: innodb,
      fanoutServerArgs: [`--innodb-buffer-pool-size=${opt["fanout-buffer-pool"]}`, `--innodb-log-file-size=${opt["log-file-size"]}`],
      replicaBinlog: opt["replica-binlog"],
      apply: { maxRows: opt["max-rows"], maxBytes: opt["max-bytes"], queueBytes: opt["queue-bytes"] },
    },
    scale,
    complete,
  };
  const md = table(all.results, meta, all.failures, all.notMeasured);
  writeFileSync(opt.out, JSON.stringify({ ...meta, ...all }, null, 2) + "\n");
  // sections written by other benchmarks (a "## " heading, e.g. bench/decode.mjs's decoder section) stay
  const mdFile = opt.out.replace(/\.json$/, ".md");
  const kept = existsSync(mdFile) ? /^## [\s\S]*/m.exec(readFileSync(mdFile, "utf8"))?.[0] : undefined;
  writeFileSync(mdFile, kept ? `${md.trimEnd()}\n\n${kept}` : md);
  return { meta, md, all };
}
