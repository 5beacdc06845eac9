// The soak's growth detector (dev/soak.ts assessGrowth) on synthetic series, and its small helpers.
import { describe, expect, it } from "vitest";
import { Rng } from "../../dev/sandbox-shop.js";
import { assessGrowth, formatSample, formatSoakSummary, soakMarkdown, leakFlag, linearFit, niceTicks, parseMetrics, parseSoakOptions, containerNodeOptions, soakSvg, type GrowthPoint, type SoakReport, type SoakSample, DEFAULT_GROWTH } from "../../dev/soak.js";

/** n samples every `every` s; rss and lag (ms) as functions of the time and a noise source in [-1, 1) */
function series(n: number, every: number, rss: (t: number, noise: number) => number, lag: (t: number, noise: number) => number = () => 20, replicas = ["replica1", "replica2"]): GrowthPoint[] {
  const rng = new Rng(99);
  const noise = () => rng.next() * 2 - 1;
  return Array.from({ length: n }, (_, i) => {
    const t = (i + 1) * every;
    return { t, rssMb: rss(t, noise()), lagMs: Object.fromEntries(replicas.map((r) => [r, Math.max(0, lag(t, noise()))])) };
  });
}

const check = (v: ReturnType<typeof assessGrowth>, name: string) => v.checks.find((c) => c.name === name)!;

describe("linearFit", () => {
  it("fits a line exactly and reports r² 1; a flat series has slope 0 and r² 0", () => {
    const f = linearFit([0, 1, 2, 3], [1, 3, 5, 7]);
    expect(f.slope).toBeCloseTo(2);
    expect(f.intercept).toBeCloseTo(1);
    expect(f.r2).toBeCloseTo(1);
    expect(linearFit([0, 1, 2], [5, 5, 5])).toEqual({ slope: 0, intercept: 5, r2: 0 });
  });
});

