// Unit tests for agent/rules.ts: the shared rules of DESIGN.md (1-6). Every failure message must name the
// server or key, the setting, the current and the required value, and the fix.
import { describe, expect, it } from "vitest";
import {
  checkBinlogSettings,
  checkDatabases,
  checkPrimaryKeys,
  checkSourcePrivileges,
  checkTopology,
  checkVersionParity,
  defaultFlavor,
  fmtVersion,
  globToRegExp,
  isAccountStatement,
  isLoopback,
  makeTableFilter,
  MAX_REPLICAS,
  parseVersion,
  SYSTEM_SCHEMAS,
  type Variables,
} from "../../agent/rules.js";

describe("isLoopback", () => {
  it.each(["localhost", " LocalHost ", "127.0.0.1", "127.255.0.9", "::1", "[::1]"])("%j is loopback", (h) => expect(isLoopback(h)).toBe(true));
  it.each(["10.0.0.1", "128.0.0.1", "127.0.0", "localhost.localdomain", "db", "0.0.0.0", "::"])("%j is not", (h) => expect(isLoopback(h)).toBe(false));
});

describe("checkTopology (rule 1)", () => {
  const r = (i: number, extra: object = {}) => ({ name: `r${i}`, host: `10.0.1.${i}`, ...extra });
  const primary = { host: "10.0.0.5", port: 3306 };

  it("passes 1 to 5 distinct replicas", () => {
    for (let n = 1; n <= MAX_REPLICAS; n++) {
      expect(checkTopology(primary, Array.from({ length: n }, (_, i) => r(i)))).toEqual([]);
    }
  });

  it("fails 6 replicas with how many to remove and the alternative", () => {
    const f = checkTopology(primary, Array.from({ length: 6 }, (_, i) => r(i)));
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({ rule: 1, code: "too-many-replicas", where: "replicas" });
    expect(f[0].message).toContain("6 replicas are declared, at most 5");
    expect(f[0].message).toContain("Remove 1 of them");
  });

  it("fails no replica", () => {
    expect(checkTopology(primary, [])).toEqual([expect.objectContaining({ code: "no-replicas", rule: 1 })]);
  });

  it("fails duplicate names (each later duplicate once) and names the first holder", () => {
    const f = checkTopology(primary, [r(0), { ...r(1), name: "r0" }, { ...r(2), name: "r0" }]);
    expect(f.map((x) => x.code)).toEqual(["duplicate-name", "duplicate-name"]);
    expect(f[0].where).toBe("replicas[1].name");
    expect(f[1].message).toMatch(/^replicas\[2\]\.name: "r0" is already the name of replicas\[0\]/);
  });

  it("fails a duplicate endpoint; localhost/::1/127.0.0.1 and a missing port (3306) are the same", () => {
    const f = checkTopology(primary, [
      { name: "a", host: "localhost" },
      { name: "b", host: "127.0.0.1", port: 3306 },
      { name: "c", host: "[::1]" },
      { name: "d", host: "127.0.0.1", port: 3307 },
    ]);
    expect(f.map((x) => [x.code, x.where])).toEqual([
      ["duplicate-endpoint", "replicas[1].host"],
      ["duplicate-endpoint", "replicas[2].host"],
    ]);
    expect(f[0].message).toContain("endpoint 127.0.0.1:3306 is already replicas[0]");
  });

  it("fails the primary as a replica, case-insensitively", () => {
    const f = checkTopology({ host: "DB.example.com" }, [{ name: "a", host: "db.example.com", port: 3306 }]);
    expect(f).toEqual([expect.objectContaining({ code: "primary-is-replica", where: "replicas[0].host" })]);
    expect(f[0].message).toContain("Point replicas[0] at another server");
  });

  it("defers unknown hosts and names (preview) instead of failing", () => {
    expect(checkTopology({}, [{}, {}, { name: "x" }])).toEqual([]);
  });

  it("uses the caller's property paths (provider)", () => {
    const f = checkTopology({ host: "h" }, [{ name: "a", host: "h" }], { primary: "primary", replicas: "args.replicas" });
    expect(f[0].where).toBe("args.replicas[0].host");
    expect(f[0].message).toMatch(/^args\.replicas\[0\]:/);
  });
});

