// Soak owns `npm run soak` (bench/soak.mjs): the sandbox topology (private servers, the sample shop, its steady
// workload and heartbeat) with the agent as a child process (the real CLI, so its memory is measured alone),
// sampled every few seconds for throughput, end-to-end lag and RSS; at the end a growth check (RSS and lag
// trends after a warm-up), the catch-up and a verify. Exit 0 only when nothing grew and the replicas are identical.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { basename, dirname, join, relative } from "node:path";
import { validateConfig } from "../agent/config.js";
import { agentConfig, repoRoot, sandboxBase } from "./sandbox.js";
import { createShop, Heartbeat, LagProbe, percentile, Workload } from "./sandbox-shop.js";
import { freePort, serverBinary, startServers, type TestServer } from "./servers.js";
import { exitCodeOf, verifyOrError } from "../agent/verify/verifier.js";
import { formatVerify } from "../agent/verify/commands.js";

// ------------------------------------------------------------------ the growth detector (pure)

/** one sample as the detector sees it: seconds since the start, agent RSS (MB), end-to-end lag per replica (ms) */
export interface GrowthPoint {
  t: number;
  rssMb: number | null;
  lagMs: Record<string, number | null>;
}

export interface GrowthOptions {
  /** warm-up: the first `warmupFraction` of the run or `warmupMaxSeconds`, whichever is shorter (0.2, 60) */
  warmupFraction: number;
  warmupMaxSeconds: number;
  /** a fixed warm-up in seconds instead (e.g. past the post-snapshot RSS drop in long runs); null: the rule above */
  warmupSeconds: number | null;
  /** RSS fails when its fitted growth after the warm-up exceeds this share of the baseline (0.2) … */
  rssGrowthFraction: number;
  /** … or this many MB (30), whichever is smaller */
  rssGrowthMb: number;
  /** the least-squares fit must explain at least this much of the variance (r², 0.3): noise is not a trend */
  minR2: number;
  /** lag fails when the end level exceeds `lagFactor` × the warm baseline (3) and `lagMinMs` (1000) */
  lagFactor: number;
  lagMinMs: number;
}

export const DEFAULT_GROWTH: GrowthOptions = {
  warmupFraction: 0.2,
  warmupMaxSeconds: 60,
  warmupSeconds: null,
  rssGrowthFraction: 0.2,
  rssGrowthMb: 30,
  minR2: 0.3,
  lagFactor: 3,
  lagMinMs: 1000,
};

export interface Fit {
  /** per second */
  slope: number;
  intercept: number;
  r2: number;
}

/** ordinary least squares y = intercept + slope·x; r² is 0 for a perfectly flat series */
export function linearFit(xs: readonly number[], ys: readonly number[]): Fit {
  const n = Math.min(xs.length, ys.length);
  if (n === 0) return { slope: 0, intercept: 0, r2: 0 };
  const mx = xs.slice(0, n).reduce((a, b) => a + b, 0) / n;
  const my = ys.slice(0, n).reduce((a, b) => a + b, 0) / n;
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    sxx += (xs[i] - mx) ** 2;
    sxy += (xs[i] - mx) * (ys[i] - my);
    syy += (ys[i] - my) ** 2;
  }
  const slope = sxx > 0 ? sxy / sxx : 0;
  const r2 = sxx > 0 && syy > 0 ? (sxy * sxy) / (sxx * syy) : 0;
  return { slope, intercept: my - slope * mx, r2 };
}

const median = (xs: readonly number[]) => percentile(xs, 50) ?? NaN;

export interface GrowthCheck {
  name: string;
  ok: boolean;
  /** one line: the figures behind the decision */
  detail: string;
  /** the figures, for soak.json */
  figures?: Record<string, number | null>;
}

export interface GrowthVerdict {
  ok: boolean;
  /** samples before this time (s) are the warm-up, not judged */
  warmupEndS: number;
  checks: GrowthCheck[];
}

const r1 = (x: number) => Math.round(x * 10) / 10;
const r3 = (x: number) => Math.round(x * 1000) / 1000;

/** the first and last windows of a judged series: max(3, 20 %) of its points each */
function windows(ys: readonly number[]): { head: number[]; tail: number[] } {
  const k = Math.min(ys.length, Math.max(3, Math.ceil(ys.length * 0.2)));
  return { head: ys.slice(0, k), tail: ys.slice(ys.length - k) };
}

/**
 * Judges a soak run's series after a warm-up.
 *
 * RSS fails when all of these hold: the least-squares slope is positive; the growth it fits across the judged
 * window (slope × its length) exceeds the threshold (`rssGrowthFraction` of the baseline or `rssGrowthMb`,
 * whichever is smaller; the baseline is the median of the window's first points); the fit explains the data
 * (r² ≥ `minR2`, so noise around a flat line is no trend); and the end level (median of the last points) is
 * above the baseline by at least half the threshold (a one-off spike moves neither median).
 *
 * Lag fails per replica when its end level (median of the last points) exceeds `lagFactor` × the baseline
 * (median of the first judged points) and `lagMinMs`, with a positive slope: the agent falls behind. A replica
 * without any lag measurement after the warm-up fails too (it applied nothing the heartbeat could show).
 * Fewer than 5 judged points: no decision (the check passes, saying so).
 */
