// bench/results.svg: throughput per scenario (agent vs anchor) and lag over time of the lag scenarios,
// rendered headless with vega-lite → vega (renderer "none", no canvas or browser needed).

/** The vega-lite spec for a results list (exported for inspection). */
export function chartSpec(results, meta) {
  const bars = [];
  for (const r of results) {
    if (!r.throughput) continue;
    const label = `${r.scenario}${r.iteration > 1 ? ` #${r.iteration}` : ""}`;
    if (r.throughput.agent !== null && r.throughput.agent !== undefined) bars.push({ scenario: label, who: "agent", value: r.throughput.agent });
    if (r.throughput.anchor !== null && r.throughput.anchor !== undefined) bars.push({ scenario: label, who: `anchor`, value: r.throughput.anchor });
  }
  const lag = results.flatMap((r) => (r.lagSeries ?? []).map((p) => ({ ...p, scenario: r.scenario })));
  const rss = results.flatMap((r) => (r.rssSeries ?? []).map((p) => ({ t: p.t, mb: p.mb, scenario: r.scenario })));
  const panels = [];
  if (bars.length) {
    panels.push({
      title: "Throughput: agent vs anchor (native replication, mariadb-dump; same run)",
      data: { values: bars },
      mark: { type: "bar", tooltip: true },
      encoding: {
        y: { field: "scenario", type: "nominal", title: null, sort: null },
        yOffset: { field: "who" },
        x: { field: "value", type: "quantitative", title: "rows per second (sqrt scale)", scale: { type: "sqrt" } },
        color: { field: "who", type: "nominal", title: null, scale: { domain: ["agent", "anchor"], range: ["#1f77b4", "#aaaaaa"] } },
      },
      width: 560,
    });
  }
  const lagScenarios = [...new Set(lag.map((p) => p.scenario))];
  for (const s of lagScenarios) {
    panels.push({
      title: `End-to-end lag over time (heartbeat trigger, max per second): ${s}`,
      data: { values: lag.filter((p) => p.scenario === s) },
      mark: { type: "line", point: false, tooltip: true },
      encoding: {
        x: { field: "t", type: "quantitative", title: s === "replica-down" ? "seconds since r5 was killed" : "seconds since the load started" },
        y: { field: "ms", type: "quantitative", title: "lag ms" },
        color: { field: "series", type: "nominal", title: null },
      },
      width: 560,
      height: 180,
    });
  }
  if (rss.length) {
    panels.push({
      title: "Agent RSS over time",
      data: { values: rss },
      mark: { type: "line", tooltip: true },
      encoding: {
        x: { field: "t", type: "quantitative", title: "seconds since agent start" },
        y: { field: "mb", type: "quantitative", title: "RSS MB" },
        color: { field: "scenario", type: "nominal", title: null },
      },
      width: 560,
      height: 160,
    });
  }
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: { text: "datasync benchmark", subtitle: `${meta.cores} cores (${meta.cpu}), ${meta.node}, ${meta.server}, ${meta.date.slice(0, 16)}Z` },
    vconcat: panels.length ? panels : [{ data: { values: [{ x: "no results" }] }, mark: "text", encoding: { text: { field: "x" } } }],
    resolve: { scale: { color: "independent" }, legend: { color: "independent" } },
    config: { font: "sans-serif" },
  };
}

/** SVG text of the chart; throws if vega/vega-lite are missing (npm install). */
export async function renderChart(results, meta) {
  const vega = await import("vega");
  const vl = await import("vega-lite");
  const view = new vega.View(vega.parse(vl.compile(chartSpec(results, meta)).spec), { renderer: "none" });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}
