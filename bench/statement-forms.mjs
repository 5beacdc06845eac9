// Server CPU per statement form (issue 17): 200,000 rows in 1,000-row statements into an empty table, one private
// server (dev/servers.ts) without binlog. `npm run build`, then `node bench/statement-forms.mjs mariadb|mysql`.
import { TestServer } from "../dist/dev/servers.js";
import mysql from "mysql2/promise";
import { readFileSync } from "node:fs";
const flavor = process.argv[2] ?? "mariadb";
const s = new TestServer({ flavor, noBinlog: true });
await s.start(["--innodb-buffer-pool-size=256M"]);
import { execSync } from "node:child_process";
const pid = Number(execSync(`pgrep -f -- "datadir=${s.datadir}" | head -1`).toString().trim());
const cpu = () => { const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" "); return (Number(f[11]) + Number(f[12])) / 100; };
const c = await mysql.createConnection({ ...s.rootOptions, multipleStatements: true });
await c.query("CREATE DATABASE b");
const N = 200000, B = 1000;
const note = (n) => `'${(n * 2654435761 % 4294967296).toString(16).padStart(32, "x")}'`;
const tuple = (n, g = 0) => `(${n},${n % 1000},${note(n + g)},'2026-12-02 10:00:00.${String(n % 1000000).padStart(6, "0")}')`;
async function run(name, mk) {
  await c.query("DROP TABLE IF EXISTS b.t; CREATE TABLE b.t (id BIGINT PRIMARY KEY, k INT NOT NULL, note VARCHAR(64), ts DATETIME(6), KEY(k))");
  const c0 = cpu(), t0 = Date.now();
  for (let i = 0; i < N; i += B) await mk(i);
  const c1 = cpu(), t1 = Date.now();
  console.log(`${flavor} ${name}: server CPU ${(c1 - c0).toFixed(2)} s, wall ${((t1 - t0) / 1000).toFixed(2)} s`);
}
const rows = (i, g = 0) => Array.from({ length: B }, (_, j) => tuple(i + j, g)).join(",");
await run("INSERT … ODKU", (i) => c.query(`BEGIN; INSERT INTO b.t (id,k,note,ts) VALUES ${rows(i)} ON DUPLICATE KEY UPDATE k=VALUES(k),note=VALUES(note),ts=VALUES(ts); COMMIT`));
await run("plain INSERT", (i) => c.query(`BEGIN; INSERT INTO b.t (id,k,note,ts) VALUES ${rows(i)}; COMMIT`));
await run("REPLACE", (i) => c.query(`BEGIN; REPLACE INTO b.t (id,k,note,ts) VALUES ${rows(i)}; COMMIT`));
// upsert that hits existing rows (update path)
await run("ODKU over existing (insert then upsert all)", async (i) => { await c.query(`INSERT INTO b.t (id,k,note,ts) VALUES ${rows(i)}`); });
{ const c0 = cpu(), t0 = Date.now();
  for (let i = 0; i < N; i += B) await c.query(`BEGIN; INSERT INTO b.t (id,k,note,ts) VALUES ${rows(i, 7)} ON DUPLICATE KEY UPDATE k=VALUES(k),note=VALUES(note),ts=VALUES(ts); COMMIT`);
  console.log(`${flavor} ODKU updating all: server CPU ${(cpu() - c0).toFixed(2)} s, wall ${((Date.now() - t0) / 1000).toFixed(2)} s`); }
// prepared statement, 100-row batches (placeholders)
await run("prepared 1000-row INSERT ODKU (binary protocol)", async (i) => {
  const ph = Array.from({ length: B }, () => "(?,?,?,?)").join(",");
  const vals = []; for (let j = 0; j < B; j++) { const n = i + j; vals.push(n, n % 1000, note(n).slice(1, -1), `2026-12-02 10:00:00.${String(n % 1000000).padStart(6, "0")}`); }
  await c.query("BEGIN"); await c.execute(`INSERT INTO b.t (id,k,note,ts) VALUES ${ph} ON DUPLICATE KEY UPDATE k=VALUES(k),note=VALUES(note),ts=VALUES(ts)`, vals); await c.query("COMMIT");
});
await c.end(); await s.stop();