export function assessGrowth(points: readonly GrowthPoint[], options: Partial<GrowthOptions> = {}): GrowthVerdict {
  const o = { ...DEFAULT_GROWTH, ...options };
  const checks: GrowthCheck[] = [];
  if (!points.length) return { ok: true, warmupEndS: 0, checks: [{ name: "growth", ok: true, detail: "no samples: nothing judged" }] };
  const t0 = points[0].t;
  const span = points[points.length - 1].t - t0;
  const warmupEndS = t0 + (o.warmupSeconds ?? Math.min(span * o.warmupFraction, o.warmupMaxSeconds));
  const judged = points.filter((p) => p.t >= warmupEndS);

  // RSS
  const rss = judged.filter((p) => p.rssMb !== null && Number.isFinite(p.rssMb));
  if (rss.length < 5) {
    checks.push({ name: "rss", ok: true, detail: `only ${rss.length} RSS samples after the warm-up: not judged` });
  } else {
    const xs = rss.map((p) => p.t);
    const ys = rss.map((p) => p.rssMb!);
    const fit = linearFit(xs, ys);
    const { head, tail } = windows(ys);
    const baseline = median(head);
    const end = median(tail);
    const growth = fit.slope * (xs[xs.length - 1] - xs[0]);
    const threshold = Math.min(o.rssGrowthFraction * baseline, o.rssGrowthMb);
    const grows = fit.slope > 0 && growth > threshold && fit.r2 >= o.minR2 && end - baseline > threshold / 2;
    checks.push({
      name: "rss",
      ok: !grows,
      detail:
        `baseline ${r1(baseline)} MB, end ${r1(end)} MB; trend ${fit.slope >= 0 ? "+" : ""}${r1(fit.slope * 60)} MB/min (r² ${fit.r2.toFixed(2)}), ` +
        `fitted growth ${r1(growth)} MB over ${r1((xs[xs.length - 1] - xs[0]) / 60)} min; limit ${r1(threshold)} MB ` +
        `(${Math.round(o.rssGrowthFraction * 100)} % of the baseline or ${o.rssGrowthMb} MB)${grows ? ": GROWING" : ""}`,
      figures: { baselineMb: r1(baseline), endMb: r1(end), slopeMbPerMin: r3(fit.slope * 60), r2: r3(fit.r2), growthMb: r1(growth), thresholdMb: r1(threshold) },
    });
  }

  // lag, per replica
  const names = [...new Set(points.flatMap((p) => Object.keys(p.lagMs)))];
  for (const name of names) {
    const pts = judged.filter((p) => p.lagMs[name] !== null && p.lagMs[name] !== undefined && Number.isFinite(p.lagMs[name]));
    if (!judged.length || judged.length < 5) {
      checks.push({ name: `lag ${name}`, ok: true, detail: `only ${judged.length} samples after the warm-up: not judged` });
      continue;
    }
    if (!pts.length) {
      checks.push({ name: `lag ${name}`, ok: false, detail: "no lag measurement after the warm-up: the replica applied no heartbeat" });
      continue;
    }
    const xs = pts.map((p) => p.t);
    const ys = pts.map((p) => p.lagMs[name]!);
    const fit = linearFit(xs, ys);
    const { head, tail } = windows(ys);
    const baseline = median(head);
    const end = median(tail);
    const behind = fit.slope > 0 && end > o.lagFactor * baseline && end > o.lagMinMs;
    checks.push({
      name: `lag ${name}`,
      ok: !behind,
      detail:
        `baseline ${r3(baseline / 1000)} s, end ${r3(end / 1000)} s, trend ${fit.slope >= 0 ? "+" : ""}${Math.round(fit.slope * 60)} ms/min (r² ${fit.r2.toFixed(2)}); ` +
        `limit: end > ${o.lagFactor}× baseline and > ${o.lagMinMs / 1000} s${behind ? ": FALLING BEHIND" : ""}`,
      figures: { baselineS: r3(baseline / 1000), endS: r3(end / 1000), slopeSPerMin: r3((fit.slope * 60) / 1000), r2: r3(fit.r2) },
    });
  }
  return { ok: checks.every((c) => c.ok), warmupEndS, checks };
}

// ------------------------------------------------------------------ Prometheus text, /proc

export interface MetricSample {
  labels: Record<string, string>;
  value: number;
}

/** the samples of a Prometheus text exposition, by metric name */
export function parseMetrics(text: string): Map<string, MetricSample[]> {
  const out = new Map<string, MetricSample[]>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    const list = out.get(m[1]) ?? [];
    list.push({ labels, value: Number(m[3]) });
    out.set(m[1], list);
  }
  return out;
}

const metric = (m: Map<string, MetricSample[]>, name: string, replica?: string): number | null => {
  const xs = (m.get(name) ?? []).filter((s) => replica === undefined || s.labels.replica === replica);
  return xs.length ? xs.reduce((a, s) => a + s.value, 0) : null;
};

/** VmRSS and VmHWM of a process in MB, from /proc/<pid>/status; null when it is gone */
export function procMemory(pid: number): { rssMb: number; hwmMb: number } | null {
  try {
    const t = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(t)?.[1] ?? NaN);
    return { rssMb: kb("VmRSS") / 1024, hwmMb: kb("VmHWM") / 1024 };
  } catch {
    return null;
  }
}

/** CPU seconds (user + system) used by a process so far, from /proc/<pid>/stat */
function cpuSeconds(pid: number): number | null {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
    return (Number(rest[11]) + Number(rest[12])) / 100;
  } catch {
    return null;
  }
}

// ------------------------------------------------------------------ samples, report

export interface ReplicaSample {
  appliedTps: number | null;
  /** end-to-end lag in the interval (heartbeat), ms: median and max; the age of the replica's beat when none arrived */
  lagP50Ms: number | null;
  lagMaxMs: number | null;
  /** the agent's own lag gauge (datasync_replica_lag_seconds) */
  agentLagS: number | null;
  up: boolean | null;
}