describe("parseVersion", () => {
  it.each([
    ["10.11.6-MariaDB-0+deb12u1-log", "mariadb", 10, 11, 6],
    ["8.0.36", "mysql", 8, 0, 36],
    ["5.7.44-log", "mysql", 5, 7, 44],
    ["5.5.5-10.6.12-MariaDB", "mariadb", 10, 6, 12],
    ["5.5.5-10.11.6-MariaDB-log", "mariadb", 10, 11, 6],
    ["11.4.2-MariaDB", "mariadb", 11, 4, 2],
    ["8.4.3-azure", "mysql", 8, 4, 3],
    ["8.0", "mysql", 8, 0, 0],
    ["10.11", "mariadb", 10, 11, 0],
    ["  8.0.36  ", "mysql", 8, 0, 36],
    ["5.5.62-log", "mysql", 5, 5, 62],
  ])("%s → %s %i.%i.%i", (raw, flavor, major, minor, patch) => {
    expect(parseVersion(raw)).toEqual({ flavor, major, minor, patch, raw });
  });

  it("a declared flavor wins over the guess", () => {
    expect(parseVersion("10.5", "mysql")?.flavor).toBe("mysql");
    expect(parseVersion("8.0", "mariadb")?.flavor).toBe("mariadb");
  });

  it.each(["", "eight", "8", "v8.0", "MariaDB 10.11"])("%j is not a version", (raw) => {
    expect(parseVersion(raw)).toBeNull();
  });

  it("defaultFlavor and fmtVersion", () => {
    expect(defaultFlavor("10.11")).toBe("mariadb");
    expect(defaultFlavor("11.4")).toBe("mariadb");
    expect(defaultFlavor("8.0")).toBe("mysql");
    expect(defaultFlavor("5.7")).toBe("mysql");
    expect(defaultFlavor("nonsense")).toBe("mysql");
    expect(fmtVersion(parseVersion("10.11.6-MariaDB-0+deb12u1-log")!)).toBe("MariaDB 10.11");
    expect(fmtVersion(parseVersion("8.0.36")!)).toBe("MySQL 8.0");
  });
});

describe("checkVersionParity (rule 2)", () => {
  it("passes equal flavor and major.minor; patch levels may differ", () => {
    expect(checkVersionParity({ where: "source", version: "10.11.6-MariaDB-0+deb12u1-log" }, [{ where: "r1", version: "10.11.9-MariaDB" }, { where: "r2", version: "10.11" }])).toEqual([]);
    expect(checkVersionParity({ where: "source", version: "8.0.36" }, [{ where: "r1", version: "8.0" }])).toEqual([]);
  });

  it("fails a different minor, naming both versions and the fix", () => {
    const f = checkVersionParity({ where: "source", version: "8.0.36" }, [{ where: "replicas[0]", version: "8.4.3" }]);
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({ rule: 2, code: "version-mismatch", where: "replicas[0]" });
    expect(f[0].message).toBe("replicas[0]: MySQL 8.4 (8.4.3) differs from the primary's MySQL 8.0 (8.0.36); flavor and major.minor must be equal. Run the replica on MySQL 8.0.");
  });

  it("fails a different flavor", () => {
    const f = checkVersionParity({ where: "source", version: "10.11" }, [{ where: "r", version: "10.11", flavor: "mysql" }]);
    expect(f.map((x) => x.code)).toEqual(["version-mismatch"]);
    expect(f[0].message).toContain("MySQL 10.11");
    expect(f[0].message).toContain("MariaDB 10.11");
  });

  it("defers unknown versions (preview) and names unparsable ones", () => {
    expect(checkVersionParity({ where: "source" }, [{ where: "r", version: "5.7" }])).toEqual([]);
    expect(checkVersionParity({ where: "source", version: "8.0" }, [{ where: "r" }])).toEqual([]);
    const bad = checkVersionParity({ where: "source", version: "8.0" }, [{ where: "r", version: "latest" }, { where: "s", version: "5.7" }]);
    expect(bad.map((x) => [x.code, x.where])).toEqual([
      ["bad-version", "r"],
      ["version-mismatch", "s"],
    ]);
    expect(bad[0].message).toContain('"latest" is not a version');
    expect(checkVersionParity({ where: "source", version: "x" }, [{ where: "r", version: "8.0" }])).toEqual([expect.objectContaining({ code: "bad-version", where: "source" })]);
  });
});

