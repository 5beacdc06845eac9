// The reader thread (apply.readerThread, agent/source/reader-thread.ts) against the reader it moves off the main
// thread, on a real source of each flavor: the same binlog range is read by a BinlogReader on this thread and by a
// ReaderThread, with the same consumer (it says "full" every few transactions and resumes a moment later, and
// answers canStream by a fixed sequence), and what each hands over must be the same transactions in the same
// order, value for value: text in latin1 and in sjis (a Buffer tagged with its charset), bytes, the ENUM error
// value (a Symbol), BIGINT beyond 2^53, DECIMAL, -0, JSON, spatial, temporals, before images, a DDL's raw bytes,
// savepoints, an XA transaction prepared and committed around another, and a large transaction handed over in
// pieces. After the last transaction both must hold the same open XA transaction (xaParked) and stand at the
// same position (lastRead). Then the agent itself runs with the reader thread and a replica ends identical.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectionOptions } from "../../dist/agent/db.js";
import { makeTableFilter } from "../../dist/agent/rules.js";
import { BinlogReader, type BinlogStream, type ReaderOptions, type Txn } from "../../dist/agent/source/reader.js";
import { ReaderThread } from "../../dist/agent/source/reader-thread.js";
import { ENUM_ERROR } from "../../dist/agent/source/rowdecode.js";
import { comparePos, type Position } from "../../dist/agent/source/positions.js";
import { defaultFlavor, startServers, type TestServer } from "../support/servers.js";
import { AgentProcess, binlogStatus, checksums, endpoint, makeConfig, waitCaughtUp, writeConfig } from "../support/agent.js";

const flavor = defaultFlavor();
let src: TestServer;
let rep: TestServer;
let start: Position;
let end: Position;

async function at(): Promise<Position> {
  const s = await binlogStatus(src);
  return { file: s.File, pos: Number(s.Position), gtid: null };
}

beforeAll(async () => {
  [src, rep] = await startServers([{ name: "rt-src" }, { name: "rt-r1", noBinlog: true }]);
  await src.query("CREATE DATABASE shop");
  const json = flavor === "mysql" ? "JSON" : "LONGTEXT";
  await src.query(
    `CREATE TABLE shop.zoo (id INT PRIMARY KEY, l VARCHAR(20) CHARACTER SET latin1, sj VARCHAR(20) CHARACTER SET sjis, b VARBINARY(20),
      e ENUM('a','b'), st SET('x','y'), big BIGINT UNSIGNED, d DECIMAL(30,10), f DOUBLE, j ${json}, g GEOMETRY, dt DATETIME(6), bl BLOB)`,
  );
  await src.query("CREATE TABLE shop.big (id INT PRIMARY KEY, v VARCHAR(1000) NOT NULL)");
  start = await at();
  const c = await src.connect();
  try {
    await c.query("SET NAMES utf8mb4");
    await c.query("SET SESSION sql_mode = ''");
    await c.query(
      `INSERT INTO shop.zoo VALUES (1, 'café €', _sjis X'82A082A2', X'00FF10', 'zzz', 'x,y', 18446744073709551615, -12345678901234567890.0123456789, -0e0, '{"a": [1, 2]}', ST_GeomFromText('POINT(1 2)'), '2026-12-03 10:11:12.123456', X'DEADBEEF')`,
    );
    await c.query("INSERT INTO shop.zoo (id, l, e) VALUES (2, NULL, 'a'), (3, 'ÿ', '')");
    await c.query("UPDATE shop.zoo SET l = 'naïve', e = 'zzz', big = 9007199254740993 WHERE id IN (1, 2)");
    await c.query("DELETE FROM shop.zoo WHERE id = 3");
    await c.query("ALTER TABLE shop.zoo ADD COLUMN extra INT NULL");
    await c.query("BEGIN");
    await c.query("INSERT INTO shop.zoo (id, extra) VALUES (10, 1)");
    await c.query("SAVEPOINT s1");
    await c.query("INSERT INTO shop.zoo (id, extra) VALUES (11, 2)");
    await c.query("ROLLBACK TO SAVEPOINT s1");
    await c.query("INSERT INTO shop.zoo (id, extra) VALUES (12, 3)");
    await c.query("COMMIT");
    // a large transaction: 30 rows events of 10 rows of ~1 KB, past the readers' 64 KiB streamBytes
    await c.query("BEGIN");
    for (let i = 0; i < 30; i++) {
      // a savepoint open across the pieces: its marker goes into the piece where it was set
      if (i === 3) await c.query("SAVEPOINT s2");
      const vals = Array.from({ length: 10 }, (_, j) => `(${i * 10 + j}, '${String(i * 10 + j).padEnd(1000, "v")}')`);
      await c.query(`INSERT INTO shop.big VALUES ${vals.join(", ")}`);
    }
    await c.query("COMMIT");
  } finally {
    await c.end();
  }
  // XA: x1 prepared, another transaction commits, x1 commits; x2 prepared and left open past the end
  const x = await src.connect();
  try {
    await x.query("XA START 'x1'");
    await x.query("INSERT INTO shop.zoo (id, extra) VALUES (20, 20)");
    await x.query("XA END 'x1'");
    await x.query("XA PREPARE 'x1'");
    await src.query("INSERT INTO shop.zoo (id, extra) VALUES (21, 21)");
    await x.query("XA COMMIT 'x1'");
    await x.query("XA START 'x2'");
    await x.query("INSERT INTO shop.zoo (id, extra) VALUES (22, 22)");
    await x.query("XA END 'x2'");
    await x.query("XA PREPARE 'x2'");
  } finally {
    await x.end();
  }
  await src.query("INSERT INTO shop.zoo (id, extra) VALUES (23, 23)");
  end = await at();
}, 180_000);

