// verify and repair through the real CLI against three private MariaDB servers (one source, two
// replicas loaded with the same data): identical → 0; rows changed, deleted and inserted directly on the
// replicas → 1 with table and key range named; repair --dry-run prints SQL and changes nothing; repair →
// verify 0; missing table and schema drift; an unreachable replica → 2.
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt } from "../support/build.js";
import { defaultFlavor, freePort, startServers, type TestServer } from "../support/servers.js";
import { intType, seq, uuidType, uuidValue } from "../support/sql.js";

const ROOT = join(import.meta.dirname, "..", "..");

const SCHEMA = `
CREATE DATABASE shop;
USE shop;
CREATE TABLE shop.orders (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  customer INT NOT NULL,
  total DECIMAL(12,2) NOT NULL,
  status ENUM('new','paid','shipped') NOT NULL,
  note TEXT NULL,
  created DATETIME(6) NOT NULL,
  updated TIMESTAMP(3) NOT NULL DEFAULT '2024-01-01 00:00:00',
  price FLOAT NULL,
  ratio DOUBLE NULL,
  flags BIT(8) NOT NULL DEFAULT b'0',
  payload BLOB NULL,
  doc JSON NULL,
  double_total DECIMAL(13,2) AS (total * 2) VIRTUAL
);
CREATE TABLE shop.order_items (
  order_id INT NOT NULL, line SMALLINT NOT NULL, sku VARCHAR(32) NOT NULL, qty INT NOT NULL,
  PRIMARY KEY (order_id, line)
);
CREATE TABLE shop.customers (
  code VARBINARY(16) NOT NULL PRIMARY KEY, name VARCHAR(100) CHARACTER SET utf8mb4 NOT NULL,
  ext ${uuidType()} NULL, since YEAR NULL, pt POINT NULL
);
CREATE TABLE shop.empty_t (id INT PRIMARY KEY);
CREATE TABLE shop.audit_log (id INT PRIMARY KEY, what VARCHAR(20));
INSERT INTO shop.orders (id, customer, total, status, note, created, updated, price, ratio, flags, payload, doc)
  SELECT seq, seq MOD 97, seq / 4, ELT(1 + seq MOD 3, 'new', 'paid', 'shipped'),
         IF(seq MOD 5 = 0, NULL, CONCAT('note ', seq)), '2024-03-01 10:00:00.123456' + INTERVAL seq SECOND,
         '2024-03-01 10:00:00.5' + INTERVAL seq MINUTE, 1.0000001 * seq, seq / 7e0, seq MOD 256,
         IF(seq MOD 3 = 0, UNHEX(SHA2(seq, 256)), NULL), IF(seq MOD 4 = 0, JSON_OBJECT('n', seq), NULL)
  FROM ${seq(20000)};
INSERT INTO shop.order_items SELECT o.seq, l.seq, CONCAT('SKU-', o.seq * 10 + l.seq), l.seq FROM ${seq(10000, { alias: "o" })}, ${seq(3, { alias: "l" })};
INSERT INTO shop.customers SELECT UNHEX(LPAD(HEX(seq), 8, '0')), CONCAT('Kunde ', seq, ' ü😀'),
  IF(seq MOD 2 = 0, ${uuidValue("CONCAT('00000000-0000-0000-0000-', LPAD(seq, 12, '0'))")}, NULL), 1990 + seq MOD 30,
  IF(seq MOD 10 = 0, ST_GeomFromText(CONCAT('POINT(', seq, ' 1)')), NULL) FROM ${seq(2000)};
INSERT INTO shop.audit_log SELECT seq, 'x' FROM ${seq(10)};
`;

let servers: TestServer[] = [];
let src: TestServer, r1: TestServer, r2: TestServer;
let dir: string;
let cfgFile: string;

