export interface Summary { count: number; p50: number | null; p95: number | null; p99: number | null; max: number | null; mean: number | null }
export function percentile(values: number[], p: number): number | null;
export function summarize(values: number[]): Summary;
export function positionReached(p: { file: string; pos: number | string } | null | undefined, end: { file: string; pos: number | string }): boolean;
export function perSecondMax(samples: { t: number; v: number }[]): { t: number; v: number }[];
export function goalMet(value: number | null | undefined, goal: number | null | undefined, lowerIsBetter?: boolean): boolean | null;
export function round(x: number | null | undefined, digits?: number): number | null;