describe("assessGrowth", () => {
  it("passes a flat RSS with noise (±8 MB around 120 MB, 10 min every 10 s) and a flat noisy lag", () => {
    const v = assessGrowth(series(60, 10, (_t, e) => 120 + 8 * e, (_t, e) => 30 + 25 * e));
    expect(v.ok, JSON.stringify(v.checks, null, 2)).toBe(true);
    // 20 % of 590 s is more than a minute: the warm-up is the first minute
    expect(v.warmupEndS).toBe(10 + 60);
    expect(check(v, "rss").ok).toBe(true);
    expect(check(v, "lag replica1").ok).toBe(true);
    expect(check(v, "lag replica2").ok).toBe(true);
  });

  it("passes a GC sawtooth (RSS climbs 15 MB, drops, repeats) as long as it does not trend", () => {
    const v = assessGrowth(series(60, 10, (t, e) => 110 + ((t / 10) % 12) * 1.25 + e));
    expect(check(v, "rss").ok, check(v, "rss").detail).toBe(true);
  });

  it("fails a steady leak: +6 MB/min from 110 MB over 10 min (noise ±5 MB)", () => {
    const v = assessGrowth(series(60, 10, (t, e) => 110 + (6 * t) / 60 + 5 * e));
    expect(v.ok).toBe(false);
    const c = check(v, "rss");
    expect(c.ok).toBe(false);
    expect(c.detail).toMatch(/GROWING/);
    expect(c.figures!.slopeMbPerMin).toBeGreaterThan(5);
    expect(c.figures!.slopeMbPerMin).toBeLessThan(7);
    // the lag checks are unaffected
    expect(check(v, "lag replica1").ok).toBe(true);
  });

  it("fails a leak in a 2-minute run sampled every 4 s (+20 MB/min from 100 MB)", () => {
    const v = assessGrowth(series(30, 4, (t, e) => 100 + (20 * t) / 60 + 2 * e));
    expect(check(v, "rss").ok).toBe(false);
  });

  it("passes a slow creep under the limit (+1 MB/min over 10 min, 120 MB baseline: 8 MB < 24 MB)", () => {
    const v = assessGrowth(series(60, 10, (t, e) => 120 + t / 60 + e));
    expect(check(v, "rss").ok, check(v, "rss").detail).toBe(true);
  });

  it("the limit is 20 % of the baseline or 30 MB, whichever is smaller (and both are options)", () => {
    const big = assessGrowth(series(60, 10, (t) => 400 + (4 * t) / 60)); // +32 MB fitted after the warm-up, 8 % of 400
    expect(check(big, "rss").ok).toBe(false);
    expect(check(big, "rss").figures!.thresholdMb).toBe(30);
    const loose = assessGrowth(series(60, 10, (t) => 400 + (4 * t) / 60), { rssGrowthMb: 100 });
    expect(check(loose, "rss").ok).toBe(true);
  });

  it("fails a lag ramp (the agent falls behind: 20 ms to 6 s over 10 min) and names the replica", () => {
    const pts = series(60, 10, (_t, e) => 120 + e).map((p) => ({ ...p, lagMs: { ...p.lagMs, replica2: 20 + (p.t / 600) * 6000 } }));
    const v = assessGrowth(pts);
    expect(v.ok).toBe(false);
    expect(check(v, "rss").ok).toBe(true);
    expect(check(v, "lag replica1").ok).toBe(true);
    const c = check(v, "lag replica2");
    expect(c.ok).toBe(false);
    expect(c.detail).toMatch(/FALLING BEHIND/);
  });

  it("passes a lag that rises but stays under 1 s (50 ms to 400 ms)", () => {
    const v = assessGrowth(series(60, 10, () => 120, (t) => 50 + (t / 600) * 350));
    expect(check(v, "lag replica1").ok).toBe(true);
  });

  it("passes a one-off spike then flat: RSS +80 MB and lag 8 s in one sample after the warm-up", () => {
    const pts = series(60, 10, (_t, e) => 120 + 3 * e, (_t, e) => 30 + 10 * e).map((p) =>
      p.t === 200 ? { ...p, rssMb: 200, lagMs: { replica1: 8000, replica2: 8000 } } : p,
    );
    const v = assessGrowth(pts);
    expect(v.ok, JSON.stringify(v.checks, null, 2)).toBe(true);
  });

  it("passes a one-off spike in the last sample", () => {
    const pts = series(60, 10, (_t, e) => 120 + 3 * e).map((p) => (p.t === 600 ? { ...p, rssMb: 220 } : p));
    expect(check(assessGrowth(pts), "rss").ok).toBe(true);
  });

  it("ignores the warm-up: a steep climb in the first 20 % (or first minute) then flat passes", () => {
    // 2 min every 4 s: warm-up = 24 s; RSS climbs 60 MB in it, then stays
    const v = assessGrowth(series(30, 4, (t, e) => (t < 24 ? 60 + (60 * t) / 24 : 120) + e));
    expect(v.warmupEndS).toBeCloseTo(4 + 0.2 * 116);
    expect(check(v, "rss").ok, check(v, "rss").detail).toBe(true);
    // 10 min: the warm-up is capped at 1 minute
    expect(assessGrowth(series(60, 10, () => 100)).warmupEndS).toBe(10 + DEFAULT_GROWTH.warmupMaxSeconds);
    // or a fixed warm-up: a drop at 100 s and the regrowth after it are not judged with warmupSeconds 150
    const dropThenRegrow = series(60, 10, (t, e) => (t < 100 ? 125 : t < 150 ? 80 + (t - 100) / 2 : 105) + e);
    expect(assessGrowth(dropThenRegrow, { warmupSeconds: 150 }).warmupEndS).toBe(160);
    expect(check(assessGrowth(dropThenRegrow, { warmupSeconds: 150 }), "rss").ok).toBe(true);
  });

  it("does not judge too few samples, and fails a replica with no lag measurement at all", () => {
    const few = assessGrowth(series(4, 10, (t) => 100 + t * 10));
    expect(few.ok).toBe(true);
    expect(check(few, "rss").detail).toMatch(/not judged/);
    const stuck = series(30, 4, () => 100).map((p) => ({ ...p, lagMs: { ...p.lagMs, replica2: null } }));
    const v = assessGrowth(stuck);
    expect(check(v, "lag replica1").ok).toBe(true);
    expect(check(v, "lag replica2").ok).toBe(false);
  });

  it("skips missing RSS readings", () => {
    const pts = series(60, 10, (t) => 100 + (10 * t) / 60).map((p, i) => (i % 3 ? p : { ...p, rssMb: null }));
    expect(check(assessGrowth(pts), "rss").ok).toBe(false);
  });
});

