// StreamHub owns the sharing of binlog readers between a group's replicas (decode once): replicas that read at
// the same position are subscribers of one reader (one binlog connection, one decode) and each gets the same
// transactions in order through its own onTxn; a subscriber that falls behind by more than its slack goes on
// with a reader of its own, and subscribers whose readers reach the same position merge back into one.
//
// Why it is safe (agent/README.md "Decode once" keeps the argument):
// - Scope: a shared reader decodes the group's table filter, a superset of every replica's scope (a replica
//   also leaves out its quarantined tables); each subscriber's copy drops the changes outside its own scope,
//   as its private reader would have dropped them while decoding.
// - Mutation: the applier reassigns Txn.changes of a piece it has applied; each subscriber gets its own
//   shallow copy of every Txn (rows and changes are only read downstream), so no replica sees another's edit.
// - Table maps without column names (binlog_row_metadata not FULL, MariaDB's old temporal types) are decoded
//   with the replica's own schema (ReaderOptions.tableInfo): no shared reader can do that for several
//   replicas. The first such table map ends sharing for the hub's life: every subscriber goes on with a
//   private reader from the last transaction it took, decoding with its own schema.
// - Pieces of a large transaction (Txn.stream) go to every subscriber; the shared reader hands pieces only
//   while every subscriber can take them (canStream). A subscriber that leaves between pieces is told
//   "abort" and its own reader reads the transaction again from its start. Nobody joins in the middle of
//   a transaction handed over in pieces.
// - XA: readers join or merge only where no XA transaction is prepared and open (the parked prepared parts
//   belong to one reader's history); a subscriber that leaves takes its reader's parked parts along.
// - Server ids: every binlog connection needs its own (two dumps with one id evict each other); a reader
//   takes the id of one of the hub's subscribers that no live reader uses (there are never more readers
//   than subscribers, so one is always free).
import { rowCount } from "./rowsql.js";
import type { BinlogStream, OpenStream, ReaderOptions, RowChange, Txn, XaParked } from "./reader.js";
import { comparePos, type Position } from "./positions.js";

export interface StreamHubOptions {
  /** builds one binlog reader (BinlogReader in main.ts; a fake in unit tests) */
  makeReader: OpenStream;
  /** the group's table filter: a superset of each replica's ReaderOptions.inScope (which adds its quarantine) */
  scope: (db: string, table: string) => boolean;
  /**
   * bytes a subscriber that cannot take more may fall behind its shared reader (held for it) before it
   * leaves for a reader of its own; also the most a joining subscriber is handed from the reader's recent
   * transactions. Default: four times the subscriber's streamBytes (its apply.queueBytes), or 16 MiB.
   */
  slackBytes?: number;
  /**
   * the most a subscriber that is still taking may be held (its applier took a transaction within `stallMs`):
   * between its slack and this it stays, so a replica that is as fast as the others but lags by scheduling
   * (five replica servers on two cores) does not leave, read and decode the binlog a second time and come back.
   * At least twice the slack (the default); main.ts gives the group's apply.queueBytes. What is held for
   * subscribers is shallow copies of the same transactions: the memory is the span between the slowest and the
   * fastest, not a sum.
   */
  maxSlackBytes?: number;
  /** a subscriber held past its slack that took nothing for this long leaves (default 1,000 ms) */
  stallMs?: number;
  /** the clock (tests) */
  now?: () => number;
  /** how many recent transactions a reader keeps so a subscriber reaching its position can join (default 1024) */
  ringEntries?: number;
  /** the agent's replicas: a new reader waits (up to gatherMs) until this many are placed (default 1: never) */
  replicas?: number;
  /** default 1,500 ms */
  gatherMs?: number;
  /** the number of running readers (binlog connections), at each change */
  onReaders?: (live: number) => void;
  /** a line for each join, leave and merge (a pino logger's info, bound) */
  note?: (fields: Record<string, unknown>, msg: string) => void;
}

export interface StreamHubStats {
  /** binlog readers started */
  readers: number;
  /** readers running now */
  live: number;
  /** subscribers that joined a running reader (at open or by a merge) */
  joins: number;
  /** subscribers that left a shared reader because they fell behind */
  detaches: number;
  /** whether sharing is still on (off after a table map without column names) */
  sharing: boolean;
  /** bytes of transactions held by the hub: readers' recent transactions and full subscribers' slack */
  heldBytes: number;
}

