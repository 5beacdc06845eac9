// Queue owns one replica's bounded queue between its reader and its applier, and the applier's grouping: which
// consecutive source transactions form one target transaction (bounded by apply.maxRows and apply.maxBytes; a DDL
// a statement-logged DML or a piece of a large transaction alone; never past a position the snapshot's watermarks set). Memory stays bounded:
// bytes count from the moment a transaction is read until its batch is applied (release), and the reader pauses
// while they exceed apply.queueBytes (push returns false) and resumes below half (canResume).
import { comparePos, type Position } from "../source/positions.js";

/** What the queue reads of a source transaction (source/reader.ts Txn). */
export interface QueuedTxn {
  pos: Position;
  rowCount: number;
  bytes: number;
  /** a DDL, a DML logged as a statement, or a piece of a transaction too large to hold: applied alone */
  ddl?: unknown;
  statementDml?: unknown;
  stream?: unknown;
}

export interface QueueLimits {
  /** rows per target transaction (a single larger source transaction still goes alone) */
  maxRows: number;
  /** bytes per target transaction (likewise) */
  maxBytes: number;
  /** bytes read and not yet applied before the reader pauses */
  queueBytes: number;
}

/**
 * whether a transaction is applied alone: a DDL (it changes the schema later SQL is built from), a statement
 * DML, a piece of a transaction too large to hold (Txn.stream: applied into one open target transaction)
 */
export function appliedAlone(t: QueuedTxn): boolean {
  return !!(t.ddl || t.statementDml || t.stream);
}

export class TxnQueue<T extends QueuedTxn> {
  readonly #limits: QueueLimits;
  /** slots before #head are consumed and emptied (undefined), so a taken transaction is not kept alive by the queue */
  #items: (T | undefined)[] = [];
  #head = 0;
  /** bytes read and not yet released (queued, taken, being applied) */
  #held = 0;
  /** rows and bytes queued and not yet taken */
  #rows = 0;
  #bytes = 0;
  #taken: Position | null = null;

  constructor(limits: QueueLimits) {
    this.#limits = limits;
  }

  /** this queue's share of apply.queueBytes */
  get budget(): number {
    return this.#limits.queueBytes;
  }

  /** Appends a transaction; false once the bytes held reach apply.queueBytes (the reader pauses). */
  push(t: T): boolean {
    this.#items.push(t);
    this.#held += t.bytes;
    this.#rows += t.rowCount;
    this.#bytes += t.bytes;
    return this.#held < this.#limits.queueBytes;
  }

  /** transactions queued and not taken */
  get length(): number {
    return this.#items.length - this.#head;
  }

  /** the next transaction to take */
  peek(): T | undefined {
    return this.#head < this.#items.length ? this.#items[this.#head] : undefined;
  }

  /** bytes read and not yet released (the queue-bytes gauge) */
  get heldBytes(): number {
    return Math.max(0, this.#held);
  }

  /** the position of the last transaction taken (the stream has taken nothing past it) */
  get takenPos(): Position | null {
    return this.#taken;
  }

  /**
   * The next group of consecutive transactions for one target transaction: as many as fit in maxRows and
   * maxBytes (at least one), a DDL or statement DML alone, none past `limit` (a snapshot chunk's watermark).
   */
  take(limit: Position | null = null): T[] {
    const batch: T[] = [];
    let rows = 0;
    let bytes = 0;
    const max = this.#limits;
    while (this.#head < this.#items.length) {
      const t = this.#items[this.#head]!;
      if (limit && comparePos(t.pos, limit) > 0) break;
      const alone = appliedAlone(t);
      if (alone && batch.length > 0) break;
      if (batch.length > 0 && (rows + t.rowCount > max.maxRows || bytes + t.bytes > max.maxBytes)) break;
      batch.push(t);
      this.#taken = t.pos;
      // Release the slot: until the array is compacted below (after 4096 transactions), it would otherwise
      // keep every applied transaction and its rows alive (hundreds of MB with 1,000-row transactions).
      this.#items[this.#head] = undefined;
      this.#head++;
      rows += t.rowCount;
      bytes += t.bytes;
      if (alone) break;
    }
    this.#rows -= rows;
    this.#bytes -= bytes;
    if (this.#head > 4096 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return batch;
  }

  /** A taken batch was applied (or dropped): its bytes no longer count. */
  release(batch: readonly T[]): void {
    for (const t of batch) this.#held -= t.bytes;
  }

  /** a paused reader may resume: the bytes held fell below half of apply.queueBytes */
  canResume(): boolean {
    return this.#held < this.#limits.queueBytes / 2;
  }

  /** enough is queued that building the next batch ahead is worth it (half a batch by rows or bytes) */
  worthBuildingAhead(): boolean {
    return this.#rows >= this.#limits.maxRows / 2 || this.#bytes >= this.#limits.maxBytes / 2;
  }

  /** Empties the queue (a session ended); `taken` is where the next session's stream starts. */
  clear(taken: Position | null = this.#taken): void {
    this.#items = [];
    this.#head = 0;
    this.#held = 0;
    this.#rows = 0;
    this.#bytes = 0;
    this.#taken = taken;
  }
}
