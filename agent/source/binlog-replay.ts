// Binlog replay decodes a binlog file offline, as the agent's reader decodes it live: zongji's own event
// classes over each event's bytes, its table map handling (binlog metadata, or INFORMATION_SCHEMA rows
// given here where the binlog carries no column names), binlog-raw.ts's raw spatial values, and
// rowdecode.ts's decoding (the compiled decoders, or with `perValue` the per-value reference). For the
// decoder's unit tests on recorded binlogs (test/fixtures/binlog), bench/decode.mjs and the agent's start-up
// warm-up (warmup.ts).
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { keepGeometryRaw } from "./binlog-raw.js";
import { EXACT, PACK, PACKED, PER_VALUE, installExactRows } from "./rowdecode.js";
import type { Pack } from "./rowsql.js";

/** the options the agent's reader gives zongji (agent/reader.ts), as mysql2 keeps them in connection.config */
const READER_CONFIG = { dateStrings: true, timezone: "Z", supportBigNumbers: true, bigNumberStrings: true, jsonStrings: true, decimalNumbers: false };

export interface RowsChange {
  kind: "write" | "update" | "delete";
  db: string;
  table: string;
  /** write/delete: the rows; update: { before, after } pairs; a packed write: the rows' SQL tuples */
  rows: any[];
  /** a write read with `pack` whose rows were packed (rowsql.ts) */
  pack?: Pack;
}

export interface ReplayOptions {
  flavor: "mysql" | "mariadb";
  /** decode with rowdecode.ts's per-value reference instead of the compiled decoders */
  perValue?: boolean;
  /** read write rows events as SQL tuples where the agent's reader does (rowdecode.ts PACK) */
  pack?: boolean;
  /** decode with zongji's own decoding (not exact: what the agent did before rowdecode.ts), for benchmarks */
  zongjiOnly?: boolean;
  /** INFORMATION_SCHEMA.COLUMNS rows per "db.table", for table maps without column names (or all, with forceSchemas) */
  schemas?: Record<string, any[]>;
  /** decode every table with `schemas` as a source without binlog_row_metadata=FULL would (signedness from the binlog dropped too) */
  forceSchemas?: boolean;
}

let lib: Promise<{ getEventClass: (code: number) => any; Parser: any }> | null = null;

function zongjiLib() {
  lib ??= (async () => {
    await installExactRows();
    const root = join(dirname(createRequire(import.meta.url).resolve("@vlasky/zongji")), "lib");
    const codeMap: any = await import(pathToFileURL(join(root, "code_map.js")).href);
    const reader: any = await import(pathToFileURL(join(root, "reader.js")).href);
    return { getEventClass: codeMap.getEventClass, Parser: reader.Parser };
  })();
  return lib;
}

/** the events of a binlog file (after its 4-byte magic), each as its bytes with the header */
export function splitBinlog(file: Buffer): Buffer[] {
  if (file.readUInt32BE(0) !== 0xfe62696e) throw new Error("not a binlog file (no \\xfebin magic at its start)");
  const out: Buffer[] = [];
  for (let p = 4; p + 19 <= file.length; ) {
    const len = file.readUInt32LE(p + 9);
    if (len < 19 || p + len > file.length) break;
    out.push(file.subarray(p, p + len));
    p += len;
  }
  return out;
}

const TABLE_MAP = 19;
const ROWS = new Set([23, 24, 25, 30, 31, 32, 166, 167, 168, 169, 170, 171]);
const FORMAT_DESCRIPTION = 15;

/** Decodes the rows events of a binlog file's events (as splitBinlog returns them). */
export async function replay(events: Buffer[], o: ReplayOptions): Promise<RowsChange[]> {
  return (await replayWith(events, o)).changes;
}

/** replay, and the table map entries the rows were decoded with (one per table map event) */
export async function replayWith(events: Buffer[], o: ReplayOptions): Promise<{ changes: RowsChange[]; tableMaps: any[] }> {
  const r = await Replayer.create(o);
  const changes: RowsChange[] = [];
  const tableMaps: any[] = [];
  for (const ev of events) {
    const out = r.decode(ev);
    if (out && "kind" in out) changes.push(out);
    else if (out) tableMaps.push(out.tableMap);
  }
  return { changes, tableMaps };
}

/** one reader's decoding state (zongji's table map cache), fed one event at a time */
export class Replayer {
  readonly zongji: any;
  readonly #o: ReplayOptions;
  readonly #lib: { getEventClass: (code: number) => any; Parser: any };

