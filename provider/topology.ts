// Topology owns the Mermaid rendering of a sync group (primary → agent → replicas), shown as a stack
// output and by `datasync plan`. Pure: captured by the SyncGroup provider's closure.
import type { Flavor } from "../agent/rules.js";

export interface TopologyNode {
  name: string;
  host?: string;
  port?: number;
  version?: string;
  flavor?: Flavor;
}

/** Mermaid text is inside "…" labels: quotes and angle brackets become entity codes. */
function esc(s: string): string {
  return s.replace(/"/g, "#quot;").replace(/</g, "#lt;").replace(/>/g, "#gt;");
}

function label(n: TopologyNode): string {
  const where = n.host === undefined ? "(known after create)" : `${n.host}:${n.port ?? 3306}`;
  const flavor = n.flavor === "mariadb" ? "MariaDB" : n.flavor === "mysql" ? "MySQL" : "";
  const version = n.version === undefined ? "version known after create" : `${flavor} ${n.version}`.trim();
  return `"${esc(n.name)}<br/>${esc(where)}<br/>${esc(version)}"`;
}

/** A `flowchart LR` listing every server of the group; node ids are positional so any name is safe. */
export function renderMermaid(group: string, primary: TopologyNode, replicas: TopologyNode[], databases: string[] = []): string {
  const lines = [
    "flowchart LR",
    `  primary[(${label(primary)})]`,
    `  agent{{"datasync agent<br/>group ${esc(group)}"}}`,
    `  primary -- "binlog${databases.length ? `: ${esc(databases.join(", "))}` : ""}" --> agent`,
  ];
  replicas.forEach((r, i) => {
    lines.push(`  replica${i}[(${label(r)})]`);
    lines.push(`  agent --> replica${i}`);
  });
  return lines.join("\n") + "\n";
}
