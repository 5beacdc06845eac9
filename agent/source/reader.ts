// Reader owns one binlog connection to the source (zongji): it starts at a checkpoint (GTID or
// file/position, or the current end), assembles events into whole source transactions, and hands each
// to its consumer with the resume position that follows it. One reader per replica: each replica
// advances on its own, and a full consumer pauses its reader (memory stays bounded).
import ZongJi from "@vlasky/zongji";
import { explainDriverTlsError } from "../db.js";
import { GtidSet, MariadbGtidPosition } from "@vlasky/zongji";
import type { Flavor } from "../rules.js";
import {
  keepGeometryRaw,
  parseStatusVars,
  ROWS_NO_CHECK_CONSTRAINT_CHECKS,
  ROWS_NO_FOREIGN_KEY_CHECKS,
  ROWS_RELAXED_UNIQUE_CHECKS,
  takeQueryRaw,
  dropQueryRaw,
  type QuerySession,
} from "./binlog-raw.js";
import { EXACT, PACK, PACKED, exactRowsReady, installExactRows } from "./rowdecode.js";
import { packedChange, packsOf, rowsOf, type Pack } from "./rowsql.js";
import { comparePos, type Position } from "./positions.js";
import { MysqlGtidText } from "./gtid-text.js";
import { PurgedPositionError } from "../errors.js";


export type Row = Record<string, unknown>;

export interface RowChange {
  /** "savepoint"/"rollback-to": a source savepoint that a ROLLBACK TO in the same transaction returns to (rows empty) */
  op: "insert" | "update" | "delete" | "savepoint" | "rollback-to";
  /** the savepoint's name, for "savepoint" and "rollback-to" */
  savepoint?: string;
  db: string;
  table: string;
  /** insert/delete: the rows; update: the after images */
  rows: Row[];
  /** update: the before images, same order as rows */
  before?: Row[];
  /** the rows event flags besides foreign key checks (unique and MariaDB CHECK constraint checks) */
  flags?: number;
  /**
   * the rows event carried ROWS_NO_FOREIGN_KEY_CHECKS: the source session ran it with foreign_key_checks=0, or
   * (MySQL 9.6+, SQL-layer foreign keys) it is a cascaded change of a child table, logged before its parent's
   * event; applied with foreign key checks off as well, as MySQL's own applier does
   */
  noFkChecks?: boolean;
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
  /**
   * A source transaction larger than the reader's `streamBytes` arrives in pieces, in order: "part" (its
   * rows so far, no commit yet: `pos` is the position before the transaction), then "last" (the rest, with
   * the commit position), or "abort" (the transaction ended without a commit: nothing of it is applied).
   * The applier runs the pieces in one open target transaction that commits with the last one.
   */
  stream?: "part" | "last" | "abort";
  /**
   * a "part": the binlog offset (in `pos.file`) right after its last rows event, so a piece is known by the bytes
   * of the binlog it holds (from the previous piece's cut, or the transaction's start, to this one)
   */
  cut?: number;
  /**
   * some of its rows were decoded with the replica's own schema (a table map without column names,
   * ReaderOptions.tableInfo): their values depend on that replica's column types and character sets, so no
   * other replica may take statements built from them (SharedBuilds)
   */
  ownSchema?: boolean;
}

export function isPurgedError(err: any): boolean {
  const m = String(err?.message ?? "");
  return (
    err?.errno === 1236 &&
    /purged|could not find first log file|could not find GTID|not find.*GTID|GTID.*not.*(found|exist)|binary log.*not.*(found|exist)|requested.*not.*(found|exist)|missing transactions/i.test(m)
  );
}

/** test seam: a reader whose pause never reaches its connection (back-pressure lost; replica.ts #backPressureLost) */
const TEST_IGNORE_PAUSE = process.env.DATASYNC_TEST_IGNORE_PAUSE === "1";

/** SAVEPOINT x, ROLLBACK [WORK] TO [SAVEPOINT] x, RELEASE SAVEPOINT x (names bare or backquoted) */
const SAVEPOINT_RE = /^\s*(SAVEPOINT|ROLLBACK\s+(?:WORK\s+)?TO(?:\s+SAVEPOINT)?|RELEASE\s+SAVEPOINT)\s+(`(?:[^`]|``)+`|[^\s;`]+)\s*;?\s*$/i;

