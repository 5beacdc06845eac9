#!/usr/bin/env node
// Row decoding microbenchmark (issue 17, "decode fast"): the same recorded rows events (test/fixtures/binlog,
// the zoo.orders table: BIGINT, INT, VARCHAR, SMALLINT, DECIMAL(10,2), DATETIME, DATETIME(6), nullable text)
// decoded by each decoder until `--rows` rows (default 1,000,000), table maps included as in the stream
// (one per transaction): zongji's own decoding (not exact), the per-value exact path the agent used before
// (rowdecode.ts readValue over zongji), and the compiled decoders (rowcodec.ts). Prints rows/s and ns/row of
// the process's CPU time (and wall ns/row: on a shared machine the wall clock counts others' turns).
// Usage (after `npx tsc -p tsconfig.json`): node bench/decode.mjs [--flavor mariadb|mysql] [--rows N]
//   [--only zongji|per-value|compiled] [--repeat 3] [--small]
//   [--build] [--packed] (default: the 500-row transactions; --small: the single-row transactions, each with its table map;
//   --build: decode, then build each 20,000 rows' SQL as the applier does and encode it: the agent's CPU per
//   row in a catch-up without the servers; --packed: inserts read as SQL tuples, agent/source/rowsql.ts, as the
//   agent's reader reads them)
// Profile: node --cpu-prof --cpu-prof-dir=bench/results/prof-decode bench/decode.mjs --only per-value
import { readFileSync } from "node:fs";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Replayer, splitBinlog } from "../dist/dev/binlog-replay.js";

const { values: args } = parseArgs({
  options: {
    flavor: { type: "string", default: "mariadb" },
    rows: { type: "string", default: "1000000" },
    only: { type: "string" },
    repeat: { type: "string", default: "3" },
    table: { type: "string", default: "orders" },
    small: { type: "boolean", default: false },
    build: { type: "boolean", default: false },
    "queue-mb": { type: "string", default: "16" },
    packed: { type: "boolean", default: false },
  },
});
const here = dirname(fileURLToPath(import.meta.url));
const fixtures = join(here, "..", "test", "fixtures", "binlog");
const events = splitBinlog(readFileSync(join(fixtures, `${args.flavor}.binlog`)));
const schemas = JSON.parse(readFileSync(join(fixtures, `${args.flavor}.schemas.json`), "utf8"));
const target = Number(args.rows);

// the table's write events with the table map before each transaction's first one
const probe = await Replayer.create({ flavor: args.flavor, schemas });
const seq = [];
let map = null;
let rowsPerPass = 0;
for (const ev of events) {
  const out = probe.decode(ev);
  if (ev[4] === 15) seq.push(ev);
  if (!out) continue;
  if ("tableMap" in out) map = out.tableMap.tableName === args.table ? ev : null;
  else if (map && out.kind === "write" && out.table === args.table && (out.rows.length === 1) === args.small) {
    if (!seq.includes(map)) seq.push(map);
    seq.push(ev);
    rowsPerPass += out.rows.length;
  }
}
if (!rowsPerPass) throw new Error(`no write rows of zoo.${args.table} in ${args.flavor}.binlog`);
const packets = seq.map((ev) => Replayer.packet(ev));

const decoders = {
  zongji: { zongjiOnly: true },
  "per-value": { perValue: true },
  compiled: {},
};
const names = args.only ? [args.only] : args.build ? ["compiled"] : Object.keys(decoders);

