// agent/snapshot/watermarks.ts on a fake stream (no reader, no database): where the snapshot's chunks meet the
// stream. A chunk written before the stream applied what its read saw, or a stream applying past a chunk being
// read, is a silent difference: these are the rules that prevent it.
import { describe, it, expect } from "vitest";
import { Watermarks, type StreamView } from "../../agent/snapshot/watermarks.js";
import type { Chunk } from "../../agent/snapshot/snapshot.js";
import type { Position } from "../../agent/source/positions.js";

const at = (pos: number, file = "binlog.000001"): Position => ({ file, pos });

function fakeStream() {
  const s = {
    applied: null as Position | null,
    taken: null as Position | null,
    applying: false,
    next: undefined as { pos: Position } | undefined,
    readerAt: null as { file: string; pos: number } | null,
    wakes: 0,
  };
  const view: StreamView = {
    applied: () => s.applied,
    taken: () => s.taken,
    applying: () => s.applying,
    next: () => s.next,
    readerAt: () => s.readerAt,
    wake: () => void s.wakes++,
  };
  return { s, view };
}

const chunk = (hi?: Position): Chunk => ({ db: "shop", table: "t", meta: {} as Chunk["meta"], rows: [[1]], lastKey: [1], last: false, hi });

describe("Watermarks", () => {
  it("holds the stream at the low watermark during the read, then at the high one", () => {
    const { view } = fakeStream();
    const w = new Watermarks(view);
    expect(w.limit()).toBeNull();
    const slot = w.reserve(at(100));
    expect(w.limit()).toEqual({ ...at(100), gtid: null });
    slot.setHi(at(250));
    expect(w.limit()).toEqual({ ...at(250), gtid: null });
    slot.cancel();
    expect([w.limit(), w.pending]).toEqual([null, 0]);
  });

  it("writes a chunk only once the stream applied up to its high watermark", () => {
    const { s, view } = fakeStream();
    const w = new Watermarks(view);
    s.applied = at(100);
    s.next = { pos: at(200) };
    const slot = w.reserve(at(100));
    void slot.deliver(chunk(at(250)));
    expect(w.hasReady()).toBe(false); // the stream is at 100, the read saw up to 250; 200 is still queued
    s.applied = at(200);
    s.next = { pos: at(300) }; // the next transaction read is past the watermark: all up to it is applied
    expect(w.hasReady()).toBe(true);
    s.applying = true; // …but not while a batch is on its way (it may hold what the chunk depends on)
    expect(w.takeReady()).toBeUndefined();
    s.applying = false;
    const r = w.takeReady();
    expect(r?.chunk.hi).toEqual(at(250));
    expect(w.pending).toBe(0);
  });

  it("ends the wait across a rotation: nothing queued and the reader read past the watermark", () => {
    const { s, view } = fakeStream();
    const w = new Watermarks(view);
    s.applied = at(100);
    void w.reserve(at(100)).deliver(chunk(at(4, "binlog.000002")));
    s.readerAt = at(900); // same file as applied: not yet at binlog.000002
    expect(w.hasReady()).toBe(false);
    s.readerAt = at(4, "binlog.000002");
    expect(w.hasReady()).toBe(true);
  });

  it("tryHi refuses an exact snapshot position the stream has already taken past", () => {
    const { s, view } = fakeStream();
    const w = new Watermarks(view);
    const slot = w.reserve(at(100));
    s.taken = at(300);
    expect(slot.tryHi(at(250))).toBe(false);
    expect(w.limit()).toEqual({ ...at(100), gtid: null }); // still the low watermark: the read is retried
    expect(slot.tryHi(at(300))).toBe(true);
    expect(w.limit()).toEqual({ ...at(300), gtid: null });
  });

  it("keeps chunks in order: a later ready chunk waits for the first", () => {
    const { s, view } = fakeStream();
    const w = new Watermarks(view);
    s.applied = at(500);
    w.reserve(at(100)); // being read
    void w.reserve(at(200)).deliver(chunk(at(300)));
    expect(w.hasReady()).toBe(false);
  });

  it("a session end rejects every copier waiting on a chunk", async () => {
    const { view } = fakeStream();
    const w = new Watermarks(view);
    const done = w.reserve(at(100)).deliver(chunk(at(150)));
    w.clear(new Error("replica session ended"));
    await expect(done).rejects.toThrow("replica session ended");
    expect(w.pending).toBe(0);
  });
});