/** an XID as the server writes it into XA statements of the binlog: X'gtrid',X'bqual',formatID */
function xidText(gtrid: Buffer, bqual: Buffer, formatId: unknown): string {
  return `X'${gtrid.toString("hex")}',X'${bqual.toString("hex")}',${Number(formatId)}`.toUpperCase();
}

function unquoteName(n: string): string {
  return n.startsWith("`") ? n.slice(1, -1).replace(/``/g, "`") : n;
}

const DML_RE = /^\s*(?:\/\*.*?\*\/\s*)*(INSERT|UPDATE|DELETE|REPLACE|LOAD\s+DATA)\b/is;

/** the prepared part of an XA transaction, waiting for its XA COMMIT or XA ROLLBACK */
export interface XaParked {
  txn: Txn;
  /** MySQL: the prepared part's GTID, added to the position with the commit */
  gtid?: unknown;
  /** where the commit or rollback was read (kept a while for a reader that starts before it) */
  committedAt?: Position;
  /** MariaDB: the position before the prepared part's group (where a restarted reader must start to read it again) */
  since?: { file: string; pos: number; gtid?: string | null };
}

export interface ReaderOptions {
  /** prepared XA transactions from the replica's previous reader */
  xaParked?: ReadonlyMap<string, XaParked>;
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
  /**
   * A transaction whose buffered rows pass this many bytes is handed over in pieces (Txn.stream) instead
   * of whole, so memory stays bounded whatever its size; unset: never.
   */
  streamBytes?: number;
  /**
   * inserted and updated rows of whole images are read as SQL tuples (rowsql.ts: written straight from the row image;
   * the RowChange decodes its row objects only when something reads them); `DATASYNC_PACK_ROWS=0` turns it off
   */
  packRows?: boolean;
  /** whether the consumer takes pieces now (it does not while a snapshot copies: chunk watermarks need whole transactions) */
  canStream?: () => boolean;
}

/**
 * Approximate heap size of a decoded value. Measured against heap snapshots of zongji rows: a row object
 * with named properties costs ~120 bytes plus ~40 per property, strings ~20 + their length (two-byte
 * strings twice that), Buffers ~100 + their length.
 */
function sizeOf(v: unknown): number {
  // (the same figures as ever, the common types tested first: this runs per value read)
  if (typeof v === "string") return 20 + v.length * 2;
  if (v === null || v === undefined) return 0;
  if (typeof v !== "object") return 12;
  if (Buffer.isBuffer(v)) return 100 + v.length;
  return 12;
}

function rowSize(r: Row): number {
  let n = 120;
  for (const k in r) n += 40 + sizeOf(r[k]);
  return n;
}

/** zongji's event name (getEventName: its class's name in lower case), once per event class rather than a new string per event */
const EVENT_NAMES = new WeakMap<object, string>();
function eventName(ev: any): string {
  const cls = ev.constructor;
  // (an event that is a plain object, as tests build them, has no class of its own)
  if (typeof cls !== "function" || cls === Object) return ev.getEventName();
  let name = EVENT_NAMES.get(cls);
  if (name === undefined) EVENT_NAMES.set(cls, (name = ev.getEventName() as string));
  return name;
}

/**
 * A MariaDB GTID position's text, as its toString() writes it ("domain-server-seq" per domain, by domain): one
 * domain (the common case) without the sort, map and join toString pays per source transaction.
 */
export function mariadbGtidText(g: MariadbGtidPosition): string {
  const domains = (g as any)._domains;
  if (domains instanceof Map && domains.size === 1) {
    for (const d of domains.values()) {
      if (typeof d?.domainId === "number" && typeof d.serverId === "number" && (typeof d.seqNo === "number" || typeof d.seqNo === "bigint")) return `${d.domainId}-${d.serverId}-${d.seqNo}`;
    }
  }
  return g.toString();
}

/**
 * What a replica needs of its binlog stream (the port main.ts fills): BinlogReader reads one connection of its
 * own; another implementation may share one stream between replicas (it must keep the same contract: every
 * transaction after `start` in order, back-pressure through onTxn's false, errors through onError).
 */