// --build: the pipeline an agent runs per row in a catch-up, without servers: decode (compiled), build the
// target transaction's SQL (StatementBuilder, the table known to have no foreign key: a lane) and encode it
// to bytes as mysql2 does before sending (Buffer.byteLength + write)
const { StatementBuilder } = args.build ? await import("../dist/agent/apply/sqlgen.js") : {};
const { packedChange } = await import("../dist/agent/source/rowsql.js");
const cols = schemas[`zoo.${args.table}`].map((c) => c.COLUMN_NAME);
const meta = {
  db: "zoo", table: args.table, columns: cols, writable: cols, writableSet: new Set(cols),
  types: new Map(schemas[`zoo.${args.table}`].map((c) => [c.COLUMN_NAME, c.COLUMN_TYPE.toLowerCase().split(/[ (]/)[0]])),
  primaryKey: [cols[0]], hasSecondaryUnique: false, foreignKeys: false,
};
const out = Buffer.alloc(8 << 20);

async function run(name) {
  const r = await Replayer.create({ flavor: args.flavor, schemas, ...decoders[name], pack: args.packed });
  let rows = 0;
  let sink = 0;
  let b = args.build ? new StatementBuilder() : null;
  let held = [];
  // the queue as a ring of [rows, bytes] with a head index (Array#shift is O(n): with single-row
  // transactions the queue holds ~100k entries and the shifts alone took most of the time)
  let queue = [];
  let qHead = 0;
  let queued = 0;
  const queueBytes = Number(args["queue-mb"]) * 2 ** 20;
  const pass = () => {
    for (let i = 0; i < seq.length; i++) {
      const out = r.decode(seq[i], packets[i]);
      if (out && "kind" in out) {
        rows += out.rows.length;
        sink ^= out.rows.length;
        if (b) {
          // the batch's rows stay alive until it is applied, and the queue holds the next transactions'
          // (decoded, up to apply.queueBytes of events: --queue-mb) until then
          held.push(out.pack ?? out.rows);
          queue.push([out.pack ?? out.rows, seq[i].length]);
          queued += seq[i].length;
          while (queued > queueBytes) {
            queued -= queue[qHead][1];
            queue[qHead++] = undefined;
          }
          if (qHead > 65536 && qHead * 2 > queue.length) {
            queue = queue.slice(qHead);
            qHead = 0;
          }
          b.add(out.pack ? packedChange("zoo", args.table, out.pack) : { op: "insert", db: "zoo", table: args.table, rows: out.rows }, meta, "bench");
          // a target transaction of up to 20,000 rows (apply.maxRows)
          if (b.rows >= 20_000) sink ^= send(b);
        }
      }
    }
  };
  const send = (builder) => {
    let n = 0;
    for (const st of builder.finish()) n += out.write(st.sql, 0, Math.min(Buffer.byteLength(st.sql), out.length));
    b = new StatementBuilder();
    held = [];
    return n;
  };
  // warm-up: a tenth of the rows
  while (rows < target / 10) pass();
  rows = 0;
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  while (rows < target) pass();
  const ns = Number(process.hrtime.bigint() - t0);
  const cpu = process.cpuUsage(c0);
  return { name, rows, ns, cpuNs: (cpu.user + cpu.system) * 1000, sink };
}

const results = {};
const wall = {};
for (let k = 0; k < Number(args.repeat); k++) {
  for (const name of names) {
    const r = await run(name);
    // CPU time of this process (the machine is shared: wall time counts the other processes' turns)
    (results[name] ??= []).push(r.cpuNs / r.rows);
    (wall[name] ??= []).push(r.ns / r.rows);
  }
}
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
console.log(`${args.build ? "decode + build the SQL + encode it (--build); " : ""}${args.packed ? "inserts packed (--packed); " : ""}flavor ${args.flavor}, table zoo.${args.table}, ${rowsPerPass} rows per pass, ${target.toLocaleString("en-US")} rows per run, median of ${args.repeat}${args.small ? ", single-row transactions (a table map per row)" : ""}`);
console.log(`load average ${os.loadavg().map((x) => x.toFixed(1)).join(" ")} on ${os.cpus().length} cores; ns/row and rows/s of CPU time (wall ns/row beside)`);
console.log("| decoder | CPU ns/row | rows/s (CPU) | vs per-value | wall ns/row |");
console.log("|---|---:|---:|---:|---:|");
const base = results["per-value"] ? median(results["per-value"]) : null;
for (const name of names) {
  const m = median(results[name]);
  console.log(`| ${name} | ${m.toFixed(0)} | ${Math.round(1e9 / m).toLocaleString("en-US")} | ${base ? (base / m).toFixed(2) + "×" : "–"} | ${median(wall[name]).toFixed(0)} |`);
}
