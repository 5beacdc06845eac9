// Unit tests for agent/source/binlog-raw.ts: query event status variables as MySQL and MariaDB write them, and
// statements decoded in the source client's character set.
import { describe, expect, it } from "vitest";
import { decodeStatement, parseStatusVars } from "../../agent/source/binlog-raw.js";
import { ddlContext, lexModeOf } from "../../agent/apply/ddl-session.js";

function vars(...parts: (number | number[] | Buffer)[]): Buffer {
  return Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(Array.isArray(p) ? p : [p]))));
}
const u16 = (n: number) => [n & 255, n >> 8];
const u32 = (n: number) => [n & 255, (n >> 8) & 255, (n >> 16) & 255, n >>> 24];

describe("parseStatusVars", () => {
  it("reads flags2, sql_mode, catalog, charsets, time zone and microseconds (MariaDB)", () => {
    const b = vars(
      0, u32(0x05008000),
      1, [0x0c, 0x00, 0x30, 0x54, 0, 0, 0, 0],
      6, 3, Buffer.from("std"),
      4, [...u16(8), ...u16(8), ...u16(45)],
      5, 6, Buffer.from("+09:30"),
      128, [0x40, 0xe2, 0x01],
    );
    expect(parseStatusVars(b, "mariadb")).toEqual({
      flags2: 0x05008000,
      sqlMode: String(0x5430000c),
      charset: { client: 8, connection: 8, server: 45 },
      timeZone: "+09:30",
      micros: 123456,
    });
  });

  it("walks MySQL's own codes (updated db names, default collation for utf8mb4) and stops at an unknown one", () => {
    const b = vars(12, 2, Buffer.from("shop\0fresh\0"), 13, [1, 0, 0], 18, u16(255), 16, 1, 99, 1, 2, 3);
    expect(parseStatusVars(b, "mysql")).toEqual({ micros: 1, defaultCollationForUtf8mb4: 255, explicitDefaultsForTimestamp: 1 });
  });
});

describe("decodeStatement", () => {
  it("latin1 is MySQL's cp1252: é, €, and the five undefined bytes as C1 controls", () => {
    expect(decodeStatement(Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x80, 0x81, 0x9d]), "latin1")).toBe("café€\u0081\u009d");
  });
  it("utf8mb4 that is not valid UTF-8 is refused, a charset it cannot decode too", () => {
    expect(decodeStatement(Buffer.from([0x63, 0xe9]), "utf8mb4")).toBeNull();
    expect(decodeStatement(Buffer.from("x"), "swe7")).toBeNull();
  });
});

describe("ddlContext", () => {
  it("the statement's SET TIMESTAMP has its microseconds; the lexing mode comes from sql_mode", () => {
    const c = ddlContext({ sqlMode: String(0x4 | 0x100000), micros: 5 }, 1_700_000_000_000);
    expect(c.timestamp).toBe("1700000000.000005");
    expect(lexModeOf(c)).toEqual({ ansiQuotes: true, noBackslashEscapes: true });
  });
});