describe("checkBinlogSettings (rule 3)", () => {
  const good: Variables = { log_bin: "ON", binlog_format: "ROW", binlog_row_image: "FULL", binlog_row_metadata: "FULL" };
  const only = (f: ReturnType<typeof checkBinlogSettings>) => f.map((x) => x.code);

  it("passes a correctly configured MySQL 8 and MariaDB source", () => {
    expect(checkBinlogSettings("source", { ...good, binlog_transaction_compression: "OFF", binlog_row_value_options: "" }, "mysql")).toEqual([]);
    expect(checkBinlogSettings("source", { ...good, log_bin_compress: "OFF" }, "mariadb")).toEqual([]);
  });

  it("values are compared case-insensitively; log_bin and compression may be 1/0", () => {
    expect(checkBinlogSettings("source", { log_bin: "1", binlog_format: "row", binlog_row_image: "full", binlog_row_metadata: "full", binlog_transaction_compression: "0" }, "mysql")).toEqual([]);
    expect(checkBinlogSettings("source", { ...good, log_bin_compress: "0" }, "mariadb")).toEqual([]);
  });

  it("a server without binlog_row_metadata (MySQL 5.7, MariaDB < 10.5) is not failed for it", () => {
    const { binlog_row_metadata: _m, ...v57 } = good;
    expect(checkBinlogSettings("source", v57, "mysql")).toEqual([]);
  });

  it("names server, setting, current value, required value and fix for each failure, all at once", () => {
    const f = checkBinlogSettings("source (10.0.0.5:3306)", { log_bin: "OFF", binlog_format: "MIXED", binlog_row_image: "MINIMAL", binlog_row_metadata: "MINIMAL" }, "mariadb");
    expect(only(f)).toEqual(["binlog-off", "binlog-format", "binlog-row-image", "binlog-row-metadata"]);
    for (const x of f) {
      expect(x.rule).toBe(3);
      expect(x.where).toBe("source (10.0.0.5:3306)");
      expect(x.message.startsWith("source (10.0.0.5:3306): ")).toBe(true);
    }
    expect(f[0].message).toContain("log_bin is OFF, required ON");
    expect(f[0].message).toContain("--log-bin");
    expect(f[1].message).toContain("binlog_format is MIXED, required ROW");
    expect(f[1].message).toContain("binlog_format=ROW");
    expect(f[2].message).toContain("binlog_row_image is MINIMAL, required FULL");
    expect(f[2].message).toContain("SET GLOBAL binlog_row_image='FULL'");
    expect(f[3].message).toContain("binlog_row_metadata is MINIMAL, required FULL");
    expect(f[3].message).toContain("SET GLOBAL binlog_row_metadata='FULL'");
  });

  it("reports unset format and image as 'unset'", () => {
    const f = checkBinlogSettings("source", {}, "mysql");
    expect(only(f)).toEqual(["binlog-format", "binlog-row-image"]);
    expect(f[0].message).toContain("binlog_format is unset, required ROW");
  });

  it("MySQL: binlog_transaction_compression=ON fails", () => {
    const f = checkBinlogSettings("source", { ...good, binlog_transaction_compression: "ON" }, "mysql");
    expect(only(f)).toEqual(["binlog-compression"]);
    expect(f[0].message).toContain("binlog_transaction_compression is ON, required OFF");
    expect(f[0].message).toContain("SET GLOBAL binlog_transaction_compression=OFF");
  });

  it("MySQL: binlog_row_value_options=PARTIAL_JSON fails", () => {
    const f = checkBinlogSettings("source", { ...good, binlog_row_value_options: "PARTIAL_JSON" }, "mysql");
    expect(only(f)).toEqual(["binlog-partial-json"]);
    expect(f[0].message).toContain("binlog_row_value_options is PARTIAL_JSON, required '' (empty)");
    expect(f[0].message).toContain("SET GLOBAL binlog_row_value_options=''");
  });

  it("MariaDB: log_bin_compress=ON fails; MySQL-only variables are ignored on MariaDB and vice versa", () => {
    const f = checkBinlogSettings("source", { ...good, log_bin_compress: "ON", binlog_transaction_compression: "ON" }, "mariadb");
    expect(only(f)).toEqual(["binlog-compression"]);
    expect(f[0].message).toContain("log_bin_compress is ON, required OFF");
    expect(f[0].message).toContain("SET GLOBAL log_bin_compress=OFF");
    expect(checkBinlogSettings("source", { ...good, log_bin_compress: "ON" }, "mysql")).toEqual([]);
  });
});

describe("checkPrimaryKeys (rule 4)", () => {
  it("passes when every table has a key", () => expect(checkPrimaryKeys("source", [])).toEqual([]));

  it("names one table and both fixes", () => {
    const f = checkPrimaryKeys("source", ["shop.log"]);
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({ rule: 4, code: "no-primary-key", where: "source" });
    expect(f[0].message).toContain("table shop.log has no primary key");
    expect(f[0].message).toContain("ADD PRIMARY KEY");
    expect(f[0].message).toContain("exclude it with tables.exclude");
  });

  it("names every table in one failure", () => {
    const f = checkPrimaryKeys("source", ["shop.a", "shop.b"]);
    expect(f).toHaveLength(1);
    expect(f[0].message).toContain("tables shop.a, shop.b have no primary key");
    expect(f[0].message).toContain("exclude them");
  });
});

