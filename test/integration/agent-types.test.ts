// Every column type family round-trips byte-exactly through the agent, including identifiers that need
// quoting, DDL replicated from the stream, and the HTTP endpoints.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultFlavor, startServers, type TestServer } from "../support/servers.js";
import { AgentProcess, checksums, makeConfig, tableList, waitCaughtUp, writeConfig } from "../support/agent.js";

let src: TestServer;
let reps: TestServer[];
let agent: AgentProcess;

beforeAll(async () => {
  [src, ...reps] = await startServers([{ name: "types-src" }, { name: "types-r1" }, { name: "types-r2" }]);
  agent = new AgentProcess(writeConfig(makeConfig(src, reps, { databases: ["shop", "wéird db"] })));
  await agent.waitStreaming(["r1", "r2"]);
});

afterAll(async () => {
  await agent?.kill("SIGTERM");
  await Promise.all([src, ...reps].map((s) => s?.destroy()));
});

const flavor = defaultFlavor();
// MariaDB's UUID, INET6 and INET4 types; on MySQL the same values in the columns MySQL stores them in
const ADDR_TYPES = flavor === "mariadb" ? "u UUID, i6 INET6, i4 INET4" : "u BINARY(16), i6 VARBINARY(16), i4 INT UNSIGNED";
const uuid = (v: string) => (flavor === "mariadb" ? `'${v}'` : `UUID_TO_BIN('${v}')`);
const ip6 = (v: string) => (flavor === "mariadb" ? `'${v}'` : `INET6_ATON('${v}')`);
const ip4 = (v: string) => (flavor === "mariadb" ? `'${v}'` : `INET_ATON('${v}')`);
// MySQL's default sql_mode refuses zero dates (MariaDB's allows them); the rows below have some
const PERMISSIVE = flavor === "mysql" ? "SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'; " : "";

const TYPES_DDL = `CREATE TABLE shop.alltypes (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
  dec65 DECIMAL(65,30), dec5 DECIMAL(5,2) UNSIGNED, f FLOAT, d DOUBLE,
  dt DATETIME(6), dt0 DATETIME, ts TIMESTAMP(6) NULL DEFAULT NULL, tm TIME(6), dd DATE, y YEAR,
  c CHAR(10), vc VARCHAR(200), tx TEXT, mtx MEDIUMTEXT, lat1 VARCHAR(20) CHARACTER SET latin1,
  bl BLOB, bn BINARY(4), vb VARBINARY(16),
  j JSON, e ENUM('a','b','with,comma'), st SET('x','y','z'), bt BIT(10), b1 BIT(1), b64 BIT(64),
  ${ADDR_TYPES},
  gen BIGINT AS (LENGTH(vc)) VIRTUAL, gens VARCHAR(210) AS (CONCAT(vc, '!')) STORED
)`;