export interface BinlogStream {
  start(): Promise<void>;
  stop(): Promise<void>;
  pause(): void;
  resume(): void;
  readonly paused: boolean;
  /** the position of the last event read */
  readonly lastRead: Position;
  /** when the last event arrived (ms since the epoch) */
  readonly lastEventAt: number;
  /** the prepared XA transactions this stream holds, for the replica's next one */
  readonly xaParked: ReadonlyMap<string, XaParked>;
}

/** Builds a replica's binlog stream (main.ts decides which kind). */
export type OpenStream = (o: ReaderOptions) => BinlogStream;

/**
 * The prepared XA transactions read by a replica's previous reader (a reconnect, a source restart) that are still
 * open at a new reader's start: what it begins with (BinlogReader, and reader-thread.ts before its worker reports).
 */
export function xaOpenAt(parked: ReadonlyMap<string, XaParked> | undefined, start: Position): Map<string, XaParked> {
  const m = new Map<string, XaParked>();
  for (const [xid, p] of parked ?? []) if (!p.committedAt || comparePos(p.committedAt, start) > 0) m.set(xid, { ...p, committedAt: undefined });
  return m;
}

export class BinlogReader implements BinlogStream {
  #z: any = null;
  #o: ReaderOptions;
  #cur: Txn | null = null;
  #mariaGtid: MariadbGtidPosition | null = null;
  #mysqlGtid: MysqlGtidText | null = null;
  #pendingGtid: any;
  /** the current MariaDB GTID group is not standalone: a DDL in it is followed by its rows */
  #groupWithRows = false;
  /** XA: prepared transactions waiting for their XA COMMIT, by XID text (see XaParked) */
  #xaPrepared: Map<string, XaParked>;
  #xaCurrent: string | null = null;
  /** the XA transaction whose XA COMMIT/ROLLBACK is being handed over (no longer open at its position) */
  #xaClosing: string | null = null;
  /** the last commit position before the current group (an XA prepared part's `since`) */
  #groupStart: Position;
  /** a reader started before its checkpoint to re-read open XA prepared parts: hands nothing over up to here */
  #skipUntil: Position | null = null;
  /** savepoints of the open transaction: where in its changes each was set, and whether a marker went in */
  #savepoints: { name: string; index: number; marked: boolean }[] = [];
  /** the next row event starts a new change (a savepoint lies between) */
  #split = false;
  /** the open transaction is being handed over in pieces (Txn.stream) */
  #streaming = false;
  /** the open group may not be handed over in pieces (MariaDB: the prepared part of an XA transaction) */
  #noStream = false;
  #paused = false;
  #stopped = false;
  #failed = false;
  /** the furthest position handed to the consumer */
  #handed: Position;
  /** the last commit seen (even when nothing in it was in scope) */
  lastRead: Position;
  /** when the last binlog event arrived (a stalled connection stops moving this) */
  lastEventAt = Date.now();

  constructor(o: ReaderOptions) {
    this.#o = o;
    this.lastRead = o.start;
    this.#handed = o.start;
    if (o.flavor === "mariadb" && o.start.xa?.since) {
      // XA transactions were prepared before the checkpoint and are still open (Position.xa): read again
      // from before the oldest, applying nothing up to the checkpoint
      const { xa: _xa, ...at } = o.start;
      this.#skipUntil = at;
      this.lastRead = { ...o.start.xa.since };
    }
    this.#groupStart = this.lastRead;
    this.#xaPrepared = xaOpenAt(o.xaParked, o.start);
    if (o.start.gtid) {
      if (o.flavor === "mariadb") this.#mariaGtid = MariadbGtidPosition.parse(o.start.gtid);
      else this.#mysqlGtid = new MysqlGtidText(GtidSet.parse(o.start.gtid));
    }
  }

  get paused(): boolean {
    return this.#paused;
  }

