// Bookkeeping owns the schema `_datasync` on each replica: its name (one constant, BOOKKEEPING_SCHEMA in
// rules.ts, shared with the provider), every table's DDL (checkpoints, held_ddl, quarantine, snapshot, writer,
// cutover; the provider's `members` is created by provider/live.ts with the same name), and the checkpoint row
// (written in the same target transaction as the rows it covers, moved by compare-and-set), a pending-DDL
// marker, held-back trigger DDL and quarantined tables. Nothing about a group is kept anywhere else.
import mysql from "mysql2";
import type { Conn } from "./db.js";
import { BOOKKEEPING_SCHEMA } from "./rules.js";
import type { Position } from "./source/positions.js";
import type { DdlContext } from "./apply/ddl-session.js";
import { WriterLost } from "./errors.js";

/** `_datasync`: DESIGN.md's bookkeeping schema (the name is a contract) */
export const SCHEMA = BOOKKEEPING_SCHEMA;

const DDL = [
  `CREATE DATABASE IF NOT EXISTS ${SCHEMA}`,
  `CREATE TABLE IF NOT EXISTS ${SCHEMA}.checkpoints (
     group_name VARCHAR(40) NOT NULL PRIMARY KEY,
     source_id VARCHAR(128) NOT NULL DEFAULT '',
     flavor VARCHAR(10) NOT NULL DEFAULT '',
     binlog_file VARCHAR(255) NOT NULL,
     binlog_pos BIGINT UNSIGNED NOT NULL,
     gtid TEXT NULL,
     source_ts BIGINT NOT NULL DEFAULT 0,
     applied_txns BIGINT UNSIGNED NOT NULL DEFAULT 0,
     applied_rows BIGINT UNSIGNED NOT NULL DEFAULT 0,
     ddl_pending TEXT NULL,
     state VARCHAR(20) NOT NULL DEFAULT 'streaming',
     scope TEXT NULL,
     updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
     writer_seq BIGINT UNSIGNED NOT NULL DEFAULT 0,
     xa_open TEXT NULL
   ) ENGINE=InnoDB`,
  `CREATE TABLE IF NOT EXISTS ${SCHEMA}.held_ddl (
     id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
     group_name VARCHAR(40) NOT NULL,
     binlog_file VARCHAR(255) NOT NULL,
     binlog_pos BIGINT UNSIGNED NOT NULL,
     schema_name VARCHAR(64) NOT NULL,
     statement MEDIUMTEXT NOT NULL,
     created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
     KEY (group_name)
   ) ENGINE=InnoDB`,
  `CREATE TABLE IF NOT EXISTS ${SCHEMA}.quarantine (
     group_name VARCHAR(40) NOT NULL,
     db VARCHAR(64) NOT NULL,
     tbl VARCHAR(64) NOT NULL,
     reason VARCHAR(255) NOT NULL,
     created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
     PRIMARY KEY (group_name, db, tbl)
   ) ENGINE=InnoDB`,
];

export const SNAPSHOT_DDL = `CREATE TABLE IF NOT EXISTS ${SCHEMA}.snapshot (
  group_name VARCHAR(40) NOT NULL,
  db VARCHAR(64) NOT NULL,
  tbl VARCHAR(64) NOT NULL,
  state VARCHAR(16) NOT NULL,
  last_key MEDIUMTEXT NULL,
  rows_copied BIGINT UNSIGNED NOT NULL DEFAULT 0,
  rows_estimate BIGINT UNSIGNED NOT NULL DEFAULT 0,
  started_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  def_file VARCHAR(255) NULL,
  def_pos BIGINT UNSIGNED NULL,
  PRIMARY KEY (group_name, db, tbl)
) ENGINE=InnoDB`;
DDL.push(SNAPSHOT_DDL);

/**
 * The writer lease (agent/ops/writer-lock.ts): who holds the group's writer lock on this replica, which
 * connections it writes through (a successor ends them), and when it last renewed (server clock).
 */
export const WRITER_DDL = `CREATE TABLE IF NOT EXISTS ${SCHEMA}.writer (
  group_name VARCHAR(40) NOT NULL PRIMARY KEY,
  replica VARCHAR(63) NOT NULL,
  holder VARCHAR(128) NOT NULL,
  host VARCHAR(255) NOT NULL,
  pid INT UNSIGNED NOT NULL,
  lock_conn BIGINT UNSIGNED NOT NULL,
  conns VARCHAR(1024) NOT NULL DEFAULT '',
  ttl_ms INT UNSIGNED NOT NULL,
  started_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  renewed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  released_at TIMESTAMP(6) NULL DEFAULT NULL
) ENGINE=InnoDB`;
DDL.push(WRITER_DDL);