const MARKER_OPS = new Set(["savepoint", "rollback-to"]);

/** exact position equality (file, offset, GTID text, open XA): the key readers are matched by */
export function positionKey(p: Position): string {
  return `${p.file}\u0000${p.pos}\u0000${p.gtid ?? ""}\u0000${p.xa ? JSON.stringify(p.xa) : ""}`;
}

function hasOpenXa(m: ReadonlyMap<string, XaParked> | undefined, at?: Position): boolean {
  if (!m) return false;
  for (const p of m.values()) {
    // committed after `at`: a reader starting at `at` takes it as open (reader.ts keeps those)
    if (!p.committedAt || (at && comparePos(p.committedAt, at) > 0)) return true;
  }
  return false;
}

/** a subscriber's own copy of a transaction: changes outside its scope dropped, never the shared object */
export function copyFor(t: Txn, inScope: (db: string, table: string) => boolean): Txn {
  let kept: RowChange[] | null = null;
  const ch = t.changes;
  for (let i = 0; i < ch.length; i++) {
    const c = ch[i];
    const keep = MARKER_OPS.has(c.op) || inScope(c.db, c.table);
    if (!keep && !kept) kept = ch.slice(0, i);
    else if (keep && kept) kept.push(c);
  }
  if (!kept) return { ...t };
  let rows = 0;
  for (const c of kept) rows += rowCount(c);
  return { ...t, changes: kept, rowCount: rows };
}

/** what readers must agree on to be shared (the connection, kept in memory only, names the same source and account) */
function signature(o: ReaderOptions): string {
  return JSON.stringify([o.flavor, o.streamBytes ?? 0, [...o.databases].sort(), o.connection]);
}

class Shared {
  readonly subs = new Set<Sub>();
  reader!: BinlogStream;
  readonly serverId: number;
  readonly opts: ReaderOptions;
  readonly sig: string;
  /** recent transactions handed over, for a subscriber that reaches this reader's position */
  ring: Txn[] = [];
  /** positionKey of each ring entry, kept rather than built again when the entry leaves the ring */
  ringKeyOf: string[] = [];
  ringKeys = new Map<string, number>();
  ringBase = 0;
  ringBytes = 0;
  /** the position after the last transaction handed over (the start before any) */
  headKey: string;
  /** the last thing handed over was a piece of an unfinished transaction */
  midStream = false;
  /** the position after the last whole transaction handed over, where tryMerge last looked (null before any) */
  boundaryKey: string | null = null;
  dead = false;
  started: Promise<void> | null = null;
  ready = false;

  constructor(
    readonly hub: StreamHub,
    creator: ReaderOptions,
    start: Position,
    serverId: number,
    xaParked: ReadonlyMap<string, XaParked> | undefined,
  ) {
    this.serverId = serverId;
    this.headKey = positionKey(start);
    this.sig = signature(creator);
    this.opts = {
      ...creator,
      serverId,
      start,
      xaParked,
      inScope: hub.scope,
      onTxn: (t) => this.deliver(t),
      onError: (e) => this.fail(e),
      canStream: () => {
        for (const s of this.subs) if (s.o.canStream && !s.o.canStream()) return false;
        return this.subs.size > 0;
      },
      tableInfo: creator.tableInfo ? (db, table) => this.tableInfo(db, table) : undefined,
    };
  }

  /** connects once `gather` settles (replicas starting together join meanwhile, at its start) */
  start(gather: Promise<void>): Promise<void> {
    this.started = (async () => {
      await gather;
      if (this.dead) return; // every subscriber stopped meanwhile
      this.reader = this.hub.makeReader(this.opts);
      this.hub.counters.readers++;
      try {
        await this.reader.start();
      } catch (e) {
        this.hub.retire(this);
        throw e;
      }
      this.ready = true;
    })();
    return this.started;
  }

