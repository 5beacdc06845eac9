// Errors owns the agent's typed errors, each with a stable `code` (what logs, tests and callers branch on) and a
// message that names what is involved (position, table, SQL error, server) and the remedy. One place, so that a
// caller sees every failure it may have to handle; `instanceof` works across modules (no copies of a class).
import type { Position } from "./source/positions.js";

export type ErrorCode =
  | "config"
  | "startup"
  | "apply"
  | "ddl-session"
  | "purged"
  | "history-mismatch"
  | "writer-lost"
  | "replica-unavailable"
  | "restart-requested"
  | "cut-over"
  | "verify";

/** Every error the agent raises on purpose. */
export abstract class DatasyncError extends Error {
  abstract readonly code: ErrorCode;
  constructor(message: string, cause?: unknown) {
    super(message);
    if (cause) (this as any).cause = cause;
  }
}

/** Bad agent config: every problem with the path of its key (validated once, at start). */
export class ConfigError extends DatasyncError {
  readonly code = "config";
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join("\n  - ")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

/** A problem with the source at start: the agent exits non-zero with this message (DESIGN.md start-up). */
export class StartupError extends DatasyncError {
  readonly code = "startup";
  constructor(message: string) {
    super(message);
    this.name = "StartupError";
  }
}

/** Applying to a replica failed; `transient` ones are retried with backoff, the others stop that replica. */
export class ApplyError extends DatasyncError {
  readonly code = "apply";
  readonly transient: boolean;
  readonly table?: string;
  readonly sqlError?: string;
  constructor(message: string, opts: { transient?: boolean; table?: string; sqlError?: string; cause?: unknown } = {}) {
    super(message, opts.cause);
    this.name = "ApplyError";
    this.transient = opts.transient ?? false;
    this.table = opts.table;
    this.sqlError = opts.sqlError;
  }
}

/** A source statement's session (collation, character set) cannot be reproduced on the replica. */
export class DdlSessionError extends DatasyncError {
  readonly code = "ddl-session";
}

/** The source no longer has the binlog at a replica's checkpoint: that replica needs a new snapshot. */
export class PurgedPositionError extends DatasyncError {
  readonly code: "purged" | "history-mismatch" = "purged";
  /** `reset`: the history was erased (RESET MASTER / RESET BINARY LOGS AND GTIDS), not purged */
  constructor(pos: Position, detail: string, reset = false) {
    super(
      `the source no longer has the binlog at the replica's checkpoint (${pos.gtid ? `GTID ${pos.gtid}` : `${pos.file}:${pos.pos}`}): ` +
        (reset
          ? `its binary log history was reset (RESET MASTER, or RESET BINARY LOGS AND GTIDS on MySQL 8.4+): ${detail}. Later writes on the source cannot be placed after the checkpoint. `
          : `it was purged (${detail}). `) +
        "The replica needs a new snapshot: run `datasync resnapshot --config F --replica NAME`.",
    );
    this.name = "PurgedPositionError";
  }
}

/** The checkpoint was written for another source, which cannot be proven to hold its last transaction. */
export class HistoryMismatchError extends PurgedPositionError {
  override readonly code = "history-mismatch";
  constructor(pos: Position, checkpointSource: string, source: string, reason: string) {
    super(pos, reason);
    this.message =
      `the checkpoint was written for another source server (${checkpointSource}); the current source (${source}) cannot be proven to hold its last transaction: ${reason}. ` +
      "Resuming would skip or replay transactions, so the replica needs a new snapshot: run `datasync resnapshot --config F --replica NAME`.";
    this.name = "HistoryMismatchError";
  }
}

/** A checkpoint compare-and-set that failed: another writer moved the checkpoint since this one read it. */
export class WriterLost extends DatasyncError {
  readonly code = "writer-lost";
  constructor(message: string, cause?: unknown) {
    super(message, cause);
    this.name = "WriterLost";
  }
}

/** A replica (or its source connection) cannot be used now; retried with backoff. `kind` is the metric's label. */
export class ReplicaUnavailable extends DatasyncError {
  readonly code = "replica-unavailable";
  readonly kind: string;
  constructor(kind: string, message: string, cause?: unknown) {
    super(message, cause);
    this.name = "ReplicaUnavailable";
    this.kind = kind;
  }
}

/** The binlog reader kept handing transactions over past a full queue: the session ends before the heap does. */
export class BackPressureLost extends ReplicaUnavailable {
  constructor(message: string) {
    super("backpressure", message);
    this.name = "BackPressureLost";
  }
}

/** The replica's session restarts from its checkpoint (a resnapshot mark, a DDL settled on restart). */
export class RestartRequested extends DatasyncError {
  readonly code = "restart-requested";
  constructor() {
    super("restart requested");
    this.name = "RestartRequested";
  }
}

/** A cutover promoted a replica of this group: the running agent stops applying (state `cut-over`). */
export class CutOverSeen extends DatasyncError {
  readonly code = "cut-over";
  constructor() {
    super("a cutover promoted a replica of this group");
    this.name = "CutOverSeen";
  }
}

/** A problem that stops a whole verify or repair run (exit 2). */
export class VerifyError extends DatasyncError {
  readonly code = "verify";
  constructor(message: string) {
    super(message);
    this.name = "VerifyError";
  }
}
