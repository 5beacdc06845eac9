#!/usr/bin/env node
// Summarize a V8 .cpuprofile (node --cpu-prof): self time and inclusive time per function, top N.
// Usage: node bench/profile-summary.mjs FILE.cpuprofile [N]
import { readFileSync } from "node:fs";

const file = process.argv[2];
const top = Number(process.argv[3] ?? 25);
if (!file) {
  console.error("usage: node bench/profile-summary.mjs FILE.cpuprofile [N]");
  process.exit(2);
}
const p = JSON.parse(readFileSync(file, "utf8"));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const selfTicks = new Map();
for (const s of p.samples) selfTicks.set(s, (selfTicks.get(s) ?? 0) + 1);
const total = p.samples.length;
const label = (n) => {
  const f = n.callFrame;
  const url = f.url.replace(/^file:\/\//, "").replace(/.*\/node_modules\//, "").replace(/.*\/dist\//, "");
  return `${f.functionName || "(anonymous)"} ${url ? `${url}:${f.lineNumber + 1}` : ""}`.trim();
};
const self = new Map();
const incl = new Map();
for (const [id, ticks] of selfTicks) {
  const n = byId.get(id);
  const l = label(n);
  self.set(l, (self.get(l) ?? 0) + ticks);
  const seen = new Set();
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    const cl = label(byId.get(cur));
    if (seen.has(cl)) continue;
    seen.add(cl);
    incl.set(cl, (incl.get(cl) ?? 0) + ticks);
  }
}
const pct = (t) => ((100 * t) / total).toFixed(1).padStart(5) + "%";
const idle = [...self].filter(([l]) => /^\(idle\)|^\(program\)|^\(garbage collector\)/.test(l));
console.log(`${file}: ${total} samples, ${((p.endTime - p.startTime) / 1e6).toFixed(2)} s`);
for (const [l, t] of idle) console.log(`  ${pct(t)}  ${l}`);
console.log("\nself time:");
for (const [l, t] of [...self].filter(([l]) => !/^\((idle|program|garbage collector|root)\)/.test(l)).sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(t)}  ${l}`);
console.log("\ninclusive time:");
for (const [l, t] of [...incl].filter(([l]) => !/^\((idle|program|garbage collector|root)\)/.test(l)).sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(t)}  ${l}`);
