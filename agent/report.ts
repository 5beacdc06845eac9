// Report owns the human rendering of a preflight report (`datasync check`).
import { fmtVersion } from "./rules.js";
import type { PreflightReport, ServerReport } from "./preflight.js";

function server(s: ServerReport): string {
  const head = `${s.failures.length === 0 ? "PASS" : "FAIL"}  ${s.label}${s.version ? `  ${fmtVersion(s.version)} (${s.version.raw})` : ""}`;
  const lines = [head];
  for (const f of s.failures) lines.push(`      ✗ [rule ${f.rule}] ${f.message}`);
  for (const w of s.warnings) lines.push(`      ! ${w}`);
  return lines.join("\n");
}

export function formatReport(r: PreflightReport): string {
  const parts = [server(r.source), ...r.replicas.map(server)];
  const failed = [r.source, ...r.replicas].filter((s) => s.failures.length > 0).length;
  parts.push("", r.ok ? "All rules pass." : `${failed} server${failed > 1 ? "s" : ""} fail${failed > 1 ? "" : "s"} a rule; fix the items marked ✗ and run datasync check again.`);
  return parts.join("\n") + "\n";
}
