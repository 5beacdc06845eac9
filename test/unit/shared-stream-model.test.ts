// A model check of agent/source/shared-stream.ts (decode once) under random schedules: fake readers read one
// recorded binlog (whole transactions and transactions handed over in pieces), replicas with small queues apply
// at random speeds, stall, lose their reader or restart their session, as ReplicaSync does. After every step:
// each replica got every transaction exactly once and in order (pieces of one transaction, then its commit, or
// an abort), the hub holds bounded memory, and no delivery recursed without bound; at the end, with faults
// over, every replica reaches the end of the binlog (nothing stalls).
import { describe, expect, it } from "vitest";
import { StreamHub } from "../../agent/source/shared-stream.js";
import type { BinlogStream, ReaderOptions, Txn, XaParked } from "../../agent/source/reader.js";
import type { Position } from "../../agent/source/positions.js";

/** mulberry32 */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FILE = "binlog.000001";
const at = (n: number): Position => ({ file: FILE, pos: 1000 + n * 100, gtid: null });
const indexOf = (p: Position): number => (p.pos - 1000) / 100;

/** transaction n (1-based) ends at at(n); every fifth is large: three pieces when the consumer can take pieces */
const PIECES = (n: number) => (n % 5 === 0 ? 3 : 1);

class Model {
  readonly r: () => number;
  readonly readers: FakeReader[] = [];
  readonly hub: StreamHub;
  readonly reps: Rep[] = [];
  steps = 0;
  depth = 0;
  maxDepth = 0;
  maxHeld = 0;
  /** the last things that happened (printed with a failure) */
  readonly trace: string[] = [];
  log(line: string): void {
    this.trace.push(`${this.steps}: ${line}`);
    if (this.trace.length > 80) this.trace.shift();
  }
  constructor(
    seed: number,
    readonly total: number,
    nReps: number,
    readonly slack: number,
  ) {
    this.r = rng(seed);
    this.hub = new StreamHub({
      makeReader: (o) => {
        const x = new FakeReader(this, o);
        this.readers.push(x);
        return x;
      },
      scope: () => true,
      slackBytes: slack,
      // a step is a millisecond: a stalled replica (stalledFor) takes nothing for up to 60 steps
      now: () => this.steps,
      stallMs: 1 + Math.floor(this.r() * 40),
      ringEntries: 1 + Math.floor(this.r() * 16),
      replicas: nReps,
      gatherMs: 2,
      note: (f, msg) => this.log(`hub: ${msg} ${JSON.stringify({ ...f, at: (f.at as Position | undefined)?.pos })}`),
    });
    for (let i = 0; i < nReps; i++) this.reps.push(new Rep(this, i));
  }
}

class FakeReader implements BinlogStream {
  paused = false;
  lastRead: Position;
  lastEventAt = Date.now();
  xaParked: ReadonlyMap<string, XaParked> = new Map();
  stopped = false;
  started = false;
  /** next transaction to read (1-based) and the pieces of it already handed over */
  next: number;
  piece = 0;
  streaming = false;
  constructor(
    readonly m: Model,
    readonly o: ReaderOptions,
  ) {
    this.lastRead = o.start;
    this.next = indexOf(o.start) + 1;
  }
  async start(): Promise<void> {
    await new Promise((r) => setTimeout(r, 0));
    if (this.m.r() < 0.03) throw new Error("connect refused");
    this.started = true;
  }
  async stop(): Promise<void> {
    this.stopped = true;
  }
  pause(): void {
    this.paused = true;
  }
  /** packets the connection read after a pause (mysql2 keeps them and handles them in resume(), synchronously) */
  buffered: Txn[] = [];
  resume(): void {
    // mysql2's Connection.resume: the packets held while paused are handled first, synchronously, until a
    // handler pauses again
    this.paused = false;
    while (this.buffered.length && !this.stopped) {
      this.emit(this.buffered.shift()!);
      if (this.paused) return;
    }
  }
  /** the next event of the binlog: a piece or a whole transaction */
  produce(): Txn | null {
    if (this.next > this.m.total) return null;
    const n = this.next;
    const pieces = PIECES(n);
    const rows = [{ n }];
    if (pieces > 1 && (this.streaming || !this.o.canStream || this.o.canStream()) && this.piece < pieces - 1) {
      this.streaming = true;
      this.piece++;
      return { pos: at(n - 1), ts: n, readAt: 0, changes: [{ op: "insert", db: "d", table: "t", rows }], rowCount: 1, bytes: 300, stream: "part", cut: this.piece };
    }
    const t: Txn = { pos: at(n), ts: n, readAt: 0, changes: [{ op: "insert", db: "d", table: "t", rows }], rowCount: 1, bytes: 300, ...(this.streaming ? { stream: "last" as const } : {}) };
    this.streaming = false;
    this.piece = 0;
    this.next++;
    return t;
  }
  /** one packet off the wire: handled now, or held while paused (a chunk read before the pause took effect) */
  tick(): void {
    if (this.stopped || !this.started) return;
    if (!this.paused && this.buffered.length === 0) {
      const t = this.produce();
      if (t) this.emit(t);
    } else if (this.buffered.length < 4 && this.m.r() < 0.5) {
      const t = this.produce();
      if (t) this.buffered.push(t);
    }
  }
  emit(t: Txn): void {
    const m = this.m;
    if (!t.stream || t.stream === "last") this.lastRead = t.pos;
    m.depth++;
    m.maxDepth = Math.max(m.maxDepth, m.depth);
    try {
      if (!this.o.onTxn(t)) this.pause();
    } finally {
      m.depth--;
    }
  }
  fail(): void {
    if (this.stopped || !this.started) return;
    this.m.log(`reader ${this.o.serverId} at ${this.next} fails`);
    this.stopped = true;
    this.o.onError(new Error("source connection lost"));
  }
}

