// Watermarks owns where the snapshot's chunks meet the stream (DBLog-style, agent/README.md "Snapshot"): each chunk
// read reserves a slot with its low watermark (the source's binlog end before the read) and then its high one (the
// end after the read, or the exact position of a consistent snapshot); the stream applies nothing past the first
// slot's watermark (limit), and a chunk is written only once the stream has applied everything its read could have
// seen (takeReady). It reads the stream through a narrow view, so it is tested on fakes (test/unit/watermarks).
import { comparePos, type Position } from "../source/positions.js";
import type { Chunk, ChunkSlot } from "./snapshot.js";

type BinlogPoint = { file: string; pos: number };

/** What the watermarks read of the replica's stream. */
export interface StreamView {
  /** the position the replica has applied up to (null before its session knows it) */
  applied(): Position | null;
  /** the position of the last transaction the applier took from the queue */
  taken(): Position | null;
  /** a batch is being applied right now */
  applying(): boolean;
  /** the next transaction read and not yet taken */
  next(): { pos: Position } | undefined;
  /** how far the reader has read (null without a reader) */
  readerAt(): BinlogPoint | null;
  /** the applier waits for news: a watermark or a chunk arrived */
  wake(): void;
}

/** A chunk whose turn it is, with what settles the copier's wait for it. */
export interface ReadyChunk {
  chunk: Chunk;
  resolve(): void;
  reject(e: Error): void;
}

interface Slot {
  lo: BinlogPoint | undefined;
  hi: BinlogPoint | undefined;
  hiKnown: boolean;
  chunk: Chunk | undefined;
  resolve: () => void;
  reject: (e: Error) => void;
}

export class Watermarks {
  readonly #view: StreamView;
  #slots: Slot[] = [];

  constructor(view: StreamView) {
    this.#view = view;
  }

  /** slots reserved and not yet written (a chunk being read, or read and waiting for its watermark) */
  get pending(): number {
    return this.#slots.length;
  }

  /** A chunk read starts: its slot, with the low watermark `lo` (the stream holds there while the read runs). */
  reserve(lo: BinlogPoint | undefined): ChunkSlot {
    let resolve!: () => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(() => undefined);
    const slot: Slot = { lo, hi: undefined, hiKnown: false, chunk: undefined, resolve, reject };
    this.#slots.push(slot);
    const view = this.#view;
    return {
      setHi: (hi) => {
        slot.hi = hi;
        slot.hiKnown = true;
        view.wake();
      },
      tryHi: (hi) => {
        // the stream took nothing past hi (the applier runs on this event loop: nothing moves meanwhile)
        const taken = view.taken();
        if (taken && comparePos(taken, hi) > 0) return false;
        slot.hi = hi;
        slot.hiKnown = true;
        view.wake();
        return true;
      },
      deliver: (c) => {
        slot.chunk = c;
        if (!slot.hiKnown) {
          slot.hiKnown = true;
          slot.hi = c.hi;
        }
        view.wake();
        return promise;
      },
      cancel: () => {
        const i = this.#slots.indexOf(slot);
        if (i >= 0) this.#slots.splice(i, 1);
        view.wake();
      },
    };
  }

  /** The stream may not apply past the first slot: its low watermark while the read runs, then its high one. */
  limit(): Position | null {
    const s = this.#slots[0];
    if (!s) return null;
    const p = s.hiKnown ? s.hi : s.lo;
    return p ? { ...p, gtid: null } : null;
  }

  /** the first chunk can be written now */
  hasReady(): boolean {
    const s = this.#slots[0];
    return !!s && this.#ready(s);
  }

  /** The first chunk when it can be written now (its slot is removed), else undefined. */
  takeReady(): ReadyChunk | undefined {
    const s = this.#slots[0];
    if (!s || !this.#ready(s)) return undefined;
    this.#slots.shift();
    return { chunk: s.chunk!, resolve: s.resolve, reject: s.reject };
  }

  /** The session ended: every waiting copier is told so. */
  clear(reason: Error): void {
    for (const s of this.#slots.splice(0)) s.reject(reason);
  }

  /**
   * A chunk is written only once the stream has applied everything its read could have seen (its high
   * watermark): then the parents its rows reference are on the replica, and a row whose parent is missing
   * was really removed on the source (a cascade, which logs no child rows). When the end moved without
   * transactions (a rotation), "nothing left to read" stands in: the queue is empty and the reader has
   * read up to the watermark.
   */
  #ready(s: Slot): boolean {
    if (!s.chunk || !s.hiKnown) return false;
    const hi = s.hi;
    const applied = this.#view.applied();
    if (!hi || !applied) return true;
    if (this.#view.applying()) return false;
    if (comparePos(applied, hi) >= 0) return true;
    // the next transaction read is past the watermark: everything up to it is applied
    const next = this.#view.next();
    if (next) return comparePos(next.pos, hi) > 0;
    // nothing read is left unapplied, and the reader has read up to the watermark (a rotation moves the end
    // without a transaction)
    const r = this.#view.readerAt();
    return !!r && comparePos(r, hi) >= 0;
  }
}