export interface SoakSample {
  /** seconds since the soak (streaming) started */
  t: number;
  /** transactions/s committed on the source: the workload's plus the heartbeat's */
  sourceTps: number;
  workloadTps: number;
  replicas: Record<string, ReplicaSample>;
  rssMb: number | null;
  hwmMb: number | null;
  heapUsedMb: number | null;
  /** agent CPU in the interval, % of one core */
  cpuPct: number | null;
  errors: number | null;
}

export const toGrowthPoints = (samples: readonly SoakSample[]): GrowthPoint[] =>
  samples.map((s) => ({ t: s.t, rssMb: s.rssMb, lagMs: Object.fromEntries(Object.entries(s.replicas).map(([n, r]) => [n, r.lagP50Ms])) }));

const f1 = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(1));
const fs3 = (ms: number | null | undefined) => (ms === null || ms === undefined || !Number.isFinite(ms) ? "–" : (ms / 1000).toFixed(3));

/** one progress line per sample */
export function formatSample(s: SoakSample): string {
  const reps = Object.entries(s.replicas).map(([n, r]) => `${n} ${f1(r.appliedTps)} tx/s lag ${fs3(r.lagP50Ms)}/${fs3(r.lagMaxMs)} s`);
  return `[${String(Math.round(s.t)).padStart(5)}s] source ${f1(s.sourceTps)} tx/s | ${reps.join(" | ")} | RSS ${f1(s.rssMb)} MB heap ${f1(s.heapUsedMb)} MB cpu ${f1(s.cpuPct)}%`;
}

export interface SoakReport {
  command: string;
  startedAt: string;
  machine: { cores: number; cpu: string; load1: number; node: string; server: string };
  settings: { minutes: number; intervalSeconds: number; replicas: number; ratePerSecond: number; leakMbPerMin: number; growth: GrowthOptions; nodeFlags?: string[] };
  prefillRows: number;
  workload: { transactions: number; rows: number; errors: number; lastError: string | null };
  startupSeconds: number | null;
  /** how long the sampling ran (s), and whether a Ctrl-C or the agent's exit ended it before its time */
  ranSeconds: number;
  stoppedEarly: boolean;
  catchUpSeconds: number | null;
  agentExit: { code: number | null; signal: string | null } | null;
  peakRssMb: number | null;
  verify: { identical: boolean; tables: number; sourceRows: number; report: string } | null;
  growth: GrowthVerdict;
  checks: GrowthCheck[];
  ok: boolean;
  samples: SoakSample[];
}

interface Row {
  label: string;
  values: (number | null)[];
  fmt: (x: number | null) => string;
  trend?: string;
}

function stat(values: (number | null)[]): { first: number | null; last: number | null; min: number | null; p50: number | null; max: number | null } {
  const xs = values.filter((x): x is number => x !== null && Number.isFinite(x));
  if (!xs.length) return { first: null, last: null, min: null, p50: null, max: null };
  return { first: xs[0], last: xs[xs.length - 1], min: Math.min(...xs), p50: percentile(xs, 50), max: Math.max(...xs) };
}

function summaryRows(r: SoakReport): Row[] {
  const s = r.samples;
  const names = Object.keys(s[0]?.replicas ?? {});
  const sec = (x: number | null) => fs3(x);
  const trend = (ys: (number | null)[], unit: string, scale = 1) => {
    const pts = s.map((x, i) => [x.t, ys[i]] as const).filter(([, y]) => y !== null && Number.isFinite(y)) as [number, number][];
    if (pts.length < 3) return "–";
    const fit = linearFit(
      pts.map((p) => p[0]),
      pts.map((p) => p[1]),
    );
    const v = (fit.slope * 60) / scale;
    return `${v >= 0 ? "+" : ""}${Math.abs(v) < 0.01 ? v.toFixed(4) : v.toFixed(2)} ${unit}/min`;
  };
  const rows: Row[] = [
    { label: "source tx/s", values: s.map((x) => x.sourceTps), fmt: f1 },
    ...names.flatMap((n): Row[] => [
      { label: `${n} applied tx/s`, values: s.map((x) => x.replicas[n]?.appliedTps ?? null), fmt: f1 },
      { label: `${n} lag p50 (s)`, values: s.map((x) => x.replicas[n]?.lagP50Ms ?? null), fmt: sec, trend: trend(s.map((x) => x.replicas[n]?.lagP50Ms ?? null), "s", 1000) },
      { label: `${n} lag max (s)`, values: s.map((x) => x.replicas[n]?.lagMaxMs ?? null), fmt: sec },
    ]),
    { label: "agent RSS (MB)", values: s.map((x) => x.rssMb), fmt: f1, trend: trend(s.map((x) => x.rssMb), "MB") },
    { label: "agent heap used (MB)", values: s.map((x) => x.heapUsedMb), fmt: f1, trend: trend(s.map((x) => x.heapUsedMb), "MB") },
    { label: "agent CPU (% of a core)", values: s.map((x) => x.cpuPct), fmt: f1 },
  ];
  return rows;
}

