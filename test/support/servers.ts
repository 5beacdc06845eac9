// Test-side entry to the servers module (agent/servers.ts is shared with the benchmark and the sandbox).
export * from "../../agent/servers.js";
