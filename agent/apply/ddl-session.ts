// DdlSession owns running a source statement on a replica in the session the source ran it in, as a
// native replica's SQL thread does from the query event's status variables: sql_mode (NO_BACKSLASH_ESCAPES
// changes a DEFAULT literal, ANSI_QUOTES how names are quoted), the statement's timestamp and time zone
// (`ADD COLUMN … DEFAULT CURRENT_TIMESTAMP` fills existing rows with the source's time), its character
// sets (a `CREATE DATABASE`/`TABLE` without a charset takes collation_server; literals take
// collation_connection), and the unique and CHECK constraint checks. The statement text is decoded from
// the source client's character set (a latin1 client's names and ENUM labels are not UTF-8).
import type { Conn } from "../db.js";
import {
  decodeStatement,
  MODE_ANSI_QUOTES,
  MODE_NO_BACKSLASH_ESCAPES,
  OPTION_NO_CHECK_CONSTRAINT_CHECKS,
  OPTION_RELAXED_UNIQUE_CHECKS,
  type QuerySession,
} from "../source/binlog-raw.js";
import type { LexMode } from "./ddl.js";
import type { Flavor } from "../rules.js";
import { DdlSessionError } from "../errors.js";

/** What of a query event's session is reproduced on the replica (stored with a pending DDL: JSON). */
export interface DdlContext {
  /** the sql_mode bitmask, decimal */
  sqlMode?: string;
  flags2?: number;
  /** collation ids */
  collation?: { client: number; connection: number; server: number };
  timeZone?: string;
  /** `SET TIMESTAMP` value: seconds with microseconds */
  timestamp?: string;
  explicitDefaultsForTimestamp?: number;
}

export function ddlContext(session: QuerySession | undefined, tsMs: number | undefined): DdlContext {
  const c: DdlContext = {};
  if (!session) return c;
  if (session.sqlMode !== undefined) c.sqlMode = session.sqlMode;
  if (session.flags2 !== undefined) c.flags2 = session.flags2;
  if (session.charset) c.collation = session.charset;
  if (session.timeZone) c.timeZone = session.timeZone;
  if (tsMs) c.timestamp = `${Math.floor(tsMs / 1000)}.${String(session.micros ?? 0).padStart(6, "0")}`;
  if (session.explicitDefaultsForTimestamp !== undefined) c.explicitDefaultsForTimestamp = session.explicitDefaultsForTimestamp;
  return c;
}

/** How the statement must be lexed (its sql_mode). */
export function lexModeOf(c: DdlContext | undefined): LexMode {
  if (!c?.sqlMode) return {};
  const m = BigInt(c.sqlMode);
  return { ansiQuotes: (m & MODE_ANSI_QUOTES) !== 0n, noBackslashEscapes: (m & MODE_NO_BACKSLASH_ESCAPES) !== 0n };
}

/**
 * One replica connection's view of collation ids (the replica runs the source's flavor and version, so
 * its ids are the source's) and the SET statements that enter and leave a statement's session.
 */
export class DdlSession {
  #collations: Map<number, { name: string; charset: string }> | null = null;
  readonly #flavor: Flavor;

  constructor(flavor: Flavor) {
    this.#flavor = flavor;
  }

  async #collation(c: Conn, id: number): Promise<{ name: string; charset: string }> {
    if (!this.#collations) {
      const [rows] = await c.query<any[]>("SELECT ID AS id, COLLATION_NAME AS name, CHARACTER_SET_NAME AS cs FROM information_schema.COLLATIONS WHERE ID IS NOT NULL");
      this.#collations = new Map(rows.map((r) => [Number(r.id), { name: String(r.name), charset: String(r.cs) }]));
    }
    const found = this.#collations.get(id);
    if (!found) throw new DdlSessionError(`the source statement's collation id ${id} is unknown to the replica (a different server version?)`);
    return found;
  }

  /**
   * The statement text in the source client's character set. Null when the statement's bytes are not
   * known (a compressed query event): zongji's UTF-8 text is then all there is.
   */
  async text(c: Conn, raw: Buffer | undefined, ctx: DdlContext | undefined, fallback: string): Promise<string> {
    if (!raw || !ctx?.collation) return fallback;
    const cs = (await this.#collation(c, ctx.collation.client)).charset;
    const text = decodeStatement(raw, cs);
    if (text === null) {
      throw new DdlSessionError(
        `the statement was sent in character set ${cs}, which the agent cannot decode exactly; send DDL in utf8mb4 or latin1 (SET NAMES utf8mb4) on the source`,
      );
    }
    return text;
  }

  /**
   * Statements that put the replica session in the source statement's session, and those that restore
   * the agent's own afterwards. Only what differs is set (some settings need privileges to change).
   */
  async enter(c: Conn, ctx: DdlContext | undefined): Promise<{ enter: string[]; leave: string[] }> {
    const enter: string[] = [];
    const leave: string[] = [];
    if (!ctx) return { enter, leave };
    const mariadb = this.#flavor === "mariadb";
    const [[cur]] = await c.query<any[]>(
      "SELECT @@session.sql_mode AS sql_mode, @@session.time_zone AS time_zone, @@session.collation_connection AS collation_connection, " +
        "@@session.collation_server AS collation_server, @@session.unique_checks AS unique_checks, " +
        (mariadb ? "@@session.check_constraint_checks AS ccc" : "@@session.explicit_defaults_for_timestamp AS edt"),
    );
    const set = (name: string, value: string | number, now: unknown) => {
      if (String(value) === String(now)) return;
      enter.push(`SET SESSION ${name} = ${typeof value === "number" ? value : c.escape(value)}`);
      leave.push(`SET SESSION ${name} = ${typeof now === "number" || typeof now === "bigint" ? String(now) : c.escape(String(now ?? ""))}`);
    };
    if (ctx.sqlMode !== undefined) {
      // the bitmask as is: the replica runs the same flavor and version, so the bits mean the same modes
      enter.push(`SET SESSION sql_mode = ${BigInt(ctx.sqlMode).toString()}`);
      leave.push(`SET SESSION sql_mode = ${c.escape(String(cur.sql_mode))}`);
    }
    if (ctx.timestamp) {
      enter.push(`SET TIMESTAMP = ${ctx.timestamp}`);
      leave.push("SET TIMESTAMP = DEFAULT");
    }
    if (ctx.timeZone) set("time_zone", ctx.timeZone, cur.time_zone);
    if (ctx.collation) {
      set("collation_connection", (await this.#collation(c, ctx.collation.connection)).name, cur.collation_connection);
      set("collation_server", (await this.#collation(c, ctx.collation.server)).name, cur.collation_server);
    }
    if (ctx.flags2 !== undefined) {
      set("unique_checks", ctx.flags2 & OPTION_RELAXED_UNIQUE_CHECKS ? 0 : 1, Number(cur.unique_checks));
      if (mariadb) set("check_constraint_checks", ctx.flags2 & OPTION_NO_CHECK_CONSTRAINT_CHECKS ? 0 : 1, Number(cur.ccc));
    }
    if (!mariadb && ctx.explicitDefaultsForTimestamp !== undefined) set("explicit_defaults_for_timestamp", ctx.explicitDefaultsForTimestamp, Number(cur.edt));
    return { enter, leave };
  }
}