afterAll(async () => {
  await Promise.all([src, rep].map((s) => s?.destroy()));
});

/** a value as compared: Buffers by bytes, kind and charset; the ENUM error symbol by identity */
function norm(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return { buffer: v.toString("hex"), charset: (v as any).charset ?? null };
  if (v instanceof Uint8Array) return { uint8array: Buffer.from(v).toString("hex") };
  if (typeof v === "symbol") return { symbol: v === ENUM_ERROR ? "ENUM_ERROR" : String(v) };
  if (typeof v === "bigint") return { bigint: String(v) };
  if (typeof v === "number" && Object.is(v, -0)) return { number: "-0" };
  if (v instanceof Map) return { map: [...v].map(([k, x]) => [k, norm(x)]) };
  if (Array.isArray(v)) return v.map(norm);
  if (v && typeof v === "object") {
    const o: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) if (k !== "readAt") o[k] = norm((v as any)[k]);
    return o;
  }
  return v;
}

interface Read {
  txns: Txn[];
  xaParked: unknown;
  lastRead: Position;
  pauses: number;
  asks: number;
}

async function readAll(make: (o: ReaderOptions) => BinlogStream, serverId: number): Promise<Read> {
  const txns: Txn[] = [];
  let pauses = 0;
  let asks = 0;
  let fail: Error | null = null;
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  const stream: BinlogStream = make({
    connection: connectionOptions(endpoint(src) as any, "source") as any,
    serverId,
    flavor,
    start,
    databases: ["shop"],
    inScope: makeTableFilter({ databases: ["shop"] }),
    streamBytes: 64 << 10,
    // no pieces at the first question of every three (as a snapshot in progress would answer)
    canStream: () => ++asks % 3 !== 1,
    onTxn: (t) => {
      txns.push(t);
      if (comparePos(t.pos, end) >= 0 && t.stream !== "part") finish();
      // full every 3rd transaction; the consumer takes again 5 ms later
      if (txns.length % 3 === 0) {
        pauses++;
        setTimeout(() => stream.resume(), 5);
        return false;
      }
      return true;
    },
    onError: (e) => {
      fail = e;
      finish();
    },
  });
  await stream.start();
  await done;
  const out: Read = { txns, xaParked: norm(stream.xaParked), lastRead: stream.lastRead, pauses, asks };
  await stream.stop();
  if (fail) throw fail;
  return out;
}