function table(head: string[], rows: string[][], md: boolean): string[] {
  if (md) return [`| ${head.join(" | ")} |`, `|${head.map((_, i) => (i ? "---:" : "---")).join("|")}|`, ...rows.map((r) => `| ${r.join(" | ")} |`)];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (cells: string[]) => ("  " + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ")).trimEnd();
  return [fmt(head), ...rows.map(fmt)];
}

function summaryTable(r: SoakReport, md: boolean): string[] {
  const head = ["series", "first", "p50", "min", "max", "last", "trend (whole run)"];
  const rows = summaryRows(r).map((row) => {
    const st = stat(row.values);
    return [row.label, row.fmt(st.first), row.fmt(st.p50), row.fmt(st.min), row.fmt(st.max), row.fmt(st.last), row.trend ?? ""];
  });
  return table(head, rows, md);
}

function headerLines(r: SoakReport): string[] {
  const st = r.settings;
  return [
    ...(r.stoppedEarly ? [`STOPPED EARLY after ${r1(r.ranSeconds)} s of the ${st.minutes} min`] : []),
    `${st.minutes} min soak, ${st.replicas} replica${st.replicas === 1 ? "" : "s"}, workload ~${st.ratePerSecond} tx/s + heartbeat 5/s, a sample every ${st.intervalSeconds} s (${r.samples.length} samples; warm-up: the first ${r1(r.growth.warmupEndS)} s)${st.leakMbPerMin ? `; INJECTED LEAK ${st.leakMbPerMin} MB/min in the agent` : ""}`,
    `machine: ${r.machine.cores} cores (${r.machine.cpu}), load ${r.machine.load1.toFixed(2)} at the start; node ${r.machine.node}; server ${r.machine.server}; agent node flags ${st.nodeFlags === undefined ? "(not recorded)" : st.nodeFlags.length ? `\`${st.nodeFlags.join(" ")}\`` : "(node's defaults)"}`,
    `prefill ${r.prefillRows.toLocaleString("en-US")} rows; agent start-up to streaming ${r.startupSeconds === null ? "–" : `${r1(r.startupSeconds)} s`}; the workload wrote ${r.workload.transactions.toLocaleString("en-US")} transactions (${r.workload.rows.toLocaleString("en-US")} rows${r.workload.errors ? `, ${r.workload.errors} failed` : ""})`,
    `caught up ${r.catchUpSeconds === null ? "no (timed out)" : `${r.catchUpSeconds.toFixed(2)} s after the workload stopped`}; agent peak RSS (VmHWM) ${f1(r.peakRssMb)} MB; datasync_errors_total ${r.samples.length ? (r.samples[r.samples.length - 1].errors ?? "–") : "–"}; agent exit ${r.agentExit ? (r.agentExit.code ?? r.agentExit.signal) : "–"}`,
  ];
}

/** the text printed at the end */
export function formatSoakSummary(r: SoakReport): string {
  const lines = ["", "datasync soak: summary", ...headerLines(r).map((l) => `  ${l}`), ...summaryTable(r, false), "checks:"];
  for (const c of r.checks) lines.push(`  ${c.ok ? "ok  " : "FAIL"} ${c.name}: ${c.detail}`);
  lines.push(`verdict: ${r.ok ? "PASS" : "FAIL"}`);
  return lines.join("\n") + "\n";
}

export function soakMarkdown(r: SoakReport, svgName: string | null): string {
  const names = Object.keys(r.samples[0]?.replicas ?? {});
  const lines = [
    "# Soak run",
    "",
    `\`${r.command}\` at ${r.startedAt}: **${r.ok ? "PASS" : "FAIL"}**`,
    "",
    ...headerLines(r).map((l) => `* ${l}`),
    "",
    ...(svgName ? [`![agent RSS and end-to-end lag over time](${svgName})`, ""] : []),
    ...summaryTable(r, true),
    "",
    "## Checks",
    "",
    ...table(
      ["check", "result", "figures"],
      r.checks.map((c) => [c.name, c.ok ? "ok" : "**FAIL**", c.detail.replace(/\|/g, "\\|")]),
      true,
    ),
    "",
    "## Samples",
    "",
    ...table(
      ["t s", "source tx/s", ...names.flatMap((n) => [`${n} tx/s`, `${n} lag p50 s`, `${n} lag max s`]), "RSS MB", "heap MB", "CPU %"],
      r.samples.map((s) => [
        String(Math.round(s.t)),
        f1(s.sourceTps),
        ...names.flatMap((n) => [f1(s.replicas[n]?.appliedTps), fs3(s.replicas[n]?.lagP50Ms), fs3(s.replicas[n]?.lagMaxMs)]),
        f1(s.rssMb),
        f1(s.heapUsedMb),
        f1(s.cpuPct),
      ]),
      true,
    ),
    "",
  ];
  return lines.join("\n");
}

// ------------------------------------------------------------------ the chart (hand-made SVG)

/** round tick values covering [lo, hi] */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) hi = lo + 1;
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+(Math.round(v / step) * step).toPrecision(12));
  if (out[out.length - 1] < hi) out.push(+(out[out.length - 1] + step).toPrecision(12));
  return out;
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"];

interface Series {
  label: string;
  points: [number, number][];
  dash?: boolean;
  color: string;
}

