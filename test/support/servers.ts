// Test-side entry to the servers module (dev/servers.ts is shared with the benchmark and the sandbox).
export * from "../../dev/servers.js";
