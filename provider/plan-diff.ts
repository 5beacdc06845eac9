// Plan-diff owns the comparison of two plans (a base ref and the working tree) and the warnings a
// reviewer needs: what a new replica, a version, target or endpoint change costs. Pure.
import type { GroupPlan, Plan, PlanServer } from "./plan-model.js";

export interface FieldChange {
  field: string;
  from: string;
  to: string;
}

export interface ServerChange {
  /** "primary" or the replica's name */
  name: string;
  fields: FieldChange[];
}

export interface GroupDiff {
  group: string;
  status: "added" | "removed" | "changed" | "unchanged";
  added: PlanServer[];
  removed: PlanServer[];
  changed: ServerChange[];
  /** group-level fields: target, databases, tables, agent placement */
  fields: FieldChange[];
  /** failure messages failing now and not at the base, and the reverse */
  newlyFailing: string[];
  fixed: string[];
}

export interface PlanDiff {
  /** the ref the base was taken from */
  base: string;
  groups: GroupDiff[];
  /** how the base was evaluated, and what it cannot show */
  notes: string[];
}

const SERVER_FIELDS: (keyof PlanServer)[] = ["host", "port", "user", "version", "flavor", "location", "sku", "tls", "credential"];

/** a field as the plan shows it */
export function shown(v: unknown, field?: string): string {
  if (v === undefined || v === null) return field === "host" ? "(known after create)" : field === "tls" ? "default" : "–";
  if (Array.isArray(v)) return v.join(", ") || "–";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function serverFields(a: PlanServer, b: PlanServer): FieldChange[] {
  return SERVER_FIELDS.filter((f) => shown(a[f], f) !== shown(b[f], f)).map((f) => ({ field: f, from: shown(a[f], f), to: shown(b[f], f) }));
}

function agentText(g: GroupPlan): string {
  return [g.agent.kind, g.agent.location, g.agent.detail].filter(Boolean).join(", ");
}

function diffGroup(base: GroupPlan | undefined, head: GroupPlan | undefined, targets: [string | undefined, string | undefined]): GroupDiff {
  const group = (head ?? base)!.group;
  const b = base ?? { replicas: [], failures: [] as GroupPlan["failures"] };
  const h = head ?? { replicas: [], failures: [] as GroupPlan["failures"] };
  const names = (g: { replicas: PlanServer[] }) => new Map(g.replicas.map((r) => [r.name, r]));
  const bn = names(b);
  const hn = names(h);
  const added = h.replicas.filter((r) => !bn.has(r.name));
  const removed = b.replicas.filter((r) => !hn.has(r.name));
  const changed: ServerChange[] = [];
  const fields: FieldChange[] = [];
  if (base && head) {
    const p = serverFields(base.primary, head.primary);
    if (p.length) changed.push({ name: "primary", fields: p });
    for (const r of head.replicas) {
      const old = bn.get(r.name);
      const f = old ? serverFields(old, r) : [];
      if (f.length) changed.push({ name: r.name, fields: f });
    }
    const pairs: [string, string, string][] = [
      ["target", shown(targets[0]), shown(targets[1])],
      ["databases", shown(base.databases), shown(head.databases)],
      ["tables", shown(base.tables), shown(head.tables)],
      ["agent", agentText(base), agentText(head)],
    ];
    for (const [field, from, to] of pairs) if (from !== to) fields.push({ field, from, to });
  }
  const reasons = (g: { failures: GroupPlan["failures"] }) => new Set(g.failures.map((f) => f.reason));
  const br = reasons(b);
  const hr = reasons(h);
  const status = !base ? "added" : !head ? "removed" : added.length || removed.length || changed.length || fields.length ? "changed" : "unchanged";
  return {
    group,
    status,
    added,
    removed,
    changed,
    fields,
    newlyFailing: [...hr].filter((r) => !br.has(r)),
    fixed: [...br].filter((r) => !hr.has(r)),
  };
}

/** Compare a base plan (or none: the stack did not exist at the base) with the head plan, group by group. */
export function diffPlans(base: Plan | undefined, head: Plan, ref: string, notes: string[] = []): PlanDiff {
  const bg = new Map((base?.groups ?? []).map((g) => [g.group, g]));
  const hg = new Map(head.groups.map((g) => [g.group, g]));
  const order = [...head.groups.map((g) => g.group), ...(base?.groups ?? []).map((g) => g.group).filter((g) => !hg.has(g))];
  return { base: ref, groups: order.map((g) => diffGroup(bg.get(g), hg.get(g), [base?.target, head.target])), notes };
}

function list(xs: string[]): string {
  return xs.map((x) => `\`${x}\``).join(", ");
}

/**
 * What a reviewer must know before approving. Without a base, the standing costs of the topology; with
 * one, the cost of each change: a new replica is a full snapshot; a version or target change replaces
 * servers (and so snapshots them again); an endpoint or group change starts the replica or group over.
 */
export function reviewWarnings(head: Plan, diff?: PlanDiff): string[] {
  const out: string[] = [];
  for (const g of head.groups) {
    const dbs = list(g.databases) || "the synced databases";
    const d = diff?.groups.find((x) => x.group === g.group);
    const unknown = g.replicas.filter((r) => r.host === undefined).map((r) => r.name);
    if (unknown.length) out.push(`Group \`${g.group}\`: the host names of ${list(unknown)} are known only after create; the endpoint rules run again then.`);
    if (!diff) {
      out.push(`Group \`${g.group}\`: a replica new to the group starts with a full online snapshot of ${dbs} (chunked reads on the primary; time and load grow with the data), then streams. A version or target change replaces the servers, so their replicas are snapshotted again.`);
      continue;
    }
    if (!d) continue;
    if (d.status === "added") {
      out.push(`Group \`${g.group}\` is new: every replica (${list(g.replicas.map((r) => r.name))}) starts with a full online snapshot of ${dbs}.`);
      continue;
    }
    for (const r of d.added) out.push(`New replica \`${r.name}\` (group \`${g.group}\`): the agent first copies all of ${dbs} to it (a full online snapshot: chunked reads on the primary; time and load grow with the data size), then streams.`);
    for (const r of d.removed) {
      out.push(`Removed replica \`${r.name}\` (group \`${g.group}\`): it stops receiving changes and the group's \`_datasync\` bookkeeping is removed from it${head.target === "azure" ? "; its Azure flexible server is deleted with its data" : "; its data stays"}.`);
    }
    const target = d.fields.find((f) => f.field === "target");
    if (target) out.push(`Target ${target.from} → ${target.to} (group \`${g.group}\`): means replacement — every replica server and the agent are replaced, and every replica starts over with a full snapshot of ${dbs}.`);
    const versions = d.changed.filter((c) => c.fields.some((f) => f.field === "version" || f.field === "flavor"));
    if (versions.length && !target) {
      const what = versions.map((c) => `${c.name} ${c.fields.filter((f) => f.field === "version").map((f) => `${f.from} → ${f.to}`).join("") || "(flavor)"}`.trim());
      out.push(
        `Version change (group \`${g.group}\`: ${what.join("; ")}): means replacement — ` +
          (head.target === "azure"
            ? "each Azure flexible server is replaced by a new one on the new version (new host name, old server deleted with its data), "
            : "the servers on the old version are replaced by servers on the new one (upgrade the primary and the replicas together: rule 2), ") +
          `and each replaced replica starts over with a full snapshot of ${dbs}.`,
      );
    }
    const primaryEndpoint = d.changed.find((c) => c.name === "primary" && c.fields.some((f) => f.field === "host" || f.field === "port"));
    if (primaryEndpoint) out.push(`Primary endpoint change (group \`${g.group}\`): replaces the sync group — checkpoints belong to one source, so every replica starts over with a full snapshot.`);
    const moved = d.changed.filter((c) => c.name !== "primary" && c.fields.some((f) => ["host", "port", "location"].includes(f.field)));
    for (const c of moved) out.push(`Replica \`${c.name}\` moves (${c.fields.filter((f) => ["host", "port", "location"].includes(f.field)).map((f) => `${f.field} ${f.from} → ${f.to}`).join(", ")}): its membership is replaced and the replica at the new place starts with a full snapshot.`);
    const dbsField = d.fields.find((f) => f.field === "databases");
    if (dbsField) {
      const before = new Set(dbsField.from.split(", "));
      const added = g.databases.filter((x) => !before.has(x));
      if (added.length) out.push(`Databases newly in scope (group \`${g.group}\`: ${list(added)}): snapshotted online on every replica, then streamed.`);
    }
  }
  return out;
}
