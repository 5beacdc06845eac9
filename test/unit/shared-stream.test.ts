// Unit tests for agent/source/shared-stream.ts (decode once): replicas at the same position share one reader,
// each gets its own copy of every transaction in order; a full replica never stalls the others, leaves with
// bounded memory for a reader of its own and rejoins when it reaches the shared position; errors reach
// every subscriber; the last stop ends the reader. The reader is a fake (the OpenStream port).
import { describe, expect, it } from "vitest";
import { StreamHub } from "../../agent/source/shared-stream.js";
import type { BinlogStream, ReaderOptions, Txn, XaParked } from "../../agent/source/reader.js";
import type { Position } from "../../agent/source/positions.js";

/** while set, a new fake reader's start waits for it (a reader still connecting); a rejection fails the start */
let startGate: Promise<void> | null = null;

class FakeReader implements BinlogStream {
  paused = false;
  lastRead: Position;
  lastEventAt = Date.now();
  xaParked: ReadonlyMap<string, XaParked> = new Map();
  stopped = false;
  started = false;
  constructor(readonly o: ReaderOptions) {
    this.lastRead = o.start;
  }
  async start(): Promise<void> {
    this.started = true;
    if (startGate) await startGate;
  }
  async stop(): Promise<void> {
    this.stopped = true;
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  /** what BinlogReader does with a transaction it read */
  emit(t: Txn): void {
    if (this.stopped) return;
    this.lastRead = t.pos;
    if (!this.o.onTxn(t)) this.pause();
  }
}

const at = (n: number): Position => ({ file: "binlog.000001", pos: 100 + n * 100, gtid: null });

function txn(n: number, extra: Partial<Txn> = {}): Txn {
  return {
    pos: at(n),
    ts: 1,
    readAt: 1,
    changes: [
      { op: "insert", db: "shop", table: "t", rows: [{ id: n }] },
      { op: "insert", db: "shop", table: "q", rows: [{ id: n }] },
    ],
    rowCount: 2,
    bytes: 1000,
    ...extra,
  };
}

interface Replica {
  got: Txn[];
  errors: Error[];
  /** onTxn's answer: false = the queue is full */
  room: () => boolean;
  stream: BinlogStream;
}

function setup(slackBytes = 5000, more: Partial<ConstructorParameters<typeof StreamHub>[0]> = {}) {
  const readers: FakeReader[] = [];
  const hub = new StreamHub({
    ...more,
    makeReader: (o) => {
      const r = new FakeReader(o);
      readers.push(r);
      return r;
    },
    scope: (db) => db === "shop",
    slackBytes,
  });
  const live = () => readers.filter((r) => !r.stopped);
  function replica(i: number, start: Position, o: Partial<ReaderOptions> = {}): Replica {
    const rep: Replica = { got: [], errors: [], room: () => true, stream: null as any };
    rep.stream = hub.open({
      connection: { host: "127.0.0.1", port: 3306, user: "u" },
      serverId: 4000 + i,
      flavor: "mariadb",
      start,
      databases: ["shop"],
      inScope: (db) => db === "shop",
      onTxn: (t) => {
        rep.got.push(t);
        return rep.room();
      },
      onError: (e) => rep.errors.push(e),
      streamBytes: 4096,
      tableInfo: async () => [{ COLUMN_NAME: "own" }],
      ...o,
    });
    return rep;
  }
  return { hub, readers, live, replica };
}

const posOf = (r: Replica) => r.got.map((t) => t.pos.pos);

/** setup() with two replicas on one shared reader from the start: a always takes, b while its room is on (setRoom) */
async function pair(slackBytes: number, more: Parameters<typeof setup>[1] = {}, room = false) {
  const s = setup(slackBytes, more);
  const a = s.replica(0, at(0));
  const b = s.replica(1, at(0));
  b.room = () => room;
  await a.stream.start();
  await b.stream.start();
  return { ...s, a, b, setRoom: (v: boolean) => void (room = v) };
}

describe("StreamHub", () => {
  it("replicas starting at the same position share one reader and each gets its own copy of every transaction, in order", async () => {
    const { readers, replica, hub } = setup();
    const a = replica(0, at(0));
    const b = replica(1, at(0));
    const c = replica(2, at(0));
    await Promise.all([a.stream.start(), b.stream.start(), c.stream.start()]);
    expect(readers).toHaveLength(1);
    for (let n = 1; n <= 3; n++) readers[0].emit(txn(n));
    for (const r of [a, b, c]) expect(posOf(r)).toEqual([200, 300, 400]);
    // copy on write: the applier reassigns a piece's changes; the other replicas keep theirs
    a.got[0].changes = [];
    expect(b.got[0].changes).toHaveLength(2);
    expect(c.got[0].changes).toHaveLength(2);
    expect(a.got[1]).not.toBe(b.got[1]);
    expect(hub.stats).toMatchObject({ readers: 1, live: 1, joins: 2 });
    // the shared reader decodes the group's scope and uses a server id of the group's replicas
    expect(readers[0].o.inScope("shop", "anything")).toBe(true);
    expect(readers[0].o.serverId).toBe(4000);
  });

  it("a replica's own scope (its quarantine) filters its copy only", async () => {
    const { readers, replica } = setup();
    const a = replica(0, at(0));
    const b = replica(1, at(0), { inScope: (db, t) => db === "shop" && t !== "q" });
    await a.stream.start();
    await b.stream.start();
    readers[0].emit(txn(1));
    expect(a.got[0].changes.map((c) => c.table)).toEqual(["t", "q"]);
    expect(b.got[0].changes.map((c) => c.table)).toEqual(["t"]);
    expect(b.got[0].rowCount).toBe(1);
  });

  it("replicas starting one after another share from the first event: a new reader waits for the agent's other replicas (bounded)", async () => {
    const { readers, replica } = setup(5000, { replicas: 3, gatherMs: 5_000 });
    const a = replica(0, at(0));
    const started = a.stream.start();
    await new Promise((r) => setTimeout(r, 20));
    expect(readers).toHaveLength(0); // not connected yet: b and c are still starting
    const b = replica(1, at(0));
    const bStarted = b.stream.start();
    expect(readers).toHaveLength(0);
    const c = replica(2, at(0));
    await Promise.all([started, bStarted, c.stream.start()]);
    expect(readers).toHaveLength(1);
    readers[0].emit(txn(1));
    for (const r of [a, b, c]) expect(posOf(r)).toEqual([200]);
  });

  it("the wait for the other replicas is bounded (one that never comes does not hold the reader back)", async () => {
    const { readers, replica } = setup(5000, { replicas: 3, gatherMs: 30 });
    const a = replica(0, at(0));
    const t0 = Date.now();
    await a.stream.start();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(25);
    expect(readers).toHaveLength(1);
  });

  it("replicas at different positions read on their own and merge when the one behind reaches the other's position", async () => {
    const { readers, live, replica, hub } = setup();
    const a = replica(0, at(2));
    const b = replica(1, at(0));
    await a.stream.start();
    await b.stream.start();
    expect(readers).toHaveLength(2);
    expect(readers[0].o.serverId).not.toBe(readers[1].o.serverId);
    const [ra, rb] = readers;
    ra.emit(txn(3));
    ra.emit(txn(4));
    rb.emit(txn(1));
    rb.emit(txn(2));
    expect(live()).toHaveLength(2);
    // b reaches 300, which a's reader handed over already: b joins it, handed what a's reader read since
    rb.emit(txn(3));
    expect(rb.stopped).toBe(true);
    expect(live()).toEqual([ra]);
    expect(posOf(b)).toEqual([200, 300, 400, 500]);
    ra.emit(txn(5));
    expect(posOf(a)).toEqual([400, 500, 600]);
    expect(posOf(b)).toEqual([200, 300, 400, 500, 600]);
    expect(hub.stats.joins).toBe(1);
  });

  it("a replica never moves to a reader still connecting (if that reader fails to start, nobody is left on a dead reader)", async () => {
    const { readers, hub, replica } = setup();
    const a = replica(0, at(0));
    await a.stream.start();
    let fail!: (e: Error) => void;
    startGate = new Promise<void>((_, reject) => (fail = reject));
    startGate.catch(() => undefined);
    try {
      // b's own reader starts at 200 and is still connecting when a's reader hands over the transaction ending at 200
      const b = replica(1, at(1));
      const bStarted = b.stream.start();
      bStarted.catch(() => undefined);
      await new Promise((r) => setImmediate(r));
      expect(readers).toHaveLength(2);
      readers[0].emit(txn(1));
      fail(new Error("connect ECONNREFUSED"));
      await expect(bStarted).rejects.toThrow("ECONNREFUSED");
      await new Promise((r) => setImmediate(r));
      // before the fix a had moved to b's reader and its own had stopped: when b's failed to start, a got
      // nothing more, no error, and its stream reported neither paused nor failed (silent forever)
      readers[0].emit(txn(2));
      expect(posOf(a)).toEqual([200, 300]);
      expect(a.errors).toEqual([]);
      expect(readers[0].stopped).toBe(false);
      expect(hub.stats.live).toBe(1);
    } finally {
      startGate = null;
    }
  });

  it("a full replica never stalls the others: it is held up to its slack, then leaves and reads on its own; it rejoins when it catches up", async () => {
    const { readers, live, hub, a, b, setRoom } = await pair(2500, {}, true);
    const shared = readers[0];
    shared.emit(txn(1));
    setRoom(false);
    shared.emit(txn(2)); // b takes it and is full now
    expect(b.stream.paused).toBe(true);
    for (let n = 3; n <= 10; n++) shared.emit(txn(n));
    // a got everything, the reader never paused for b
    expect(posOf(a)).toHaveLength(10);
    expect(shared.paused).toBe(false);
    // b took 2 transactions; it was held at most its slack (2 × 1000 bytes), then left
    expect(posOf(b)).toEqual([200, 300]);
    expect(hub.stats.detaches).toBe(1);
    expect(hub.stats.heldBytes).toBeLessThanOrEqual(2500 + 2500);
    expect(live()).toEqual([shared]);
    // its queue drains: its own reader starts after the last transaction it took
    setRoom(true);
    b.stream.resume();
    await new Promise((r) => setImmediate(r));
    expect(readers).toHaveLength(2);
    const own = readers[1];
    expect(own.o.start).toEqual(at(2));
    expect(own.o.serverId).toBe(4001);
    for (let n = 3; n <= 8; n++) own.emit(txn(n));
    expect(live()).toHaveLength(2);
    // 1000 is among the shared reader's recent transactions (its ring holds its slack): b rejoins there,
    // handed what the shared reader read since (1100)
    own.emit(txn(9));
    expect(own.stopped).toBe(true);
    expect(live()).toEqual([shared]);
    shared.emit(txn(11));
    expect(posOf(b)).toEqual([200, 300, 400, 500, 600, 700, 800, 900, 1000, 1100, 1200]);
    expect(posOf(a)).toEqual([200, 300, 400, 500, 600, 700, 800, 900, 1000, 1100, 1200]);
  });

  it("memory stays bounded whatever the backlog: a replica that never takes again holds at most its slack once it took nothing for stallMs, twice its slack before", async () => {
    for (const stalled of [false, true]) {
      let clock = 0;
      const { readers, hub, a, b } = await pair(10_000, { now: () => clock });
      let peak = 0;
      for (let n = 1; n <= 2000; n++) {
        readers[0].emit(txn(n));
        // stalled: b's last take (its first transaction) is long past by its second
        if (stalled && n === 1) clock += 1001;
        peak = Math.max(peak, hub.stats.heldBytes);
      }
      expect(posOf(a)).toHaveLength(2000);
      expect(posOf(b)).toEqual([200]);
      expect(hub.stats.detaches).toBe(1);
      // the ring (≤ slack) and b's overflow before it left: its slack once stalled, else twice it (+ one transaction)
      expect(peak).toBeLessThanOrEqual((stalled ? 2 : 3) * 10_000 + 1000);
      expect(peak).toBeGreaterThan((stalled ? 1 : 2) * 10_000);
      expect(hub.stats.heldBytes).toBeLessThanOrEqual(10_000);
      expect(readers).toHaveLength(1);
    }
  });

  it("a replica that keeps taking is held past its slack up to twice it (a lag of scheduling, not of speed, never makes it leave)", async () => {
    let clock = 0;
    const { readers, replica, hub, live, a, b, setRoom } = await pair(2000, { now: () => clock });
    // b takes transaction 1 and is full; 2-4 are held (3000 bytes: past its slack, within twice it)
    for (let n = 1; n <= 4; n++) readers[0].emit(txn(n));
    clock += 900;
    expect(hub.stats.detaches).toBe(0);
    expect(hub.stats.heldBytes).toBeGreaterThan(2000);
    // it drains what was held, in order, on the shared reader
    setRoom(true);
    b.stream.resume();
    expect(posOf(b)).toEqual([200, 300, 400, 500]);
    // full again: held past its slack while it took something within stallMs …
    setRoom(false);
    readers[0].emit(txn(5));
    for (let n = 6; n <= 8; n++) readers[0].emit(txn(n));
    expect(hub.stats.detaches).toBe(0);
    // … and once it took nothing for longer than stallMs, the next transaction makes it leave
    clock += 1001;
    readers[0].emit(txn(9));
    expect(hub.stats.detaches).toBe(1);
    expect(posOf(a)).toEqual([200, 300, 400, 500, 600, 700, 800, 900, 1000]);
    expect(posOf(b)).toEqual([200, 300, 400, 500, 600]);
    expect(live()).toHaveLength(1);
    // held past twice its slack, it leaves whatever its last take (it is slower than the others)
    const c = replica(2, at(9));
    let cRoom = true;
    c.room = () => cRoom;
    await c.stream.start();
    readers[0].emit(txn(10));
    cRoom = false;
    readers[0].emit(txn(11));
    for (let n = 12; n <= 15; n++) readers[0].emit(txn(n));
    expect(hub.stats.detaches).toBe(1);
    readers[0].emit(txn(16));
    expect(hub.stats.detaches).toBe(2);
    expect(posOf(c)).toEqual([1100, 1200]);
  });

  it("a replica held past its slack leaves once it took nothing for stallMs even when the stream goes quiet (nothing more is delivered to look on)", async () => {
    const { readers, hub, live, a, b, setRoom } = await pair(2000, { stallMs: 30 });
    // b takes 1 and is full; 2-4 are held (3000 bytes: past its slack, within twice it), then the source goes quiet
    for (let n = 1; n <= 4; n++) readers[0].emit(txn(n));
    expect(hub.stats.detaches).toBe(0);
    await new Promise((r) => setTimeout(r, 120));
    expect(hub.stats.detaches).toBe(1);
    expect(hub.stats.heldBytes).toBeLessThanOrEqual(2000);
    // what was held is dropped; once it can take, its own reader starts after the last transaction it took
    setRoom(true);
    b.stream.resume();
    await new Promise((r) => setImmediate(r));
    expect(live()).toHaveLength(2);
    expect(readers[1].o.start).toEqual(at(1));
    expect(posOf(a)).toEqual([200, 300, 400, 500]);
    expect(posOf(b)).toEqual([200]);
  });

  it("a replica held past its slack that drains in time stays (the later look finds nothing held)", async () => {
    const { readers, hub, a, b, setRoom } = await pair(2000, { stallMs: 30 });
    for (let n = 1; n <= 4; n++) readers[0].emit(txn(n));
    setRoom(true);
    b.stream.resume();
    await new Promise((r) => setTimeout(r, 120));
    expect(hub.stats.detaches).toBe(0);
    expect(posOf(b)).toEqual([200, 300, 400, 500]);
    expect(posOf(a)).toEqual([200, 300, 400, 500]);
  });

  it("maxSlackBytes (the group's queue budget in main.ts) raises how far a replica that keeps taking may lag; never below twice its slack", async () => {
    for (const [max, leavesAfter] of [
      [6000, 7],
      [1000, 5],
    ]) {
      const { readers, hub, b } = await pair(2000, { maxSlackBytes: max, now: () => 0 });
      // b takes transaction 1; the next ones are held until past max(2 × 2000, maxSlackBytes)
      let n = 1;
      while (hub.stats.detaches === 0 && n < 50) readers[0].emit(txn(n++));
      expect(n - 1).toBe(leavesAfter + 1);
      expect(posOf(b)).toEqual([200]);
    }
  });

  it("a full replica that catches up within its slack stays on the shared reader and gets what was held, in order", async () => {
    const { readers, hub, b, setRoom } = await pair(5000);
    for (let n = 1; n <= 4; n++) readers[0].emit(txn(n));
    expect(posOf(b)).toEqual([200]);
    setRoom(true);
    b.stream.resume();
    expect(posOf(b)).toEqual([200, 300, 400, 500]);
    expect(hub.stats.detaches).toBe(0);
    expect(hub.stats.heldBytes).toBeLessThanOrEqual(5000);
  });

  it("a replica that joins a reader paused by full replicas wakes it (a blocked replica never holds back one that joins)", async () => {
    const { readers, replica, live } = setup(100_000);
    const a = replica(0, at(0));
    a.room = () => false; // its applier is blocked (say, LOCK TABLES on its server): it never takes again
    await a.stream.start();
    readers[0].emit(txn(1));
    expect(readers[0].paused).toBe(true);
    // c starts where the paused reader is: it joins it, and must get what the source writes next
    const c = replica(2, at(1));
    await c.stream.start();
    expect(live()).toEqual([readers[0]]);
    expect(readers[0].paused).toBe(false);
    readers[0].emit(txn(2));
    expect(posOf(c)).toEqual([300]);
    // b behind on a reader of its own merges into the paused reader (handed its tail) and wakes it too
    readers[0].emit(txn(3));
    readers[0].emit(txn(4));
    c.room = () => false;
    readers[0].emit(txn(5));
    expect(readers[0].paused).toBe(true);
    const b = replica(1, at(0));
    await b.stream.start();
    expect(readers).toHaveLength(2);
    readers[1].emit(txn(1));
    expect(readers[1].stopped).toBe(true);
    expect(posOf(b)).toEqual([200, 300, 400, 500, 600]);
    expect(readers[0].paused).toBe(false);
  });

  it("the shared reader pauses only when every replica is full, and goes on when one can take again", async () => {
    const { readers, replica } = setup(10_000);
    const a = replica(0, at(0));
    const b = replica(1, at(0));
    let room = true;
    a.room = b.room = () => room;
    await a.stream.start();
    await b.stream.start();
    room = false;
    readers[0].emit(txn(1));
    expect(readers[0].paused).toBe(true);
    room = true;
    a.stream.resume();
    expect(readers[0].paused).toBe(false);
  });

  it("a replica leaving in the middle of a transaction handed over in pieces is told to abort it, and its own reader reads it again whole", async () => {
    let clock = 0;
    const { readers, b, setRoom } = await pair(1500, { now: () => clock }, true);
    readers[0].emit(txn(1));
    setRoom(false);
    readers[0].emit(txn(1, { stream: "part" }));
    // b's applier takes nothing more (stallMs)
    clock += 1001;
    readers[0].emit(txn(1, { stream: "part" }));
    readers[0].emit(txn(1, { stream: "part" }));
    expect(b.got.map((t) => t.stream ?? "whole")).toEqual(["whole", "part", "abort"]);
    expect(b.got[2].pos).toEqual(at(1));
    setRoom(true);
    b.stream.resume();
    await new Promise((r) => setImmediate(r));
    expect(readers[1].o.start).toEqual(at(1));
  });

  it("a replica starting where a reader began a transaction it handed over in pieces never joins past that transaction", async () => {
    const { readers, replica } = setup(1_000_000);
    const a = replica(0, at(0));
    await a.stream.start();
    readers[0].emit(txn(1));
    // the next transaction in pieces: a piece's position is the one before it (300), the last piece's after it (400)
    readers[0].emit(txn(2, { pos: at(2), stream: "part" }));
    readers[0].emit(txn(2, { pos: at(3), stream: "last" }));
    const c = replica(2, at(2));
    await c.stream.start();
    // it must get that transaction: from a reader of its own (the recent ones hold pieces), never an empty tail
    if (readers.length === 1) expect(c.got.map((t) => t.stream)).toEqual(["part", "last"]);
    else expect(readers[1].o.start).toEqual(at(2));
    // one starting after it joins with nothing to catch up
    const d = replica(3, at(3));
    await d.stream.start();
    readers[0].emit(txn(4));
    expect(posOf(d)).toEqual([500]);
    expect(readers[readers.length - 1].o.start).not.toEqual(at(3));
  });

  it("pieces are handed over only while every replica can take them", async () => {
    const { readers, replica } = setup();
    let bCan = true;
    const a = replica(0, at(0), { canStream: () => true });
    const b = replica(1, at(0), { canStream: () => bCan });
    await a.stream.start();
    await b.stream.start();
    expect(readers[0].o.canStream!()).toBe(true);
    bCan = false;
    expect(readers[0].o.canStream!()).toBe(false);
  });

  it("a reader's error reaches every replica; a stop unsubscribes only that replica; the last stop ends the reader", async () => {
    const { readers, replica, live } = setup();
    const a = replica(0, at(0));
    const b = replica(1, at(0));
    const c = replica(2, at(0));
    await Promise.all([a.stream.start(), b.stream.start(), c.stream.start()]);
    await a.stream.stop();
    readers[0].emit(txn(1));
    expect(posOf(a)).toEqual([]);
    expect(posOf(b)).toEqual([200]);
    expect(readers[0].stopped).toBe(false);
    readers[0].o.onError(new Error("connection lost"));
    expect(b.errors.map((e) => e.message)).toEqual(["connection lost"]);
    expect(c.errors.map((e) => e.message)).toEqual(["connection lost"]);
    expect(a.errors).toEqual([]);
    // a new session after the error: a new reader, never the failed one
    const b2 = replica(1, at(1));
    await b2.stream.start();
    expect(readers).toHaveLength(2);
    await b2.stream.stop();
    expect(readers[1].stopped).toBe(true);
    expect(live()).toEqual([readers[0]].filter((r) => !r.stopped));
  });

  it("the last replica's stop ends the shared reader", async () => {
    const { readers, replica } = setup();
    const a = replica(0, at(0));
    const b = replica(1, at(0));
    await a.stream.start();
    await b.stream.start();
    await a.stream.stop();
    expect(readers[0].stopped).toBe(false);
    await b.stream.stop();
    expect(readers[0].stopped).toBe(true);
  });

  it("a table map without column names ends sharing: each replica goes on with a reader of its own, decoding with its own schema", async () => {
    const { readers, replica, hub } = setup();
    const a = replica(0, at(0));
    const b = replica(1, at(0));
    await a.stream.start();
    await b.stream.start();
    readers[0].emit(txn(1));
    await readers[0].o.tableInfo!("shop", "t");
    await new Promise((r) => setImmediate(r));
    readers[0].emit(txn(2)); // decoded with the source's schema: nobody takes it
    expect(posOf(a)).toEqual([200]);
    expect(readers[0].stopped).toBe(true);
    expect(hub.stats.sharing).toBe(false);
    expect(readers.slice(1).map((r) => r.o.start)).toEqual([at(1), at(1)]);
    // each own reader asks its replica's schema
    expect(await readers[1].o.tableInfo!("shop", "t")).toEqual([{ COLUMN_NAME: "own" }]);
    // and they never share again
    readers[1].emit(txn(2));
    readers[2].emit(txn(2));
    expect(readers.filter((r) => !r.stopped)).toHaveLength(2);
  });

  it("a replica with an open XA prepared part of its own does not join", async () => {
    const { readers, replica } = setup();
    const a = replica(0, at(0));
    const parked = new Map<string, XaParked>([["X'01',X'',1", { txn: txn(0) }]]);
    const b = replica(1, at(0), { xaParked: parked });
    await a.stream.start();
    await b.stream.start();
    expect(readers).toHaveLength(2);
    expect(readers[1].o.xaParked).toBe(parked);
  });
});
