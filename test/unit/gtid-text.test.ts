// Unit tests for agent/source/gtid-text.ts: a MySQL GTID set grown one transaction at a time writes, after every
// step, exactly the text zongji's GtidSet writes for the same set (fast steps and the others, mixed).
import { describe, expect, it, vi } from "vitest";
import { GtidSet } from "@vlasky/zongji";
import { MysqlGtidText } from "../../agent/source/gtid-text.js";

const A = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const B = "2c256447-3f0d-431b-9a25-bddf1f1f6ef6";
const C = "f0000000-0000-4000-8000-000000000001";

/** grows both from `start` and compares the text after every step */
function follow(start: string, steps: string[]): string {
  const ref = GtidSet.parse(start);
  const t = new MysqlGtidText(GtidSet.parse(start));
  expect(t.toString()).toBe(ref.toString());
  for (const g of steps) {
    ref.add(g);
    t.add(g);
    expect(t.toString(), `after ${g}`).toBe(ref.toString());
  }
  return t.toString();
}

describe("MysqlGtidText", () => {
  it("extends the last source's last interval one transaction at a time", () => {
    const steps = Array.from({ length: 50 }, (_, i) => `${A}:${42 + i}`);
    expect(follow(`${A}:1-41`, steps)).toBe(`${A}:1-91`);
  });

  it("takes the next number of the last source without GtidSet's add (its parse, sort and merge)", () => {
    const set = GtidSet.parse(`${B}:1-5,${A}:1-41`);
    const add = vi.spyOn(set, "add");
    const t = new MysqlGtidText(set);
    t.toString();
    t.add(`${A}:42`);
    t.add(`${A}:43`);
    expect(add).not.toHaveBeenCalled();
    expect(t.toString()).toBe(`${B}:1-5,${A}:1-43`);
    // the set itself holds them (what a later slow step builds on)
    expect(set.toString()).toBe(`${B}:1-5,${A}:1-43`);
    t.add(`${B}:6`);
    expect(add).toHaveBeenCalledTimes(1);
    expect(t.toString()).toBe(`${B}:1-6,${A}:1-43`);
  });

  it("writes what GtidSet writes through gaps, other sources, tags, upper case, backfills and the largest number", () => {
    follow(`${B}:1-5,${A}:1-3:7`, [
      `${A}:8`, `${A}:9`, `${A}:11`, `${A}:12`, `${A}:10`, `${B}:6`, `${B}:7`, `${A}:13`,
      `${C}:1`, `${C}:2`, `${A}:14`, `${C}:3`, `${A.toUpperCase()}:15`, `${C}:tag_a:1`, `${C}:4`, `${C}:tag_a:2`,
      `${C}:5`, `${C}:5`, `${C}:3`, `${C}:007`, `${C}:8`,
    ]);
    follow("", [`${A}:1`, `${A}:2`, `${A}:3`, `${B}:1`, `${A}:4`, `${A}:5`]);
    follow(`${A}:9223372036854775805`, [`${A}:9223372036854775806`, `${A}:9223372036854775807`]);
    follow(`${A}:1-3`, [`${A}:tag_b:1`, `${A}:4`, `${A}:5`, `${A}:tag_b:2`]);
  });

  it("refuses what GtidSet refuses (a number past the largest, a malformed GTID)", () => {
    const t = new MysqlGtidText(GtidSet.parse(`${A}:1-9223372036854775807`));
    t.toString();
    expect(() => t.add(`${A}:9223372036854775808`)).toThrow(/Invalid GTID/);
    expect(() => t.add(`${A}:x`)).toThrow(/Invalid GTID/);
    expect(t.toString()).toBe(`${A}:1-9223372036854775807`);
  });

  it("matches GtidSet on random walks", () => {
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    for (let walk = 0; walk < 40; walk++) {
      const next: Record<string, number> = { [A]: 1, [B]: 1, [C]: 1 };
      const steps: string[] = [];
      for (let i = 0; i < 200; i++) {
        const u = [A, B, C][rnd(10) < 8 ? 0 : 1 + rnd(2)];
        const r = rnd(20);
        const gno = r === 0 ? next[u] + 1 + rnd(5) : r === 1 ? Math.max(1, next[u] - 1 - rnd(5)) : next[u];
        next[u] = Math.max(next[u], gno + 1);
        steps.push(r === 2 ? `${u}:t${rnd(3)}:${gno}` : `${u}:${gno}`);
      }
      follow(walk % 2 ? `${A}:1-10:20-30` : "", steps);
    }
  });
});