  /** the reader's hand-over: a copy to each subscriber; false (the reader pauses) when none can take more */
  deliver(t: Txn): boolean {
    if (this.dead) return false;
    this.midStream = t.stream === "part";
    // the ring: what a subscriber reaching this position is handed to catch up
    const key = positionKey(t.pos);
    this.ring.push(t);
    this.ringKeyOf.push(key);
    this.ringBytes += t.bytes;
    // a commit boundary: a whole transaction or the last piece of one (a piece's and an abort's position is the
    // one before the transaction: no joiner may take it for the position after what was handed over)
    const boundary = !t.stream || t.stream === "last";
    if (boundary) this.ringKeys.set(key, this.ringBase + this.ring.length - 1);
    if (boundary || t.stream === "abort") this.headKey = key;
    this.boundaryKey = boundary ? key : null;
    while (this.ring.length > 1 && (this.ring.length > this.hub.ringEntries || this.ringBytes > this.hub.slackFor(this.opts))) {
      const old = this.ring.shift()!;
      this.ringBytes -= old.bytes;
      const k = this.ringKeyOf.shift()!;
      if (this.ringKeys.get(k) === this.ringBase) this.ringKeys.delete(k);
      this.ringBase++;
    }
    for (const s of [...this.subs]) s.offer(t);
    if (this.dead) return false;
    if (boundary && this.hub.sharing) this.hub.tryMerge(this, key);
    if (this.dead) return false;
    return this.anyReady();
  }

  anyReady(): boolean {
    for (const s of this.subs) if (s.ready) return true;
    return false;
  }

  /** a subscriber can take again: the reader goes on */
  wake(): void {
    if (!this.dead && this.reader?.paused && this.anyReady()) this.reader.resume();
  }

  /** the transactions after `key` (null: not held) */
  tailAfter(key: string): Txn[] | null {
    if (key === this.headKey && !this.midStream) return [];
    const i = this.ringKeys.get(key);
    if (i === undefined) return null;
    return this.ring.slice(i - this.ringBase + 1);
  }

  /** whether a subscriber at `key` may join here now, and what it is handed to catch up */
  joinable(sig: string, key: string, slack: number): Txn[] | null {
    if (this.dead || this.midStream || sig !== this.sig) return null;
    // a reader still connecting: only at its start (replicas that start together share from the first event)
    if (!this.ready) return this.ring.length === 0 && key === this.headKey && !hasOpenXa(this.opts.xaParked) ? [] : null;
    if (hasOpenXa(this.reader.xaParked)) return null;
    const tail = this.tailAfter(key);
    if (!tail) return null;
    let bytes = 0;
    for (const t of tail) {
      if (t.stream) return null;
      bytes += t.bytes;
    }
    if (bytes > slack) return null;
    return tail;
  }

  fail(e: Error): void {
    if (this.dead) return;
    this.hub.retire(this);
    for (const s of [...this.subs]) s.lost(e);
    this.subs.clear();
  }

  /**
   * A table map without column names: only the replica's own schema decodes it. Alone, the subscriber's own
   * lookup serves; shared, the subscribers each go on with a reader of their own (and sharing ends).
   */
  async tableInfo(db: string, table: string): Promise<any[] | null> {
    this.hub.endSharing(`a table map of ${db}.${table} carries no column names: each replica decodes with its own schema`);
    // alone and holding nothing back: the reader is that replica's own (its lookup waits for its applier to
    // reach the last DDL it was handed, which is everything read so far)
    const only = this.subs.size === 1 ? [...this.subs][0] : null;
    if (only && only.overflow.length === 0) return only.o.tableInfo ? only.o.tableInfo(db, table) : null;
    // shared: nothing more from this reader; each subscriber reads again from the last transaction it took
    this.hub.retire(this);
    for (const s of [...this.subs]) s.leave("no column names in a table map");
    this.subs.clear();
    return null;
  }

  stop(): void {
    this.hub.retire(this);
    void this.reader?.stop().catch(() => undefined);
  }
}

/** One replica's stream: a subscriber of a shared reader, or of a reader of its own. */
class Sub implements BinlogStream {
  group: Shared | null = null;
  /** transactions the shared reader read while this subscriber could take no more (its slack) */
  overflow: Txn[] = [];
  overflowBytes = 0;
  full = false;
  stopped = false;
  failed = false;
  /** left a shared reader: its own reader starts when it can take again */
  pendingOwn = false;
  lastTaken: Position;
  /** when it last took a transaction (hub.now()) */
  lastTakeAt: number;
  lastWasPart = false;
  /** parked XA parts of the reader it left, for its own reader */
  xaCarry: ReadonlyMap<string, XaParked> | undefined;
  readonly sig: string;
  #lastEventAt = Date.now();

