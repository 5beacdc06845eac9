// Resnapshot owns `datasync resnapshot` (DESIGN.md CLI contract): it marks a replica, or some of its tables, for
// a fresh online snapshot in `_datasync` (e.g. after the source purged the replica's position); the running agent
// picks the mark up within seconds, or at its next start.
import type { Config } from "../config.js";
import { connect } from "../db.js";
import { ensureBookkeeping, SCHEMA } from "../bookkeeping.js";

/** `datasync resnapshot`: mark a replica (or tables) for a fresh snapshot; the agent picks it up at its next (re)start. */
export async function resnapshotCommand(cfg: Config, opts: { replica: string; tables?: string }): Promise<number> {
  const i = cfg.replicas.findIndex((r) => r.name === opts.replica);
  if (i < 0) {
    process.stderr.write(`datasync: no replica named "${opts.replica}" in the config; replicas are ${cfg.replicas.map((r) => r.name).join(", ")}\n`);
    return 2;
  }
  const c = await connect(cfg.replicas[i], `replicas[${i}]`);
  try {
    await ensureBookkeeping(c);
    let res: any;
    if (opts.tables) {
      const names = opts.tables.split(",").map((t) => t.trim()).filter(Boolean);
      for (const n of names) {
        const [db, tbl] = n.split(".");
        if (!db || !tbl || !cfg.databases.includes(db)) {
          process.stderr.write(`datasync: --tables: "${n}" is not db.table in one of the synced databases (${cfg.databases.join(", ")})\n`);
          return 2;
        }
      }
      for (const n of names) {
        const [db, tbl] = n.split(".");
        await c.query(
          `INSERT INTO ${SCHEMA}.snapshot (group_name, db, tbl, state) VALUES (?, ?, ?, 'requested') ON DUPLICATE KEY UPDATE state = 'requested', last_key = NULL, rows_copied = 0`,
          [cfg.group, db, tbl],
        );
      }
      [res] = await c.query<any>(`SELECT 1 FROM ${SCHEMA}.checkpoints WHERE group_name = ?`, [cfg.group]);
      res = { affectedRows: (res as any[]).length };
    } else {
      [res] = await c.query<any>(`UPDATE ${SCHEMA}.checkpoints SET state = 'resnapshot' WHERE group_name = ?`, [cfg.group]);
    }
    if (res.affectedRows === 0) {
      process.stdout.write(`replica ${opts.replica}: no checkpoint for group ${cfg.group}; the agent will seed it at its next start.\n`);
    } else {
      process.stdout.write(`replica ${opts.replica}: marked for a new snapshot${opts.tables ? ` of ${opts.tables}` : ""}; the running agent picks it up within seconds (or at its next start).\n`);
    }
    return 0;
  } finally {
    await c.end();
  }
}
