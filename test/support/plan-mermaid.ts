// Validates Mermaid text with the real parser from npm: mermaid needs a DOM (DOMPurify) even to parse, so
// jsdom's window and document are made globals before mermaid is first imported.
// jsdom ships no types (and @types/jsdom is not installed): it is imported through a variable.
const JSDOM_MODULE = "jsdom";

let parser: Promise<{ parse(text: string): Promise<unknown> }> | undefined;

function load(): Promise<{ parse(text: string): Promise<unknown> }> {
  if (!parser) {
    parser = import(JSDOM_MODULE).then(async ({ JSDOM }: any) => {
      const dom = new JSDOM("<!doctype html><html><body></body></html>");
      (globalThis as any).window = dom.window;
      (globalThis as any).document = dom.window.document;
      return (await import("mermaid")).default as any;
    });
  }
  return parser;
}

/** Resolves with mermaid's parse result; rejects with its parse error. */
export async function parseMermaid(text: string): Promise<unknown> {
  return (await load()).parse(text);
}

/** The ```mermaid blocks of a Markdown document. */
export function mermaidBlocks(md: string): string[] {
  return [...md.matchAll(/```mermaid\n([\s\S]*?)```/g)].map((m) => m[1]);
}
