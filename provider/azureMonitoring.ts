// AzureMonitoring owns the operations side of an Azure sync group: a Log Analytics workspace the agent's
// container logs go to, an action group that e-mails, log alerts on the agent's output (replica lag or not
// ready, apply errors) and the helper that builds metric alerts for each flexible server.
import * as pulumi from "@pulumi/pulumi";
import * as monitor from "@pulumi/azure-native/monitor/index.js";
import * as operationalinsights from "@pulumi/azure-native/operationalinsights/index.js";

export interface AzureMonitoringArgs {
  resourceGroupName: pulumi.Input<string>;
  location: pulumi.Input<string>;
  group: string;
  /** the address alerts go to; without it no action group is created (alerts still show in the portal) */
  email?: pulumi.Input<string>;
  /** lag above which the lag alert fires; defaults to 300 */
  lagSeconds?: number;
  /** Defaults to 30 (the workspace's free retention). */
  retentionDays?: number;
  tags?: pulumi.Input<Record<string, pulumi.Input<string>>>;
}

/**
 * The Log Analytics query of the lag/readiness alert: the agent's periodic JSON status line (msg "status",
 * one entry per replica with `state` and `lagSeconds`) in the ACI table ContainerInstanceLog_CL ("Container
 * group and instance logging with Azure Monitor logs",
 * https://learn.microsoft.com/azure/container-instances/container-instances-log-analytics): a row per replica
 * that is not streaming within the lag, or no status line at all from the container group in the window.
 */
export function lagQuery(containerGroup: string, lagSeconds: number): string {
  return [
    "let lines = ContainerInstanceLog_CL",
    `| where ContainerGroup_s == "${containerGroup}"`,
    "| extend j = parse_json(Message) | where tostring(j.msg) == \"status\";",
    "let bad = lines | mv-expand r = j.replicas",
    `| where tostring(r.state) != "streaming" or todouble(r.lagSeconds) > ${lagSeconds} or isnull(r.lagSeconds)`,
    "| project TimeGenerated, replica = tostring(r.name), state = tostring(r.state), lag = todouble(r.lagSeconds);",
    "let silent = print n = toscalar(lines | count) | where n == 0 | project TimeGenerated = now(), replica = \"(agent)\", state = \"no status line\", lag = real(null);",
    "union bad, silent",
  ].join("\n");
}

/** The query of the error alert: agent log lines at level error or fatal (pino levels 50, 60). */
export function errorQuery(containerGroup: string): string {
  return [
    "ContainerInstanceLog_CL",
    `| where ContainerGroup_s == "${containerGroup}"`,
    "| extend j = parse_json(Message) | where toint(j.level) >= 50",
    "| project TimeGenerated, msg = tostring(j.msg), replica = tostring(j.replica)",
  ].join("\n");
}

export class AzureMonitoring extends pulumi.ComponentResource {
  readonly workspace: operationalinsights.Workspace;
  readonly actionGroup?: monitor.ActionGroup;
  /** what ACI's `diagnostics.logAnalytics` needs: the workspace's customer ID (a GUID, not its ARM id) and a shared key */
  readonly logAnalytics: { workspaceId: pulumi.Output<string>; workspaceKey: pulumi.Output<string>; workspaceResourceId: pulumi.Output<string> };
  readonly rules: monitor.ScheduledQueryRule[] = [];
  readonly baseName: string;

  constructor(name: string, args: AzureMonitoringArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("datasync:azure:AzureMonitoring", name, {}, opts);
    this.baseName = name;
    const parent = { parent: this };
    this.workspace = new operationalinsights.Workspace(
      `${name}-logs`,
      { resourceGroupName: args.resourceGroupName, location: args.location, sku: { name: "PerGB2018" }, retentionInDays: args.retentionDays ?? 30, tags: args.tags },
      parent,
    );
    const keys = operationalinsights.getSharedKeysOutput({ resourceGroupName: args.resourceGroupName, workspaceName: this.workspace.name }, parent);
    this.logAnalytics = {
      workspaceId: this.workspace.customerId,
      workspaceKey: pulumi.secret(keys.apply((k) => k.primarySharedKey ?? "")),
      workspaceResourceId: this.workspace.id,
    };
    if (args.email !== undefined) {
      // groupShortName: at most 12 characters ("Action groups", https://learn.microsoft.com/azure/azure-monitor/alerts/action-groups)
      this.actionGroup = new monitor.ActionGroup(
        `${name}-ag`,
        {
          resourceGroupName: args.resourceGroupName,
          location: "Global",
          groupShortName: `ds-${args.group}`.slice(0, 12),
          enabled: true,
          emailReceivers: [{ name: "datasync-oncall", emailAddress: args.email, useCommonAlertSchema: true }],
          tags: args.tags,
        },
        parent,
      );
    }
    this.registerOutputs({ workspaceId: this.workspace.id });
  }

