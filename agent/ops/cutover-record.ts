// Cutover-record owns `_datasync.cutover`: the row a cutover writes on the new primary and on the group's other
// replicas (what, when, final position, state). The group's running agent reads it and stops applying
// (state `cut-over`), then acknowledges; a reverse group refuses to start until the forward agent has.
import mysql from "mysql2";
import type { Conn } from "../db.js";
import { CUTOVER_DDL, SCHEMA } from "../bookkeeping.js";
import type { Position } from "../source/positions.js";

/** States from which NAME is the primary: the forward agent must not apply any more. */
export const PROMOTED_STATES = ["promoted", "switched", "switch-failed", "done"];

export interface CutoverRecord {
  group: string;
  toReplica: string;
  reverseGroup: string | null;
  role: string;
  state: string;
  finalPosition: Position | null;
  newPosition: Position | null;
  freezeMs: number | null;
  detail: string | null;
  startedAt: string;
  updatedAt: string;
  acknowledgedAt: string | null;
}

function fromRow(r: any): CutoverRecord {
  return {
    group: r.group_name,
    toReplica: r.to_replica,
    reverseGroup: r.reverse_group ?? null,
    role: r.role,
    state: r.state,
    finalPosition: r.final_file ? { file: r.final_file, pos: Number(r.final_pos), gtid: r.final_gtid || null } : null,
    newPosition: r.new_file ? { file: r.new_file, pos: Number(r.new_pos), gtid: r.new_gtid || null } : null,
    freezeMs: r.freeze_ms === null || r.freeze_ms === undefined ? null : Number(r.freeze_ms),
    detail: r.detail ?? null,
    startedAt: String(r.started_at),
    updatedAt: String(r.updated_at),
    acknowledgedAt: r.acknowledged_at ? String(r.acknowledged_at) : null,
  };
}

async function hasTable(c: Conn): Promise<boolean> {
  const [rows] = await c.query<any[]>("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'cutover'", [SCHEMA]);
  return rows.length > 0;
}

/** The cutover row of a group on this server, or null (also when `_datasync.cutover` does not exist). */
export async function readCutover(c: Conn, group: string): Promise<CutoverRecord | null> {
  if (!(await hasTable(c))) return null;
  const [rows] = await c.query<any[]>(`SELECT * FROM ${SCHEMA}.cutover WHERE group_name = ?`, [group]);
  return rows.length ? fromRow(rows[0]) : null;
}

/** The cutover whose reverse group is `reverseGroup` (read on the new primary). */
export async function readCutoverByReverse(c: Conn, reverseGroup: string): Promise<CutoverRecord | null> {
  if (!(await hasTable(c))) return null;
  const [rows] = await c.query<any[]>(`SELECT * FROM ${SCHEMA}.cutover WHERE reverse_group = ? AND role = 'new-primary' ORDER BY updated_at DESC LIMIT 1`, [reverseGroup]);
  return rows.length ? fromRow(rows[0]) : null;
}

export function isPromoted(r: CutoverRecord | null): boolean {
  return !!r && PROMOTED_STATES.includes(r.state);
}

export async function writeCutover(c: Conn, rec: Partial<CutoverRecord> & { group: string; toReplica: string; role: string; state: string }, sourceIdentity?: string): Promise<void> {
  if (rec.state === "fencing" || rec.role === "replica") await c.query(CUTOVER_DDL);
  const e = mysql.escape;
  const f = rec.finalPosition;
  const n = rec.newPosition;
  await c.query(
    `INSERT INTO ${SCHEMA}.cutover (group_name, to_replica, reverse_group, role, state, final_file, final_pos, final_gtid, new_file, new_pos, new_gtid, source_identity, freeze_ms, detail, started_at, acknowledged_at)
     VALUES (${e(rec.group)}, ${e(rec.toReplica)}, ${e(rec.reverseGroup ?? null)}, ${e(rec.role)}, ${e(rec.state)}, ${e(f?.file ?? null)}, ${f ? f.pos : "NULL"}, ${e(f?.gtid ?? null)},
             ${e(n?.file ?? null)}, ${n ? n.pos : "NULL"}, ${e(n?.gtid ?? null)}, ${e(sourceIdentity ?? null)}, ${rec.freezeMs ?? "NULL"}, ${e(rec.detail ?? null)}, CURRENT_TIMESTAMP(6), NULL)
     ON DUPLICATE KEY UPDATE to_replica = VALUES(to_replica), reverse_group = VALUES(reverse_group), role = VALUES(role), state = VALUES(state),
       final_file = COALESCE(VALUES(final_file), final_file), final_pos = COALESCE(VALUES(final_pos), final_pos), final_gtid = COALESCE(VALUES(final_gtid), final_gtid),
       new_file = COALESCE(VALUES(new_file), new_file), new_pos = COALESCE(VALUES(new_pos), new_pos), new_gtid = COALESCE(VALUES(new_gtid), new_gtid),
       source_identity = COALESCE(VALUES(source_identity), source_identity), freeze_ms = COALESCE(VALUES(freeze_ms), freeze_ms), detail = COALESCE(VALUES(detail), detail),
       started_at = IF(VALUES(state) = 'fencing', CURRENT_TIMESTAMP(6), started_at), acknowledged_at = IF(VALUES(state) = 'fencing', NULL, acknowledged_at)`,
  );
}

export async function setCutoverState(c: Conn, group: string, state: string, detail?: string): Promise<void> {
  await c.query(`UPDATE ${SCHEMA}.cutover SET state = ?, detail = COALESCE(?, detail) WHERE group_name = ?`, [state, detail ?? null, group]);
}

/** The forward agent has stopped applying to this server. */
export async function acknowledgeCutover(c: Conn, group: string): Promise<void> {
  await c.query(`UPDATE ${SCHEMA}.cutover SET acknowledged_at = COALESCE(acknowledged_at, CURRENT_TIMESTAMP(6)) WHERE group_name = ?`, [group]);
}

/** What status and /readyz show of a cutover. */
export interface CutoverView {
  state: string;
  to: string;
  freezeSeconds: number | null;
  finalPosition: Position | null;
  startedAt: string;
  updatedAt: string;
  detail: string | null;
}

export function cutoverView(r: CutoverRecord | null): CutoverView | null {
  if (!r) return null;
  return { state: r.state, to: r.toReplica, freezeSeconds: r.freezeMs === null ? null : r.freezeMs / 1000, finalPosition: r.finalPosition, startedAt: r.startedAt, updatedAt: r.updatedAt, detail: r.detail };
}
