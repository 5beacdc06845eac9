// agent/apply/queue.ts on plain objects (no reader, no database): the bounded queue between a replica's reader
// and its applier, and the applier's grouping of source transactions into target transactions.
import { describe, it, expect } from "vitest";
import { TxnQueue, type QueuedTxn } from "../../agent/apply/queue.js";

let n = 0;
function txn(rowCount: number, bytes: number, extra: Partial<QueuedTxn> = {}): QueuedTxn & { id: number } {
  n++;
  return { id: n, pos: { file: "binlog.000001", pos: n * 100 }, rowCount, bytes, ...extra };
}
const ids = (b: { id: number }[]) => b.map((t) => t.id);

describe("TxnQueue grouping", () => {
  it("groups consecutive transactions up to maxRows and maxBytes, in order", () => {
    const q = new TxnQueue<ReturnType<typeof txn>>({ maxRows: 10, maxBytes: 1000, queueBytes: 1 << 20 });
    const t = [txn(4, 10), txn(4, 10), txn(4, 10), txn(1, 600), txn(1, 600)];
    for (const x of t) q.push(x);
    expect(ids(q.take())).toEqual([t[0].id, t[1].id]); // a third would pass 10 rows
    expect(ids(q.take())).toEqual([t[2].id, t[3].id]); // the fifth would pass 1000 bytes
    expect(ids(q.take())).toEqual([t[4].id]);
    expect(q.take()).toEqual([]);
    expect(q.length).toBe(0);
  });

  it("takes a single transaction larger than the bounds alone (never splits one)", () => {
    const q = new TxnQueue<ReturnType<typeof txn>>({ maxRows: 10, maxBytes: 1000, queueBytes: 1 << 20 });
    const big = txn(50, 5000);
    const small = txn(1, 1);
    q.push(big);
    q.push(small);
    expect(ids(q.take())).toEqual([big.id]);
    expect(ids(q.take())).toEqual([small.id]);
  });

  it("applies a DDL and a statement-logged DML alone, never grouped with rows before or after", () => {
    const q = new TxnQueue<ReturnType<typeof txn>>({ maxRows: 100, maxBytes: 1 << 20, queueBytes: 1 << 20 });
    const a = txn(1, 1), ddl = txn(0, 1, { ddl: { sql: "ALTER TABLE t ADD c INT" } }), b = txn(1, 1), dml = txn(0, 1, { statementDml: { sql: "DELETE FROM t" } }), c = txn(1, 1);
    for (const x of [a, ddl, b, dml, c]) q.push(x);
    expect([ids(q.take()), ids(q.take()), ids(q.take()), ids(q.take()), ids(q.take())]).toEqual([[a.id], [ddl.id], [b.id], [dml.id], [c.id]]);
  });

  it("takes each piece of a transaction too large to hold alone (it goes into one open target transaction)", () => {
    const q = new TxnQueue<ReturnType<typeof txn>>({ maxRows: 100, maxBytes: 1 << 20, queueBytes: 1 << 20 });
    const a = txn(1, 1), p1 = txn(5, 5, { stream: "first" }), p2 = txn(5, 5, { stream: "last" }), b = txn(1, 1);
    for (const x of [a, p1, p2, b]) q.push(x);
    expect([ids(q.take()), ids(q.take()), ids(q.take()), ids(q.take())]).toEqual([[a.id], [p1.id], [p2.id], [b.id]]);
  });

  it("stops at a watermark: nothing past `limit` is taken, and takenPos says how far the stream went", () => {
    const q = new TxnQueue<ReturnType<typeof txn>>({ maxRows: 100, maxBytes: 1 << 20, queueBytes: 1 << 20 });
    const t = [txn(1, 1), txn(1, 1), txn(1, 1)];
    for (const x of t) q.push(x);
    expect(ids(q.take(t[1].pos))).toEqual([t[0].id, t[1].id]);
    expect(q.takenPos).toEqual(t[1].pos);
    expect(q.take(t[1].pos)).toEqual([]);
    expect(q.peek()?.id).toBe(t[2].id);
    // by the file's sequence number: binlog.000002 is past any position in binlog.000001
    expect(q.take({ file: "binlog.000000", pos: 999999 })).toEqual([]);
  });
});

describe("TxnQueue memory bound", () => {
  it("asks the reader to pause at queueBytes and lets it resume below half, counting taken bytes until released", () => {
    const q = new TxnQueue<ReturnType<typeof txn>>({ maxRows: 1, maxBytes: 1 << 20, queueBytes: 100 });
    expect(q.push(txn(1, 40))).toBe(true);
    expect(q.push(txn(1, 40))).toBe(true);
    expect(q.push(txn(1, 40))).toBe(false); // 120 ≥ 100: pause
    const b1 = q.take();
    expect(q.heldBytes).toBe(120); // taken, not applied: still held
    expect(q.canResume()).toBe(false);
    q.release(b1);
    expect(q.canResume()).toBe(false); // 80 ≥ 50
    q.release(q.take());
    expect(q.heldBytes).toBe(40);
    expect(q.canResume()).toBe(true);
  });

  it("building ahead is worth it from half a batch queued, by rows or by bytes", () => {
    const q = new TxnQueue<ReturnType<typeof txn>>({ maxRows: 10, maxBytes: 100, queueBytes: 1 << 20 });
    q.push(txn(4, 10));
    expect(q.worthBuildingAhead()).toBe(false);
    q.push(txn(1, 10));
    expect(q.worthBuildingAhead()).toBe(true); // 5 rows
    q.take();
    expect(q.worthBuildingAhead()).toBe(false);
    q.push(txn(1, 60));
    expect(q.worthBuildingAhead()).toBe(true); // 60 bytes
  });

  it("clear() empties it for the next session and sets where its stream starts", () => {
    const q = new TxnQueue<ReturnType<typeof txn>>({ maxRows: 10, maxBytes: 100, queueBytes: 1 << 20 });
    q.push(txn(1, 10));
    q.clear({ file: "binlog.000002", pos: 4 });
    expect([q.length, q.heldBytes, q.peek(), q.takenPos]).toEqual([0, 0, undefined, { file: "binlog.000002", pos: 4 }]);
  });
});
