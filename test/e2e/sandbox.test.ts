// `datasync sandbox` end to end, as `npm start` runs it (non-TTY: plain progress lines): private servers,
// snapshot, streaming under a workload, catch-up, verify and the summary; exit 0 only when identical.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { atOrPast } from "../../dev/sandbox.js";
import { percentile } from "../../dev/sandbox-shop.js";
import { BIN, ROOT, runCli } from "../support/agent.js";

function runSandbox(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, "sandbox", ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    const t = setTimeout(() => p.kill("SIGINT"), timeoutMs);
    p.on("exit", (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("datasync sandbox", () => {
  it("runs 15 s end to end and ends with the replicas verified identical (exit 0)", { timeout: 240_000 }, async () => {
    const r = await runSandbox(["--duration", "15"], 200_000);
    const why = `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
    expect(r.code, why).toBe(0);
    const out = r.stdout;
    // progress while it ran: the snapshot, then streaming lines (one every ~2 s)
    expect(out).toMatch(/replica1 snapshot \d+% \([\d,]+\/[\d,]+ rows/);
    expect(out).toMatch(/replica2 streaming lag [\d.]+ s e2e/);
    // the summary
    expect(out).toContain("datasync sandbox: summary");
    const ran = /then ([\d,]+) transactions \(([\d,]+) rows\) written on the source/.exec(out);
    expect(ran, why).not.toBeNull();
    const num = (s: string) => Number(s.replace(/,/g, ""));
    expect(num(ran![1])).toBeGreaterThan(100);
    expect(num(ran![2])).toBeGreaterThan(100);
    for (const name of ["replica1", "replica2"]) {
      const row = new RegExp(`^  ${name}\\s+([\\d,]+)\\s+([\\d,]+)\\s+([\\d,]+)\\s+([\\d.]+ s)\\s+([\\d.]+ s)\\s+([\\d.]+ s)\\s+([\\d.]+ s)\\s+identical`, "m").exec(out);
      expect(row, `${name} row in\n${out}`).not.toBeNull();
      expect(num(row![1])).toBeGreaterThan(50_000); // snapshot rows
      expect(num(row![2])).toBeGreaterThan(0); // applied transactions
      expect(num(row![3])).toBeGreaterThan(0); // applied rows
    }
    expect(out).toMatch(/lag \(end to end, heartbeat every 200 ms, \d+ samples\): p50 [\d.]+ s, p95 [\d.]+ s, p99 [\d.]+ s, max [\d.]+ s/);
    expect(out).toMatch(/verify\s+5 tables, [\d,]+ source rows compared/);
    expect(out).toMatch(/^verdict: replicas identical \(2 of 2 verified against the source\)$/m);
    // the private servers and their data are gone
    const dir = /under (\S+)\)/.exec(out)?.[1];
    expect(dir).toBeTruthy();
    expect(existsSync(join(ROOT, dir!))).toBe(false);
  });

  it("refuses --replicas outside 1..5 and a bad --duration with exit 2", () => {
    for (const bad of ["0", "6", "two"]) {
      const r = runCli(["sandbox", "--replicas", bad]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`--replicas must be a whole number from 1 to 5 (got "${bad}")`);
    }
    const d = runCli(["sandbox", "--duration", "-3"]);
    expect(d.code).toBe(2);
    expect(d.stderr).toContain("--duration must be a positive number of seconds");
  });

  it("measures with nearest-rank percentiles and compares binlog positions by file number", () => {
    expect(percentile([], 50)).toBeNull();
    expect(percentile([5, 1, 4, 2, 3], 50)).toBe(3);
    expect(percentile([5, 1, 4, 2, 3], 100)).toBe(5);
    expect(percentile(Array.from({ length: 100 }, (_, i) => i + 1), 95)).toBe(95);
    expect(atOrPast({ file: "binlog.000002", pos: 4 }, { file: "binlog.000001", pos: 900 })).toBe(true);
    expect(atOrPast({ file: "binlog.000001", pos: 899 }, { file: "binlog.000001", pos: 900 })).toBe(false);
    expect(atOrPast({ file: "binlog.000010", pos: 900 }, { file: "binlog.000009", pos: 1000 })).toBe(true);
  });
});
