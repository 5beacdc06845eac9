// Reader owns one binlog connection to the source (zongji): it starts at a checkpoint (GTID or
// file/position, or the current end), assembles events into whole source transactions, and hands each
// to its consumer with the resume position that follows it. One reader per replica: each replica
// advances on its own, and a full consumer pauses its reader (memory stays bounded).
import ZongJi from "@vlasky/zongji";
import { GtidSet, MariadbGtidPosition } from "@vlasky/zongji";
import type { Flavor } from "./rules.js";
import {
  keepGeometryRaw,
  parseStatusVars,
  ROWS_NO_CHECK_CONSTRAINT_CHECKS,
  ROWS_NO_FOREIGN_KEY_CHECKS,
  ROWS_RELAXED_UNIQUE_CHECKS,
  takeQueryRaw,
  type QuerySession,
} from "./binlog-raw.js";

export interface Position {
  file: string;
  pos: number;
  /** MariaDB GTID position ("0-1-42,1-1-7") or MySQL GTID set ("uuid:1-42"); resumes by GTID when set */
  gtid?: string | null;
}

export type Row = Record<string, unknown>;

export interface RowChange {
  op: "insert" | "update" | "delete";
  db: string;
  table: string;
  /** insert/delete: the rows; update: the after images */
  rows: Row[];
  /** update: the before images, same order as rows */
  before?: Row[];
  /** the rows event flags (the writing session's foreign key, unique and CHECK constraint checks) */
  flags?: number;
}

export interface Txn {
  /** resume point right after this transaction */
  pos: Position;
  /** source commit time, ms (the binlog has second resolution) */
  ts: number;
  /** when the agent read the commit, ms */
  readAt: number;
  changes: RowChange[];
  rowCount: number;
  /**
   * a standalone DDL (or other non-DML query) with its default schema, the session it ran in on the
   * source (status variables) and its statement bytes (in the source client's character set)
   */
  ddl?: { sql: string; schema: string; session?: QuerySession; raw?: Buffer; ts?: number };
  /** DML that arrived as a statement (a session switched to STATEMENT format) */
  statementDml?: { sql: string; schema: string };
  /** approximate memory held by this transaction */
  bytes: number;
}

export class PurgedPositionError extends Error {
  readonly code = "purged";
  constructor(pos: Position, detail: string) {
    super(
      `the source no longer has the binlog at the replica's checkpoint (${pos.gtid ? `GTID ${pos.gtid}` : `${pos.file}:${pos.pos}`}): it was purged (${detail}). ` +
        "The replica needs a new snapshot: run `datasync resnapshot --config F --replica NAME`.",
    );
    this.name = "PurgedPositionError";
  }
}

export function isPurgedError(err: any): boolean {
  const m = String(err?.message ?? "");
  return (
    err?.errno === 1236 &&
    /purged|could not find first log file|could not find GTID|not find.*GTID|GTID.*not.*(found|exist)|binary log.*not.*(found|exist)|requested.*not.*(found|exist)|missing transactions/i.test(m)
  );
}

/** Compare binlog positions by file sequence number, then offset. */
export function comparePos(a: { file: string; pos: number }, b: { file: string; pos: number }): number {
  const fa = Number(/(\d+)$/.exec(a.file)?.[1] ?? 0);
  const fb = Number(/(\d+)$/.exec(b.file)?.[1] ?? 0);
  if (fa !== fb) return fa - fb;
  if (a.file !== b.file) return a.file < b.file ? -1 : 1;
  return a.pos - b.pos;
}

const DML_RE = /^\s*(?:\/\*.*?\*\/\s*)*(INSERT|UPDATE|DELETE|REPLACE|LOAD\s+DATA)\b/is;

export interface ReaderOptions {
  connection: Record<string, unknown>;
  serverId: number;
  flavor: Flavor;
  start: Position;
  /** databases whose row events are wanted (others are dropped before decoding) */
  databases: string[];
  /** db.table in scope */
  inScope: (db: string, table: string) => boolean;
  /** receives each committed transaction; returns false when the consumer is full (the reader pauses) */
  onTxn: (t: Txn) => boolean;
  onError: (err: Error) => void;
  /** column metadata lookup for servers whose binlog carries no column names (MySQL 5.7): the replica's own schema */
  tableInfo?: (db: string, table: string) => Promise<any[] | null>;
}

/**
 * Approximate heap size of a decoded value. Measured against heap snapshots of zongji rows: a row object
 * with named properties costs ~120 bytes plus ~40 per property, strings ~20 + their length (two-byte
 * strings twice that), Buffers ~100 + their length.
 */
