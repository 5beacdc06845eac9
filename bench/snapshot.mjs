#!/usr/bin/env node
// Snapshot benchmark (also the `snapshot` scenario of `npm run bench`): an idle source of N rows (default
// 1,000,000) copied into an empty replica by the agent's online snapshot, against `mariadb-dump
// --single-transaction | mariadb` of the same data, in the same run. Prints times, rows/s and the ratio
// dump_time / snapshot_time (goal >= 1.0 with one writer, >= 1.5 with parallel writers).
// Usage: node bench/snapshot.mjs [--rows N] [--chunk N] [--writers N] [--json]
import { snapshotBench } from "./snapshot-bench.mjs";

const arg = (n, d) => {
  const i = process.argv.indexOf(n);
  return i > 0 ? process.argv[i + 1] : d;
};
const ROWS = Number(arg("--rows", 1_000_000));
const WRITERS = Number(arg("--writers", 2));
const { loadAvg1m: _load, server: _server, ...result } = await snapshotBench({ rows: ROWS, chunk: Number(arg("--chunk", 10000)), writers: [1, WRITERS] });
if (process.argv.includes("--json")) console.log(JSON.stringify(result));
else {
  console.log(`snapshot of ${ROWS} rows on ${result.cores} cores (agent and servers on this machine)`);
  console.log(`  mariadb-dump --single-transaction | mariadb : ${result.dumpSeconds.toFixed(2)} s  (${result.dumpRowsPerSecond} rows/s)`);
  for (const r of result.runs) {
    const goal = r.writers > 1 ? "1.5" : "1.0";
    console.log(`  datasync online snapshot, ${r.writers} writer(s)     : ${r.snapshotSeconds.toFixed(2)} s  (${r.snapshotRowsPerSecond} rows/s), ratio dump/snapshot ${r.ratio} (goal >= ${goal}), peak RSS ${r.peakRssMB} MB, identical: ${r.identical}`);
  }
}
