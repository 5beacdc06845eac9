import { describe, expect, it } from "vitest";
import { goalMet, perSecondMax, percentile, positionReached, summarize } from "../../bench/stats.mjs";

describe("bench stats", () => {
  it("percentile is nearest-rank on sorted values", () => {
    const v = [5, 1, 4, 2, 3, 6, 7, 8, 9, 10];
    expect(percentile(v, 50)).toBe(5);
    expect(percentile(v, 99)).toBe(10);
    expect(percentile(v, 90)).toBe(9);
    expect(percentile(v, 0)).toBe(1);
    expect(percentile([], 50)).toBeNull();
    expect(percentile([NaN, 3], 50)).toBe(3);
  });
  it("summarize gives p50/p95/p99/max", () => {
    const v = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(summarize(v)).toMatchObject({ count: 100, p50: 50, p95: 95, p99: 99, max: 100, mean: 50.5 });
  });
  it("positionReached orders binlog files before offsets", () => {
    expect(positionReached({ file: "binlog.000001", pos: 10 }, { file: "binlog.000001", pos: 10 })).toBe(true);
    expect(positionReached({ file: "binlog.000001", pos: 9 }, { file: "binlog.000001", pos: 10 })).toBe(false);
    expect(positionReached({ file: "binlog.000002", pos: 4 }, { file: "binlog.000001", pos: 10 })).toBe(true);
    expect(positionReached(null, { file: "binlog.000001", pos: 10 })).toBe(false);
  });
  it("positionReached compares files by sequence number, not as strings (binlog.1000000 follows binlog.999999)", () => {
    expect(positionReached({ file: "binlog.1000000", pos: 4 }, { file: "binlog.999999", pos: 900 })).toBe(true);
    expect(positionReached({ file: "binlog.999999", pos: 900 }, { file: "binlog.1000000", pos: 4 })).toBe(false);
  });
  it("perSecondMax buckets by whole second", () => {
    expect(perSecondMax([{ t: 0.1, v: 1 }, { t: 0.9, v: 3 }, { t: 2.5, v: 2 }])).toEqual([{ t: 0, v: 3 }, { t: 2, v: 2 }]);
  });
  it("goalMet handles both directions and missing values", () => {
    expect(goalMet(0.6, 0.5)).toBe(true);
    expect(goalMet(300, 300, true)).toBe(true);
    expect(goalMet(null, 1)).toBeNull();
  });
});
