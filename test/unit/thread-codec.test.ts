// thread-codec.ts: a transaction through JSON text (the reader thread's transport) comes back value for value, every
// kind JSON cannot keep included; the transaction sent is not changed; a value of an unknown kind is refused.
import { describe, expect, it } from "vitest";
import { packParked, packTxn, unpackParked, unpackTxn } from "../../agent/source/thread-codec.js";
import { ENUM_ERROR } from "../../agent/source/rowdecode.js";
import type { Txn } from "../../agent/source/reader.js";

function sjis(): Buffer {
  const b: any = Buffer.from([0x82, 0xa0]);
  b.charset = "sjis";
  return b;
}

function sample(): Txn {
  return {
    pos: { file: "bin.000007", pos: 4711, gtid: "0-1-99" },
    ts: 1764756000000,
    readAt: 1764756000123,
    rowCount: 3,
    bytes: 900,
    changes: [
      {
        op: "update",
        db: "shop",
        table: "zoo",
        rows: [{ id: 1, b: Buffer.from([0, 255, 16]), sj: sjis(), e: ENUM_ERROR, st: 9007199254740993n, f: -0, g: NaN, h: Infinity, i: -Infinity, d: new Date(1764756000456), u: undefined, j: { a: [1, "x", null] }, s: "naïve €", n: null }],
        before: [{ id: 1, e: "a", st: 1n }],
        flags: 2,
      },
      { op: "insert", db: "shop", table: "t", rows: [{ id: 2, v: "plain" }] },
    ],
    ddl: { sql: "ALTER TABLE t ADD c INT", schema: "shop", session: { sqlMode: "1411383296", charset: { client: 45, connection: 45, server: 8 } }, raw: Buffer.from("ALTER TABLE t ADD c INT") },
  };
}

function viaJson<T>(v: T): T {
  return JSON.parse(JSON.stringify(v));
}

describe("thread-codec", () => {
  it("a transaction through JSON comes back value for value (Buffers with their charset, the ENUM error, BigInt, -0, NaN, ±Infinity, Date, undefined)", () => {
    const t = sample();
    const back = unpackTxn(viaJson(packTxn(t)));
    const row = back.changes[0].rows[0];
    expect(Buffer.isBuffer(row.b)).toBe(true);
    expect((row.b as Buffer).equals(Buffer.from([0, 255, 16]))).toBe(true);
    expect(Buffer.isBuffer(row.sj)).toBe(true);
    expect((row.sj as any).charset).toBe("sjis");
    expect((row.b as any).charset).toBeUndefined();
    expect(row.e).toBe(ENUM_ERROR);
    expect(row.st).toBe(9007199254740993n);
    expect(Object.is(row.f, -0)).toBe(true);
    expect(Number.isNaN(row.g)).toBe(true);
    expect(row.h).toBe(Infinity);
    expect(row.i).toBe(-Infinity);
    expect(row.d).toEqual(new Date(1764756000456));
    expect("u" in row).toBe(true);
    expect(row.u).toBeUndefined();
    expect(Object.keys(row)).toEqual(Object.keys(t.changes[0].rows[0]));
    expect(back.changes[0].before![0].st).toBe(1n);
    expect(Buffer.isBuffer(back.ddl!.raw)).toBe(true);
    expect(back.ddl!.raw!.toString()).toBe("ALTER TABLE t ADD c INT");
    // the rest as it was
    expect(back).toEqual(sample());
  });

  it("leaves the transaction it sends unchanged, and sends a transaction without such values as it is", () => {
    const t = sample();
    const p = packTxn(t);
    expect(t).toEqual(sample());
    expect(t.changes[0].rows[0].e).toBe(ENUM_ERROR);
    expect(Buffer.isBuffer(t.ddl!.raw)).toBe(true);
    // the change without special values is the same object; the other a copy
    expect(p.t.changes[1]).toBe(t.changes[1]);
    expect(p.t.changes[0]).not.toBe(t.changes[0]);
    const plain: Txn = { pos: { file: "b.1", pos: 4 }, ts: 1, readAt: 2, rowCount: 1, bytes: 10, changes: [{ op: "insert", db: "s", table: "t", rows: [{ id: 1 }] }] };
    const pp = packTxn(plain);
    expect(pp.t).toBe(plain);
    expect(pp.f).toBeUndefined();
  });

  it("refuses a value of a kind it cannot put back, naming the column and the setting", () => {
    class Point {
      x = 1;
    }
    const withClass: Txn = { pos: { file: "b.1", pos: 4 }, ts: 1, readAt: 2, rowCount: 1, bytes: 10, changes: [{ op: "insert", db: "s", table: "t", rows: [{ id: 1, g: new Point() }] }] };
    expect(() => packTxn(withClass)).toThrow(/value of g \(an instance of Point\).*apply\.readerThread: false/);
    const withSymbol: Txn = { ...withClass, changes: [{ op: "insert", db: "s", table: "t", rows: [{ id: 1, s: Symbol("x") }] }] };
    expect(() => packTxn(withSymbol)).toThrow(/value of s \(symbol Symbol\(x\)\)/);
    const nested: Txn = { ...withClass, changes: [{ op: "insert", db: "s", table: "t", rows: [{ id: 1, j: { big: 1n } }] }] };
    expect(() => packTxn(nested)).toThrow(/value of j/);
  });

  it("parked XA transactions come back with their rows exact", () => {
    const m = new Map([["X'01',X'',1", { txn: sample(), gtid: "3e11fa47-71ca-11e1-9e33-c80aa9429562:5", since: { file: "bin.000007", pos: 100 } }]]);
    const back = unpackParked(viaJson(packParked(m)));
    expect([...back.keys()]).toEqual([...m.keys()]);
    const p = back.get("X'01',X'',1")!;
    expect(p.txn.changes[0].rows[0].e).toBe(ENUM_ERROR);
    expect(p.gtid).toBe("3e11fa47-71ca-11e1-9e33-c80aa9429562:5");
    expect(p.txn).toEqual(sample());
  });
});

describe("threadedReaders", () => {
  it("makes one reader thread at a time: the next is a reader on the main thread until the thread stops", async () => {
    const { threadedReaders, ReaderThread } = await import("../../agent/source/reader-thread.js");
    const { BinlogReader } = await import("../../agent/source/reader.js");
    const o: any = { connection: {}, serverId: 1, flavor: "mariadb", start: { file: "b.1", pos: 4 }, databases: ["s"], inScope: () => true, onTxn: () => true, onError: () => undefined };
    const make = threadedReaders(1, { source: { host: "127.0.0.1", port: 1, user: "u", password: "p" } as any, scope: { databases: ["s"] } });
    const a = make(o);
    const b = make(o);
    expect(a).toBeInstanceOf(ReaderThread);
    expect(b).toBeInstanceOf(BinlogReader);
    await a.stop();
    await a.stop();
    const c = make(o);
    expect(c).toBeInstanceOf(ReaderThread);
    expect(make(o)).toBeInstanceOf(BinlogReader);
    await c.stop();
  });
});
