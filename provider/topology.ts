// Topology owns the Mermaid rendering of a sync group (primary → agent → replicas), shown as a stack
// output and by `datasync plan`. Pure: captured by the SyncGroup provider's closure.
import type { Flavor } from "../agent/rules.js";

export interface TopologyNode {
  name: string;
  host?: string;
  port?: number;
  version?: string;
  flavor?: Flavor;
  /** where the server runs (an Azure region), shown when given */
  location?: string;
}

/** Extras for `datasync plan`: where the agent runs, and replicas marked as added or changed by the PR. */
export interface MermaidOptions {
  agent?: string;
  marks?: Record<number, "added" | "changed">;
}

/** Mermaid text is inside "…" labels: quotes and angle brackets become entity codes. */
function esc(s: string): string {
  return s.replace(/"/g, "#quot;").replace(/</g, "#lt;").replace(/>/g, "#gt;");
}

function label(n: TopologyNode): string {
  const where = n.host === undefined ? "(known after create)" : `${n.host}:${n.port ?? 3306}`;
  const flavor = n.flavor === "mariadb" ? "MariaDB" : n.flavor === "mysql" ? "MySQL" : "";
  const version = n.version === undefined ? "version known after create" : `${flavor} ${n.version}`.trim();
  const region = n.location === undefined ? "" : `<br/>region ${esc(n.location)}`;
  return `"${esc(n.name)}<br/>${esc(where)}<br/>${esc(version)}${region}"`;
}

/** A `flowchart LR` listing every server of the group; node ids are positional so any name is safe. */
export function renderMermaid(group: string, primary: TopologyNode, replicas: TopologyNode[], databases: string[] = [], opts: MermaidOptions = {}): string {
  const lines = [
    "flowchart LR",
    `  primary[(${label(primary)})]`,
    `  agent{{"datasync agent<br/>group ${esc(group)}${opts.agent ? `<br/>${esc(opts.agent)}` : ""}"}}`,
    `  primary -- "binlog${databases.length ? `: ${esc(databases.join(", "))}` : ""}" --> agent`,
  ];
  replicas.forEach((r, i) => {
    lines.push(`  replica${i}[(${label(r)})]`);
    lines.push(`  agent --> replica${i}`);
  });
  const marks = Object.entries(opts.marks ?? {});
  if (marks.length) {
    lines.push("  classDef added stroke:#2da44e,stroke-width:3px", "  classDef changed stroke:#d29922,stroke-width:3px,stroke-dasharray:4 2");
    for (const [i, m] of marks) lines.push(`  class replica${i} ${m}`);
  }
  return lines.join("\n") + "\n";
}
