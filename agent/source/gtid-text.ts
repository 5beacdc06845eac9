// GtidText owns a MySQL GTID set that grows one transaction at a time and its text after each transaction (the
// reader writes it into every transaction's position): zongji's GtidSet stays the set, and the common step (the
// next number of the source that ends the text: `uuid:1-41` and `uuid:42`) extends the set's last interval and
// the text in place, where GtidSet.add would parse the GTID, sort and coalesce the intervals, and toString sort
// the sources, map and join every interval, per source transaction. Any other step (another source, a gap, a
// tag, a form it does not recognize) goes through GtidSet, and the text is written by its toString again.
import { GtidSet } from "@vlasky/zongji";

/** the set's text ends with the last interval of its last source: text = prefix + that interval's range */
interface Tail {
  uuid: string;
  /** the interval itself, [start, end] inclusive, as the set holds it */
  iv: [bigint, bigint];
  prefix: string;
}

const GNO_MAX = 0x7fffffffffffffffn;
const DIGITS = /^\d{1,19}$/;

export class MysqlGtidText {
  readonly #set: GtidSet;
  #text: string | null = null;
  #tail: Tail | null = null;

  /** `set` is the one this object grows from now on (nothing else may change it) */
  constructor(set: GtidSet = new GtidSet()) {
    this.#set = set;
  }

  /** adds one transaction, "uuid:gno" or "uuid:tag:gno" (GtidSet.add's forms) */
  add(gtid: string): void {
    const t = this.#tail;
    if (t !== null && typeof gtid === "string" && gtid.length > t.uuid.length + 1 && gtid.charCodeAt(t.uuid.length) === 58 && gtid.startsWith(t.uuid)) {
      const digits = gtid.slice(t.uuid.length + 1);
      if (DIGITS.test(digits)) {
        const gno = BigInt(digits);
        if (gno === t.iv[1] + 1n && gno <= GNO_MAX) {
          // what GtidSet's _addInterval makes of [s, e] and [e+1, e+1]: [s, e+1], in place
          t.iv[1] = gno;
          this.#text = `${t.prefix}${t.iv[0]}-${gno}`;
          return;
        }
      }
    }
    this.#set.add(gtid);
    this.#text = null;
    this.#tail = null;
  }

  /** the set's text, as GtidSet.toString writes it */
  toString(): string {
    if (this.#text === null) {
      this.#text = this.#set.toString();
      this.#tail = tailOf(this.#set, this.#text);
    }
    return this.#text;
  }
}

/**
 * Where the fast step applies: the source printed last (the greatest uuid: toString sorts them) has untagged
 * intervals only (tags print after them), and the text ends with its last interval. Null where any of that does
 * not hold or zongji's GtidSet is not shaped as expected (then every step goes through GtidSet).
 */
function tailOf(set: GtidSet, text: string): Tail | null {
  const sids = (set as any)._sids;
  if (!(sids instanceof Map) || sids.size === 0) return null;
  let uuid: string | null = null;
  for (const k of sids.keys()) if (typeof k === "string" && (uuid === null || k > uuid)) uuid = k;
  if (uuid === null) return null;
  const tags = sids.get(uuid);
  if (!(tags instanceof Map) || tags.size !== 1 || !tags.has("")) return null;
  const ivs = tags.get("");
  if (!Array.isArray(ivs) || ivs.length === 0) return null;
  const iv = ivs[ivs.length - 1];
  if (!Array.isArray(iv) || iv.length !== 2 || typeof iv[0] !== "bigint" || typeof iv[1] !== "bigint") return null;
  const range = iv[0] === iv[1] ? `${iv[0]}` : `${iv[0]}-${iv[1]}`;
  if (!text.endsWith(`:${range}`)) return null;
  if (!text.startsWith(uuid) && !text.includes(`,${uuid}:`)) return null;
  return { uuid, iv: iv as [bigint, bigint], prefix: text.slice(0, text.length - range.length) };
}
