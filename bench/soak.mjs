#!/usr/bin/env node
// Soak run: the sandbox topology (a primary, N replicas, the sample shop's steady workload) for N minutes with
// the agent as a child process; reports throughput, lag and RSS over time and fails on growth. The logic is
// dev/soak.ts (runSoak); this is its command line. See bench/README.md ("Soak").
// Usage: npm run soak -- [--minutes 5] [--replicas 2] [--interval S] [--rate 40] [--out bench/soak]
//        [--max-rss-growth-mb 30] [--max-rss-growth-pct 20] [--lag-factor 3] [--warmup S] [--leak-mb-per-min N]
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const here = dirname(fileURLToPath(import.meta.url));
if (!existsSync(join(here, "../dist/dev/soak.js"))) {
  console.error("soak: dist/ is missing; run `npm run build` first (npm run soak does it)");
  process.exit(2);
}
const { runSoak } = await import("../dist/dev/soak.js");

let parsed;
try {
  parsed = parseArgs({
    options: {
      minutes: { type: "string", short: "m" },
      replicas: { type: "string" },
      interval: { type: "string" },
      rate: { type: "string" },
      out: { type: "string" },
      "node-flags": { type: "string" },
      "leak-mb-per-min": { type: "string" },
      "max-rss-growth-mb": { type: "string" },
      "max-rss-growth-pct": { type: "string" },
      "lag-factor": { type: "string" },
      warmup: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
} catch (e) {
  console.error(`soak: ${e.message}`);
  process.exit(2);
}
const opt = parsed.values;
if (opt.help) {
  console.log(`npm run soak -- [options]
  --minutes N              soak length once the replicas stream (default 5)
  --replicas N             1..5 (default 2)
  --interval S             seconds between samples (default: the run / 30, from 1 to 10)
  --rate N                 workload transactions/s on the source (default 40)
  --out PREFIX             writes PREFIX.json, PREFIX.md, PREFIX.svg (default bench/soak)
  --max-rss-growth-mb N    RSS growth limit after the warm-up, MB (default 30) …
  --max-rss-growth-pct N   … or % of the post-warm-up baseline, whichever is smaller (default 20)
  --warmup S               judge only the samples after S seconds (default: the first 20 % or 1 min, the shorter)
  --lag-factor N           lag fails when its end level > N × the warm baseline and > 1 s (default 3)
  --node-flags "…"         flags for the agent's node process (default: the container's NODE_OPTIONS, agent/Dockerfile; "" for node's defaults)
  --leak-mb-per-min N      detector self-test: the agent process allocates and holds N MB a minute
exit 0: no growth, replicas identical; 1: a check failed; 2: bad options`);
  process.exit(0);
}
const growth = {};
if (opt["max-rss-growth-mb"] !== undefined) growth.rssGrowthMb = Number(opt["max-rss-growth-mb"]);
if (opt["max-rss-growth-pct"] !== undefined) growth.rssGrowthFraction = Number(opt["max-rss-growth-pct"]) / 100;
if (opt["lag-factor"] !== undefined) growth.lagFactor = Number(opt["lag-factor"]);
if (opt.warmup !== undefined) growth.warmupSeconds = Number(opt.warmup);
for (const [k, v] of Object.entries(growth)) {
  if (!Number.isFinite(v) || v <= 0) {
    console.error(`soak: ${k} must be a positive number`);
    process.exit(2);
  }
}

try {
  process.exitCode = await runSoak({
    minutes: opt.minutes,
    replicas: opt.replicas,
    interval: opt.interval,
    rate: opt.rate,
    out: opt.out,
    nodeFlags: opt["node-flags"],
    leakMbPerMin: opt["leak-mb-per-min"],
    growth,
    command: `npm run soak -- ${process.argv.slice(2).join(" ")}`.trim(),
  });
} catch (e) {
  // a run that could not complete (servers, the agent at start): a failed soak
  console.error(`soak: ${e?.message ?? e}`);
  if (process.env.DATASYNC_DEBUG) console.error(e?.stack);
  process.exitCode = 1;
}
// the servers are gone; nothing should keep the process alive, but a stray driver timer must not either
setTimeout(() => process.exit(), 500).unref();
