// Metrics owns the Prometheus registry (prom-client) with the DESIGN.md metric names.
import client from "prom-client";

export class Metrics {
  readonly registry = new client.Registry();
  readonly lag: client.Gauge<"group" | "replica">;
  readonly appliedTxns: client.Counter<"group" | "replica">;
  readonly appliedRows: client.Counter<"group" | "replica">;
  readonly up: client.Gauge<"group" | "replica">;
  readonly snapshotRows: client.Counter<"group" | "replica">;
  readonly errors: client.Counter<"group" | "replica" | "kind">;
  readonly skipped: client.Counter<"group" | "replica" | "kind">;
  readonly queueBytes: client.Gauge<"group" | "replica">;
  readonly applyStalled: client.Gauge<"group" | "replica">;
  readonly batches: client.Counter<"group" | "replica">;
  readonly reusedTxns: client.Counter<"group" | "replica">;
  readonly parallelBatches: client.Counter<"group" | "replica">;
  readonly writerStandby: client.Gauge<"group" | "replica">;
  readonly writerHolder: client.Gauge<"group" | "replica" | "holder" | "self">;
  readonly binlogReaders: client.Gauge<"group">;

  constructor() {
    const r = [this.registry];
    client.collectDefaultMetrics({ register: this.registry, prefix: "datasync_process_" });
    const l = ["group", "replica"] as const;
    this.lag = new client.Gauge({ name: "datasync_replica_lag_seconds", help: "Age of the oldest source change the replica has not applied (0 when caught up)", labelNames: l, registers: r });
    this.appliedTxns = new client.Counter({ name: "datasync_replica_applied_transactions_total", help: "Source transactions applied to the replica", labelNames: l, registers: r });
    this.appliedRows = new client.Counter({ name: "datasync_replica_applied_rows_total", help: "Row changes applied to the replica", labelNames: l, registers: r });
    this.up = new client.Gauge({ name: "datasync_replica_up", help: "1 when the replica is connected and syncing", labelNames: l, registers: r });
    this.snapshotRows = new client.Counter({ name: "datasync_snapshot_rows_total", help: "Rows copied by the online snapshot", labelNames: l, registers: r });
    this.errors = new client.Counter({ name: "datasync_errors_total", help: "Errors by kind", labelNames: ["group", "replica", "kind"], registers: r });
    this.skipped = new client.Counter({ name: "datasync_skipped_statements_total", help: "Source statements not replicated, by kind (account = rule 5)", labelNames: ["group", "replica", "kind"], registers: r });
    this.queueBytes = new client.Gauge({ name: "datasync_replica_queue_bytes", help: "Bytes of source transactions read but not yet applied", labelNames: l, registers: r });
    this.applyStalled = new client.Gauge({ name: "datasync_replica_apply_stalled_seconds", help: "Seconds the applier has completed no step while work is queued, once past apply.stuckSeconds (0 otherwise)", labelNames: l, registers: r });
    this.writerStandby = new client.Gauge({ name: "datasync_writer_standby", help: "1 while this agent waits as a standby because another agent holds the replica's writer lock", labelNames: l, registers: r });
    this.writerHolder = new client.Gauge({ name: "datasync_writer_holder_info", help: "The agent that holds the replica's writer lock (holder host:pid; self=true when it is this agent)", labelNames: ["group", "replica", "holder", "self"], registers: r });
    this.binlogReaders = new client.Gauge({ name: "datasync_binlog_readers", help: "Binlog connections this agent has open to the source (replicas at the same position share one)", labelNames: ["group"], registers: r });
    this.batches = new client.Counter({ name: "datasync_replica_target_commits_total", help: "Target transactions committed on the replica", labelNames: l, registers: r });
    this.reusedTxns = new client.Counter({
      name: "datasync_replica_reused_transactions_total",
      help: "Source transactions whose statements the replica took from another replica's build (same transaction, same table shapes)",
      labelNames: l,
      registers: r,
    });
    this.parallelBatches = new client.Counter({
      name: "datasync_replica_parallel_batches_total",
      help: "Target transactions that ran early on a second replica connection while the one before them committed (parallel apply), committed in order",
      labelNames: l,
      registers: r,
    });
  }
}