function panel(title: string, unit: string, series: Series[], y0: number, height: number, width: number, tMax: number, warmupEndS: number): string[] {
  const left = 60;
  const right = width - 20;
  const top = y0 + 24;
  const bottom = y0 + height - 30;
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const ticks = niceTicks(0, ys.length ? Math.max(...ys) : 1);
  const yMax = ticks[ticks.length - 1] || 1;
  const xTicks = niceTicks(0, tMax || 1, 8);
  const xMax = xTicks[xTicks.length - 1] || 1;
  const X = (t: number) => left + ((right - left) * t) / xMax;
  const Y = (v: number) => bottom - ((bottom - top) * v) / yMax;
  const out = [`<text x="${left}" y="${y0 + 14}" font-size="13" font-weight="bold">${esc(title)}</text>`];
  out.push(`<rect x="${X(0)}" y="${top}" width="${X(warmupEndS) - X(0)}" height="${bottom - top}" fill="#eee"/>`);
  if (warmupEndS > 0) out.push(`<text x="${X(0) + 4}" y="${top + 12}" font-size="10" fill="#888">warm-up</text>`);
  for (const v of ticks) {
    out.push(`<line x1="${left}" x2="${right}" y1="${Y(v)}" y2="${Y(v)}" stroke="#ddd"/>`);
    out.push(`<text x="${left - 6}" y="${Y(v) + 4}" font-size="10" text-anchor="end">${+v.toPrecision(6)}</text>`);
  }
  for (const t of xTicks) {
    out.push(`<line x1="${X(t)}" x2="${X(t)}" y1="${bottom}" y2="${bottom + 4}" stroke="#333"/>`);
    out.push(`<text x="${X(t)}" y="${bottom + 16}" font-size="10" text-anchor="middle">${+t.toPrecision(6)}</text>`);
  }
  out.push(`<line x1="${left}" x2="${right}" y1="${bottom}" y2="${bottom}" stroke="#333"/>`, `<line x1="${left}" x2="${left}" y1="${top}" y2="${bottom}" stroke="#333"/>`);
  out.push(`<text x="14" y="${(top + bottom) / 2}" font-size="10" transform="rotate(-90 14 ${(top + bottom) / 2})" text-anchor="middle">${esc(unit)}</text>`);
  out.push(`<text x="${right}" y="${bottom + 28}" font-size="10" text-anchor="end">time since streaming started (s)</text>`);
  let lx = left + title.length * 8 + 24;
  for (const s of series) {
    if (s.points.length) {
      const d = s.points.map((p, i) => `${i ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(" ");
      out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.6"${s.dash ? ' stroke-dasharray="4 3"' : ""}/>`);
    }
    out.push(`<line x1="${lx}" x2="${lx + 18}" y1="${y0 + 10}" y2="${y0 + 10}" stroke="${s.color}" stroke-width="2"${s.dash ? ' stroke-dasharray="4 3"' : ""}/>`);
    out.push(`<text x="${lx + 22}" y="${y0 + 14}" font-size="11">${esc(s.label)}</text>`);
    lx += 30 + s.label.length * 6.2;
  }
  return out;
}

/** two panels over time: agent RSS/heap, and end-to-end lag per replica */
export function soakSvg(r: SoakReport): string {
  const width = 900;
  const h = 260;
  const s = r.samples;
  const tMax = s.length ? s[s.length - 1].t : 1;
  const pts = (f: (x: SoakSample) => number | null) => s.map((x) => [x.t, f(x)] as const).filter((p): p is [number, number] => p[1] !== null && Number.isFinite(p[1]));
  const names = Object.keys(s[0]?.replicas ?? {});
  const mem: Series[] = [
    { label: "RSS", points: pts((x) => x.rssMb), color: COLORS[0] },
    { label: "heap used", points: pts((x) => x.heapUsedMb), color: COLORS[1], dash: true },
  ];
  const lag: Series[] = names.flatMap((n, i) => [
    { label: `${n} p50`, points: pts((x) => (x.replicas[n]?.lagP50Ms ?? null) === null ? null : x.replicas[n].lagP50Ms! / 1000), color: COLORS[(2 + i) % COLORS.length] },
    { label: `${n} max`, points: pts((x) => (x.replicas[n]?.lagMaxMs ?? null) === null ? null : x.replicas[n].lagMaxMs! / 1000), color: COLORS[(2 + i) % COLORS.length], dash: true },
  ]);
  const body = [
    `<rect width="${width}" height="${2 * h + 30}" fill="white"/>`,
    `<text x="${width / 2}" y="18" font-size="14" text-anchor="middle">datasync soak ${esc(r.startedAt)}: ${r.settings.minutes} min, ${r.settings.replicas} replicas — ${r.ok ? "PASS" : "FAIL"}</text>`,
    ...panel("agent memory", "MB", mem, 30, h, width, tMax, r.growth.warmupEndS),
    ...panel("end-to-end lag (heartbeat)", "s", lag, 30 + h, h, width, tMax, r.growth.warmupEndS),
  ];
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${2 * h + 30}" font-family="sans-serif">\n${body.join("\n")}\n</svg>\n`;
}

// ------------------------------------------------------------------ the run

export interface SoakOptions {
  /** run length after the replicas are streaming (default 5) */
  minutes?: string | number;
  /** seconds between samples; default: the run / 30, from 1 to 10 */
  interval?: string | number;
  /** 1..5, default 2 */
  replicas?: string | number;
  /** workload transactions/s (default 40, the sandbox's) */
  rate?: string | number;
  /** output files: PREFIX.json, PREFIX.md, PREFIX.svg (default bench/soak) */
  out?: string;
  /** test the detector: the agent process allocates and holds this many MB per minute */
  leakMbPerMin?: string | number;
  /** extra flags for the agent's node process */
  nodeFlags?: string;
  growth?: Partial<GrowthOptions>;
  /** the command line, for the report */
  command?: string;
}

export interface SoakIo {
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
}

class UsageError extends Error {}

function num(v: string | number | undefined, name: string, def: number, ok: (x: number) => boolean, what: string): number {
  if (v === undefined) return def;
  const x = Number(String(v).trim());
  if (!Number.isFinite(x) || !ok(x)) throw new UsageError(`--${name} must be ${what} (got "${v}")`);
  return x;
}