function writeConfig(name: string, replicas: { name: string; port: number }[], source?: object): string {
  const file = join(dir, name);
  writeFileSync(
    file,
    JSON.stringify({
      group: "verify-test",
      source: source ?? { host: "127.0.0.1", port: src.port, user: "root", password: "" },
      replicas: replicas.map((r) => ({ name: r.name, host: "127.0.0.1", port: r.port, user: "root", password: "" })),
      databases: ["shop"],
      tables: { exclude: ["shop.audit_*"] },
    }),
  );
  return file;
}

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [join(ROOT, "bin/datasync.js"), ...args], { encoding: "utf8", cwd: ROOT, timeout: 90_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  ensureBuilt();
  servers = await startServers([{ name: "vsrc" }, { name: "vr1" }, { name: "vr2" }]);
  [src, r1, r2] = servers;
  await Promise.all(servers.map((s) => s.query(SCHEMA)));
  // bookkeeping the agent keeps on replicas: never compared
  await Promise.all([r1, r2].map((s) => s.query("CREATE DATABASE _datasync; CREATE TABLE _datasync.checkpoint (id INT PRIMARY KEY, pos VARCHAR(64)); INSERT INTO _datasync.checkpoint VALUES (1, 'binlog.000001:4')")));
  dir = mkdtempSync(join(tmpdir(), "verify-test-"));
  cfgFile = writeConfig("datasync.json", [
    { name: "r1", port: r1.port },
    { name: "r2", port: r2.port },
  ]);
}, 120_000);

afterAll(async () => {
  await Promise.all(servers.map((s) => s.destroy()));
});

