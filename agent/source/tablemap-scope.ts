// TablemapScope owns one rule of the binlog's row format: a rows event refers to a table map logged in its own
// statement. A source logs, for every statement, the table map of each table the statement changes, then its rows
// events; the statement's last rows event carries STMT_END_F, after which the applier forgets the mapping (MySQL's
// Rows_log_event::do_apply_event clears its table mappings there, MariaDB's too). Table ids are reused: after a
// restart, a DDL or a table cache eviction, another table gets the id.
//
// zongji keeps a table map entry per table id for the connection's lifetime and decodes a rows event with
// whatever entry its id has: a rows event whose own table map did not reach the decoder would be decoded with the
// entry of another table, or another version of it (silently when the column counts match), and a rows event whose
// id has no entry is dropped as "filtered". Neither may pass silently here: a rows event whose table id was not
// mapped in its statement is a decoding error that names the ids, the entry it would have used and where the
// decoder stands; the session restarts from its checkpoint. Table maps of tables out of scope count as mapped
// (zongji drops them and their rows), so only a map that never came fails.
//
// Installed once per process by rowdecode.ts; the check applies to zongji instances that carry its EXACT flag.

const SCOPE = Symbol("datasync.tableMapScope");
/** STMT_END_F: the statement's last rows event (log_event.h) */
const STMT_END_F = 0x1;

interface Scope {
  /** table ids mapped in the current statement */
  ids: Set<number>;
  /** the last rows event ended its statement: the next table map starts a new one */
  ended: boolean;
  /** table maps and rows events seen (tests: tableMapScopeOf) */
  maps: number;
  rows: number;
}

function scopeOf(tableMap: any): Scope {
  let s: Scope | undefined = tableMap[SCOPE];
  if (!s) {
    s = { ids: new Set(), ended: false, maps: 0, rows: 0 };
    // a symbol key: zongji looks entries up by numeric id only
    Object.defineProperty(tableMap, SCOPE, { value: s, enumerable: false });
  }
  return s;
}

/** the scope's counters (tests) */
export function tableMapScopeOf(tableMap: any): { maps: number; rows: number; open: number[] } | undefined {
  const s: Scope | undefined = tableMap?.[SCOPE];
  return s ? { maps: s.maps, rows: s.rows, open: s.ended ? [] : [...s.ids] } : undefined;
}

/**
 * Patches zongji's TableMap (lib/binlog_event.js) and rows events (lib/rows_event.js) once: every table map
 * marks its id as mapped in the current statement; a rows event of an EXACT zongji instance whose id is not
 * mapped there throws before its rows are read.
 */
export function installTableMapScope(TableMap: any, RowsEvent: any, flag: symbol): void {
  const mapProto = TableMap.prototype;
  if (mapProto[SCOPE]) return;
  mapProto[SCOPE] = true;
  const readMapId = mapProto._readTableId;
  mapProto._readTableId = function (this: any, parser: any) {
    const r = readMapId.call(this, parser);
    const tm = this.tableMap;
    if (tm) {
      const s = scopeOf(tm);
      if (s.ended) {
        s.ids.clear();
        s.ended = false;
      }
      s.ids.add(this.tableId);
      s.maps++;
    }
    return r;
  };

  const rowsProto = RowsEvent.prototype;
  const readRowsId = rowsProto._readTableId;
  rowsProto._readTableId = function (this: any, parser: any) {
    const r = readRowsId.call(this, parser);
    const zongji = this._zongji;
    if (!zongji?.[flag] || !zongji.tableMap) return r;
    const s = scopeOf(zongji.tableMap);
    s.rows++;
    const id: number = this.tableId;
    if (s.ended || !s.ids.has(id)) {
      const entry = zongji.tableMap[id];
      const would = entry ? `would decode it as ${entry.parentSchema}.${entry.tableName} (a stale table map)` : "has no table map for it (its rows would be dropped as filtered)";
      const mapped = s.ended ? "none (the previous statement ended)" : [...s.ids].join(", ") || "none";
      const at = zongji.options?.filename ? ` at ${zongji.options.filename}:${this.nextPosition ?? "?"}` : "";
      throw new Error(
        `a rows event of table id ${id}${at} arrived without its table map in its statement (table ids mapped in the statement: ${mapped}): the decoder ${would}; the session restarts from its checkpoint`,
      );
    }
    // the flags follow the table id: the statement's last rows event ends the mapping
    const buf: Buffer = parser._buffer;
    if (buf && parser._offset + 2 <= buf.length && (buf.readUInt16LE(parser._offset) & STMT_END_F) !== 0) s.ended = true;
    return r;
  };
}
