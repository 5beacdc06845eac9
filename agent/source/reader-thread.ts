// ReaderThread owns reading the binlog on a thread of its own (apply.readerThread, off by default): the
// binlog connection, zongji's framing, the table maps and the rows' decoding (more than half of the main
// thread's time in a catch-up of small transactions, bench/results.md) run in a worker (reader-worker.ts),
// and the main thread receives the transactions it would have read itself, in the same order, the same
// values (they cross as JSON text; thread-codec.ts puts back what JSON cannot keep), and keeps building and applying
// them. Only one reader runs on a thread at a time (threadedReaders).
//
// It is a BinlogStream like BinlogReader, with the same contract:
// - Order and exactly-once: one message port, first in first out; a transaction is handed to onTxn once.
// - Back-pressure: onTxn's false pauses it. Transactions that were already on their way are held here and
//   handed over, in order, at resume(); the worker stops reading when told, or when the bytes it sent and
//   the main thread has not handed over reach the window (apply.queueBytes / 4 by default), so what is held
//   is bounded by the window plus one transaction.
// - lastRead and xaParked are those of the last transaction handed over (each message carries the reader's
//   as of that transaction), never of one still held: a replica that leaves a shared stream, or a reader that
//   stops, carries exactly the prepared XA transactions of the position it took last. lastRead moves on
//   between transactions too (status messages every 250 ms), but only while nothing is held.
// - canStream is asked synchronously by the worker (see reader-worker.ts) and answered here from the event
//   loop, after every transaction sent before the question: what BinlogReader would have asked in line.
// - Errors arrive as they do from BinlogReader (a PurgedPositionError is one again here); a worker that dies
//   is an error too.
import { Worker } from "node:worker_threads";
import type { Endpoint } from "../config.js";
import { PurgedPositionError } from "../errors.js";
import type { TableFilter } from "../rules.js";
import type { Position } from "./positions.js";
import { BinlogReader, xaOpenAt, type BinlogStream, type ReaderOptions, type XaParked } from "./reader.js";
import { packParked, unpackParked, unpackTxn, type PackedParked, type PackedTxn } from "./thread-codec.js";

/** what the worker starts with (workerData) */
export interface ReaderThreadInit {
  opts: Pick<ReaderOptions, "serverId" | "flavor" | "start" | "databases" | "streamBytes">;
  xaParked?: PackedParked;
  source: Endpoint;
  scope: TableFilter;
  canStream: boolean;
  tableInfo: boolean;
  windowBytes: number;
  shared: SharedArrayBuffer;
}

interface ErrorText {
  name?: string;
  message: string;
  code?: unknown;
  errno?: unknown;
  sqlState?: unknown;
  fatal?: unknown;
}

/** a transaction read, with the reader's state right after it (as the worker posts it, in a batch's JSON) */
export interface TxnItem {
  p: PackedTxn;
  /** the reader's lastRead after it, when that is not the transaction's position */
  l?: Position;
  /** the reader's lastEventAt */
  a: number;
  /** the reader's parked XA transactions after it: an index into the batch's `xas` */
  x?: number;
}

/** a transaction read, ready to hand over */
interface TxnMessage {
  p: PackedTxn;
  lastRead: Position;
  at: number;
  xa?: PackedParked;
}

export type ToMain =
  | { t: "txns"; j: string; xas?: PackedParked[] }
  | { t: "status" | "started"; lastRead: Position; at: number }
  | { t: "canStream" }
  | { t: "tableInfo"; id: number; db: string; table: string }
  | { t: "error"; e: ErrorText; starting?: boolean }
  | { t: "stopped" };

export type FromMain =
  | { t: "ack"; bytes: number }
  | { t: "pause" | "resume" | "stop" }
  | { t: "rpc"; id: number; value?: unknown; error?: string };

export interface ReaderThreadOptions {
  /** the source endpoint (the worker builds its connection options from it) */
  source: Endpoint;
  /** the table filter o.inScope is built from (makeTableFilter): the worker builds the same */
  scope: TableFilter;
  /** bytes sent and not yet handed over before the worker stops reading; default max(4 MiB, o.streamBytes) */
  windowBytes?: number;
  /** called once when it stops (threadedReaders counts the live ones) */
  onStop?: () => void;
}

