#!/usr/bin/env node
// Snapshot benchmark (also the `snapshot` scenario of `npm run bench`): an idle source of N rows (default
// 1,000,000) copied into an empty replica by the agent's online snapshot, against `mariadb-dump
// --single-transaction | mariadb` of the same data, in the same run. Prints times, rows/s and the ratio
// dump_time / snapshot_time (goal >= 1.0).
// Usage: node bench/snapshot.mjs [--rows N] [--chunk N] [--json]
import { snapshotBench } from "./snapshot-bench.mjs";

const arg = (n, d) => {
  const i = process.argv.indexOf(n);
  return i > 0 ? process.argv[i + 1] : d;
};
const ROWS = Number(arg("--rows", 1_000_000));
const { loadAvg1m: _load, server: _server, ...result } = await snapshotBench({ rows: ROWS, chunk: Number(arg("--chunk", 10000)) });
delete result.loadAvg1m;
if (process.argv.includes("--json")) console.log(JSON.stringify(result));
else {
  console.log(`snapshot of ${ROWS} rows on ${result.cores} cores (agent and servers on this machine)`);
  console.log(`  mariadb-dump --single-transaction | mariadb : ${result.dumpSeconds.toFixed(2)} s  (${result.dumpRowsPerSecond} rows/s)`);
  console.log(`  datasync online snapshot                   : ${result.snapshotSeconds.toFixed(2)} s  (${result.snapshotRowsPerSecond} rows/s)`);
  console.log(`  ratio dump/snapshot                        : ${result.ratio}  (goal >= 1.0)`);
  console.log(`  agent peak RSS (in-process)                : ${result.peakRssMB} MB; checksums identical: ${result.identical}`);
}