export function parseSoakOptions(o: SoakOptions) {
  const minutes = num(o.minutes, "minutes", 5, (x) => x > 0 && x <= 24 * 60, "a positive number of minutes");
  const replicas = num(o.replicas, "replicas", 2, (x) => Number.isInteger(x) && x >= 1 && x <= 5, "a whole number from 1 to 5");
  const defInterval = Math.min(10, Math.max(1, Math.round((minutes * 60) / 30)));
  const interval = num(o.interval, "interval", defInterval, (x) => x >= 0.5 && x <= minutes * 60, "a number of seconds from 0.5 to the run's length");
  const rate = num(o.rate, "rate", 40, (x) => x > 0 && x <= 5000, "a positive number of transactions per second");
  const leakMbPerMin = num(o.leakMbPerMin, "leak-mb-per-min", 0, (x) => x >= 0, "a number of MB per minute");
  return { minutes, replicas, interval, rate, leakMbPerMin, nodeFlags: (o.nodeFlags ?? containerNodeOptions()).split(" ").filter(Boolean) };
}

/**
 * The node flags the agent's container runs with (agent/Dockerfile's NODE_OPTIONS): the soak watches the agent's
 * memory as deployed (heap cap, young generation), unless --node-flags says otherwise (`--node-flags ""`: node's
 * defaults). Empty where the Dockerfile is not found (an installed package).
 */
export function containerNodeOptions(): string {
  const root = repoRoot();
  if (!root) return "";
  try {
    return /NODE_OPTIONS="([^"]*)"/.exec(readFileSync(join(root, "agent", "Dockerfile"), "utf8"))?.[1] ?? "";
  } catch {
    return "";
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** the agent's node flag that allocates and holds `mbPerMin` MB a minute (touched, so it is resident) */
export function leakFlag(mbPerMin: number): string[] {
  if (!mbPerMin) return [];
  const perSecond = Math.round((mbPerMin * 1024 * 1024) / 60);
  const code = `globalThis.__soakLeak=[];setInterval(()=>globalThis.__soakLeak.push(Buffer.alloc(${perSecond},7)),1000).unref();`;
  return ["--import", `data:text/javascript,${encodeURIComponent(code)}`];
}

async function fetchText(url: string, timeoutMs = 3000): Promise<{ status: number; text: string } | null> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, text: await res.text() };
  } catch {
    return null;
  }
}