/** one replica: ReplicaSync's queue, apply loop and session restarts, reduced to what the hub sees */
class Rep {
  stream: BinlogStream | null = null;
  session = 0;
  queue: Txn[] = [];
  cap = 1;
  /** last transaction committed (1-based index) */
  applied = 0;
  /** pieces of the open transaction applied so far */
  openPieces = 0;
  stalledFor = 0;
  dead = false;
  restarting = false;
  log: string[] = [];
  constructor(
    readonly m: Model,
    readonly i: number,
  ) {}

  open(): void {
    const s = ++this.session;
    this.queue = [];
    this.openPieces = 0;
    this.cap = 1 + Math.floor(this.m.r() * 4);
    this.dead = false;
    const stream = this.m.hub.open({
      connection: { host: "127.0.0.1", port: 3306, user: "u" },
      serverId: 100 + this.i,
      flavor: "mariadb",
      start: at(this.applied),
      databases: ["d"],
      inScope: () => true,
      onTxn: (t) => {
        if (s !== this.session) throw new Error(`r${this.i}: a transaction reached a stopped session`);
        this.m.log(`r${this.i} s${s} gets ${indexOf(t.pos)}${t.stream ? ` ${t.stream}` : ""}`);
        this.queue.push(t);
        return this.queue.length < this.cap;
      },
      onError: () => {
        if (s === this.session) this.dead = true;
      },
      streamBytes: 300,
      canStream: () => true,
    });
    this.stream = stream;
    stream.start().catch(() => {
      if (s === this.session) this.dead = true;
    });
  }

  async restart(): Promise<void> {
    if (this.restarting) return;
    this.m.log(`r${this.i} restarts at ${this.applied}`);
    this.restarting = true;
    const old = this.stream;
    this.session++; // nothing more from the old stream counts
    this.stream = null;
    await old?.stop();
    this.restarting = false;
    this.open();
  }

  /** the apply loop's step: one transaction (or piece) from the queue */
  apply(): void {
    if (!this.stream || this.stalledFor > 0) return;
    const t = this.queue.shift();
    if (!t) return;
    const n = indexOf(t.pos);
    if (t.stream === "part") {
      if (n !== this.applied) throw new Error(`r${this.i}: piece of txn ${n + 1} while at ${this.applied}`);
      this.openPieces++;
    } else if (t.stream === "abort") {
      this.openPieces = 0;
    } else {
      if (n !== this.applied + 1) throw new Error(`r${this.i}: txn ${n} after ${this.applied} (${t.stream ?? "whole"}, ${this.openPieces} pieces open)`);
      if (t.stream === "last" && this.openPieces === 0) throw new Error(`r${this.i}: last piece of txn ${n} with no piece before`);
      if (!t.stream && this.openPieces) throw new Error(`r${this.i}: whole txn ${n} with ${this.openPieces} pieces open`);
      this.applied = n;
      this.openPieces = 0;
    }
    if (this.stream.paused && this.queue.length < this.cap) this.stream.resume();
  }
}