function sizeOf(v: unknown): number {
  if (v === null || v === undefined) return 0;
  if (typeof v === "string") return 20 + v.length * 2;
  if (Buffer.isBuffer(v)) return 100 + v.length;
  return 12;
}

function rowSize(r: Row): number {
  let n = 120;
  for (const k in r) n += 40 + sizeOf(r[k]);
  return n;
}

export class BinlogReader {
  #z: any = null;
  #o: ReaderOptions;
  #cur: Txn | null = null;
  #mariaGtid: MariadbGtidPosition | null = null;
  #mysqlGtid: GtidSet | null = null;
  #pendingGtid: any;
  /** the current MariaDB GTID group is not standalone: a DDL in it is followed by its rows */
  #groupWithRows = false;
  /** MySQL XA: prepared transactions waiting for their XA COMMIT, by XID text */
  #xaPrepared = new Map<string, Txn>();
  #xaCurrent: string | null = null;
  #paused = false;
  #stopped = false;
  #failed = false;
  /** the last commit seen (even when nothing in it was in scope) */
  lastRead: Position;
  /** when the last binlog event arrived (a stalled connection stops moving this) */
  lastEventAt = Date.now();

  constructor(o: ReaderOptions) {
    this.#o = o;
    this.lastRead = o.start;
    if (o.start.gtid) {
      if (o.flavor === "mariadb") this.#mariaGtid = MariadbGtidPosition.parse(o.start.gtid);
      else this.#mysqlGtid = GtidSet.parse(o.start.gtid);
    }
  }

  get paused(): boolean {
    return this.#paused;
  }

  start(): Promise<void> {
    const o = this.#o;
    const z: any = new ZongJi({ ...o.connection, dateStrings: true, timezone: "Z", supportBigNumbers: true, bigNumberStrings: true, jsonStrings: true });
    this.#z = z;
    if (o.tableInfo) this.#overrideTableInfo(z, o.tableInfo);
    return new Promise((resolve, reject) => {
      let ready = false;
      z.on("ready", () => {
        ready = true;
        resolve();
      });
      z.on("error", (err: Error) => {
        if (this.#stopped || this.#failed) return;
        this.#failed = true;
        const e = isPurgedError(err) ? new PurgedPositionError(this.lastRead, (err as any).message) : err;
        if (!ready) reject(e);
        else o.onError(e);
      });
      z.on("binlog", (ev: any) => {
        this.lastEventAt = Date.now();
        try {
          this.#onEvent(ev);
        } catch (err: any) {
          if (this.#failed) return;
          this.#failed = true;
          o.onError(err);
        }
      });
      const schema: Record<string, true> = {};
      for (const d of o.databases) schema[d] = true;
      const startOpts: any = {
        serverId: o.serverId,
        includeEvents: [
          "tablemap", "writerows", "updaterows", "deleterows", "query", "xid", "xaprepare", "gtid", "mariadbgtid", "rotate",
          "format", "mariadbgtidlist", "binlogcheckpoint", "previousgtids", "heartbeat",
        ],
        includeSchema: schema,
      };
      if (o.start.gtid) startOpts.gtidSet = o.start.gtid;
      else {
        startOpts.filename = o.start.file;
        startOpts.position = o.start.pos;
      }
      z.start(startOpts);
    });
  }

  // Where the binlog carries no column names, zongji asks INFORMATION_SCHEMA of the source for the
  // table's *current* columns; after an ALTER that is the wrong schema for older events. The replica
  // stands at the same stream position (DDL is applied in order), so its schema is the right one.
  #overrideTableInfo(z: any, info: NonNullable<ReaderOptions["tableInfo"]>): void {
    const original = z._fetchTableInfo.bind(z);
    z._fetchTableInfo = (ev: any, next: () => void) => {
      info(ev.schemaName, ev.tableName).then(
        (rows) => {
          if (!rows || rows.length === 0) return original(ev, next);
          z.tableMap[ev.tableId] = { columnSchemas: rows, parentSchema: ev.schemaName, tableName: ev.tableName };
          next();
        },
        () => original(ev, next),
      );
    };
  }

  #open(ts: number): Txn {
    return { pos: this.lastRead, ts, readAt: 0, changes: [], rowCount: 0, bytes: 256 };
  }

