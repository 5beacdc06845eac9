// TablemapCache owns decoding a table map event once per table shape: a source logs a table map before the rows
// of each transaction (40,000 single-row transactions, 40,000 table maps), and zongji parses each one whole (its
// optional metadata: column names, charsets, signedness, ENUM/SET values), builds its INFORMATION_SCHEMA-shaped
// column schemas and its columns anew, and rowdecode.ts then compares the new entry with the table's previous one.
// A table map whose bytes (from its table id to its end, checksum aside) equal the previous table map of the same
// table id on the same zongji decodes to the same values, so its optional metadata is taken from that one and
// zongji's table map entry gets the previous entry's column schemas and columns (the same objects: the compiled
// decoders kept on them are found at once). Any other bytes (an ALTER, another table under a reused id) are parsed
// as before. Installed once per process by rowdecode.ts, effective only for zongji instances that carry its EXACT flag.

/** what the previous table map of a table id decoded to */
interface Entry {
  /** the table map's bytes from its table id to its end (checksum aside), copied */
  body: Buffer;
  /** the fields zongji's _readOptionalMetadata set, as it set them */
  fields: Record<string, unknown>;
  /** zongji's table map entry built from it (columnSchemas, columns), once updateColumnInfo ran */
  entry: any;
  schemas: any[] | null;
  columns: any[] | null;
}

const START = Symbol("datasync.tableMapStart");
const HIT = Symbol("datasync.tableMapHit");
const MISS = Symbol("datasync.tableMapMiss");
const CACHE = Symbol("datasync.tableMapCache");
/** table ids kept per zongji instance (more tables: the cache starts over, memory never grows) */
const MAX_TABLES = 2000;
/** what zongji's _readOptionalMetadata may set on the event */
const OPTIONAL_FIELDS = ["columnNames", "signedness", "primaryKey", "columnVisibility", "geometryTypes", "_columnCharsetIds", "_enumSetValues"];

/** the cache of one zongji instance (for tests: how many table maps were taken from it) */
export function tableMapCacheOf(zongji: any): { hits: number; tables: number } | undefined {
  const c: { hits: number; byId: Map<number, Entry> } | undefined = zongji?.[CACHE];
  return c ? { hits: c.hits, tables: c.byId.size } : undefined;
}

/** Patches zongji's TableMap event class (lib/binlog_event.js) once, for zongji instances that carry `flag`. */
export function installTableMapCache(TableMap: any, flag: symbol): void {
  const proto = TableMap.prototype;
  if (proto[CACHE]) return;
  proto[CACHE] = true;
  const readTableId = proto._readTableId;
  const readOptional = proto._readOptionalMetadata;
  const buildSchemas = proto.buildColumnSchemas;
  const updateInfo = proto.updateColumnInfo;

  // the table id is the first field of the event's body: where the compared bytes start
  proto._readTableId = function (this: any, parser: any) {
    this[START] = parser._offset;
    return readTableId.call(this, parser);
  };

  proto._readOptionalMetadata = function (this: any, parser: any, zongji: any) {
    if (!zongji?.[flag] || typeof this[START] !== "number") return readOptional.call(this, parser, zongji);
    const end = parser._packetEnd - (zongji.useChecksum ? 4 : 0);
    const body: Buffer = parser._buffer.subarray(this[START], end);
    const cache: { hits: number; byId: Map<number, Entry> } = (zongji[CACHE] ??= { hits: 0, byId: new Map() });
    const known = cache.byId.get(this.tableId);
    // only while zongji's entry for the id is still the one built from those bytes (nothing replaced or dropped it)
    if (known && known.columns && known.entry && zongji.tableMap?.[this.tableId] === known.entry && known.body.equals(body)) {
      Object.assign(this, known.fields);
      parser._offset = end;
      this[HIT] = known;
      cache.hits++;
      return;
    }
    readOptional.call(this, parser, zongji);
    const fields: Record<string, unknown> = {};
    for (const f of OPTIONAL_FIELDS) if (Object.prototype.hasOwnProperty.call(this, f)) fields[f] = this[f];
    if (cache.byId.size >= MAX_TABLES) cache.byId.clear();
    const e: Entry = { body: Buffer.from(body), fields, entry: null, schemas: null, columns: null };
    cache.byId.set(this.tableId, e);
    this[MISS] = e;
  };

  proto.buildColumnSchemas = function (this: any) {
    const hit: Entry | undefined = this[HIT];
    if (hit?.schemas) return hit.schemas;
    return buildSchemas.call(this);
  };

  proto.updateColumnInfo = function (this: any) {
    const tm = this.tableMap?.[this.tableId];
    const hit: Entry | undefined = this[HIT];
    // the same column schemas as the entry the previous table map built: its columns too (updateColumnInfo would
    // only write the same signedness into the same schemas and build equal columns)
    if (hit && tm && hit.schemas && tm.columnSchemas === hit.schemas) {
      tm.columns = hit.columns;
      hit.entry = tm;
      return;
    }
    updateInfo.call(this);
    const e: Entry | undefined = this[MISS] ?? hit;
    if (e && tm) {
      e.entry = tm;
      e.schemas = tm.columnSchemas;
      e.columns = tm.columns;
    }
  };
}
