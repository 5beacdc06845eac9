// SandboxUi owns what the sandbox shows in the terminal: a progress bar per replica during the snapshot and
// then a redrawn per-replica table (TTY), one plain line every ~2 s otherwise, and the final summary text.
import { clearScreenDown, cursorTo, moveCursor } from "node:readline";
import cliProgress from "cli-progress";
import type { ReplicaStatus } from "../agent/replica.js";
import { percentile } from "./sandbox-shop.js";

export interface View {
  elapsedMs: number;
  /** the run stops by itself at this point (ms), if a duration was given */
  untilMs?: number;
  replicas: ReplicaStatus[];
  /** latest end-to-end lag per replica (heartbeat), ms */
  e2eLagMs: Map<string, number | null>;
  workload: { transactions: number; rows: number };
}

export interface Display {
  update(v: View): void;
  /** a line of narration above the live area */
  note(line: string): void;
  /** leave the live area as it is and stop drawing */
  close(): void;
}

const int = (n: number) => Math.round(n).toLocaleString("en-US");
export const secs = (ms: number | null | undefined, digits = 2) => (ms === null || ms === undefined ? "–" : `${(ms / 1000).toFixed(digits)} s`);
const snapshotting = (r: ReplicaStatus) => r.snapshot !== null && !r.snapshot.done;
const clock = (v: View) => `${(v.elapsedMs / 1000).toFixed(0)}s${v.untilMs ? `/${(v.untilMs / 1000).toFixed(0)}s` : ""}`;

function snapshotText(r: ReplicaStatus): string {
  const s = r.snapshot!;
  const pct = s.rowsEstimate > 0 ? Math.min(100, Math.floor((100 * s.rowsCopied) / s.rowsEstimate)) : 0;
  return `snapshot ${pct}% (${int(s.rowsCopied)}/${int(s.rowsEstimate)} rows, ${int(s.rate)} rows/s${s.etaSeconds !== null ? `, eta ${s.etaSeconds} s` : ""})`;
}