/** The cutover record (agent/ops/cutover-record.ts): created by a cutover, on the servers it touches, not by ensureBookkeeping. */
export const CUTOVER_DDL = `CREATE TABLE IF NOT EXISTS ${SCHEMA}.cutover (
  group_name VARCHAR(40) NOT NULL PRIMARY KEY,
  to_replica VARCHAR(64) NOT NULL,
  reverse_group VARCHAR(40) NULL,
  role VARCHAR(16) NOT NULL,
  state VARCHAR(20) NOT NULL,
  final_file VARCHAR(255) NULL,
  final_pos BIGINT UNSIGNED NULL,
  final_gtid TEXT NULL,
  new_file VARCHAR(255) NULL,
  new_pos BIGINT UNSIGNED NULL,
  new_gtid TEXT NULL,
  source_identity VARCHAR(255) NULL,
  freeze_ms INT UNSIGNED NULL,
  detail TEXT NULL,
  started_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  acknowledged_at TIMESTAMP(6) NULL
) ENGINE=InnoDB`;

/** columns added after the first release (extend only), to tables an older agent created */
const ADDED_COLUMNS: { table: string; column: string; ddl: string }[] = [
  // the compare-and-set version of the checkpoint row
  { table: "checkpoints", column: "writer_seq", ddl: "writer_seq BIGINT UNSIGNED NOT NULL DEFAULT 0" },
  // the MariaDB XA transactions open at the checkpoint (Position.xa)
  { table: "checkpoints", column: "xa_open", ddl: "xa_open TEXT NULL" },
  // the source position a snapshot read a table's definition at (snapshot/snapshot.ts readDefinitions)
  { table: "snapshot", column: "def_file", ddl: "def_file VARCHAR(255) NULL" },
  { table: "snapshot", column: "def_pos", ddl: "def_pos BIGINT UNSIGNED NULL" },
];

export async function ensureBookkeeping(c: Conn): Promise<void> {
  for (const sql of DDL) await c.query(sql);
  const [cols] = await c.query<any[]>(`SELECT TABLE_NAME AS t, COLUMN_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '${SCHEMA}'`);
  const have = new Set(cols.map((r) => `${r.t}.${r.c}`));
  for (const a of ADDED_COLUMNS) {
    if (have.has(`${a.table}.${a.column}`)) continue;
    await c.query(`ALTER TABLE ${SCHEMA}.${a.table} ADD COLUMN ${a.ddl}`).catch((e: any) => {
      if (e?.errno !== 1060) throw e; // another agent added it meanwhile
    });
  }
}

export interface Checkpoint {
  group: string;
  sourceId: string;
  flavor: string;
  pos: Position;
  sourceTs: number;
  appliedTxns: number;
  appliedRows: number;
  ddlPending: DdlPending | null;
  state: string;
  scope: string | null;
  updatedAt: string;
  /** compare-and-set version: every checkpoint write moves it by one, from the value its writer read */
  seq: number;
}

export interface DdlPending {
  pos: Position;
  fingerprint: string;
  sql: string;
  schema: string;
  /** the DDL opens a transaction with rows (MySQL's atomic CREATE TABLE … SELECT) */
  withRows?: boolean;
  /** the source session the statement ran in (sql_mode, timestamp, time zone, character sets) */
  context?: DdlContext;
}

export async function readCheckpoint(c: Conn, group: string): Promise<Checkpoint | null> {
  const [rows] = await c.query<any[]>(`SELECT * FROM ${SCHEMA}.checkpoints WHERE group_name = ?`, [group]);
  if (rows.length === 0) return null;
  const r = rows[0];
  return {
    group,
    sourceId: r.source_id,
    flavor: r.flavor,
    pos: { file: r.binlog_file, pos: Number(r.binlog_pos), gtid: r.gtid || null, ...(r.xa_open ? { xa: JSON.parse(r.xa_open) } : {}) },
    sourceTs: Number(r.source_ts),
    appliedTxns: Number(r.applied_txns),
    appliedRows: Number(r.applied_rows),
    ddlPending: r.ddl_pending ? (JSON.parse(r.ddl_pending) as DdlPending) : null,
    state: r.state,
    scope: r.scope ?? null,
    updatedAt: r.updated_at,
    seq: Number(r.writer_seq ?? 0),
  };
}

