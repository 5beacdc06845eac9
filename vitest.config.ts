import { defineConfig } from "vitest/config";

// Integration tests start real MariaDB servers; they run in forks, a few at a time (2 cores).
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ["default"],
  },
});
