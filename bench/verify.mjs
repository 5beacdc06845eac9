// Bench: `datasync verify` of 1,000,000 identical rows against CHECKSUM TABLE on both sides.
// Uses the compiled code (npm run build first) and two private MariaDB servers. Not part of the tests.
//   node bench/verify.mjs [rows]
import { startServers } from "../dist/dev/servers.js";
import { validateConfig } from "../dist/agent/config.js";
import { runVerify, exitCodeOf } from "../dist/agent/verify/verifier.js";

const rows = Number(process.argv[2] ?? 1_000_000);
const DDL = `
CREATE DATABASE bench; USE bench;
CREATE TABLE t (id BIGINT PRIMARY KEY, a INT NOT NULL, b VARCHAR(64) NULL, c DATETIME NOT NULL, d DECIMAL(10,2) NOT NULL, e DOUBLE NULL);
INSERT INTO t SELECT seq, seq * 7 MOD 1000, CONCAT('name-', seq), '2024-01-01' + INTERVAL seq SECOND, seq / 100, IF(seq MOD 10 = 0, NULL, seq * 1.5e0) FROM seq_1_to_${rows};
`;
const time = async (fn) => {
  const t0 = process.hrtime.bigint();
  const v = await fn();
  return [Number(process.hrtime.bigint() - t0) / 1e6, v];
};
const fmt = (ms) => `${(ms / 1000).toFixed(2)} s`;

const servers = await startServers([{ name: "bsrc" }, { name: "brep" }]);
try {
  const [src, rep] = servers;
  const [loadMs] = await time(() => Promise.all(servers.map((s) => s.query(DDL))));
  console.log(`loaded ${rows.toLocaleString("en-US")} identical rows on source and replica in ${fmt(loadMs)}`);
  const cfg = validateConfig({
    group: "bench",
    source: { host: "127.0.0.1", port: src.port, user: "root", password: "" },
    replicas: [{ name: "rep", host: "127.0.0.1", port: rep.port, user: "root", password: "" }],
    databases: ["bench"],
  });
  // warm both buffer pools so every method reads from memory
  await Promise.all(servers.map((s) => s.query("CHECKSUM TABLE bench.t")));
  const results = [];
  for (let i = 0; i < 3; i++) {
    const [csBoth, sums] = await time(() => Promise.all(servers.map((s) => time(() => s.query("CHECKSUM TABLE bench.t")))));
    const [vMs, o] = await time(() => runVerify(cfg, {}));
    if (exitCodeOf(o) !== 0) throw new Error("verify found differences on identical data");
    results.push({ csBoth, csSrc: sums[0][0], csRep: sums[1][0], vMs, algo: o.algo });
  }
  const best = (k) => Math.min(...results.map((r) => r[k]));
  console.log(`CHECKSUM TABLE, both sides at once: ${fmt(best("csBoth"))} (source ${fmt(best("csSrc"))}, replica ${fmt(best("csRep"))})`);
  console.log(`datasync verify (chunks of 10,000 rows, ${results[0].algo} row hash): ${fmt(best("vMs"))} → ${(rows / (best("vMs") / 1000)).toLocaleString("en-US", { maximumFractionDigits: 0 })} rows/s, ${(best("vMs") / best("csBoth")).toFixed(1)}× CHECKSUM TABLE`);
  console.log(`(best of 3 runs; ${(await import("node:os")).cpus().length} cores, both servers on this machine)`);
} finally {
  await Promise.all(servers.map((s) => s.destroy()));
}
