// The binlog reader's thread (apply.readerThread; the main thread's side and the protocol are in
// reader-thread.ts): one BinlogReader, its connection rebuilt from the source's endpoint (connection options
// hold functions, which do not cross threads), its scope from the group's table filter. Every transaction
// goes to the main thread as it is read; the reader pauses when the main thread says its consumer is full,
// or when the bytes sent and not yet taken reach the window. `canStream` is asked of the main thread
// synchronously (the reader decides where a large transaction is cut in an event handler): the question is
// posted after every transaction before it, and this thread waits on shared memory for the answer.
import { parentPort, workerData } from "node:worker_threads";
import { connectionOptions } from "../db.js";
import { makeTableFilter } from "../rules.js";
import { BinlogReader, type ReaderOptions, type Txn } from "./reader.js";
import { packParked, packTxn, unpackParked, type PackedParked } from "./thread-codec.js";
import type { FromMain, ReaderThreadInit, ToMain, TxnItem } from "./reader-thread.js";

/** a batch is posted at once when it holds this many bytes of transactions */
const BATCH_BYTES = 1 << 20;

const init = workerData as ReaderThreadInit;
const port = parentPort!;
/** [0]: the answer to canStream (0 waiting, 1 no, 2 yes) */
const flag = new Int32Array(init.shared);

let inflight = 0;
let mainPaused = false;
/** the parked XA transactions as last sent (xids and commit positions): sent again only when they change */
let xaSent = "";
let rpcSeq = 0;
const rpcs = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();

/** transactions read and not yet posted: one message per socket read (per turn of this thread's event loop), not per transaction */
let batch: TxnItem[] = [];
let xas: PackedParked[] = [];
let batchBytes = 0;
let flushQueued = false;

function flush(): void {
  flushQueued = false;
  if (!batch.length) return;
  // one JSON text for the batch (thread-codec.ts says why not structured clone)
  const m: ToMain = { t: "txns", j: JSON.stringify(batch) };
  if (xas.length) m.xas = xas;
  batch = [];
  xas = [];
  batchBytes = 0;
  port.postMessage(m);
}

/** every other message goes after the transactions read before it */
function post(m: ToMain): void {
  flush();
  port.postMessage(m);
}

function errorOf(e: any): ToMain {
  return {
    t: "error",
    e: { name: e?.name, message: String(e?.message ?? e), code: e?.code, errno: e?.errno, sqlState: e?.sqlState, fatal: e?.fatal },
  };
}

const o: ReaderOptions = {
  ...init.opts,
  xaParked: init.xaParked ? unpackParked(init.xaParked) : undefined,
  connection: connectionOptions(init.source, "source") as any,
  inScope: makeTableFilter(init.scope),
  onTxn: (t: Txn) => {
    const m: TxnItem = { p: packTxn(t), a: reader.lastEventAt };
    // the reader's position after the transaction is nearly always the transaction's own (one object)
    if (reader.lastRead !== t.pos) m.l = reader.lastRead;
    // (a parked transaction does not change once parked; what changes is which are parked and when one committed:
    // re-sending all of them with every transaction would copy an open XA's rows once per source transaction)
    const xa = reader.xaParked;
    if (xa.size > 0 || xaSent) {
      let sig = "";
      for (const [xid, p] of xa) sig += `${xid}\u0000${p.committedAt ? `${p.committedAt.file}:${p.committedAt.pos}` : ""}\u0001`;
      if (sig !== xaSent) {
        m.x = xas.push(packParked(xa)) - 1;
        xaSent = sig;
      }
    }
    batch.push(m);
    batchBytes += t.bytes;
    if (batch.length >= 512 || batchBytes >= BATCH_BYTES) flush();
    else if (!flushQueued) {
      flushQueued = true;
      setImmediate(flush);
    }
    inflight += t.bytes;
    return !mainPaused && inflight < init.windowBytes;
  },
  onError: (e) => post(errorOf(e)),
  canStream: init.canStream
    ? () => {
        Atomics.store(flag, 0, 0);
        post({ t: "canStream" });
        // the main thread answers from its event loop; a stop answers "no" too
        while (Atomics.wait(flag, 0, 0, 10_000) === "timed-out");
        return Atomics.load(flag, 0) === 2;
      }
    : undefined,
  tableInfo: init.tableInfo
    ? (db, table) =>
        new Promise((resolve, reject) => {
          const id = ++rpcSeq;
          rpcs.set(id, { resolve, reject });
          post({ t: "tableInfo", id, db, table });
        })
    : undefined,
};
const reader = new BinlogReader(o);

function maybeResume(): void {
  if (!mainPaused && inflight < init.windowBytes && reader.paused) reader.resume();
}

// where the reader stands, for the main thread's stall check and status, while nothing is handed over
const status = setInterval(() => post({ t: "status", lastRead: reader.lastRead, at: reader.lastEventAt }), 250);

port.on("message", (m: FromMain) => {
  switch (m.t) {
    case "ack":
      inflight -= m.bytes;
      maybeResume();
      break;
    case "pause":
      mainPaused = true;
      reader.pause();
      break;
    case "resume":
      mainPaused = false;
      maybeResume();
      break;
    case "rpc": {
      const r = rpcs.get(m.id);
      rpcs.delete(m.id);
      if (m.error !== undefined) r?.reject(new Error(m.error));
      else r?.resolve(m.value);
      break;
    }
    case "stop":
      clearInterval(status);
      reader.stop().finally(() => {
        post({ t: "stopped" });
        port.close();
      });
      break;
  }
});

reader.start().then(
  () => post({ t: "started", lastRead: reader.lastRead, at: reader.lastEventAt }),
  (e) => post({ ...errorOf(e), starting: true } as ToMain),
);
