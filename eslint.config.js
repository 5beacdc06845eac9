import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", "**/node_modules/**", ".sandbox/**", "bench/results/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: "readonly", console: "readonly", Buffer: "readonly", setTimeout: "readonly", clearTimeout: "readonly", setInterval: "readonly", clearInterval: "readonly", setImmediate: "readonly", URL: "readonly" } },
    rules: {
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" }],
      "no-empty": ["error", { allowEmptyCatch: true }],
    },
  },
  {
    // DESIGN.md: the agent never imports provider/ or @pulumi/* (its image carries no Pulumi), nor dev/ statically
    // (dev/ is not in the image; cli.ts loads the sandbox by a dynamic import() and says so when it is absent)
    files: ["agent/**/*.ts"],
    rules: {
      "no-restricted-imports": ["error", {
        patterns: [
          { group: ["../provider/*", "../../provider/*", "**/provider/*"], message: "the agent never imports provider/ (DESIGN.md layout)" },
          { group: ["@pulumi/*"], message: "the agent image carries no Pulumi (DESIGN.md layout)" },
          { group: ["../dev", "../dev/*", "**/dev/*"], message: "shipped code (agent/) never imports dev/ statically: dev/ is not in the agent image (a dynamic import() with a clear error when absent, as cli.ts loads the sandbox)" },
        ],
      }],
      // a literal import("../dev/…") would make tsc resolve dev/, which the image build does not have
      "no-restricted-syntax": ["error", {
        selector: "ImportExpression[source.type='Literal'][source.value=/(^|\\/)dev\\//]",
        message: "import dev/ from agent/ only by a specifier in a variable (as cli.ts loadSandbox): the image compiles agent/ without dev/",
      }],
    },
  },
);
