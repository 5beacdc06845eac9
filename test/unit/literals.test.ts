// agent/literals.ts: one way to write a value as SQL for the applier, the snapshot and repair (issue 16: verify's
// literal() was a second function that lost what escapeValue keeps, e.g. a FLOAT's negative zero).
import { describe, it, expect } from "vitest";
import { escapeValue, literal } from "../../agent/literals.js";

describe("literals", () => {
  it("integers and decimals read as strings are written as numbers (key bounds compare as numbers)", () => {
    expect(literal("18446744073709551615", "bigint")).toBe("18446744073709551615");
    expect(literal("-12.50", "decimal")).toBe("-12.50");
    expect(literal("12a", "int")).toBe("'12a'");
    expect(literal("123", "varchar")).toBe("'123'");
  });
  it("anything else is what the applier writes, byte-exact", () => {
    for (const [v, t] of [[-0, "double"], [Buffer.from([0, 255]), "varbinary"], ["it's", "varchar"], [null, "int"], [1900, "year"]] as const) {
      expect(literal(v, t)).toBe(escapeValue(v, t));
    }
    expect(literal(-0, "double")).toBe("-0e0");
    expect(literal(Buffer.from([0, 255]))).toBe("X'00ff'");
  });
});
