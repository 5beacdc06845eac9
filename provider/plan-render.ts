// Plan-render owns the two outputs of `datasync plan`: the Markdown a reviewer reads in a pull request
// (Mermaid topology, server table, rule results, warnings, changes against a base) and the JSON other
// tools read. Pure.
import { renderMermaid } from "./topology.js";
import { reviewWarnings, shown, type PlanDiff } from "./plan-diff.js";
import { planPasses, type GroupPlan, type Plan, type PlanServer, type RuleStatus } from "./plan-model.js";

/** The diagram of one group; with a diff, replicas added or changed by it are highlighted. */
export function groupMermaid(g: GroupPlan, diff?: PlanDiff): string {
  const d = diff?.groups.find((x) => x.group === g.group);
  const marks: Record<number, "added" | "changed"> = {};
  g.replicas.forEach((r, i) => {
    if (d?.status === "added" || d?.added.some((a) => a.name === r.name)) marks[i] = "added";
    else if (d?.changed.some((c) => c.name === r.name)) marks[i] = "changed";
  });
  const agent = [g.agent.kind, g.agent.location].filter(Boolean).join(", ");
  return renderMermaid(g.group, g.primary, g.replicas, g.databases, { agent, marks });
}

/** a Markdown table cell: pipes escaped, newlines flattened */
function cell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\r?\n/g, " ");
}

function versionText(s: PlanServer): string {
  if (s.version === undefined) return "(known after create)";
  const f = s.flavor === "mariadb" ? "MariaDB" : s.flavor === "mysql" ? "MySQL" : "";
  return `${f} ${s.version}`.trim();
}

function endpoint(s: PlanServer): string {
  return s.host === undefined ? "(known after create)" : `${s.host}:${s.port ?? 3306}`;
}

const ICON: Record<RuleStatus, string> = { pass: "✅ pass", fail: "❌ fail", deferred: "⏳ pass so far (part deferred to create)", live: "🔌 live only", warn: "⚠️ warning" };

function serverTable(g: GroupPlan): string[] {
  const rows = [
    "| role | name | endpoint | version | region | user | password | TLS |",
    "|---|---|---|---|---|---|---|---|",
  ];
  const row = (role: string, s: PlanServer) =>
    `| ${role} | ${[s.name, endpoint(s), versionText(s), [s.location, s.sku].filter(Boolean).join(", ") || "–", shown(s.user), shown(s.credential), shown(s.tls, "tls")].map((c) => cell(`${c}`)).join(" | ")} |`;
  rows.push(row("primary", g.primary));
  for (const r of g.replicas) rows.push(row("replica", r));
  return rows;
}

function groupSection(g: GroupPlan, plan: Plan, diff?: PlanDiff): string[] {
  const out = [`### Group \`${g.group}\``, ""];
  const target = plan.target ? `target **${plan.target}**, ` : "";
  out.push(`${target}${g.replicas.length} replica${g.replicas.length === 1 ? "" : "s"}, databases ${g.databases.map((d) => `\`${d}\``).join(", ") || "–"}${g.tables?.include?.length ? `, tables include ${g.tables.include.map((t) => `\`${t}\``).join(", ")}` : ""}${g.tables?.exclude?.length ? `, tables exclude ${g.tables.exclude.map((t) => `\`${t}\``).join(", ")}` : ""}.`);
  out.push(`Agent: ${[g.agent.kind, g.agent.location, g.agent.detail].filter(Boolean).join(", ")}.`, "");
  if (g.network) out.push(`Network: agent egress via ${g.network.egress}. Servers: ${g.network.serverAccess}.`, "");
  out.push("```mermaid", groupMermaid(g, diff).trimEnd(), "```", "");
  out.push(...serverTable(g), "");
  out.push("#### Rules", "", "| rule | result | |", "|---|---|---|");
  for (const r of g.rules) {
    const notes = r.status === "fail" ? `${r.notes.length} failure${r.notes.length === 1 ? "" : "s"} below` : r.notes.join("; ");
    out.push(`| ${cell(`${r.id} · ${r.title}`)} | ${ICON[r.status]} | ${cell(notes)} |`);
  }
  if (g.failures.length) {
    out.push("", "Failures (the same messages `pulumi preview` prints for the SyncGroup):", "");
    for (const f of g.failures) out.push(`- ❌ \`${f.property}\`: ${f.reason}`);
  }
  out.push("");
  return out;
}