describe("datasync verify / repair", () => {
  it("exits 0 on identical replicas", () => {
    const r = cli("verify", "--config", cfgFile);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/replica r1 \(127\.0\.0\.1:\d+\): identical \(4 tables\)/);
    expect(r.stdout).toMatch(/replica r2 .*identical/);
    expect(r.stdout).toContain("52,000 rows");
    // MariaDB 10.11 has CRC32C; MySQL 9 has neither CRC32C() nor MD5()
    expect(r.stdout).toContain(defaultFlavor() === "mysql" ? "(sha2 checksums" : "(crc64 checksums");
    expect(r.stdout).not.toContain("audit_log");
  });

  it("names each table and key range after rows are changed, deleted and inserted on the replicas", async () => {
    await r1.query(`
      UPDATE shop.orders SET note = 'changed on the replica' WHERE id = 12345;
      DELETE FROM shop.order_items WHERE order_id = 500 AND line = 2;
      INSERT INTO shop.customers (code, name) VALUES (0xFFFFFFFF01, 'only on r1');
      UPDATE shop.audit_log SET what = 'excluded' WHERE id = 1;
      UPDATE _datasync.checkpoint SET pos = 'binlog.000009:4';`);
    // byte-exact details: FLOAT off by one ulp, NULL vs '', one character of a 4-byte UTF-8 string
    await r2.query(`
      UPDATE shop.orders SET price = 1.0000002 WHERE id = 1;
      UPDATE shop.orders SET note = '' WHERE id = 15000;
      UPDATE shop.customers SET name = CONCAT('Kunde 77 ü', '😁') WHERE code = UNHEX('0000004D');`);
    const r = cli("verify", "--config", cfgFile);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("replica r1");
    expect(r.stdout).toMatch(/shop\.orders: keys \[12001 \.\. 13000\]: 1 changed row \(12345\)/);
    expect(r.stdout).toMatch(/shop\.order_items: keys \[\(\d+, \d\) \.\. \(\d+, \d\)\]: 1 missing row \(\(500, 2\)\)/);
    expect(r.stdout).toMatch(/shop\.customers: keys \(.* \.\. ∞\): 1 extra row \(0xffffffff01\)/);
    expect(r.stdout).toMatch(/shop\.orders: keys \[1 \.\. 1000\]: 1 changed row \(1\)/);
    expect(r.stdout).toMatch(/shop\.orders: keys \[14001 \.\. 15000\]: 1 changed row \(15000\)/);
    expect(r.stdout).toMatch(/shop\.customers: keys \[0x00000001 \.\. 0x000003e8\]: 1 changed row \(0x0000004d\)/);
    expect(r.stdout).not.toMatch(/audit_log|_datasync/);
    expect(r.stdout).toContain("differences on 2 replicas (exit 1)");

    const j = cli("verify", "--config", cfgFile, "--replica", "r1", "--tables", "shop.orders", "--json");
    expect(j.code).toBe(1);
    const out = JSON.parse(j.stdout);
    expect(out.replicas).toHaveLength(1);
    expect(out.replicas[0].differences).toEqual([
      { table: "shop.orders", kind: "rows", details: [], ranges: [expect.objectContaining({ first: ["12001"], last: ["13000"], changed: 1, missing: 0, extra: 0, keys: { changed: [["12345"]], missing: [], extra: [] } })] },
    ]);
  }, 60_000);

  it("repair --dry-run prints the SQL and changes nothing", async () => {
    const r = cli("repair", "--config", cfgFile, "--dry-run");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("SET SESSION foreign_key_checks = 0");
    expect(r.stdout).toMatch(/UPDATE `shop`\.`orders` SET `id` = 12345, .*`note` = NULL, .* WHERE `id` IN \(12345\);/);
    expect(r.stdout).toMatch(/INSERT INTO `shop`\.`order_items` \(`order_id`, `line`, `sku`, `qty`\) VALUES\n {2}\(500, 2, 'SKU-5002', 2\);/);
    expect(r.stdout).toMatch(/DELETE FROM `shop`\.`customers` WHERE `code` IN \(X'ffffffff01'\);/);
    expect(r.stdout).toMatch(/UPDATE `shop`\.`orders` SET .*`price` = 1\.0000001192092896/);
    expect(r.stdout).not.toContain("double_total"); // generated columns are never written
    expect(r.stderr).toMatch(/would write rows: 1 inserted, 4 updated, 1 deleted/);
    expect(await r1.query("SELECT note FROM shop.orders WHERE id = 12345")).toEqual([{ note: "changed on the replica" }]);
    expect(await r1.query("SELECT COUNT(*) AS n FROM shop.order_items WHERE order_id = 500")).toEqual([{ n: "2" }]);
    expect(await r2.query("SELECT note FROM shop.orders WHERE id = 15000")).toEqual([{ note: "" }]);
  }, 60_000);

  it("repair makes the replicas equal, and verify exits 0 again", () => {
    const r = cli("repair", "--config", cfgFile);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/wrote rows: 1 inserted, 4 updated, 1 deleted/);
    expect(r.stdout).toContain("verify after repair:");
    const v = cli("verify", "--config", cfgFile);
    expect(v.code).toBe(0);
    expect(v.stdout).toContain("identical to the source");
  }, 60_000);

  it("reports a missing table and schema drift; repair creates and copies the missing table", async () => {
    await r2.query("DROP TABLE shop.customers");
    await r1.query("ALTER TABLE shop.order_items MODIFY qty BIGINT NOT NULL; CREATE TABLE shop.stray (id INT PRIMARY KEY)");
    const v = cli("verify", "--config", cfgFile);
    expect(v.code).toBe(1);
    expect(v.stdout).toContain("shop.customers: missing on the replica");
    expect(v.stdout).toContain(`shop.order_items: schema differs: column \`qty\` is ${intType("int")} on the source, ${intType("bigint")} on the replica`);
    expect(v.stdout).toContain("shop.stray: exists only on the replica");
    const r = cli("repair", "--config", cfgFile);
    expect(r.code).toBe(1); // drift and the stray table are for a person to decide
    expect(r.stdout).toContain("1 table created");
    expect(r.stdout).toMatch(/not repaired: r1: shop\.order_items has a different definition/);
    expect(r.stdout).toMatch(/not repaired: r1: shop\.stray exists only on the replica/);
    await r1.query("ALTER TABLE shop.order_items MODIFY qty INT NOT NULL; DROP TABLE shop.stray");
    const again = cli("verify", "--config", cfgFile);
    expect(again.stdout).toMatch(/replica r2 .*identical/);
    expect(again.code).toBe(0);
  }, 60_000);

  it("exits 2 and names the replica when one cannot be reached", async () => {
    const dead = await freePort();
    const file = writeConfig("dead.json", [
      { name: "r1", port: r1.port },
      { name: "gone", port: dead },
    ]);
    const r = cli("verify", "--config", file);
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/replica gone \(127\.0\.0\.1:\d+\): could not verify: cannot connect to replica gone \(root@127\.0\.0\.1:\d+\): connection refused/);
    expect(r.stdout).toMatch(/replica r1 .*identical/);
    const bad = writeConfig("badsrc.json", [{ name: "r1", port: r1.port }], { host: "127.0.0.1", port: dead, user: "root", password: "secret-pw" });
    const s = cli("verify", "--config", bad);
    expect(s.code).toBe(2);
    expect(s.stderr).toMatch(/cannot connect to source \(root@127\.0\.0\.1:\d+\): connection refused/);
    expect(s.stderr + s.stdout).not.toContain("secret-pw");
  });
});