  /** Log alerts on the agent container group's logs: lag or not ready, and apply errors. */
  alertOn(containerGroupName: pulumi.Input<string>, args: { location: pulumi.Input<string>; resourceGroupName: pulumi.Input<string>; lagSeconds?: number; tags?: AzureMonitoringArgs["tags"] }): void {
    const actions = this.actionGroup ? { actionGroups: [this.actionGroup.id] } : undefined;
    const rule = (suffix: string, description: string, query: pulumi.Input<string>, severity: number) =>
      new monitor.ScheduledQueryRule(
        `${this.baseName}-${suffix}`,
        {
          resourceGroupName: args.resourceGroupName,
          location: args.location,
          kind: "LogAlert",
          description,
          severity,
          enabled: true,
          scopes: [this.workspace.id],
          evaluationFrequency: "PT5M",
          windowSize: "PT15M",
          autoMitigate: true,
          criteria: { allOf: [{ query, timeAggregation: "Count", operator: "GreaterThan", threshold: 0, failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 } }] },
          actions,
          tags: args.tags,
        },
        { parent: this },
      );
    const lag = args.lagSeconds ?? 300;
    this.rules.push(
      rule("lag", `datasync: a replica is not streaming or lags more than ${lag} s, or the agent reports no status`, pulumi.output(containerGroupName).apply((n) => lagQuery(n, lag)), 1),
      rule("errors", "datasync: the agent logged an error (a replica stopped, or the agent failed)", pulumi.output(containerGroupName).apply(errorQuery), 2),
    );
  }
}

export interface ServerAlertArgs {
  resourceGroupName: pulumi.Input<string>;
  serverId: pulumi.Input<string>;
  actionGroupId?: pulumi.Input<string>;
  /** Burstable servers run on CPU credits: alert when they run low */
  burstable: boolean;
  tags?: pulumi.Input<Record<string, pulumi.Input<string>>>;
}

/**
 * Metric alerts of one flexible server: storage above 85 % and, on Burstable, CPU credits below 30. Metric
 * names from "Supported metrics for Microsoft.DBforMySQL/flexibleServers"
 * (https://learn.microsoft.com/azure/azure-monitor/reference/supported-metrics/microsoft-dbformysql-flexibleservers-metrics).
 */
export function serverAlerts(name: string, args: ServerAlertArgs, opts: pulumi.CustomResourceOptions): monitor.MetricAlert[] {
  const alert = (suffix: string, description: string, metricName: string, operator: string, threshold: number, timeAggregation: string) =>
    new monitor.MetricAlert(
      `${name}-${suffix}`,
      {
        resourceGroupName: args.resourceGroupName,
        location: "global", // metric alert rules are global resources
        description,
        severity: 2,
        enabled: true,
        scopes: [args.serverId],
        evaluationFrequency: "PT5M",
        windowSize: "PT15M",
        autoMitigate: true,
        criteria: {
          odataType: "Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
          allOf: [{ criterionType: "StaticThresholdCriterion", name: metricName, metricName, metricNamespace: "Microsoft.DBforMySQL/flexibleServers", operator, threshold, timeAggregation }],
        },
        actions: args.actionGroupId ? [{ actionGroupId: args.actionGroupId }] : [],
        tags: args.tags,
      },
      opts,
    );
  const out = [alert("storage", "datasync replica: storage above 85 % (the sync stops when the server turns read-only at full storage)", "storage_percent", "GreaterThan", 85, "Maximum")];
  if (args.burstable) out.push(alert("cpu-credits", "datasync replica: Burstable CPU credits below 30 (the server is throttled to its baseline when they run out)", "cpu_credits_remaining", "LessThan", 30, "Minimum"));
  return out;
}