/**
 * The hub's reader factory with apply.readerThread: a reader thread while fewer than `max` run, else a reader on the
 * main thread. A replica that falls behind the shared stream reads on its own for a while (shared-stream.ts): each
 * such reader on a thread of its own would cost an isolate and a heap (bench memory scenario: 5 replicas leaving and
 * rejoining took the agent from 181 to 537 MB), and the first reader, the one the group shares, is the one worth it.
 */
export function threadedReaders(max: number, t: Omit<ReaderThreadOptions, "onStop">): (o: ReaderOptions) => BinlogStream {
  let live = 0;
  return (o) => {
    if (live >= max) return new BinlogReader(o);
    live++;
    return new ReaderThread(o, { ...t, onStop: () => live-- });
  };
}

const WORKER_URL = new URL("./reader-worker.js", import.meta.url);

/** the worker's heap (see start) */
const WORKER_LIMITS = { maxYoungGenerationSizeMb: 16, maxOldGenerationSizeMb: 192 };

/** an error from the worker as the reader would have thrown it */
function rebuild(e: ErrorText): Error {
  let err: any;
  if (e.name === "PurgedPositionError") {
    err = Object.create(PurgedPositionError.prototype);
    err.message = e.message;
    err.name = e.name;
    err.stack = `${e.name}: ${e.message}\n    (in the binlog reader thread)`;
  } else err = new Error(e.message);
  for (const k of ["code", "errno", "sqlState", "fatal"] as const) if (e[k] !== undefined) err[k] = e[k];
  return err;
}

export class ReaderThread implements BinlogStream {
  lastRead: Position;
  lastEventAt = Date.now();
  #o: ReaderOptions;
  #t: ReaderThreadOptions;
  #w: Worker | null = null;
  #flag = new Int32Array(new SharedArrayBuffer(4));
  #paused = false;
  #held: TxnMessage[] = [];
  #draining = false;
  #xa: ReadonlyMap<string, XaParked>;
  #stopped = false;
  #failed = false;
  #ack = 0;
  #ackQueued = false;
  #stoppedWait: (() => void) | null = null;

  constructor(o: ReaderOptions, t: ReaderThreadOptions) {
    this.#o = o;
    this.#t = t;
    this.lastRead = o.flavor === "mariadb" && o.start.xa?.since ? { ...o.start.xa.since } : o.start;
    // what the worker's BinlogReader starts with, until it reports
    this.#xa = xaOpenAt(o.xaParked, o.start);
  }

  get paused(): boolean {
    return this.#paused;
  }

  get xaParked(): ReadonlyMap<string, XaParked> {
    return this.#xa;
  }