describe("isAccountStatement (rule 5)", () => {
  it.each([
    "CREATE USER 'app'@'%' IDENTIFIED BY PASSWORD '*6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9'",
    "CREATE USER IF NOT EXISTS `app`@`%` IDENTIFIED WITH 'caching_sha2_password' AS '$A$005$x'",
    "CREATE OR REPLACE USER app@localhost",
    "create user app",
    "ALTER USER 'app'@'%' IDENTIFIED BY 'x'",
    "DROP USER 'app'@'%'",
    "DROP USER IF EXISTS app",
    "GRANT SELECT ON `shop`.* TO 'app'@'%'",
    "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION",
    "REVOKE INSERT ON shop.* FROM 'app'@'%'",
    "SET PASSWORD FOR 'app'@'%' = PASSWORD('x')",
    "SET PASSWORD = 'x'",
    "RENAME USER 'a'@'%' TO 'b'@'%'",
    "CREATE ROLE reporting",
    "CREATE OR REPLACE ROLE reporting",
    "DROP ROLE reporting",
    "SET DEFAULT ROLE reporting FOR app",
    "FLUSH PRIVILEGES",
    "  \n GRANT SELECT ON shop.* TO app",
    "/* comment */ GRANT SELECT ON shop.* TO app",
    "/* a */ /* b */ DROP USER app",
  ])("%s → account statement", (sql) => expect(isAccountStatement(sql)).toBe(true));

  it.each([
    "CREATE TABLE user_grants (id INT PRIMARY KEY)",
    "CREATE TABLE `user` (id INT PRIMARY KEY)",
    "CREATE TABLE users (id INT PRIMARY KEY)",
    "CREATE TABLE roles (id INT PRIMARY KEY)",
    "ALTER TABLE users ADD COLUMN password VARCHAR(100)",
    "DROP TABLE user",
    "RENAME TABLE user TO users_old",
    "INSERT INTO grants VALUES (1)",
    "UPDATE users SET password = 'x'",
    "CREATE VIEW grant_view AS SELECT 1",
    "CREATE PROCEDURE grant_all() BEGIN END",
    "SET @password = 'x'",
    "GRANTS",
    "CREATE USERS",
    "FLUSH TABLES",
    "",
  ])("%s → not an account statement", (sql) => expect(isAccountStatement(sql)).toBe(false));
});

describe("checkDatabases", () => {
  it("passes user schemas", () => expect(checkDatabases(["shop", "Shop2", "my-db", "ünïcode"])).toEqual([]));

  it.each([...SYSTEM_SCHEMAS, "MYSQL", "Information_Schema", "_datasync"])("refuses %s with its index and the fix", (d) => {
    const f = checkDatabases(["shop", d]);
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({ code: "system-schema", where: "databases[1]" });
    expect(f[0].message).toBe(`databases[1]: "${d}" is a system schema; accounts, privileges and server metadata are never synced. Remove it from databases.`);
  });

  it.each(["a.b", "a/b", "a\\b", "trailing space ", "x".repeat(65), ""])("refuses the invalid name %j", (d) => {
    expect(checkDatabases([d]).map((x) => x.code)).toEqual(["bad-database"]);
  });

  it("accepts a 64-character name", () => expect(checkDatabases(["x".repeat(64)])).toEqual([]));

  it("refuses a database listed twice, at the second index; ignores non-strings (preview unknowns)", () => {
    const f = checkDatabases(["shop", 42, "shop"], "args.databases");
    expect(f).toEqual([expect.objectContaining({ code: "duplicate-database", where: "args.databases[2]" })]);
    expect(f[0].message).toContain('"shop" is listed twice');
  });
});