describe(`reader thread (${flavor})`, () => {
  it("hands over what the reader on the main thread hands over: the same transactions, values, pieces, XA state and position", async () => {
    const here = await readAll((o) => new BinlogReader(o), 7101);
    const there = await readAll((o) => new ReaderThread(o, { source: endpoint(src) as any, scope: { databases: ["shop"] } }), 7102);
    // the range holds every kind of thing the comparison is meant to cover
    const all = here.txns.flatMap((t) => t.changes.flatMap((c) => [...c.rows, ...(c.before ?? [])]));
    const values = all.flatMap((r) => Object.values(r));
    expect(values.filter((v) => v === ENUM_ERROR).length).toBeGreaterThanOrEqual(2);
    expect(values.some((v) => Buffer.isBuffer(v) && (v as any).charset === "sjis")).toBe(true);
    expect(values.some((v) => typeof v === "bigint" || (typeof v === "string" && v === "18446744073709551615"))).toBe(true);
    expect(here.txns.some((t) => t.ddl && Buffer.isBuffer(t.ddl.raw))).toBe(true);
    expect(here.txns.some((t) => t.stream === "part")).toBe(true);
    expect(here.txns.some((t) => t.changes.some((c) => c.op === "savepoint"))).toBe(true);
    // x2 open; x1 committed (kept a while for a reader that starts before its commit)
    expect((here.xaParked as any).map.filter(([, p]: [string, any]) => p.committedAt === undefined).length).toBe(1);
    expect(here.pauses).toBeGreaterThanOrEqual(4);
    expect(here.asks).toBeGreaterThan(1);

    expect(there.txns.length).toBe(here.txns.length);
    expect(norm(there.txns)).toEqual(norm(here.txns));
    expect(there.xaParked).toEqual(here.xaParked);
    expect(there.lastRead).toEqual(here.lastRead);
    expect(there.asks).toBe(here.asks);
    // the thread's Buffers are Buffers again, with their charset; its ENUM error is the very symbol
    const tv = there.txns.flatMap((t) => t.changes.flatMap((c) => [...c.rows, ...(c.before ?? [])])).flatMap((r) => Object.values(r));
    expect(tv.some((v) => v instanceof Uint8Array && !Buffer.isBuffer(v))).toBe(false);
    expect(tv.filter((v) => v === ENUM_ERROR).length).toBe(values.filter((v) => v === ENUM_ERROR).length);
  }, 120_000);

  it("a reader thread that cannot connect fails its start with the driver's error, as the reader does", async () => {
    const bad = { ...endpoint(src), password: "wrong" } as any;
    const o = (): ReaderOptions => ({
      connection: connectionOptions(bad, "source") as any,
      serverId: 7103,
      flavor,
      start,
      databases: ["shop"],
      inScope: () => true,
      onTxn: () => true,
      onError: () => undefined,
    });
    const here = await new BinlogReader(o()).start().then(() => null, (e) => e);
    const r = new ReaderThread(o(), { source: bad, scope: { databases: ["shop"] } });
    const there = await r.start().then(() => null, (e) => e);
    await r.stop();
    expect(here).toBeInstanceOf(Error);
    expect(there).toBeInstanceOf(Error);
    expect(there.message).toBe(here.message);
    expect(there.errno).toBe(here.errno);
  }, 60_000);

  it("the agent with apply.readerThread keeps a replica identical to its source", async () => {
    await src.query("XA COMMIT 'x2'");
    const agent = new AgentProcess(writeConfig(makeConfig(src, [rep], { apply: { readerThread: true } }), "rt.json"));
    try {
      await agent.waitStreaming(["r1"], 120_000);
      const c = await src.connect();
      try {
        await c.query("SET SESSION sql_mode = ''");
        await c.query("INSERT INTO shop.zoo (id, l, sj, e) VALUES (30, 'é', _sjis X'82A0', 'nope')");
      } finally {
        await c.end();
      }
      await src.query("UPDATE shop.big SET v = CONCAT('w', LEFT(v, 999)) WHERE id < 50");
      await waitCaughtUp(src, rep);
      expect(await checksums(rep, ["shop.zoo", "shop.big"])).toEqual(await checksums(src, ["shop.zoo", "shop.big"]));
      expect(await agent.waitForLog((l) => l.readerThread === true, 1000)).toBeTruthy();
    } finally {
      await agent.kill("SIGTERM");
    }
  }, 240_000);
});