/** `npm run soak`: 0 when nothing grew and the replicas verified identical, 1 otherwise, 2 on bad options. */
export async function runSoak(o: SoakOptions, io: SoakIo = { out: process.stdout, err: process.stderr }): Promise<number> {
  let opts: ReturnType<typeof parseSoakOptions>;
  try {
    opts = parseSoakOptions(o);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    io.err.write(`soak: ${e.message}\n`);
    return 2;
  }
  serverBinary();
  const root = repoRoot() ?? process.cwd();
  const bin = join(root, "bin", "datasync.js");
  const outPrefix = o.out ?? join(root, "bench", "soak");
  const say = (l: string) => io.out.write(l + "\n");
  const rel = (p: string) => relative(process.cwd(), p) || p;

  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-");
  const runDir = join(sandboxBase(), `soak-${stamp}-${process.pid}`);
  const serversDir = join(runDir, "servers");
  mkdirSync(serversDir, { recursive: true });
  const logDir = join(root, "bench", "results");
  mkdirSync(logDir, { recursive: true });
  const logFile = join(logDir, `${basename(outPrefix)}-agent.log`);

  let servers: TestServer[] = [];
  let child: ChildProcess | null = null;
  let workload: Workload | null = null;
  let heartbeat: Heartbeat | null = null;
  let probes: LagProbe[] = [];
  // Ctrl-C: the first ends the sampling early (the run still finishes and is judged); a second aborts
  let stopRequested = false;
  let signals = 0;
  const onSignal = () => {
    if (++signals === 1) {
      stopRequested = true;
      io.err.write("\nsoak: stopping early (again to abort)\n");
      return;
    }
    child?.kill("SIGKILL");
    for (const s of servers) void s.kill();
    process.exit(130);
  };
  const onExit = () => {
    child?.kill("SIGKILL");
    for (const s of servers) void s.kill();
    try {
      rmSync(runDir, { recursive: true, force: true });
    } catch {}
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("exit", onExit);

  try {
    const startedAt = new Date().toISOString();
    const load1 = loadavg()[0];
    say(`soak: a primary and ${opts.replicas} replica${opts.replicas === 1 ? "" : "s"} (private MariaDB servers under ${rel(runDir)}), ${opts.minutes} min, a sample every ${opts.interval} s`);
    servers = await startServers([
      { name: "primary", baseDir: serversDir, serverId: 1 },
      ...Array.from({ length: opts.replicas }, (_, i) => ({ name: `replica${i + 1}`, baseDir: serversDir, serverId: 101 + i, noBinlog: true })),
    ]);
    const [src, ...reps] = servers;
    const [{ v: version }] = await src.query<any[]>("SELECT VERSION() AS v");
    const prefill = await createShop(src);
    say(`sample shop: ${prefill.rows.toLocaleString("en-US")} rows on the primary (${version})`);

    const raw = { ...agentConfig(src, reps, `127.0.0.1:${await freePort()}`), group: "soak" };
    const cfg = validateConfig(raw);
    const cfgFile = join(runDir, "agent.json");
    writeFileSync(cfgFile, JSON.stringify(raw, null, 2));
    const http = `http://${cfg.http.listen}`;

    // the agent: the real CLI as a child process; its JSON log goes straight to a file
    const fd = openSync(logFile, "w");
    const tSpawn = Date.now();
    child = spawn(process.execPath, [...opts.nodeFlags, ...leakFlag(opts.leakMbPerMin), bin, "agent", "--config", cfgFile], {
      stdio: ["ignore", fd, fd],
      cwd: root,
      // its own process group: a Ctrl-C in the terminal reaches only this process, which stops the agent itself
      detached: true,
    });
    closeSync(fd);
    const pid = child.pid!;
    // set by the exit event (an object, so the checks below are not narrowed away)
    const agent: { exit: { code: number | null; signal: string | null } | null } = { exit: null };
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child!.once("exit", (code, signal) => resolve((agent.exit = { code, signal }))));
    say(`agent: node bin/datasync.js agent (pid ${pid}${opts.leakMbPerMin ? `, INJECTED LEAK ${opts.leakMbPerMin} MB/min` : ""}); log ${rel(logFile)}; metrics ${http}/metrics`);

    workload = new Workload(src, prefill, { ratePerSecond: opts.rate });
    workload.start();
    heartbeat = new Heartbeat(src, 200);
    await heartbeat.start();

    // wait until every replica is past its snapshot and streaming
    const deadline = Date.now() + 180_000;
    let streaming = false;
    while (!streaming) {
      if (agent.exit) throw new Error(`the agent exited at start (${agent.exit.code ?? agent.exit.signal}); see ${rel(logFile)}`);
      if (Date.now() > deadline) throw new Error(`the replicas were not streaming within 180 s; see ${rel(logFile)}`);
      if (stopRequested) throw new Error("stopped before the replicas were streaming");
      const r = await fetchText(`${http}/readyz`);
      if (r) {
        try {
          const body = JSON.parse(r.text);
          streaming = body.replicas.length === opts.replicas && body.replicas.every((x: any) => x.state === "streaming" && x.snapshot?.done);
        } catch {}
      }
      if (!streaming) await sleep(250);
    }
    const startupSeconds = (Date.now() - tSpawn) / 1000;
    say(`streaming after ${startupSeconds.toFixed(1)} s (snapshots done); soaking for ${opts.minutes} min`);
    probes = cfg.replicas.map((r, i) => new LagProbe(r.name, reps[i], () => true));
    probes.forEach((p) => p.start(50));

    // sampling
    const samples: SoakSample[] = [];
    const t0 = Date.now();
    const endAt = t0 + opts.minutes * 60_000;
    let prev = {
      at: t0,
      wl: workload.stats.transactions,
      hb: heartbeat.seq,
      cpu: cpuSeconds(pid),
      applied: new Map<string, number | null>(),
      probeIdx: probes.map((p) => p.samples.length),
      probeSeq: probes.map((p) => p.lastSeq),
      seqSeenAt: probes.map(() => t0),
    };
    const m0 = await fetchText(`${http}/metrics`);
    if (m0) for (const r of cfg.replicas) prev.applied.set(r.name, metric(parseMetrics(m0.text), "datasync_replica_applied_transactions_total", r.name));
    let peakRssMb: number | null = null;
    let nextAt = t0 + opts.interval * 1000;
    while (Date.now() < endAt && !stopRequested) {
      // short naps, so a Ctrl-C or the agent's exit is seen at once
      while (Date.now() < Math.min(nextAt, endAt) && !stopRequested && !agent.exit) await sleep(Math.min(250, Math.min(nextAt, endAt) - Date.now()));
      if (agent.exit || stopRequested) break;
      nextAt += opts.interval * 1000;
      const now = Date.now();
      const dt = (now - prev.at) / 1000;
      const mem = procMemory(pid);
      const cpu = cpuSeconds(pid);
      const mt = await fetchText(`${http}/metrics`);
      const m = mt ? parseMetrics(mt.text) : new Map<string, MetricSample[]>();
      const wl = workload.stats.transactions;
      const hb = heartbeat.seq;
      const replicas: Record<string, ReplicaSample> = {};
      const applied = new Map<string, number | null>();
      probes.forEach((p, i) => {
        const name = p.name;
        const a = mt ? metric(m, "datasync_replica_applied_transactions_total", name) : null;
        applied.set(name, a);
        const pa = prev.applied.get(name);
        const fresh = p.samples.slice(prev.probeIdx[i]);
        prev.probeIdx[i] = p.samples.length;
        if (p.lastSeq !== prev.probeSeq[i]) {
          prev.probeSeq[i] = p.lastSeq;
          prev.seqSeenAt[i] = now;
        }
        // no new beat on the replica in the interval while the source beat: the lag is at least its age
        const stale = !fresh.length && hb > p.lastSeq ? now - prev.seqSeenAt[i] : null;
        const lag = mt ? metric(m, "datasync_replica_lag_seconds", name) : null;
        const up = mt ? metric(m, "datasync_replica_up", name) : null;
        replicas[name] = {
          appliedTps: a !== null && pa !== null && pa !== undefined ? (a - pa) / dt : null,
          lagP50Ms: fresh.length ? percentile(fresh, 50) : stale,
          lagMaxMs: fresh.length ? Math.max(...fresh) : stale,
          agentLagS: lag,
          up: up === null ? null : up >= 1,
        };
      });
      const heap = mt ? metric(m, "datasync_process_nodejs_heap_size_used_bytes") : null;
      const sample: SoakSample = {
        t: Math.round((now - t0) / 100) / 10,
        sourceTps: (wl - prev.wl + (hb - prev.hb)) / dt,
        workloadTps: (wl - prev.wl) / dt,
        replicas,
        rssMb: mem ? mem.rssMb : null,
        hwmMb: mem ? mem.hwmMb : null,
        heapUsedMb: heap === null ? null : heap / 1024 / 1024,
        cpuPct: cpu !== null && prev.cpu !== null ? (100 * (cpu - prev.cpu)) / dt : null,
        // a counter without any increment has no sample yet
        errors: mt ? (metric(m, "datasync_errors_total") ?? 0) : null,
      };
      if (mem) peakRssMb = Math.max(peakRssMb ?? 0, mem.hwmMb);
      samples.push(sample);
      say(formatSample(sample));
      prev = { ...prev, at: now, wl, hb, cpu, applied };
    }
    const agentDied = agent.exit !== null;
    const ranSeconds = (Date.now() - t0) / 1000;
    const stoppedEarly = Date.now() < endAt;

    // finish: no new writes, one last beat; caught up when every replica shows it
    say("stopping the workload; waiting for the replicas to catch up");
    const wl = await workload.stop();
    workload = null;
    const finalSeq = await heartbeat.stop();
    heartbeat = null;
    const tStop = Date.now();
    let catchUpSeconds: number | null = null;
    while (!agent.exit && Date.now() - tStop < 120_000) {
      if (probes.every((p) => p.lastSeq >= finalSeq)) {
        catchUpSeconds = (Date.now() - tStop) / 1000;
        break;
      }
      await sleep(50);
    }
    await Promise.all(probes.map((p) => p.stop()));
    probes = [];
    const mem = procMemory(pid);
    if (mem) peakRssMb = Math.max(peakRssMb ?? 0, mem.hwmMb);
    if (!agent.exit) child.kill("SIGTERM");
    const killer = setTimeout(() => child?.kill("SIGKILL"), 20_000);
    const agentExit = await exited;
    clearTimeout(killer);
    child = null;

    say("verifying: chunked checksums of every table, source against each replica");
    const { outcome, verifyError } = await verifyOrError(cfg);
    const identical = outcome !== null && exitCodeOf(outcome) === 0;

    const growthOpts = { ...DEFAULT_GROWTH, ...o.growth };
    const growth = assessGrowth(toGrowthPoints(samples), growthOpts);
    const checks: GrowthCheck[] = [
      { name: "agent ran", ok: !agentDied, detail: agentDied ? `the agent exited during the run (${agentExit.code ?? agentExit.signal}); see ${rel(logFile)}` : "the agent ran the whole soak" },
      ...growth.checks,
      { name: "catch-up", ok: catchUpSeconds !== null, detail: catchUpSeconds !== null ? `every replica showed the last beat ${catchUpSeconds.toFixed(2)} s after the workload stopped` : "a replica did not show the last beat within 120 s" },
      { name: "clean stop", ok: agentDied || agentExit.code === 0, detail: `the agent exited with ${agentExit.code ?? agentExit.signal} on SIGTERM` },
      {
        name: "verify",
        ok: identical,
        detail: outcome
          ? `${outcome.tables.length} tables, ${outcome.sourceRows.toLocaleString("en-US")} source rows: ${identical ? "every replica identical" : "NOT identical: " + formatVerify(outcome).trim().split("\n").join("; ")}`
          : `could not run: ${verifyError}`,
      },
    ];
    const report: SoakReport = {
      command: o.command ?? `npm run soak -- --minutes ${opts.minutes}`,
      startedAt,
      machine: { cores: cpus().length, cpu: cpus()[0]?.model ?? "?", load1, node: process.version, server: String(version) },
      settings: { minutes: opts.minutes, intervalSeconds: opts.interval, replicas: opts.replicas, ratePerSecond: opts.rate, leakMbPerMin: opts.leakMbPerMin, growth: growthOpts, nodeFlags: opts.nodeFlags },
      prefillRows: prefill.rows,
      workload: wl,
      startupSeconds,
      ranSeconds,
      stoppedEarly,
      catchUpSeconds,
      agentExit,
      peakRssMb,
      verify: outcome ? { identical, tables: outcome.tables.length, sourceRows: outcome.sourceRows, report: formatVerify(outcome) } : null,
      growth,
      checks,
      ok: checks.every((c) => c.ok),
      samples,
    };
    io.out.write(formatSoakSummary(report));
    mkdirSync(dirname(outPrefix), { recursive: true });
    const svgFile = `${outPrefix}.svg`;
    writeFileSync(`${outPrefix}.json`, JSON.stringify(report, null, 2) + "\n");
    writeFileSync(svgFile, soakSvg(report));
    writeFileSync(`${outPrefix}.md`, soakMarkdown(report, relative(dirname(outPrefix), svgFile)));
    say(`wrote ${rel(`${outPrefix}.json`)}, ${rel(`${outPrefix}.md`)}, ${rel(svgFile)}`);
    if (!report.ok) io.err.write(`soak: FAIL (${checks.filter((c) => !c.ok).map((c) => c.name).join(", ")}); the agent's log is in ${rel(logFile)}\n`);
    return report.ok ? 0 : 1;
  } finally {
    await Promise.all(probes.map((p) => p.stop().catch(() => undefined)));
    await workload?.stop().catch(() => undefined);
    await heartbeat?.stop().catch(() => undefined);
    child?.kill("SIGKILL");
    await Promise.all(servers.map((s) => s.destroy().catch(() => undefined)));
    rmSync(runDir, { recursive: true, force: true });
    process.off("exit", onExit);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