describe("checkSourcePrivileges (rule 6)", () => {
  it("passes MySQL grants", () => {
    expect(checkSourcePrivileges("source", ["GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `datasync`@`%`"], "mysql")).toEqual([]);
  });

  it("passes MariaDB grants with BINLOG MONITOR and SELECT on the schema only", () => {
    expect(
      checkSourcePrivileges("source", ["GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `datasync`@`%` IDENTIFIED BY PASSWORD '*x'", "GRANT SELECT ON `shop`.* TO `datasync`@`%`"], "mariadb"),
    ).toEqual([]);
  });

  it("passes ALL PRIVILEGES ON *.*", () => {
    expect(checkSourcePrivileges("source", ["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION"], "mariadb")).toEqual([]);
  });

  it("does not accept replication privileges granted on a schema (they are global)", () => {
    const f = checkSourcePrivileges("source", ["GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON `shop`.* TO `u`@`%`"], "mysql");
    expect(f).toHaveLength(1);
    expect(f[0].message).toContain("lacks REPLICATION SLAVE, REPLICATION CLIENT");
  });

  it("names what is missing, what is required, and the GRANT that fixes it", () => {
    const f = checkSourcePrivileges("source (10.0.0.5)", ["GRANT USAGE ON *.* TO `datasync`@`%`"], "mariadb");
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({ rule: 6, code: "source-privileges", where: "source (10.0.0.5)" });
    expect(f[0].message).toBe(
      "source (10.0.0.5): the sync user lacks REPLICATION SLAVE, BINLOG MONITOR, SELECT; required REPLICATION SLAVE, BINLOG MONITOR, SELECT. Fix: GRANT REPLICATION SLAVE, BINLOG MONITOR, SELECT ON *.* TO <user>.",
    );
  });

  it("suggests a schema-level GRANT when only SELECT is missing", () => {
    const f = checkSourcePrivileges("source", ["GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `u`@`%`"], "mysql");
    expect(f[0].message).toContain("lacks SELECT; required REPLICATION SLAVE, REPLICATION CLIENT, SELECT. Fix: GRANT SELECT ON <db>.* TO <user>.");
  });
});

describe("globToRegExp and makeTableFilter", () => {
  it("* and ? are the only wildcards; regex characters are literal", () => {
    expect(globToRegExp("shop.*").test("shop.orders")).toBe(true);
    expect(globToRegExp("shop.*").test("shopXorders")).toBe(false);
    expect(globToRegExp("shop.t?").test("shop.t1")).toBe(true);
    expect(globToRegExp("shop.t?").test("shop.t12")).toBe(false);
    expect(globToRegExp("shop.a+b").test("shop.a+b")).toBe(true);
    expect(globToRegExp("shop.a+b").test("shop.aab")).toBe(false);
    expect(globToRegExp("shop.$x(1)").test("shop.$x(1)")).toBe(true);
    expect(globToRegExp("shop.[ab]").test("shop.a")).toBe(false);
    expect(globToRegExp("shop.[ab]").test("shop.[ab]")).toBe(true);
  });

  it("only listed databases are in scope", () => {
    const f = makeTableFilter({ databases: ["shop"] });
    expect(f("shop", "orders")).toBe(true);
    expect(f("other", "orders")).toBe(false);
    expect(f("Shop", "orders")).toBe(false);
  });

  it("include restricts, exclude removes, exclude wins", () => {
    const f = makeTableFilter({ databases: ["shop", "crm"], include: ["shop.*", "crm.contacts"], exclude: ["shop.audit_*", "crm.*"] });
    expect(f("shop", "orders")).toBe(true);
    expect(f("shop", "audit_2024")).toBe(false);
    expect(f("shop", "audit")).toBe(true);
    expect(f("crm", "contacts")).toBe(false);
    expect(f("crm", "leads")).toBe(false);
  });

  it("include without a match leaves the table out", () => {
    const f = makeTableFilter({ databases: ["shop"], include: ["shop.orders", "shop.order_?"] });
    expect(f("shop", "orders")).toBe(true);
    expect(f("shop", "order_1")).toBe(true);
    expect(f("shop", "order_10")).toBe(false);
    expect(f("shop", "customers")).toBe(false);
  });

  it("globs are case-sensitive and match the whole db.table", () => {
    const f = makeTableFilter({ databases: ["shop"], exclude: ["shop.Tmp*"] });
    expect(f("shop", "Tmp1")).toBe(false);
    expect(f("shop", "tmp1")).toBe(true);
    expect(f("shop", "xTmp1")).toBe(true);
  });

  it("an empty include list means everything in the databases", () => {
    expect(makeTableFilter({ databases: ["shop"], include: [] })("shop", "x")).toBe(true);
  });

  it("names with spaces, dots and unicode match literally", () => {
    const f = makeTableFilter({ databases: ["my shop"], exclude: ["my shop.ordér items"] });
    expect(f("my shop", "ordér items")).toBe(false);
    expect(f("my shop", "ordér_items")).toBe(true);
  });
});