const ROWS = [
  `(1, -128, 255, -32768, 16777215, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615,
    '-12345678901234567890123456789012345.123456789012345678901234567890', 999.99, -3.4028234e38, 1.7976931348623157e308,
    '9999-12-31 23:59:59.999999', '0000-00-00 00:00:00', '2038-01-19 03:14:07.999999', '-838:59:59.000000', '0000-00-00', 0,
    'a', 'héllo 😀 wörld', REPEAT('x😀', 12000), 'mt', 'caf\\xe9',
    X'00FF00', X'01020304', X'', '{"a": [1, 2.5, "😀"], "b": null}', 'with,comma', 'x,z', b'1010101010', b'1', b'1111111111111111111111111111111111111111111111111111111111111111',
    ${uuid("e1b0c0d0-0000-4000-8000-000000000001")}, ${ip6("2001:db8::ff00:42:8329")}, ${ip4("192.168.0.1")})`,
  `(2, 127, 0, 32767, 0, 2147483647, 0, 9223372036854775807, 0,
    '0.000000000000000000000000000001', 0, 1.17549435e-38, -2.2250738585072014e-308,
    '1000-01-01 00:00:00.000001', '1970-01-01 00:00:01', '1970-01-01 00:00:01.000000', '838:59:59.999999', '1000-01-01', 2155,
    '', '', '', NULL, '', X'', X'00000000', X'00', '[]', 'a', '', b'0', b'0', b'0',
    ${uuid("00000000-0000-0000-0000-000000000000")}, ${ip6("::")}, ${ip4("0.0.0.0")})`,
  `(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
  `(4, 0, 1, 0, 1, 0, 1, 0, 1, '-0.5', 0.5, 0.1, 0.1, '2020-02-29 12:00:00.5', '2020-02-29 12:00:00', '2020-02-29 12:00:00.5', '00:00:00.000001', '2020-02-29', 1901,
    'quote''s', 'back\\\\slash "dq" \\n nl \\t tab', 'NUL:\\0:', NULL, 'x', X'5C27', X'27272727', X'5C', '"just a string"', 'b', 'y', b'1', b'1', b'101',
    ${uuid("ffffffff-ffff-ffff-ffff-ffffffffffff")}, ${ip6("::ffff:1.2.3.4")}, ${ip4("255.255.255.255")})`,
];

const COLS = `id, ti, tiu, si, mi, i, iu, bi, biu, dec65, dec5, f, d, dt, dt0, ts, tm, dd, y, c, vc, tx, mtx, lat1, bl, bn, vb, j, e, st, bt, b1, b64, u, i6, i4`;

describe("values round-trip byte-exactly", () => {
  it("replicates DDL from the stream and every type family, then updates, key changes and deletes", async () => {
    await src.query("CREATE DATABASE shop");
    await src.query(TYPES_DDL);
    await src.query(`${PERMISSIVE}INSERT INTO shop.alltypes (${COLS}) VALUES ${ROWS.join(",")}`);
    await src.query(`${PERMISSIVE}UPDATE shop.alltypes SET vc = CONCAT(vc, '✓'), bl = X'DEADBEEF', y = 0 WHERE id IN (2, 4)`);
    await src.query(`${PERMISSIVE}UPDATE shop.alltypes SET id = 40 WHERE id = 4`);
    await src.query(`${PERMISSIVE}INSERT INTO shop.alltypes (${COLS}) SELECT 5, ${COLS.split(", ").slice(1).join(", ")} FROM shop.alltypes WHERE id = 1`);
    await src.query("DELETE FROM shop.alltypes WHERE id = 5");
    for (const r of reps) await waitCaughtUp(src, r);
    const want = await checksums(src, ["shop.alltypes"]);
    expect(Number(want["shop.alltypes"])).toBeGreaterThan(0);
    const hexAll = `SELECT id, ${COLS.split(", ").slice(1).map((c) => `HEX(${c})`).join(", ")}, gen, gens FROM shop.alltypes ORDER BY id`;
    const srcRows = await src.query(hexAll);
    for (const r of reps) {
      expect(await checksums(r, ["shop.alltypes"])).toEqual(want);
      expect(await r.query(hexAll)).toEqual(srcRows);
    }
    expect((srcRows as any[]).map((r) => r.id)).toEqual(["1", "2", "3", "40"]);
  });

  it("handles identifiers that need quoting (backticks, spaces, unicode, reserved words)", async () => {
    await src.query("CREATE DATABASE `wéird db`");
    await src.query("CREATE TABLE `wéird db`.`order` (`select` INT NOT NULL, `we``ird col` VARCHAR(10), `ünï cødé` INT, `from` INT NOT NULL, PRIMARY KEY (`select`, `from`))");
    await src.query("INSERT INTO `wéird db`.`order` VALUES (1, 'a`b', 1, 1), (2, 'c''d', 2, 2), (3, 'x', 3, 3)");
    await src.query("UPDATE `wéird db`.`order` SET `we``ird col` = 'moved', `from` = 20 WHERE `select` = 2");
    await src.query("DELETE FROM `wéird db`.`order` WHERE `select` = 3");
    await src.query("ALTER TABLE `wéird db`.`order` ADD COLUMN `new col` INT DEFAULT 7");
    await src.query("INSERT INTO `wéird db`.`order` (`select`, `from`) VALUES (9, 9)");
    for (const r of reps) await waitCaughtUp(src, r);
    const tables = await tableList(src, "wéird db");
    expect(tables).toEqual(["`wéird db`.`order`"]);
    const want = await checksums(src, tables);
    for (const r of reps) expect(await checksums(r, tables)).toEqual(want);
    expect(await reps[0].query("SELECT `select`, `from`, `we``ird col` AS c, `new col` AS n FROM `wéird db`.`order` ORDER BY 1")).toEqual([
      { select: 1, from: 1, c: "a`b", n: 7 },
      { select: 2, from: 20, c: "moved", n: 7 },
      { select: 9, from: 9, c: null, n: 7 },
    ]);
  });

  it("serves /healthz, /readyz and /metrics with the DESIGN.md names", async () => {
    const h = await agent.http("/healthz");
    expect(h.status).toBe(200);
    const ready = await agent.http("/readyz");
    expect(ready.status).toBe(200);
    expect(ready.body.replicas.map((r: any) => r.name)).toEqual(["r1", "r2"]);
    expect(ready.body.replicas.every((r: any) => r.lagSeconds === 0 || r.lagSeconds < 1)).toBe(true);
    const m = await agent.http("/metrics");
    for (const name of [
      "datasync_replica_lag_seconds",
      "datasync_replica_applied_transactions_total",
      "datasync_replica_applied_rows_total",
      "datasync_replica_up",
      "datasync_snapshot_rows_total",
      "datasync_errors_total",
    ]) {
      expect(m.text).toContain(name);
    }
    expect(m.text).toMatch(/datasync_replica_up\{group="test",replica="r1"\} 1/);
    const applied = /datasync_replica_applied_rows_total\{group="test",replica="r2"\} (\d+)/.exec(m.text);
    expect(Number(applied?.[1])).toBeGreaterThanOrEqual(10);
  });
});