/** the streaming table: one row per replica */
export function tableLines(v: View): string[] {
  const head = ["replica", "state", "agent lag", "e2e lag", "applied tx", "applied rows"];
  const rows = v.replicas.map((r) => [
    r.name,
    snapshotting(r) ? "snapshot" : r.state,
    r.lagSeconds === null ? "–" : `${r.lagSeconds.toFixed(2)} s`,
    secs(v.e2eLagMs.get(r.name)),
    int(r.appliedTransactions),
    int(r.appliedRows),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (cells: string[]) => "  " + cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  return [
    `streaming (${clock(v)}): source workload ${int(v.workload.transactions)} transactions, ${int(v.workload.rows)} rows`,
    fmt(head),
    ...rows.map(fmt),
    ...v.replicas.filter((r) => r.lastError).map((r) => `  ${r.name}: ${r.lastError}`),
  ];
}

/** the one-line form for logs and pipes */
export function plainLine(v: View): string {
  const parts = v.replicas.map((r) => {
    if (snapshotting(r)) return `${r.name} ${snapshotText(r)}`;
    const lag = r.lagSeconds === null ? "–" : `${r.lagSeconds.toFixed(2)} s`;
    return `${r.name} ${r.state} lag ${lag} e2e ${secs(v.e2eLagMs.get(r.name))} tx ${int(r.appliedTransactions)} rows ${int(r.appliedRows)}${r.lastError ? ` (${r.lastError})` : ""}`;
  });
  return `[${clock(v)}] ${parts.join(" | ")} | workload ${int(v.workload.transactions)} tx`;
}

class PlainDisplay implements Display {
  #out: NodeJS.WritableStream;
  #last = -Infinity;
  #everyMs: number;
  constructor(out: NodeJS.WritableStream, everyMs: number) {
    this.#out = out;
    this.#everyMs = everyMs;
  }
  update(v: View): void {
    if (v.elapsedMs - this.#last < this.#everyMs) return;
    this.#last = v.elapsedMs;
    this.#out.write(plainLine(v) + "\n");
  }
  note(line: string): void {
    this.#out.write(line + "\n");
  }
  close(): void {}
}

class TtyDisplay implements Display {
  #out: NodeJS.WriteStream;
  #bars: cliProgress.MultiBar | null = null;
  #bar = new Map<string, cliProgress.SingleBar>();
  #barsDone = false;
  #drawn = 0;

  constructor(out: NodeJS.WriteStream) {
    this.#out = out;
  }

  update(v: View): void {
    // bars from the start until every copy is done; a replica in trouble is better shown in the table
    // (the sandbox's replicas are new: each is seeded by a snapshot, which appears after it connects)
    const preparing = (r: ReplicaStatus) => r.snapshot === null && r.state !== "stopped";
    const trouble = v.replicas.some((r) => r.state === "down" || r.state === "failed");
    if (!this.#barsDone && !trouble && v.replicas.some((r) => snapshotting(r) || preparing(r))) return this.#drawBars(v);
    if (this.#bars) {
      // the last frame shows every copy complete
      for (const r of v.replicas) {
        const b = this.#bar.get(r.name);
        if (b) b.update(b.getTotal(), { rate: "", info: "done" });
      }
      this.#bars.stop();
      this.#bars = null;
    }
    this.#barsDone = true;
    this.#drawTable(tableLines(v));
  }

  #drawBars(v: View): void {
    this.#bars ??= new cliProgress.MultiBar(
      {
        stream: this.#out,
        format: "  {name} |{bar}| {percentage}% {value}/{total} rows {rate} {info}",
        formatValue: (v: number, _o: unknown, type: string) => (type === "value" || type === "total" ? int(v) : String(v)),
        barsize: 30,
        hideCursor: true,
        clearOnComplete: false,
        autopadding: true,
        fps: 10,
      },
      cliProgress.Presets.shades_classic,
    );
    for (const r of v.replicas) {
      const s = r.snapshot;
      const waiting = s === null;
      const total = Math.max(1, s?.rowsEstimate ?? 1);
      const value = s ? (s.done ? total : Math.min(s.rowsCopied, total)) : waiting ? 0 : total;
      const payload = {
        name: r.name.padEnd(10),
        rate: s && !s.done ? `${int(s.rate)} rows/s` : "",
        info: waiting ? r.state : s && !s.done ? (s.etaSeconds !== null ? `eta ${s.etaSeconds} s` : "") : "done",
      };
      let b = this.#bar.get(r.name);
      if (!b) {
        b = this.#bars.create(total, value, payload);
        this.#bar.set(r.name, b);
      } else {
        b.setTotal(total);
        b.update(value, payload);
      }
    }
  }

  #clearTable(): void {
    if (!this.#drawn) return;
    moveCursor(this.#out, 0, -this.#drawn);
    cursorTo(this.#out, 0);
    clearScreenDown(this.#out);
    this.#drawn = 0;
  }

  #drawTable(lines: string[]): void {
    this.#clearTable();
    const width = this.#out.columns || 120;
    this.#out.write(lines.map((l) => (l.length > width ? l.slice(0, width - 1) : l)).join("\n") + "\n");
    this.#drawn = lines.length;
  }

  note(line: string): void {
    if (this.#bars) {
      this.#bars.log(line + "\n");
      return;
    }
    this.#clearTable();
    this.#out.write(line + "\n");
  }

  close(): void {
    this.#bars?.stop();
    this.#bars = null;
    // the last table stays on screen; narration continues below it
    this.#drawn = 0;
  }
}

export function createDisplay(out: NodeJS.WriteStream = process.stdout, opts: { plainEveryMs?: number } = {}): Display {
  return out.isTTY ? new TtyDisplay(out) : new PlainDisplay(out, opts.plainEveryMs ?? 2000);
}

export interface ReplicaSummary {
  name: string;
  state: string;
  appliedTransactions: number;
  appliedRows: number;
  snapshotRows: number | null;
  /** end-to-end lag samples (ms) while streaming */
  lagSamples: number[];
  verify: "identical" | "differs" | "not verified";
}

export interface Summary {
  durationMs: number;
  prefillRows: number;
  workload: { transactions: number; rows: number; errors: number; lastError: string | null };
  catchUpMs: number | null;
  replicas: ReplicaSummary[];
  verify: { tables: number; sourceRows: number; durationMs: number; exitCode: 0 | 1 | 2; report: string } | null;
  verdict: string;
  ok: boolean;
}

/** the text printed at the end of a run */
export function formatSummary(s: Summary): string {
  const all = s.replicas.flatMap((r) => r.lagSamples);
  const p = (xs: number[], q: number) => secs(percentile(xs, q), 3);
  const lines = [
    "",
    "datasync sandbox: summary",
    `  ran           ${secs(s.durationMs, 1)}; ${int(s.prefillRows)} rows prefilled, then ${int(s.workload.transactions)} transactions (${int(s.workload.rows)} rows) written on the source${s.workload.errors ? `; ${s.workload.errors} failed on the source (last: ${s.workload.lastError})` : ""}`,
    `  caught up     ${s.catchUpMs === null ? "no (timed out)" : `${secs(s.catchUpMs)} after the workload stopped`}`,
  ];
  const head = ["replica", "snapshot rows", "applied tx", "applied rows", "lag p50", "p95", "p99", "max", "verify"];
  const rows = s.replicas.map((r) => [
    r.name,
    r.snapshotRows === null ? "–" : int(r.snapshotRows),
    int(r.appliedTransactions),
    int(r.appliedRows),
    p(r.lagSamples, 50),
    p(r.lagSamples, 95),
    p(r.lagSamples, 99),
    p(r.lagSamples, 100),
    r.verify,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (cells: string[]) => ("  " + cells.map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ")).trimEnd();
  lines.push(fmt(head), ...rows.map(fmt));
  lines.push(`  lag (end to end, heartbeat every 200 ms, ${all.length} samples): p50 ${p(all, 50)}, p95 ${p(all, 95)}, p99 ${p(all, 99)}, max ${p(all, 100)}`);
  if (s.verify) {
    lines.push(`  verify        ${s.verify.tables} tables, ${int(s.verify.sourceRows)} source rows compared with checksums in ${secs(s.verify.durationMs, 1)}`);
    if (s.verify.exitCode !== 0) lines.push(...s.verify.report.trimEnd().split("\n").map((l) => `    ${l}`));
  }
  lines.push(`verdict: ${s.verdict}`);
  return lines.join("\n") + "\n";
}
