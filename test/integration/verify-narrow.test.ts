// Narrowing and settling of verify against two real servers, through the library: one changed row in
// 100,000 is reported as a range of at most 1,000 keys (single and composite keys), and a difference
// that the replica catches up on while verify runs (as when the agent streams) is not reported.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { validateConfig, type Config } from "../../agent/config.js";
import { runVerify, exitCodeOf } from "../../agent/verify/verifier.js";
import { startServers, type TestServer } from "../support/servers.js";
import { seq } from "../support/sql.js";

const DATA = `
CREATE DATABASE big; USE big;
CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40) NOT NULL, n INT NULL);
INSERT INTO t SELECT seq, CONCAT('value ', seq), IF(seq MOD 7 = 0, NULL, seq * 3) FROM ${seq(100000)};
CREATE TABLE ck (a INT NOT NULL, b VARCHAR(10) NOT NULL, v INT NOT NULL, PRIMARY KEY (a, b));
INSERT INTO ck SELECT x.seq, CONCAT('b', LPAD(y.seq, 3, '0')), x.seq * y.seq FROM ${seq(1000, { alias: "x" })}, ${seq(100, { alias: "y" })};
`;

let servers: TestServer[] = [];
let src: TestServer, rep: TestServer;
let cfg: Config;

beforeAll(async () => {
  servers = await startServers([{ name: "nsrc" }, { name: "nrep" }]);
  [src, rep] = servers;
  await Promise.all(servers.map((s) => s.query(DATA)));
  cfg = validateConfig({
    group: "narrow",
    source: { host: "127.0.0.1", port: src.port, user: "root", password: "" },
    replicas: [{ name: "rep", host: "127.0.0.1", port: rep.port, user: "root", password: "" }],
    databases: ["big"],
  });
}, 120_000);

afterAll(async () => {
  await Promise.all(servers.map((s) => s.destroy()));
});

describe("verify narrowing", () => {
  it("reports one changed row in 100,000 as a range of at most 1,000 keys", async () => {
    await rep.query("UPDATE big.t SET v = 'changed' WHERE id = 73456; DELETE FROM big.ck WHERE a = 421 AND b = 'b050'; INSERT INTO big.ck VALUES (777, 'b050x', 1)");
    const o = await runVerify(cfg, { settleMs: [] });
    expect(exitCodeOf(o)).toBe(1);
    expect(o.sourceRows).toBe(200_000);
    const diffs = o.replicas[0].tables;
    expect(diffs.map((t) => `${t.table}:${t.kind}`)).toEqual(["big.ck:rows", "big.t:rows"]);

    const t = diffs.find((x) => x.table === "big.t")!;
    expect(t.ranges).toHaveLength(1);
    const r = t.ranges[0];
    expect(r.changed).toEqual([[73456]]);
    expect(r.missing).toEqual([]);
    expect(r.extra).toEqual([]);
    const [first, last] = [Number(r.first![0]), Number(r.last![0])];
    expect(first).toBeLessThanOrEqual(73456);
    expect(last).toBeGreaterThanOrEqual(73456);
    expect(last - first + 1).toBeLessThanOrEqual(1000);

    const ck = diffs.find((x) => x.table === "big.ck")!;
    const all = ck.ranges.flatMap((d) => [...d.missing.map((k) => `-${k.join("/")}`), ...d.extra.map((k) => `+${k.join("/")}`), ...d.changed.map((k) => `~${k.join("/")}`)]);
    expect(all.sort()).toEqual(["+777/b050x", "-421/b050"]);
    for (const d of ck.ranges) {
      // every reported range holds at most 1,000 source keys
      const [row] = await src.query<any[]>(
        "SELECT COUNT(*) AS n FROM big.ck WHERE (a, b) >= (?, ?) AND (a, b) <= (?, ?)",
        [d.first![0], d.first![1], d.last![0], d.last![1]],
      );
      expect(Number(row.n)).toBeLessThanOrEqual(1000);
    }
    await rep.query("UPDATE big.t SET v = 'value 73456' WHERE id = 73456; INSERT INTO big.ck VALUES (421, 'b050', 421 * 50); DELETE FROM big.ck WHERE a = 777 AND b = 'b050x'");
    expect(exitCodeOf(await runVerify(cfg, { settleMs: [] }))).toBe(0);
  });

  it("does not report a difference the replica catches up on (streaming lag)", async () => {
    await src.query("UPDATE big.t SET v = 'new on the source' WHERE id = 5; INSERT INTO big.t VALUES (200001, 'late', 1); DELETE FROM big.ck WHERE a = 9");
    // the "agent" applies the same changes 1.2 s later, while verify is running
    const lag = new Promise((r) => setTimeout(r, 1200)).then(() =>
      rep.query("UPDATE big.t SET v = 'new on the source' WHERE id = 5; INSERT INTO big.t VALUES (200001, 'late', 1); DELETE FROM big.ck WHERE a = 9"),
    );
    const lines: string[] = [];
    const o = await runVerify(cfg, { progress: (l) => lines.push(l) });
    await lag;
    expect(lines.some((l) => l.startsWith("waiting"))).toBe(true);
    expect(o.replicas[0].tables).toEqual([]);
    expect(exitCodeOf(o)).toBe(0);
  });

  it("reports a difference that persists through the settle time", async () => {
    await rep.query("UPDATE big.t SET n = NULL WHERE id = 99999");
    const t0 = Date.now();
    const o = await runVerify(cfg, { settleMs: [100, 200] });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
    expect(o.replicas[0].tables[0].ranges[0].changed).toEqual([[99999]]);
  });
});