  start(): Promise<void> {
    // the decoding patch loads once per process; later readers start synchronously
    if (exactRowsReady()) return this.#start();
    return installExactRows().then(() => this.#start());
  }

  #start(): Promise<void> {
    const o = this.#o;
    const z: any = new ZongJi({ ...o.connection, dateStrings: true, timezone: "Z", supportBigNumbers: true, bigNumberStrings: true, jsonStrings: true });
    z[EXACT] = true;
    if (o.packRows && process.env.DATASYNC_PACK_ROWS !== "0") z[PACK] = true;
    this.#z = z;
    if (o.tableInfo) this.#overrideTableInfo(z, o.tableInfo);
    return new Promise((resolve, reject) => {
      let ready = false;
      z.on("ready", () => {
        ready = true;
        // zongji keeps its own executed GTID set (its gtidSet getter), folding every transaction into it; the
        // reader never reads it (zongji's position is no safe checkpoint: this reader keeps its own), and on
        // MySQL that fold costs a GtidSet.add per source transaction. Its dump already started from the
        // options, so nothing else reads it from here on.
        z._executedGtids = null;
        z._seedGtidsFromStream = false;
        resolve();
      });
      z.on("error", (err: Error) => {
        if (this.#stopped || this.#failed) return;
        this.#failed = true;
        const tls = explainDriverTlsError(err, o.connection as any);
        if (tls) err.message = tls;
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
      const from = this.#skipUntil ? this.lastRead : o.start;
      if (from.gtid) startOpts.gtidSet = from.gtid;
      else {
        startOpts.filename = from.file;
        startOpts.position = from.pos;
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
          z.tableMap[ev.tableId] = { columnSchemas: rows, parentSchema: ev.schemaName, tableName: ev.tableName, ownSchema: true };
          next();
        },
        () => original(ev, next),
      );
    };
  }

  #open(ts: number): Txn {
    this.#savepoints = [];
    this.#split = false;
    return { pos: this.lastRead, ts, readAt: 0, changes: [], rowCount: 0, bytes: 256 };
  }

  #onEvent(ev: any): void {
    const name = eventName(ev);
    switch (name) {
      case "mariadbgtid":
      case "gtid":
        return this.#onGtid(ev, name);
      case "tablemap":
        keepGeometryRaw(ev.tableMap?.[ev.tableId]);
        return;
      case "query":
        return this.#onQuery(ev);
      case "writerows":
      case "updaterows":
      case "deleterows":
        return this.#onRows(ev, name);
      case "xid":
        this.#commit(ev);
        return;
      case "xaprepare":
        return this.#onXaPrepare(ev);
      case "rotate":
        return this.#onRotate(ev);
      case "format":
      case "mariadbgtidlist":
      case "binlogcheckpoint":
      case "previousgtids":
      case "heartbeat":
        return this.#onPositionOnly(ev, name);
      default:
        return;
    }
  }

  /** a transaction's GTID event: the previous one ends (parked, dropped or folded), a new one opens */
  #onGtid(ev: any, name: string): void {
    // an XA transaction's first part ends with XA END / XA PREPARE: park it until its XA COMMIT
    if (this.#cur && this.#xaCurrent) this.#parkXa();
    // a transaction handed over in pieces that ends without a commit: the consumer drops what it has
    if (this.#cur && this.#streaming) this.#abortStream();
    this.#foldPending();
    this.#groupStart = this.lastRead;
    this.#cur = this.#open(ev.timestamp);
    this.#pendingGtid = name === "mariadbgtid" ? { domainId: ev.domainId, serverId: ev.serverId, seqNo: ev.seqNo } : ev.gtid;
    // MariaDB: a DDL in a group that is not standalone carries rows (CREATE TABLE … SELECT logs the
    // CREATE, then its rows, then an Xid, under one GTID)
    this.#groupWithRows = name === "mariadbgtid" && ev.standalone === false;
    // MariaDB flags the group of an XA PREPARE in its GTID event (there is no XA START): it is parked whole
    this.#noStream = name === "mariadbgtid" && !!ev.preparedXa;
  }

  /** a query event: XA, BEGIN, savepoints, COMMIT/ROLLBACK, statement DML, or a DDL (standalone or with rows) */
  #onQuery(ev: any): void {
    const sql: string = ev.query;
    // the statement's raw bytes serve a DDL only (its session and exact bytes): the others just let go of the packet
    if (sql === "BEGIN") {
      // (MySQL logs one per transaction: the common case first)
      dropQueryRaw(ev);
      if (!this.#cur) this.#cur = this.#open(ev.timestamp);
      return;
    }
    const head = sql.trimStart().slice(0, 24).toUpperCase();
    const xa = /^\s*XA\s+(START|BEGIN|END|PREPARE|COMMIT|ROLLBACK)\s+(.*?)\s*$/is.exec(sql);
    if (xa) {
      dropQueryRaw(ev);
      this.#onXa(ev, xa);
      return;
    }
    if (head.startsWith("BEGIN")) {
      dropQueryRaw(ev);
      if (!this.#cur) this.#cur = this.#open(ev.timestamp);
      return;
    }
    const sp = SAVEPOINT_RE.exec(sql);
    if (sp) {
      dropQueryRaw(ev);
      if (!this.#cur) this.#cur = this.#open(ev.timestamp);
      this.#savepoint(this.#cur, sp[1].slice(0, 4).toUpperCase(), unquoteName(sp[2]));
      return;
    }
    if (head.startsWith("COMMIT") || /^ROLLBACK\s*$/.test(head)) {
      dropQueryRaw(ev);
      this.#commit(ev);
      return;
    }
    if (DML_RE.test(sql)) {
      dropQueryRaw(ev);
      // Statement-format DML inside a transaction; reported by the applier if it is in scope.
      if (!this.#cur) this.#cur = this.#open(ev.timestamp);
      if (!this.#cur.statementDml) this.#cur.statementDml = { sql, schema: ev.schema ?? "" };
      return;
    }
    const raw = takeQueryRaw(ev);
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
  }

  /** XA START/END/COMMIT/ROLLBACK as query events (MySQL; MariaDB writes no XA START) */
  #onXa(ev: any, xa: RegExpExecArray): void {
    const verb = xa[1].toUpperCase();
    const xid = xa[2].replace(/\s+(ONE\s+PHASE|SUSPEND(\s+FOR\s+MIGRATE)?)\s*$/i, "").replace(/\s+/g, "").toUpperCase();
    if (verb === "START" || verb === "BEGIN") {
      if (!this.#cur) this.#cur = this.#open(ev.timestamp);
      this.#xaCurrent = xid;
    } else if (verb === "END") {
      // MariaDB writes no XA START (the XID rides in the GTID event): XA END names the transaction
      if (!this.#cur) this.#cur = this.#open(ev.timestamp);
      this.#xaCurrent = xid;
    } else if (verb === "COMMIT") {
      if (/ONE\s+PHASE\s*$/i.test(xa[2]) && this.#cur) {
        this.#xaCurrent = null;
        this.#commit(ev);
      } else {
        const parked = this.#xaPrepared.get(xid);
        const t = this.#cur ?? this.#open(ev.timestamp);
        if (parked && !parked.committedAt) {
          t.changes.push(...parked.txn.changes);
          t.rowCount += parked.txn.rowCount;
          t.bytes += parked.txn.bytes;
          if (parked.gtid) this.#foldGtid(parked.gtid);
        }
        this.#cur = t;
        this.#xaClosing = xid;
        this.#commit(ev);
        this.#xaClosing = null;
        if (parked) this.#xaDone(xid, parked);
      }
    } else if (verb === "ROLLBACK") {
      const parked = this.#xaPrepared.get(xid);
      if (parked?.gtid && !parked.committedAt) this.#foldGtid(parked.gtid);
      this.#cur = null;
      this.#xaClosing = xid;
      this.#commit(ev);
      this.#xaClosing = null;
      if (parked) this.#xaDone(xid, parked);
    }
  }

  /** a rows event in scope: appended to the open transaction's last change of the same kind, or a new one */
  #onRows(ev: any, name: string): void {
    const tm = ev.tableMap?.[ev.tableId];
    if (!tm) return;
    const db: string = tm.parentSchema;
    const table: string = tm.tableName;
    if (!this.#o.inScope(db, table)) return;
    if (!this.#cur) this.#cur = this.#open(ev.timestamp);
    const t = this.#cur;
    if (tm.ownSchema) t.ownSchema = true;
    const op = name === "writerows" ? "insert" : name === "updaterows" ? "update" : "delete";
    const noFk = (ev.flags & ROWS_NO_FOREIGN_KEY_CHECKS) !== 0;
    // the other checks the writing session ran with (unique, MariaDB CHECK constraints)
    const flags = Number(ev.flags ?? 0) & (ROWS_RELAXED_UNIQUE_CHECKS | ROWS_NO_CHECK_CONSTRAINT_CHECKS);
    let last = t.changes[t.changes.length - 1];
    // an insert or update read as SQL tuples (rowsql.ts): its rows are decoded only if something reads them
    const pack: Pack | undefined = ev[PACKED];
    if (this.#split || !last || last.op !== op || last.db !== db || last.table !== table || !!last.noFkChecks !== noFk || (last.flags ?? 0) !== flags) {
      if (!pack) last = { op, db, table, rows: [], before: op === "update" ? [] : undefined };
      else last = packedChange(db, table, pack) as RowChange;
      if (noFk) last.noFkChecks = true;
      if (flags) last.flags = flags;
      t.changes.push(last);
      this.#split = false;
      if (pack) {
        this.#packed(t, pack, ev);
        return;
      }
    } else if (pack) {
      const packs = packsOf(last);
      if (packs) packs.push(pack);
      // the change's rows were read already: these join them as rows
      else {
        for (const r of rowsOf([pack])) last.rows.push(r);
        if (pack.update) for (const r of rowsOf([pack], true)) last.before!.push(r);
      }
      this.#packed(t, pack, ev);
      return;
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
    if (this.#o.streamBytes && t.bytes >= this.#o.streamBytes) this.#maybeHandPart(t, ev.nextPosition > 0 ? ev.nextPosition : undefined);
  }

  /**
   * a packed event's rows counted into the transaction: a row holds its tuple and its image(s) in the event's buffer
   * (an update's two images, and its before row if decoded), about the tuple's length each
   */
  #packed(t: Txn, pack: Pack, ev: any): void {
    let bytes = 0;
    for (const s of pack.tuples) bytes += 120 + 2 * s.length;
    if (pack.update) bytes *= 1.5;
    t.bytes += bytes;
    t.rowCount += pack.tuples.length;
    if (this.#o.streamBytes && t.bytes >= this.#o.streamBytes) this.#maybeHandPart(t, ev.nextPosition > 0 ? ev.nextPosition : undefined);
  }

  #onXaPrepare(ev: any): void {
    // MySQL logs XA COMMIT … ONE PHASE as an XA_PREPARE event with its one-phase flag: a commit
    if (ev.onePhase) {
      this.#xaCurrent = null;
      this.#commit(ev);
      return;
    }
    // the event's own XID, in the form the server writes into XA COMMIT/ROLLBACK
    if (Buffer.isBuffer(ev.xidGtrid) && Buffer.isBuffer(ev.xidBqual)) this.#xaCurrent = xidText(ev.xidGtrid, ev.xidBqual, ev.xidFormatId);
    if (this.#cur) this.#parkXa();
  }

  #onRotate(ev: any): void {
    // between transactions the reader has read up to the new file's start (a rotation writes no
    // transaction, yet moves the source's end: readiness checks compare against that end)
    if (!this.#cur && ev.binlogName) {
      this.lastRead = { ...this.lastRead, file: String(ev.binlogName), pos: Number(ev.position) || 4 };
      this.#moved();
    }
  }

  /** events that carry no transaction: between transactions they move the read position */
  #onPositionOnly(ev: any, name: string): void {
    if (!this.#cur && ev.nextPosition > 0) {
      const file: string = this.#z?.options?.filename ?? this.lastRead.file;
      if (file === this.lastRead.file ? ev.nextPosition > this.lastRead.pos : true) this.lastRead = { ...this.lastRead, file, pos: ev.nextPosition };
      if (name !== "heartbeat") this.#moved();
    }
  }

  /**
   * SAVEPOINT, ROLLBACK TO and RELEASE inside a transaction. A source writes ROLLBACK TO to its binlog only
   * when the rolled-back part touched a non-transactional table (otherwise it truncates its cache), so the
   * rows between the savepoint and the rollback are all in the stream: the transactional ones were undone
   * on the source, the others were not. The replica's own engines make that distinction, as native
   * replication does: a "savepoint" marker goes in where the savepoint was set (only once a rollback to it
   * is seen, so the many savepoints of ORMs cost nothing) and a "rollback-to" marker where it was rolled back.
   */
  #savepoint(t: Txn, verb: string, name: string): void {
    const sps = this.#savepoints;
    const find = () => {
      for (let i = sps.length - 1; i >= 0; i--) if (sps[i].name.toLowerCase() === name.toLowerCase()) return i;
      return -1;
    };
    if (verb === "SAVE") {
      const i = find();
      if (i >= 0) sps.splice(i, 1); // a savepoint of the same name replaces the older one
      sps.push({ name, index: t.changes.length, marked: false });
      this.#split = true;
      return;
    }
    const i = find();
    if (verb === "RELE") {
      if (i >= 0) sps.splice(i);
      return;
    }
    if (i < 0) return; // a rollback to a savepoint set before anything was logged undoes nothing here
    const mark = sps[i];
    if (!mark.marked) {
      t.changes.splice(mark.index, 0, { op: "savepoint", savepoint: name, db: "", table: "", rows: [] });
      mark.marked = true;
      for (const other of sps) if (other !== mark && other.index >= mark.index) other.index++;
    }
    sps.splice(i + 1); // later savepoints are gone with the rollback
    t.changes.push({ op: "rollback-to", savepoint: name, db: "", table: "", rows: [] });
    this.#split = true;
  }

  /**
   * Park the prepared part of an XA transaction under its XID until its XA COMMIT (its rows are applied
   * then, with the commit) or XA ROLLBACK (dropped). On MySQL the prepared part's GTID joins the resume
   * position only with its commit: a reader that starts again (agent restart) is sent the prepared part
   * again. MariaDB's GTID position has no holes, so there the parked parts are handed to the next reader
   * of the replica (`xaParked`), which covers reconnects and source restarts.
   */
  #parkXa(): void {
    if (this.#cur) {
      const gtid = this.#o.flavor === "mysql" ? this.#pendingGtid : undefined;
      if (gtid) this.#pendingGtid = undefined;
      const { xa: _xa, ...since } = this.#groupStart;
      this.#xaPrepared.set(this.#xaCurrent ?? "", { txn: this.#cur, gtid, ...(this.#o.flavor === "mariadb" ? { since } : {}) });
    }
    this.#cur = null;
    this.#xaCurrent = null;
    this.#foldPending();
  }

  /** an XA transaction ended at the last commit: kept a while with its end position, for a reader that starts before it */
  #xaDone(xid: string, parked: XaParked): void {
    parked.committedAt = this.lastRead;
    let done = 0;
    for (const p of this.#xaPrepared.values()) if (p.committedAt) done++;
    if (done > 64) {
      for (const [k, p] of this.#xaPrepared) {
        if (p.committedAt && k !== xid) {
          this.#xaPrepared.delete(k);
          break;
        }
      }
    }
  }

  /** MariaDB: the position before the oldest XA prepared part still open (not the one closing now), for Position.xa */
  #openXaSince(): { file: string; pos: number; gtid?: string | null } | undefined {
    let oldest: { file: string; pos: number; gtid?: string | null } | undefined;
    for (const [xid, p] of this.#xaPrepared) {
      if (p.committedAt || !p.since || xid === this.#xaClosing) continue;
      if (!oldest || comparePos(p.since, oldest) < 0) oldest = p.since;
    }
    return oldest;
  }

  /** the prepared XA transactions this reader holds, for the replica's next reader */
  get xaParked(): ReadonlyMap<string, XaParked> {
    return this.#xaPrepared;
  }

  #foldGtid(g: any): void {
    this.#mysqlGtid ??= new MysqlGtidText();
    this.#mysqlGtid.add(g);
  }

  /** Add the current group's GTID to the executed position: at its commit, or when a group ends without one (an XA prepare). */
  #foldPending(): void {
    if (!this.#pendingGtid) return;
    if (this.#o.flavor === "mariadb") {
      this.#mariaGtid ??= new MariadbGtidPosition();
      this.#mariaGtid.add(this.#pendingGtid);
    } else {
      this.#mysqlGtid ??= new MysqlGtidText();
      this.#mysqlGtid.add(this.#pendingGtid);
    }
    this.#pendingGtid = undefined;
  }

  /**
   * Between transactions the reader moved past events that are no transaction (a rotation, a new file's
   * header): hand over an empty transaction at the new position, so an idle replica's applied position
   * reaches the source's end (a FLUSH BINARY LOGS moves that end; lag and readiness compare against it).
   * Only forward of everything handed over before (a reader starting by GTID is first rotated to the start
   * of its file).
   */
  #moved(): void {
    if (this.#cur || comparePos(this.lastRead, this.#handed) <= 0) return;
    const gtid = this.#mariaGtid ? mariadbGtidText(this.#mariaGtid) : this.#mysqlGtid ? this.#mysqlGtid.toString() : (this.#handed.gtid ?? null);
    const now = Date.now();
    this.lastRead = { ...this.lastRead, gtid };
    this.#handed = this.lastRead;
    if (!this.#o.onTxn({ pos: this.lastRead, ts: now, readAt: now, changes: [], rowCount: 0, bytes: 256 })) this.pause();
  }

  /**
   * A transaction too large to hold: hand over what it has so far as a piece (Txn.stream), unless it must
   * stay whole: an XA transaction's prepared part (parked until its XA COMMIT, other transactions commit
   * meanwhile), a transaction carrying DDL (CREATE TABLE … SELECT: the DDL's pending marker and its rows
   * are settled together), or a consumer that cannot take pieces now (a snapshot in progress).
   */
  #maybeHandPart(t: Txn, cut: number | undefined): void {
    // (nor while re-reading before the checkpoint for open XA prepared parts: what lies there is skipped whole)
    if (this.#xaCurrent || this.#noStream || t.ddl || this.#skipUntil || (this.#o.canStream && !this.#o.canStream())) return;
    // a later ROLLBACK TO may return to any open savepoint across pieces: its marker goes in now, where it was set
    const sps = this.#savepoints;
    for (let i = sps.length - 1; i >= 0; i--) {
      if (sps[i].marked) continue;
      t.changes.splice(sps[i].index, 0, { op: "savepoint", savepoint: sps[i].name, db: "", table: "", rows: [] });
      sps[i].marked = true;
    }
    this.#streaming = true;
    const part: Txn = { ...t, pos: this.lastRead, readAt: Date.now(), stream: "part", ...(cut !== undefined ? { cut } : {}) };
    this.#cur = { pos: this.lastRead, ts: t.ts, readAt: 0, changes: [], rowCount: 0, bytes: 256 };
    this.#split = true;
    if (!this.#o.onTxn(part)) this.pause();
  }

  /** the transaction handed over in pieces ended without a commit (a new one began): its pieces are dropped */
  #abortStream(): void {
    this.#streaming = false;
    this.#cur = null;
    if (!this.#o.onTxn({ pos: this.lastRead, ts: Date.now(), readAt: Date.now(), changes: [], rowCount: 0, bytes: 256, stream: "abort" })) this.pause();
  }

  #commit(ev: any): void {
    const t = this.#cur ?? this.#open(ev.timestamp);
    this.#cur = null;
    if (this.#streaming) {
      t.stream = "last";
      this.#streaming = false;
    }
    this.#foldPending();
    const gtid = this.#mariaGtid ? mariadbGtidText(this.#mariaGtid) : this.#mysqlGtid ? this.#mysqlGtid.toString() : null;
    const file: string = this.#z?.options?.filename ?? this.lastRead.file;
    const pos = ev.nextPosition > 0 ? ev.nextPosition : this.lastRead.pos;
    const since = this.#openXaSince();
    t.pos = since ? { file, pos, gtid, xa: { since } } : { file, pos, gtid };
    if (!t.ts) t.ts = ev.timestamp;
    t.readAt = Date.now();
    this.lastRead = t.pos;
    if (this.#skipUntil) {
      // re-reading open XA prepared parts before the checkpoint: what lies up to it was applied
      if (comparePos(t.pos, this.#skipUntil) <= 0) return;
      this.#skipUntil = null;
    }
    if (comparePos(t.pos, this.#handed) > 0) this.#handed = t.pos;
    if (!this.#o.onTxn(t)) this.pause();
  }

  pause(): void {
    if (this.#paused || !this.#z?.connection) return;
    this.#paused = true;
    if (TEST_IGNORE_PAUSE) return;
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