describe("soak helpers", () => {
  it("parses Prometheus text with labels", () => {
    const m = parseMetrics(
      [
        "# HELP datasync_replica_lag_seconds lag",
        'datasync_replica_lag_seconds{group="soak",replica="replica1"} 0.25',
        'datasync_replica_applied_transactions_total{group="soak",replica="replica2"} 1234',
        "datasync_process_nodejs_heap_size_used_bytes 52428800",
      ].join("\n"),
    );
    expect(m.get("datasync_replica_lag_seconds")).toEqual([{ labels: { group: "soak", replica: "replica1" }, value: 0.25 }]);
    expect(m.get("datasync_replica_applied_transactions_total")![0].value).toBe(1234);
    expect(m.get("datasync_process_nodejs_heap_size_used_bytes")![0]).toEqual({ labels: {}, value: 52428800 });
  });

  it("options: defaults, the interval from the run's length, and refusals", () => {
    expect(parseSoakOptions({})).toMatchObject({ minutes: 5, replicas: 2, interval: 10, rate: 40, leakMbPerMin: 0 });
    // the agent runs with the container's node flags unless told otherwise; "" is node's defaults
    expect(parseSoakOptions({}).nodeFlags).toEqual(expect.arrayContaining(["--max-old-space-size=384", "--max-semi-space-size=32"]));
    expect(parseSoakOptions({}).nodeFlags).toEqual(containerNodeOptions().split(" "));
    expect(parseSoakOptions({ nodeFlags: "" }).nodeFlags).toEqual([]);
    expect(parseSoakOptions({ nodeFlags: "--max-old-space-size=128" }).nodeFlags).toEqual(["--max-old-space-size=128"]);
    expect(parseSoakOptions({ minutes: "2" }).interval).toBe(4);
    expect(parseSoakOptions({ minutes: "0.5" }).interval).toBe(1);
    expect(parseSoakOptions({ minutes: "60", interval: "5" }).interval).toBe(5);
    for (const bad of [{ minutes: "0" }, { replicas: "6" }, { replicas: "two" }, { interval: "0.1" }, { rate: "-1" }]) expect(() => parseSoakOptions(bad)).toThrow(/must be/);
  });

  it("the leak flag is a --import of a data: URL, none without a leak", () => {
    expect(leakFlag(0)).toEqual([]);
    const [flag, url] = leakFlag(60);
    expect(flag).toBe("--import");
    expect(decodeURIComponent(url)).toContain(`Buffer.alloc(${1024 * 1024},7)`);
  });

  it("ticks are round and cover the range", () => {
    expect(niceTicks(0, 123)).toEqual([0, 25, 50, 75, 100, 125]);
    expect(niceTicks(0, 0.42)).toEqual([0, 0.1, 0.2, 0.3, 0.4, 0.5]);
  });

  it("a sample line and an SVG chart", () => {
    const s: SoakSample = {
      t: 40,
      sourceTps: 45.04,
      workloadTps: 40,
      replicas: { replica1: { appliedTps: 44.9, lagP50Ms: 12, lagMaxMs: 30, agentLagS: 0, up: true } },
      rssMb: 95.33,
      hwmMb: 99,
      heapUsedMb: 30.1,
      cpuPct: 7,
      errors: 0,
    };
    expect(formatSample(s)).toBe("[   40s] source 45.0 tx/s | replica1 44.9 tx/s lag 0.012/0.030 s | RSS 95.3 MB heap 30.1 MB cpu 7.0%");
    const report = { startedAt: "now", ok: true, settings: { minutes: 1, replicas: 1 }, growth: { warmupEndS: 12, ok: true, checks: [] }, samples: [s, { ...s, t: 44 }] } as unknown as SoakReport;
    const svg = soakSvg(report);
    expect(svg).toMatch(/^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    expect(svg).toContain("replica1 p50");
    expect(svg.match(/<path /g)!.length).toBe(4);
  });

  it("the summary and the Markdown report carry the table, the checks and the verdict", () => {
    const samples: SoakSample[] = Array.from({ length: 10 }, (_, i) => ({
      t: (i + 1) * 4,
      sourceTps: 45,
      workloadTps: 40,
      replicas: { replica1: { appliedTps: 44.5, lagP50Ms: 20 + i, lagMaxMs: 60, agentLagS: 0, up: true } },
      rssMb: 100 + i,
      hwmMb: 110,
      heapUsedMb: 30,
      cpuPct: 8,
      errors: 0,
    }));
    const growth = assessGrowth(samples.map((s) => ({ t: s.t, rssMb: s.rssMb, lagMs: { replica1: s.replicas.replica1.lagP50Ms } })));
    const report: SoakReport = {
      command: "npm run soak -- --minutes 0.67",
      startedAt: "2026-01-01T00:00:00.000Z",
      machine: { cores: 2, cpu: "cpu", load1: 1, node: "v20", server: "10.11" },
      settings: { minutes: 0.67, intervalSeconds: 4, replicas: 1, ratePerSecond: 40, leakMbPerMin: 0, growth: DEFAULT_GROWTH },
      prefillRows: 50_000,
      workload: { transactions: 1600, rows: 4800, errors: 0, lastError: null },
      startupSeconds: 4.2,
      ranSeconds: 40,
      stoppedEarly: false,
      catchUpSeconds: 0.05,
      agentExit: { code: 0, signal: null },
      peakRssMb: 110,
      verify: { identical: true, tables: 5, sourceRows: 51_000, report: "" },
      growth,
      checks: [...growth.checks, { name: "verify", ok: false, detail: "NOT identical" }],
      ok: false,
      samples,
    };
    const text = formatSoakSummary(report);
    expect(text).toMatch(/^ {2}agent RSS \(MB\)\s+100\.0\s+104\.0\s+100\.0\s+109\.0\s+109\.0\s+\+15\.00 MB\/min$/m);
    expect(text).toMatch(/^ {2}replica1 lag p50 \(s\)\s+0\.020/m);
    expect(text).toContain("FAIL verify: NOT identical");
    expect(text).toMatch(/verdict: FAIL\n$/);
    const md = soakMarkdown(report, "soak.svg");
    expect(md).toContain("![agent RSS and end-to-end lag over time](soak.svg)");
    expect(md).toContain("| agent RSS (MB) | 100.0 | 104.0 | 100.0 | 109.0 | 109.0 | +15.00 MB/min |");
    expect(md).toContain("| verify | **FAIL** | NOT identical |");
    expect(md.match(/^\| \d+ \| 45\.0 \|/gm)!.length).toBe(10);
  });
});