async function run(seed: number, opts: { total: number; reps: number; faultSteps: number }): Promise<Model> {
  const m = new Model(seed, opts.total, opts.reps, 300 * (1 + Math.floor(rng(seed ^ 0x55)() * 8)));
  for (const rep of m.reps) rep.open();
  const limit = opts.faultSteps + opts.total * 40 + 2000;
  try {
    return await steps(m, opts, limit);
  } catch (e: any) {
    e.model = m;
    throw e;
  }
}

async function steps(m: Model, opts: { total: number; reps: number; faultSteps: number }, limit: number): Promise<Model> {
  for (let step = 0; step < limit; step++) {
    m.steps = step;
    const faults = step < opts.faultSteps;
    const r = m.r;
    const roll = r();
    if (roll < 0.45) {
      const live = m.readers.filter((x) => !x.stopped);
      if (live.length) live[Math.floor(r() * live.length)].tick();
    } else if (roll < 0.9) {
      const rep = m.reps[Math.floor(r() * m.reps.length)];
      rep.apply();
    } else if (faults && roll < 0.93) {
      const rep = m.reps[Math.floor(r() * m.reps.length)];
      rep.stalledFor = Math.floor(r() * 60);
    } else if (faults && roll < 0.935) {
      const live = m.readers.filter((x) => !x.stopped);
      if (live.length) live[Math.floor(r() * live.length)].fail();
    } else if (faults && roll < 0.94) {
      await m.reps[Math.floor(r() * m.reps.length)].restart();
    }
    for (const rep of m.reps) {
      if (rep.stalledFor > 0) rep.stalledFor--;
      if (rep.dead && !rep.restarting) await rep.restart();
    }
    const held = m.hub.stats.heldBytes;
    m.maxHeld = Math.max(m.maxHeld, held);
    // each reader's ring (its slack) and each subscriber's held transactions (twice its slack while it takes),
    // plus a transaction in flight each
    const bound = m.readers.filter((x) => !x.stopped).length * (m.slack + 600) + m.reps.length * (2 * m.slack + 600);
    if (held > bound) throw new Error(`held ${held} bytes > ${bound} at step ${step}`);
    if (m.maxDepth > 50) throw new Error(`delivery recursed ${m.maxDepth} deep at step ${step}`);
    if (step % 16 === 0) await new Promise((res) => setTimeout(res, 0));
    if (!faults && m.reps.every((x) => x.applied === opts.total)) return m;
  }
  const where = m.reps.map((x) => `r${x.i} applied ${x.applied} queue ${x.queue.length}/${x.cap} paused ${x.stream?.paused}`).join("; ");
  throw new Error(`no progress: ${where}; readers live ${m.readers.filter((x) => !x.stopped).map((x) => `${x.next}${x.paused ? "p" : ""}${x.started ? "" : "c"}`)}`);
}

describe("StreamHub under random schedules (model check)", () => {
  const seeds = Number(process.env.DATASYNC_HUB_SEEDS ?? 40);
  const base = Number(process.env.DATASYNC_HUB_SEED ?? 1);
  it(`${seeds} schedules: exactly once, in order, bounded, no stall`, async () => {
    const sum = { readers: 0, joins: 0, detaches: 0, steps: 0 };
    for (let s = base; s < base + seeds; s++) {
      try {
        const m = await run(s, { total: 120, reps: 2 + (s % 4), faultSteps: 1500 });
        sum.readers += m.hub.stats.readers;
        sum.joins += m.hub.stats.joins;
        sum.detaches += m.hub.stats.detaches;
        sum.steps += m.steps;
      } catch (e: any) {
        if (process.env.DATASYNC_HUB_TRACE) console.log((e.model as Model | undefined)?.trace.join("\n"));
        throw new Error(`seed ${s}: ${e?.message}`);
      }
    }
    if (process.env.DATASYNC_HUB_STATS) console.log(sum);
    // the schedules reach what the hub does: readers shared, left and joined again
    expect(sum.joins).toBeGreaterThan(seeds);
    expect(sum.detaches).toBeGreaterThan(seeds / 4);
  }, 600_000);
});
