#!/usr/bin/env node
// Summarize a V8 .cpuprofile (node --cpu-prof): self time and inclusive time per function, top N.
// Usage: node bench/profile-summary.mjs FILE.cpuprofile [N] [--after REGEX]
//   --after REGEX: only the samples from the first one whose stack holds a function matching REGEX (e.g.
//   "#onEvent" to leave out the start-up: module loading, connecting, the warm-up); figures in ms too, so two
//   runs of the same work compare by time rather than by share.
import { readFileSync } from "node:fs";

const argv = process.argv.slice(2);
const ai = argv.indexOf("--after");
const after = ai >= 0 ? new RegExp(argv.splice(ai, 2)[1]) : null;
const [file, n] = argv;
const top = Number(n ?? 25);
if (!file) {
  console.error("usage: node bench/profile-summary.mjs FILE.cpuprofile [N] [--after REGEX]");
  process.exit(2);
}
const p = JSON.parse(readFileSync(file, "utf8"));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const label = (n) => {
  const f = n.callFrame;
  const url = f.url.replace(/^file:\/\//, "").replace(/.*\/node_modules\//, "").replace(/.*\/dist\//, "");
  return `${f.functionName || "(anonymous)"} ${url ? `${url}:${f.lineNumber + 1}` : ""}`.trim();
};
const stackMatches = (id) => {
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) if (after.test(label(byId.get(cur)))) return true;
  return false;
};
// time per sample: V8 records the delta before each sample
const selfTicks = new Map();
const selfUs = new Map();
let started = !after;
let total = 0;
let totalUs = 0;
p.samples.forEach((s, i) => {
  if (!started && stackMatches(s)) started = true;
  if (!started) return;
  const us = p.timeDeltas?.[i + 1] ?? 0;
  selfTicks.set(s, (selfTicks.get(s) ?? 0) + 1);
  selfUs.set(s, (selfUs.get(s) ?? 0) + us);
  total++;
  totalUs += us;
});
const self = new Map();
const incl = new Map();
for (const [id, ticks] of selfTicks) {
  const n = byId.get(id);
  const l = label(n);
  const us = selfUs.get(id);
  const add = (m, k) => {
    const e = m.get(k) ?? { ticks: 0, us: 0 };
    e.ticks += ticks;
    e.us += us;
    m.set(k, e);
  };
  add(self, l);
  const seen = new Set();
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    const cl = label(byId.get(cur));
    if (seen.has(cl)) continue;
    seen.add(cl);
    add(incl, cl);
  }
}
const pct = (e) => ((100 * e.ticks) / total).toFixed(1).padStart(5) + "%" + `${(e.us / 1000).toFixed(0).padStart(6)} ms`;
const idle = [...self].filter(([l]) => /^\(idle\)|^\(program\)|^\(garbage collector\)/.test(l));
console.log(`${file}: ${total} samples, ${(totalUs / 1e6).toFixed(2)} s${after ? ` (from the first sample under ${after})` : ""}`);
for (const [l, e] of idle) console.log(`  ${pct(e)}  ${l}`);
console.log("\nself time:");
for (const [l, e] of [...self].filter(([l]) => !/^\((idle|program|garbage collector|root)\)/.test(l)).sort((a, b) => b[1].ticks - a[1].ticks).slice(0, top)) console.log(`  ${pct(e)}  ${l}`);
console.log("\ninclusive time:");
for (const [l, e] of [...incl].filter(([l]) => !/^\((idle|program|garbage collector|root)\)/.test(l)).sort((a, b) => b[1].ticks - a[1].ticks).slice(0, top)) console.log(`  ${pct(e)}  ${l}`);