  constructor(
    readonly hub: StreamHub,
    readonly o: ReaderOptions,
  ) {
    this.lastTaken = o.start;
    this.lastTakeAt = hub.now();
    this.xaCarry = o.xaParked;
    this.sig = signature(o);
  }

  get ready(): boolean {
    return !this.full && this.overflow.length === 0 && !this.stopped && !this.pendingOwn;
  }

  get paused(): boolean {
    return this.full || this.pendingOwn;
  }

  get lastRead(): Position {
    const g = this.group;
    return g && g.ready && this.overflow.length === 0 ? g.reader.lastRead : this.lastTaken;
  }

  get lastEventAt(): number {
    const g = this.group;
    return g && g.ready ? g.reader.lastEventAt : this.#lastEventAt;
  }

  get xaParked(): ReadonlyMap<string, XaParked> {
    const g = this.group;
    return (g && g.ready ? g.reader.xaParked : this.xaCarry) ?? new Map();
  }

  start(): Promise<void> {
    return this.hub.place(this);
  }

  /** hands one transaction over (or holds it while the subscriber is full) */
  offer(t: Txn): void {
    if (this.stopped || this.failed) return;
    const g = this.group!;
    const copy = copyFor(t, this.o.inScope);
    if (this.full || this.overflow.length) {
      if (g.subs.size > 1 || this.overflow.length) {
        this.overflow.push(copy);
        this.overflowBytes += copy.bytes;
        this.#checkHeld();
        return;
      }
    }
    this.take(copy);
  }

  /**
   * Leaves the shared reader if it must (StreamHub.mustLeave); held past its slack but still within the bound, it looks
   * again once it will have taken nothing for stallMs: a stream that goes quiet delivers nothing more to look on.
   */
  #checkHeld(): void {
    const g = this.group;
    if (!g || this.stopped || this.failed || this.overflow.length === 0 || g.subs.size < 2) return;
    if (this.hub.mustLeave(this)) {
      this.leave(`fell behind the shared stream (${this.overflowBytes} bytes held for it; its last transaction taken ${this.hub.now() - this.lastTakeAt} ms ago)`);
      return;
    }
    if (this.overflowBytes > this.hub.slackFor(this.o) && !this.#heldTimer) {
      const wait = Math.min(this.hub.stallMs, Math.max(0, this.lastTakeAt + this.hub.stallMs - this.hub.now())) + 1;
      this.#heldTimer = setTimeout(() => {
        this.#heldTimer = null;
        this.#checkHeld();
      }, wait);
      this.#heldTimer.unref?.();
    }
  }

  #heldTimer: ReturnType<typeof setTimeout> | null = null;

  take(c: Txn): void {
    this.lastTaken = c.pos;
    this.lastTakeAt = this.hub.now();
    this.lastWasPart = c.stream === "part";
    this.#lastEventAt = Date.now();
    if (!this.o.onTxn(c)) this.full = true;
  }

  /** leaves the shared reader: its own starts from the last transaction it took, once it can take again */
  leave(why: string): void {
    const g = this.group;
    if (g) {
      g.subs.delete(this);
      this.xaCarry = g.ready ? g.reader.xaParked : this.xaCarry;
      if (g.subs.size === 0) g.stop();
      else g.wake();
    }
    this.group = null;
    this.overflow = [];
    this.overflowBytes = 0;
    this.hub.counters.detaches++;
    this.hub.note({ serverId: this.o.serverId, at: this.lastTaken, why }, "replica leaves the shared binlog stream; it reads on its own from the last transaction it took");
    if (this.lastWasPart) {
      // the pieces it applied of an unfinished transaction are rolled back; its own reader reads it again whole
      this.lastWasPart = false;
      if (!this.o.onTxn({ pos: this.lastTaken, ts: Date.now(), readAt: Date.now(), changes: [], rowCount: 0, bytes: 256, stream: "abort" })) this.full = true;
    }
    this.pendingOwn = true;
    if (!this.full) this.goOwn();
  }

  goOwn(): void {
    if (!this.pendingOwn || this.stopped) return;
    this.pendingOwn = false;
    this.hub.place(this, false).catch((e) => this.lost(e));
  }

  lost(e: Error): void {
    if (this.stopped || this.failed) return;
    this.failed = true;
    this.group = null;
    this.o.onError(e);
  }

  /** joins `g` at its position, handed `tail` (what g read after this subscriber's last transaction) */
  join(g: Shared, tail: Txn[]): void {
    this.group = g;
    g.subs.add(this);
    for (const t of tail) this.offer(t);
    // g may be paused because every other subscriber is full (one whose applier is blocked stays so): one that
    // can take wakes it, or it would wait on the others with no transaction, no error and no stall
    if (this.group === g) g.wake();
  }

  pause(): void {
    // the replica pauses its stream only through onTxn's false (see ReplicaSync); nothing else to do
  }

  resume(): void {
    if (this.stopped) return;
    this.full = false;
    while (this.overflow.length && !this.full) {
      const t = this.overflow.shift()!;
      this.overflowBytes -= t.bytes;
      this.take(t);
    }
    if (this.pendingOwn) {
      if (!this.full) this.goOwn();
      return;
    }
    // full when its own reader handed over the transaction where it could rejoin (StreamHub.tryMerge looks when a
    // reader hands one over): it looks again now, or with no more writes it would keep a reader of its own
    const g = this.group;
    if (g && this.ready && this.hub.sharing && g.boundaryKey !== null && g.boundaryKey === positionKey(this.lastTaken)) this.hub.tryMerge(g, g.boundaryKey);
    this.group?.wake();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const g = this.group;
    this.group = null;
    this.overflow = [];
    if (g) {
      g.subs.delete(this);
      if (g.subs.size === 0) {
        g.hub.retire(g);
        await g.reader?.stop().catch(() => undefined);
      } else g.wake();
    }
  }
}