  start(): Promise<void> {
    const o = this.#o;
    const init: ReaderThreadInit = {
      opts: { serverId: o.serverId, flavor: o.flavor, start: o.start, databases: o.databases, streamBytes: o.streamBytes },
      xaParked: o.xaParked ? packParked(o.xaParked) : undefined,
      source: this.#t.source,
      scope: this.#t.scope,
      canStream: !!o.canStream,
      tableInfo: !!o.tableInfo,
      windowBytes: this.#t.windowBytes ?? Math.max(4 << 20, o.streamBytes ?? 0),
      shared: this.#flag.buffer as SharedArrayBuffer,
    };
    return new Promise<void>((resolve, reject) => {
      let started = false;
      // The container's V8 flags (agent/Dockerfile: a 32 MiB semi-space, a 384 MiB old space) hold for every isolate of
      // the process; the worker only decodes, so it gets a smaller young generation and old space of its own, or the
      // agent's peak RSS would grow by the worker's garbage (bench memory scenario: 471 MB against 181 MB without limits)
      const w = new Worker(WORKER_URL, { workerData: init, resourceLimits: WORKER_LIMITS });
      this.#w = w;
      w.on("message", (m: ToMain) => {
        if (m.t === "started") {
          started = true;
          this.#moveTo(m);
          resolve();
        } else if (m.t === "error" && !started) {
          started = true;
          this.#failed = true;
          reject(rebuild(m.e));
          void this.stop();
        } else this.#onMessage(m);
      });
      w.on("error", (e) => this.#died(`the binlog reader thread failed: ${e?.message ?? e}`, started, reject));
      w.on("exit", (code) => {
        this.#stoppedWait?.();
        if (!this.#stopped) this.#died(`the binlog reader thread exited (code ${code})`, started, reject);
      });
    });
  }

  #died(msg: string, started: boolean, reject: (e: Error) => void): void {
    if (this.#stopped || this.#failed) return;
    this.#failed = true;
    const e = new Error(msg);
    if (!started) reject(e);
    else this.#o.onError(e);
  }

  #moveTo(m: { lastRead: Position; at: number }): void {
    this.lastRead = m.lastRead;
    if (m.at > this.lastEventAt) this.lastEventAt = m.at;
  }

  #onMessage(m: ToMain): void {
    if (this.#stopped) return;
    switch (m.t) {
      case "txns": {
        const list = JSON.parse(m.j) as TxnItem[];
        for (const i of list) {
          if (this.#stopped) return;
          const x: TxnMessage = { p: i.p, lastRead: i.l ?? i.p.t.pos, at: i.a, xa: i.x === undefined ? undefined : m.xas![i.x] };
          if (x.at > this.lastEventAt) this.lastEventAt = x.at;
          if (this.#paused || this.#held.length) this.#held.push(x);
          else this.#hand(x);
        }
        break;
      }
      case "status":
        if (m.at > this.lastEventAt) this.lastEventAt = m.at;
        if (!this.#held.length) this.lastRead = m.lastRead;
        break;
      case "canStream": {
        // a question that throws is answered "no" (the transaction stays whole), and its error ends the stream
        let yes = false;
        let err: unknown = null;
        try {
          yes = !this.#o.canStream || this.#o.canStream();
        } catch (e) {
          err = e;
        }
        Atomics.store(this.#flag, 0, yes ? 2 : 1);
        Atomics.notify(this.#flag, 0);
        if (err && !this.#failed) {
          this.#failed = true;
          this.#o.onError(err instanceof Error ? err : new Error(String(err)));
        }
        break;
      }
      case "tableInfo":
        this.#o.tableInfo!(m.db, m.table).then(
          (value) => this.#post({ t: "rpc", id: m.id, value }),
          (e) => this.#post({ t: "rpc", id: m.id, error: String(e?.message ?? e) }),
        );
        break;
      case "error":
        if (this.#failed) return;
        this.#failed = true;
        this.#o.onError(rebuild(m.e));
        break;
      case "stopped":
        this.#stoppedWait?.();
        break;
    }
  }

  /** hands one transaction to the consumer, as the reader's state stood right after it */
  #hand(m: TxnMessage): void {
    const t = unpackTxn(m.p);
    this.lastRead = m.lastRead;
    if (m.xa) this.#xa = unpackParked(m.xa);
    this.#ack += t.bytes;
    if (!this.#ackQueued) {
      this.#ackQueued = true;
      setImmediate(() => {
        this.#ackQueued = false;
        const bytes = this.#ack;
        this.#ack = 0;
        if (bytes) this.#post({ t: "ack", bytes });
      });
    }
    if (!this.#o.onTxn(t)) this.pause();
  }

  #post(m: FromMain): void {
    if (!this.#stopped) this.#w?.postMessage(m);
  }

  pause(): void {
    if (this.#paused || this.#stopped) return;
    this.#paused = true;
    this.#post({ t: "pause" });
  }

  resume(): void {
    if (!this.#paused || this.#stopped) return;
    this.#paused = false;
    if (this.#draining) return;
    this.#draining = true;
    try {
      // what arrived while paused, in order (a consumer that is full again pauses it once more)
      while (this.#held.length && !this.#paused && !this.#stopped) this.#hand(this.#held.shift()!);
    } finally {
      this.#draining = false;
    }
    if (!this.#paused) this.#post({ t: "resume" });
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#t.onStop?.();
    const w = this.#w;
    this.#post({ t: "stop" });
    this.#stopped = true;
    this.#held = [];
    // a worker waiting for canStream is answered "no"
    Atomics.store(this.#flag, 0, 1);
    Atomics.notify(this.#flag, 0);
    if (!w) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 3000);
      this.#stoppedWait = () => {
        clearTimeout(t);
        resolve();
      };
    });
    await w.terminate().catch(() => undefined);
  }
}