  private constructor(o: ReplayOptions, l: { getEventClass: (code: number) => any; Parser: any }) {
    this.#o = o;
    this.#lib = l;
    const zongji: any = {
      tableMap: {},
      useChecksum: true,
      isMariaDb: o.flavor === "mariadb",
      connection: { config: READER_CONFIG },
      _skipSchema: () => false,
      _warnUnsupportedEvent: () => {},
      emit: (name: string, err: unknown) => {
        if (name === "error") throw err;
      },
    };
    if (!o.zongjiOnly) zongji[EXACT] = true;
    if (o.perValue) zongji[PER_VALUE] = true;
    if (o.pack) zongji[PACK] = true;
    this.zongji = zongji;
  }

  static async create(o: ReplayOptions): Promise<Replayer> {
    return new Replayer(o, await zongjiLib());
  }

  /** an event's bytes as zongji's parser reads a dump packet: the OK marker, then the event */
  static packet(ev: Buffer): Buffer {
    return Buffer.concat([Buffer.from([0]), ev]);
  }

  /** a rows event's rows, a table map's entry, or null for other events; `packet` if already made */
  decode(ev: Buffer, packet?: Buffer): RowsChange | { tableMap: any } | null {
    const zongji = this.zongji;
    const type = ev[4];
    if (type === FORMAT_DESCRIPTION) {
      // the checksum algorithm is the byte before the 4-byte checksum at the event's end (1 = CRC32)
      zongji.useChecksum = ev[ev.length - 5] === 1;
      return null;
    }
    if (type !== TABLE_MAP && !ROWS.has(type)) return null;
    const parser = new this.#lib.Parser();
    parser.append(packet ?? Replayer.packet(ev));
    parser.parseUnsignedNumber(1);
    const timestamp = parser.parseUnsignedNumber(4) * 1000;
    const eventType = parser.parseUnsignedNumber(1);
    const serverId = parser.parseUnsignedNumber(4);
    const eventLength = parser.parseUnsignedNumber(4);
    const nextPosition = parser.parseUnsignedNumber(4);
    parser.parseUnsignedNumber(2);
    const options = { timestamp, nextPosition, size: eventLength - (zongji.useChecksum ? 23 : 19), eventType, serverId };
    const Event = this.#lib.getEventClass(eventType);
    const e = new Event(parser, options, zongji);
    if (eventType === TABLE_MAP) {
      // a table out of scope: zongji dropped its entry and emits nothing (index.js)
      if (e._filtered) return null;
      tableMap(zongji, e, this.#o);
      return { tableMap: zongji.tableMap[e.tableId] };
    }
    if (e._filtered) return null;
    const tm = zongji.tableMap[e.tableId];
    const kind = eventType === 23 || eventType === 30 || eventType === 166 || eventType === 169 ? "write" : eventType === 24 || eventType === 31 || eventType === 167 || eventType === 170 ? "update" : "delete";
    const pack: Pack | undefined = e[PACKED];
    return pack ? { kind, db: tm.parentSchema, table: tm.tableName, rows: e.rows, pack } : { kind, db: tm.parentSchema, table: tm.tableName, rows: e.rows };
  }
}

/** zongji's table map handling (its index.js), then the reader's (agent/reader.ts: raw spatial values) */
function tableMap(zongji: any, e: any, o: ReplayOptions): void {
  const key = `${e.schemaName}.${e.tableName}`;
  if (!o.forceSchemas && e.hasSelfDescribingMetadata() && !(zongji.isMariaDb && e.hasAmbiguousTemporalColumns())) {
    zongji.tableMap[e.tableId] = { columnSchemas: e.buildColumnSchemas(), parentSchema: e.schemaName, tableName: e.tableName };
    e.updateColumnInfo();
  } else {
    const cur = zongji.tableMap[e.tableId];
    if (!cur || cur.tableName !== e.tableName || cur.columns.length !== e.columnCount) {
      const rows = o.schemas?.[key];
      if (!rows) throw new Error(`no INFORMATION_SCHEMA rows for ${key}: its table map carries no column names`);
      if (o.forceSchemas) e.signedness = undefined;
      zongji.tableMap[e.tableId] = { columnSchemas: rows.map((r) => ({ ...r })), parentSchema: e.schemaName, tableName: e.tableName };
      e.updateColumnInfo();
    }
  }
  keepGeometryRaw(zongji.tableMap[e.tableId]);
}