/**
 * The port main.ts hands to every replica (SourceContext.openStream): `open` returns a replica's stream,
 * which joins a running reader at its position or starts one.
 */
export class StreamHub {
  readonly makeReader: OpenStream;
  readonly scope: (db: string, table: string) => boolean;
  readonly ringEntries: number;
  readonly #slack: number | undefined;
  readonly #maxSlack: number | undefined;
  readonly stallMs: number;
  readonly now: () => number;
  readonly #note: NonNullable<StreamHubOptions["note"]>;
  readonly #onReaders: NonNullable<StreamHubOptions["onReaders"]>;
  readonly #replicas: number;
  readonly #gatherMs: number;
  #waiters: (() => void)[] = [];
  readonly #live = new Set<Shared>();
  readonly #subs = new Set<Sub>();
  sharing = true;
  readonly counters = { readers: 0, joins: 0, detaches: 0 };

  constructor(o: StreamHubOptions) {
    this.makeReader = o.makeReader;
    this.scope = o.scope;
    this.ringEntries = o.ringEntries ?? 1024;
    this.#slack = o.slackBytes;
    this.#maxSlack = o.maxSlackBytes;
    this.stallMs = o.stallMs ?? 1000;
    this.now = o.now ?? Date.now;
    this.#note = o.note ?? (() => undefined);
    this.#onReaders = o.onReaders ?? (() => undefined);
    this.#replicas = o.replicas ?? 1;
    this.#gatherMs = o.gatherMs ?? 1500;
  }

  readonly open: OpenStream = (o) => {
    const s = new Sub(this, o);
    return s;
  };

