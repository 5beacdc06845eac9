// Pure helpers for the benchmark's figures (unit-tested in test/unit/bench-stats.test.ts).
// Positions compare as the agent compares them (one module: agent/source/positions.ts, compiled by `npm run bench`).
import { atOrPast } from "../dist/agent/source/positions.js";

/** The p-th percentile (0..100) of numbers, nearest-rank on the sorted values; null for an empty list. */
export function percentile(values, p) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  if (p <= 0) return v[0];
  if (p >= 100) return v[v.length - 1];
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil((p / 100) * v.length) - 1))];
}

/** count, p50, p95, p99, max (and mean) of a list of numbers. */
export function summarize(values) {
  const v = values.filter((x) => Number.isFinite(x));
  return {
    count: v.length,
    p50: percentile(v, 50),
    p95: percentile(v, 95),
    p99: percentile(v, 99),
    max: v.length ? Math.max(...v) : null,
    mean: v.length ? v.reduce((a, b) => a + b, 0) / v.length : null,
  };
}

/** `p` is at or past `end`: files by sequence number (binlog.1000000 follows binlog.999999), then the offset. */
export function positionReached(p, end) {
  if (!p || !p.file) return false;
  return atOrPast({ file: p.file, pos: Number(p.pos) }, { file: end.file, pos: Number(end.pos) });
}

/** Max per whole second of (t seconds, value) samples: the series the chart plots. */
export function perSecondMax(samples) {
  const m = new Map();
  for (const { t, v } of samples) {
    const s = Math.floor(t);
    m.set(s, Math.max(m.get(s) ?? -Infinity, v));
  }
  return [...m.entries()].sort((a, b) => a[0] - b[0]).map(([t, v]) => ({ t, v }));
}

/** "ratio (goal)" met? higher-is-better unless lowerIsBetter. null when either side is missing. */
export function goalMet(value, goal, lowerIsBetter = false) {
  if (value === null || value === undefined || !Number.isFinite(value) || goal === null || goal === undefined) return null;
  return lowerIsBetter ? value <= goal : value >= goal;
}

export function round(x, digits = 3) {
  if (x === null || x === undefined || !Number.isFinite(x)) return x ?? null;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