function diffSection(diff: PlanDiff): string[] {
  const out = [`### Changes against \`${diff.base}\``, ""];
  for (const n of diff.notes) out.push(`> ${n}`, ">");
  if (diff.notes.length) out.splice(out.length - 1, 1, "");
  if (diff.groups.every((g) => g.status === "unchanged")) {
    out.push("No change to the sync topology.", "");
    return out;
  }
  for (const g of diff.groups) {
    if (g.status === "unchanged") {
      out.push(`- Group \`${g.group}\`: unchanged.`);
      continue;
    }
    out.push(`#### Group \`${g.group}\` (${g.status})`, "");
    for (const r of g.added) out.push(`- ➕ replica \`${r.name}\` added (${endpoint(r)}, ${versionText(r)}${r.location ? `, ${r.location}` : ""})`);
    for (const r of g.removed) out.push(`- ➖ replica \`${r.name}\` removed (${endpoint(r)}, ${versionText(r)}${r.location ? `, ${r.location}` : ""})`);
    for (const c of g.changed) out.push(`- ✏️ ${c.name === "primary" ? "primary" : `replica \`${c.name}\``} changed: ${c.fields.map((f) => `${f.field} ${f.from} → ${f.to}`).join("; ")}`);
    for (const f of g.fields) out.push(`- ✏️ ${f.field}: ${f.from} → ${f.to}`);
    for (const m of g.newlyFailing) out.push(`- ❌ newly failing: ${m}`);
    for (const m of g.fixed) out.push(`- ✅ fixed: ${m}`);
    out.push("");
  }
  return out;
}

/** The review Markdown of a plan (and its diff against a base, when given). */
export function renderMarkdown(plan: Plan, diff?: PlanDiff): string {
  const ok = planPasses(plan);
  const failed = plan.groups.reduce((n, g) => n + g.failures.length, 0);
  const out = [
    `## datasync plan: stack \`${plan.stack}\``,
    "",
    `${ok ? "✅ **The preview rules pass.**" : `❌ **${failed} preview rule failure${failed === 1 ? "" : "s"}: \`pulumi preview\` would fail.**`} ` +
      `Program \`${plan.program}\` run under Pulumi mocks with the config of \`${plan.stackFile}\` (no engine, no cloud call; secrets stay opaque, never decrypted); ${plan.resources.length} resources declared.`,
    "",
  ];
  if (plan.groups.length === 0) out.push("The program declares no `SyncGroup`.", "");
  for (const g of plan.groups) out.push(...groupSection(g, plan, diff));
  const warnings = reviewWarnings(plan, diff);
  if (warnings.length) {
    out.push("### Warnings for reviewers", "");
    for (const w of warnings) out.push(`- ⚠️ ${w}`);
    out.push("");
  }
  if (diff) out.push(...diffSection(diff));
  return out.join("\n").replace(/\n{3,}/g, "\n\n").trimEnd() + "\n";
}

/** The machine-readable plan: everything the Markdown shows, plus each group's Mermaid text. */
export function renderJson(plan: Plan, diff?: PlanDiff): string {
  return (
    JSON.stringify(
      {
        ok: planPasses(plan),
        ...plan,
        groups: plan.groups.map((g) => ({ ...g, mermaid: groupMermaid(g, diff) })),
        warnings: reviewWarnings(plan, diff),
        ...(diff ? { diff } : {}),
      },
      null,
      2,
    ) + "\n"
  );
}
