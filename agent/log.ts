// Log owns the agent's logger: pino JSON on stdout, one child per component, credentials redacted.
import pino from "pino";

export type Logger = pino.Logger;

export const REDACT_PATHS = [
  "password",
  "*.password",
  "*.*.password",
  "source.password",
  "replicas[*].password",
  "config.source.password",
  "config.replicas[*].password",
  "err.sql",
  "sql",
];

export function createLogger(level = "info", dest?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { app: "datasync" },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      formatters: { level: (label) => ({ level: label }) },
    },
    dest ?? pino.destination({ dest: 1, sync: false }),
  );
}

/** Remove anything that looks like a password from an error message (e.g. a statement text). */
export function scrub(text: string): string {
  return text
    .replace(/(IDENTIFIED\s+(?:BY|WITH\s+\S+\s+(?:BY|AS))\s+)('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")/gi, "$1'***'")
    .replace(/(PASSWORD\s*(?:\(\s*)?=?\s*)('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")/gi, "$1'***'");
}
