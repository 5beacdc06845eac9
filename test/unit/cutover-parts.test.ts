// Pure parts of the cutover and of positions across servers: GTID set containment, the legacy source_id,
// privilege reading from SHOW GRANTS, the reverse config.
import { describe, expect, it } from "vitest";
import { mysqlGtidMissing, mysqlGtidSubset, parseMariadbGtidPos, parseMysqlGtidSet } from "../../agent/source/positions.js";
import { sameSourceId } from "../../agent/source/provenance.js";
import { holds, holdsOn, needs } from "../../agent/ops/fence.js";
import { reverseConfigOf } from "../../agent/ops/cutover.js";
import { validateConfig } from "../../agent/config.js";

const U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const U2 = "4f22ab58-82db-22f2-af44-d91bb0530673";

describe("MySQL GTID sets", () => {
  it("a subset holds when every interval is covered, across merged ranges", () => {
    const have = parseMysqlGtidSet(`${U1}:1-10:12-20,\n${U2}:1-5`);
    expect(mysqlGtidSubset(parseMysqlGtidSet(`${U1}:1-10`), have)).toBe(true);
    expect(mysqlGtidSubset(parseMysqlGtidSet(`${U1}:3-7:15`), have)).toBe(true);
    expect(mysqlGtidSubset(parseMysqlGtidSet(`${U1}:1-11`), have)).toBe(false);
    expect(mysqlGtidSubset(parseMysqlGtidSet(`${U2}:6`), have)).toBe(false);
    expect(mysqlGtidMissing(parseMysqlGtidSet(`${U1}:1-11,${U2}:2`), have)).toBe(`${U1}:1-11`);
    // adjacent intervals merge: 1-10 and 11-20 cover 5-15
    expect(mysqlGtidSubset(parseMysqlGtidSet(`${U1}:5-15`), parseMysqlGtidSet(`${U1}:1-10:11-20`))).toBe(true);
    expect(mysqlGtidSubset(parseMysqlGtidSet(""), have)).toBe(true);
  });
  it("MariaDB positions parse per domain", () => {
    expect(parseMariadbGtidPos("0-1-42, 1-7-3")).toEqual([{ domain: 0, server: 1, seq: 42 }, { domain: 1, server: 7, seq: 3 }]);
  });
});

describe("source_id", () => {
  it("accepts the legacy format when it names the same server, and nothing else", () => {
    expect(sameSourceId(`mysql:${U1}`, `mysql:${U1}`)).toBe(true);
    expect(sameSourceId(`mysql:${U1}@db1`, `mysql:${U1}`)).toBe(true);
    expect(sameSourceId(`mysql:${U2}@db1`, `mysql:${U1}`)).toBe(false);
    expect(sameSourceId("mariadb:1@db1", "mariadb:1@db1:3306/var/lib/mysql/")).toBe(true);
    expect(sameSourceId("mariadb:1@db2", "mariadb:1@db1:3306/var/lib/mysql/")).toBe(false);
    expect(sameSourceId("mariadb:2@db1", "mariadb:1@db1:3306/var/lib/mysql/")).toBe(false);
    expect(sameSourceId("mariadb:1@db1:3307/data/", "mariadb:1@db1:3306/data/")).toBe(false);
    expect(sameSourceId("", "mariadb:1@db1:3306/data/")).toBe(true);
  });
});

describe("privileges from SHOW GRANTS", () => {
  it("ALL PRIVILEGES covers every need; a restricted account lacks the fence's", () => {
    const root = ["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION"];
    const limited = ["GRANT SELECT, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `limited`@`%`"];
    for (const n of Object.values(needs("mariadb"))) expect(holds(root, n)).toBe(true);
    expect(holds(limited, needs("mariadb").setReadOnly)).toBe(false);
    expect(holds(["GRANT READ_ONLY ADMIN, CONNECTION ADMIN ON *.* TO `x`@`%`"], needs("mariadb").setReadOnly)).toBe(true);
    expect(holds(["GRANT SELECT ON *.* TO `x`@`%`", "GRANT CONNECTION_ADMIN,SYSTEM_VARIABLES_ADMIN ON *.* TO `x`@`%`"], needs("mysql").kill)).toBe(true);
    expect(holds(["GRANT SUPER ON *.* TO `x`@`%`"], needs("mysql").setReadOnly)).toBe(true);
    expect(holdsOn(["GRANT TRIGGER, EVENT ON `shop`.* TO `x`@`%`"], "TRIGGER", "shop")).toBe(true);
    expect(holdsOn(["GRANT TRIGGER ON `other`.* TO `x`@`%`"], "TRIGGER", "shop")).toBe(false);
  });
});

describe("reverse config", () => {
  it("makes NAME the source and the old source a replica named source, in the ordinary schema", () => {
    const cfg = validateConfig({
      group: "orders",
      source: { host: "10.0.0.5", user: "sync", passwordEnv: "SRC_PW", serverId: 77 },
      replicas: [
        { name: "westeurope", host: "10.0.0.6", user: "sync", passwordFile: "/run/pw" },
        { name: "north", host: "10.0.0.7", user: "sync", password: "p" },
      ],
      databases: ["shop"],
    });
    const rev = reverseConfigOf(cfg, "westeurope", "orders-rev") as any;
    expect(rev.group).toBe("orders-rev");
    expect(rev.source).toEqual({ host: "10.0.0.6", port: 3306, user: "sync", passwordFile: "/run/pw" });
    expect(rev.replicas).toEqual([
      { name: "source", host: "10.0.0.5", port: 3306, user: "sync", passwordEnv: "SRC_PW" },
      { name: "north", host: "10.0.0.7", port: 3306, user: "sync", password: "p" },
    ]);
    expect(() => validateConfig(rev)).not.toThrow();
  });
});