  #onEvent(ev: any): void {
    const name: string = ev.getEventName();
    switch (name) {
      case "mariadbgtid":
      case "gtid":
        // an XA transaction's first part ends with XA END / XA PREPARE: park it until its XA COMMIT
        if (this.#cur && this.#xaCurrent) this.#parkXa();
        this.#foldPending();
        this.#cur = this.#open(ev.timestamp);
        this.#pendingGtid = name === "mariadbgtid" ? { domainId: ev.domainId, serverId: ev.serverId, seqNo: ev.seqNo } : ev.gtid;
        // MariaDB: a DDL in a group that is not standalone carries rows (CREATE TABLE … SELECT logs the
        // CREATE, then its rows, then an Xid, under one GTID)
        this.#groupWithRows = name === "mariadbgtid" && ev.standalone === false;
        return;
      case "tablemap":
        keepGeometryRaw(ev.tableMap?.[ev.tableId]);
        return;
      case "query": {
        const sql: string = ev.query;
        const raw = takeQueryRaw(ev);
        const head = sql.trimStart().slice(0, 24).toUpperCase();
        const xa = /^\s*XA\s+(START|BEGIN|END|PREPARE|COMMIT|ROLLBACK)\s+(.*?)\s*$/is.exec(sql);
        if (xa) {
          const verb = xa[1].toUpperCase();
          const xid = xa[2].replace(/\s+ONE\s+PHASE\s*$/i, "").replace(/\s+/g, "");
          if (verb === "START" || verb === "BEGIN") {
            if (!this.#cur) this.#cur = this.#open(ev.timestamp);
            this.#xaCurrent = xid;
          } else if (verb === "COMMIT") {
            if (/ONE\s+PHASE\s*$/i.test(xa[2]) && this.#cur) {
              this.#xaCurrent = null;
              this.#commit(ev);
            } else {
              const parked = this.#xaPrepared.get(xid);
              this.#xaPrepared.delete(xid);
              const t = this.#cur ?? this.#open(ev.timestamp);
              if (parked) {
                t.changes.push(...parked.changes);
                t.rowCount += parked.rowCount;
                t.bytes += parked.bytes;
              }
              this.#cur = t;
              this.#commit(ev);
            }
          } else if (verb === "ROLLBACK") {
            this.#xaPrepared.delete(xid);
            this.#cur = null;
            this.#commit(ev);
          }
          return;
        }
        if (head.startsWith("BEGIN") || head.startsWith("SAVEPOINT") || /^ROLLBACK\s+(WORK\s+)?TO\b/.test(head) || head.startsWith("RELEASE SAVEPOINT")) {
          if (!this.#cur) this.#cur = this.#open(ev.timestamp);
          return;
        }
        if (head.startsWith("COMMIT") || /^ROLLBACK\s*$/.test(head)) {
          this.#commit(ev);
          return;
        }
        if (DML_RE.test(sql)) {
          // Statement-format DML inside a transaction; reported by the applier if it is in scope.
          if (!this.#cur) this.#cur = this.#open(ev.timestamp);
          if (!this.#cur.statementDml) this.#cur.statementDml = { sql, schema: ev.schema ?? "" };
          return;
        }
        if (!this.#cur) this.#cur = this.#open(ev.timestamp);
        // MySQL 8.0.21+ logs an atomic CREATE TABLE … SELECT as "CREATE TABLE … START TRANSACTION",
        // followed by its rows and an Xid: one transaction, not a standalone DDL.
        const ctas = /\s+START\s+TRANSACTION\s*$/i.exec(sql);
        const session = raw ? parseStatusVars(raw.statusVars, this.#o.flavor) : undefined;
        if (ctas || (this.#groupWithRows && this.#o.flavor === "mariadb")) {
          // one transaction: the DDL, then its rows, committed by the group's Xid (a checkpoint after the
          // DDL alone would name the whole GTID and skip the rows on a resume)
          if (!ctas) {
            this.#cur.ddl = { sql, schema: ev.schema ?? "" };
            if (raw) Object.assign(this.#cur.ddl, { session, raw: raw.query ?? undefined, ts: ev.timestamp });
            return;
          }
          // the suffix is ASCII: as many bytes as characters
          const q = raw?.query;
          this.#cur.ddl = { sql: sql.slice(0, ctas.index), schema: ev.schema ?? "" };
          if (raw) Object.assign(this.#cur.ddl, { session, raw: q ? q.subarray(0, q.length - (sql.length - ctas.index)) : undefined, ts: ev.timestamp });
          return;
        }
        // A standalone statement (DDL, account management, …) is its own transaction.
        this.#cur.ddl = { sql, schema: ev.schema ?? "" };
        if (raw) Object.assign(this.#cur.ddl, { session, raw: raw.query ?? undefined, ts: ev.timestamp });
        this.#commit(ev);
        return;
      }
      case "writerows":
      case "updaterows":
      case "deleterows": {
        const tm = ev.tableMap?.[ev.tableId];
        if (!tm) return;
        const db: string = tm.parentSchema;
        const table: string = tm.tableName;
        if (!this.#o.inScope(db, table)) return;
        if (!this.#cur) this.#cur = this.#open(ev.timestamp);
        const t = this.#cur;
        const op = name === "writerows" ? "insert" : name === "updaterows" ? "update" : "delete";
        // the checks the writing session ran with (foreign keys, unique, MariaDB CHECK constraints)
        const flags = Number(ev.flags ?? 0) & (ROWS_NO_FOREIGN_KEY_CHECKS | ROWS_RELAXED_UNIQUE_CHECKS | ROWS_NO_CHECK_CONSTRAINT_CHECKS);
        let last = t.changes[t.changes.length - 1];
        if (!last || last.op !== op || last.db !== db || last.table !== table || (last.flags ?? 0) !== flags) {
          last = { op, db, table, rows: [], before: op === "update" ? [] : undefined };
          if (flags) last.flags = flags;
          t.changes.push(last);
        }
        if (op === "update") {
          for (const r of ev.rows) {
            last.before!.push(r.before);
            last.rows.push(r.after);
            t.bytes += rowSize(r.before) + rowSize(r.after);
          }
        } else {
          for (const r of ev.rows) {
            last.rows.push(r);
            t.bytes += rowSize(r);
          }
        }
        t.rowCount += ev.rows.length;
        return;
      }
      case "xid":
        this.#commit(ev);
        return;
      case "xaprepare":
        if (this.#cur) this.#parkXa();
        return;
      case "rotate":
        // between transactions the reader has read up to the new file's start (a rotation writes no
        // transaction, yet moves the source's end: readiness checks compare against that end)
        if (!this.#cur && ev.binlogName) this.lastRead = { ...this.lastRead, file: String(ev.binlogName), pos: Number(ev.position) || 4 };
        return;
      case "format":
      case "mariadbgtidlist":
      case "binlogcheckpoint":
      case "previousgtids":
      case "heartbeat":
        if (!this.#cur && ev.nextPosition > 0) {
          const file: string = this.#z?.options?.filename ?? this.lastRead.file;
          if (file === this.lastRead.file ? ev.nextPosition > this.lastRead.pos : true) this.lastRead = { ...this.lastRead, file, pos: ev.nextPosition };
        }
        return;
      default:
        return;
    }
  }

  /** Park the prepared part of an XA transaction under the XID of its XA START until XA COMMIT. */
  #parkXa(): void {
    if (this.#cur) this.#xaPrepared.set(this.#xaCurrent ?? "", this.#cur);
    this.#cur = null;
    this.#xaCurrent = null;
    this.#foldPending();
  }

  /** Add the current group's GTID to the executed position: at its commit, or when a group ends without one (an XA prepare). */
  #foldPending(): void {
    if (!this.#pendingGtid) return;
    if (this.#o.flavor === "mariadb") {
      this.#mariaGtid ??= new MariadbGtidPosition();
      this.#mariaGtid.add(this.#pendingGtid);
    } else {
      this.#mysqlGtid ??= new GtidSet();
      this.#mysqlGtid.add(this.#pendingGtid);
    }
    this.#pendingGtid = undefined;
  }

  #commit(ev: any): void {
    const t = this.#cur ?? this.#open(ev.timestamp);
    this.#cur = null;
    this.#foldPending();
    const gtid = this.#mariaGtid ? this.#mariaGtid.toString() : this.#mysqlGtid ? this.#mysqlGtid.toString() : null;
    const file: string = this.#z?.options?.filename ?? this.lastRead.file;
    const pos = ev.nextPosition > 0 ? ev.nextPosition : this.lastRead.pos;
    t.pos = { file, pos, gtid };
    if (!t.ts) t.ts = ev.timestamp;
    t.readAt = Date.now();
    this.lastRead = t.pos;
    if (!this.#o.onTxn(t)) this.pause();
  }

  pause(): void {
    if (this.#paused || !this.#z?.connection) return;
    this.#paused = true;
    this.#z.connection.pause();
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#z?.connection?.resume();
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    const z = this.#z;
    if (!z) return;
    // keep an error listener while stopping: zongji may emit teardown errors
    z.on("error", () => undefined);
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 2000);
      z.once("stopped", () => {
        clearTimeout(t);
        resolve();
      });
      try {
        z.stop();
      } catch {
        clearTimeout(t);
        resolve();
      }
    });
  }
}