/**
 * Follows a checkpoint write in the same multi-statement query: fails with ER_TOO_MANY_ROWS (1172) unless
 * the write changed exactly one row, so a lost compare-and-set stops the query before its COMMIT (the
 * transaction stays open and is rolled back). Portable: no stored program, no SIGNAL, any sql_mode.
 */
export const CAS_GUARD = "SELECT 1 FROM (SELECT 1 AS a UNION ALL SELECT 2) AS datasync_cas WHERE ROW_COUNT() <> 1 INTO @datasync_cas";
export const CAS_LOST_ERRNO = 1172;

/**
 * The statements that record a checkpoint; they run inside the target transaction they cover. The
 * checkpoint moves only by compare-and-set: `expectSeq` is the `writer_seq` its writer read (or last
 * wrote), and null when it read no row (then a plain insert, which another writer's row makes fail). A
 * writer that lost its lock without knowing therefore cannot move the checkpoint (backwards or at all):
 * its transaction fails at the guard and is rolled back. The new row has `writer_seq = expectSeq + 1`.
 */
export function checkpointSql(
  group: string,
  sourceId: string,
  flavor: string,
  pos: Position,
  sourceTs: number,
  txns: number,
  rows: number,
  ddlPending: DdlPending | null,
  state: string,
  expectSeq: number | null,
): string {
  const e = mysql.escape;
  const pending = e(ddlPending ? JSON.stringify(ddlPending) : null);
  const xaOpen = e(pos.xa ? JSON.stringify(pos.xa) : null);
  if (expectSeq === null) {
    return (
      `INSERT IGNORE INTO ${SCHEMA}.checkpoints (group_name, source_id, flavor, binlog_file, binlog_pos, gtid, source_ts, applied_txns, applied_rows, ddl_pending, state, writer_seq, xa_open) ` +
      `VALUES (${e(group)}, ${e(sourceId)}, ${e(flavor)}, ${e(pos.file)}, ${pos.pos}, ${e(pos.gtid ?? null)}, ${Math.round(sourceTs)}, ${txns}, ${rows}, ${pending}, ${e(state)}, 1, ${xaOpen});\n${CAS_GUARD}`
    );
  }
  return (
    `UPDATE ${SCHEMA}.checkpoints SET source_id = ${e(sourceId)}, flavor = ${e(flavor)}, binlog_file = ${e(pos.file)}, binlog_pos = ${pos.pos}, gtid = ${e(pos.gtid ?? null)}, ` +
    `source_ts = GREATEST(source_ts, ${Math.round(sourceTs)}), applied_txns = applied_txns + ${txns}, applied_rows = applied_rows + ${rows}, ddl_pending = ${pending}, state = ${e(state)}, xa_open = ${xaOpen}, ` +
    `writer_seq = ${expectSeq + 1} WHERE group_name = ${e(group)} AND writer_seq = ${expectSeq};\n${CAS_GUARD}`
  );
}

/** Whether an error (or one it wraps) is a lost checkpoint compare-and-set or a lost writer lock. */
export function isWriterLost(err: any): boolean {
  for (let e = err, depth = 0; e && depth < 5; e = e.cause, depth++) {
    if (e instanceof WriterLost || e?.errno === CAS_LOST_ERRNO) return true;
  }
  return false;
}

export async function loadQuarantine(c: Conn, group: string): Promise<Set<string>> {
  const [rows] = await c.query<any[]>(`SELECT db, tbl FROM ${SCHEMA}.quarantine WHERE group_name = ?`, [group]);
  return new Set(rows.map((r) => `${r.db}.${r.tbl}`));
}

export function quarantineSql(group: string, db: string, table: string, reason: string): string {
  const e = mysql.escape;
  return `INSERT INTO ${SCHEMA}.quarantine (group_name, db, tbl, reason) VALUES (${e(group)}, ${e(db)}, ${e(table)}, ${e(reason.slice(0, 255))}) ON DUPLICATE KEY UPDATE reason = VALUES(reason)`;
}

export function unquarantineSql(group: string, db: string, table: string): string {
  const e = mysql.escape;
  return `DELETE FROM ${SCHEMA}.quarantine WHERE group_name = ${e(group)} AND db = ${e(db)} AND tbl = ${e(table)}`;
}

export function heldDdlSql(group: string, pos: Position, schema: string, sql: string): string {
  const e = mysql.escape;
  return `INSERT INTO ${SCHEMA}.held_ddl (group_name, binlog_file, binlog_pos, schema_name, statement) VALUES (${e(group)}, ${e(pos.file)}, ${pos.pos}, ${e(schema)}, ${e(sql)})`;
}
