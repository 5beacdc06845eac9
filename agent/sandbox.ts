export async function sandbox(_o: any): Promise<number> { throw new Error("sandbox: not built yet"); }