  get stats(): StreamHubStats {
    let held = 0;
    for (const g of this.#live) held += g.ringBytes;
    for (const s of this.#subs) held += s.overflowBytes;
    return { ...this.counters, live: this.#live.size, sharing: this.sharing, heldBytes: held };
  }

  slackFor(o: ReaderOptions): number {
    // four pieces' worth (streamBytes is a quarter of apply.queueBytes): a replica may fall a queue's worth behind
    // the fastest before it leaves; a transaction of one piece alone would make replicas leave at every jitter
    return this.#slack ?? (o.streamBytes ? o.streamBytes * 4 : 16 << 20);
  }

  /**
   * Whether a held subscriber leaves its shared reader: past its slack when it took nothing for stallMs (its
   * applier is stuck or its replica gone), past maxSlackBytes (at least twice its slack) in any case (it is slower
   * than the others). A subscriber that keeps taking is held meanwhile: leaving costs a second binlog connection and
   * decode, and the reader it leaves never waits for it either way.
   */
  mustLeave(s: Sub): boolean {
    const slack = this.slackFor(s.o);
    if (s.overflowBytes <= slack) return false;
    if (s.overflowBytes > Math.max(2 * slack, this.#maxSlack ?? 0)) return true;
    return this.now() - s.lastTakeAt > this.stallMs;
  }

  note(fields: Record<string, unknown>, msg: string): void {
    this.#note(fields, msg);
  }

  endSharing(why: string): void {
    if (!this.sharing) return;
    this.sharing = false;
    this.note({ why }, "binlog readers are no longer shared");
  }

  retire(g: Shared): void {
    g.dead = true;
    if (this.#live.delete(g)) this.#onReaders(this.#live.size);
  }

  /** a subscriber's reader: a running one at its position, else one of its own */
  async place(s: Sub, gather = true): Promise<void> {
    if (s.stopped) return;
    this.#subs.add(s);
    const start = s.lastTaken;
    const key = positionKey(start);
    const clean = !start.xa && !hasOpenXa(s.xaCarry, start);
    if (this.sharing && clean) {
      for (const g of this.#live) {
        const tail = g.joinable(s.sig, key, this.slackFor(s.o));
        if (!tail) continue;
        this.counters.joins++;
        this.note({ serverId: s.o.serverId, at: start, behind: tail.length }, "replica joins a shared binlog stream");
        s.join(g, tail);
        this.#gathered();
        if (!g.ready) await g.started;
        return;
      }
    }
    const g = new Shared(this, s.o, start, this.#freeServerId(s), s.xaCarry);
    this.#live.add(g);
    this.#onReaders(this.#live.size);
    s.group = g;
    g.subs.add(s);
    this.#gathered();
    await g.start(gather && this.sharing && clean ? this.#gather() : Promise.resolve());
  }

  /**
   * The agent's replicas start their sessions one after another (each connects, checks, reads its checkpoint):
   * a new reader waits up to gatherMs for those not placed yet, so replicas at the same position share from the
   * first event (with a backlog, a reader that started alone would be past their start within milliseconds).
   */
  #gather(): Promise<void> {
    if (this.#gatherMs <= 0 || this.#placed() >= this.#replicas) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters = this.#waiters.filter((w) => w !== done);
        resolve();
      };
      const timer = setTimeout(done, this.#gatherMs);
      timer.unref?.();
      this.#waiters.push(done);
    });
  }

  #placed(): number {
    let n = 0;
    for (const x of this.#subs) if (!x.stopped && x.group) n++;
    return n;
  }

  #gathered(): void {
    if (this.#waiters.length && this.#placed() >= this.#replicas) for (const w of [...this.#waiters]) w();
  }

  /** a reader that has just handed over the transaction ending at `key`: its subscribers join another reader there */
  tryMerge(g: Shared, key: string): void {
    if (this.#live.size < 2 || hasOpenXa(g.reader?.xaParked)) return;
    const movers = [...g.subs].filter((s) => s.ready && positionKey(s.lastTaken) === key);
    if (movers.length === 0) return;
    for (const h of this.#live) {
      // never onto a reader still connecting: nobody here awaits its start, so if it failed the movers would be
      // left on a dead reader with no error, no transaction and no stall (their own reader stopped below)
      if (h === g || !h.ready) continue;
      if (!h.joinable(g.sig, key, this.slackFor(g.opts))) continue;
      for (const s of movers) {
        // what h read after `key`, taken anew for each mover: the join before woke h, and a reader's resume hands
        // over the events it holds at once (mysql2 handles the packets it queued while paused, synchronously), so
        // a tail taken before would miss them (the mover would skip a transaction). Not joinable any more: the
        // mover stays where it is.
        const tail = s.group === g && s.ready && positionKey(s.lastTaken) === key ? h.joinable(g.sig, key, this.slackFor(g.opts)) : null;
        if (!tail) continue;
        g.subs.delete(s);
        this.counters.joins++;
        this.note({ serverId: s.o.serverId, at: s.lastTaken, behind: tail.length }, "replica rejoins a shared binlog stream");
        s.join(h, tail);
      }
      if (g.subs.size === 0) g.stop();
      return;
    }
  }

  /** each binlog connection needs its own server id: one of a subscriber's that no live reader uses */
  #freeServerId(s: Sub): number {
    for (const x of [...this.#subs]) if (x.stopped) this.#subs.delete(x);
    const used = new Set([...this.#live].map((g) => g.serverId));
    if (!used.has(s.o.serverId)) return s.o.serverId;
    for (const x of this.#subs) if (!used.has(x.o.serverId)) return x.o.serverId;
    return s.o.serverId;
  }
}
