// AzureNetwork owns the agent's network on Azure: a virtual network, a subnet delegated to Container
// Instances whose outbound traffic leaves through a NAT gateway with a static public IP (the address the
// on-premises firewall and the servers' firewall rules allow), and, for private access, a subnet delegated
// to flexible servers with its private DNS zone linked to the network.
//
// Why a NAT gateway: a container group's outbound address "isn't exposed programmatically" and may change
// (Azure docs, "Configure Container Group Egress with NAT Gateway",
// https://learn.microsoft.com/azure/container-instances/container-instances-nat-gateway); a NAT gateway on
// the delegated subnet makes every outbound connection use its static public IP.
import * as pulumi from "@pulumi/pulumi";
import * as network from "@pulumi/azure-native/network/index.js";
import * as privatedns from "@pulumi/azure-native/privatedns/index.js";

/** NAT gateway TCP idle timeout: the maximum (120 min), so a quiet binlog connection is not cut at the default 4 min. */
export const NAT_IDLE_TIMEOUT_MINUTES = 120;

export interface AzureNetworkArgs {
  resourceGroupName: pulumi.Input<string>;
  /** the agent's region; the network, the NAT gateway and (private access) the servers are all in it */
  location: pulumi.Input<string>;
  /** Defaults to 10.42.0.0/16. */
  addressPrefix?: string;
  /** Defaults to 10.42.0.0/24 (ACI needs its own subnet: it may contain only container groups). */
  agentSubnetPrefix?: string;
  /** private access only; defaults to 10.42.1.0/24 */
  serverSubnetPrefix?: string;
  /** "public": servers reachable on their public endpoint, firewall open to the NAT IP only; "private": a delegated subnet and private DNS zone */
  access: "public" | "private";
  /** the private DNS zone name (private access); must end with .mysql.database.azure.com */
  privateDnsZoneName?: string;
  tags?: pulumi.Input<Record<string, pulumi.Input<string>>>;
}

export class AzureNetwork extends pulumi.ComponentResource {
  readonly vnet: network.VirtualNetwork;
  readonly publicIp: network.PublicIPAddress;
  readonly natGateway: network.NatGateway;
  readonly agentSubnet: network.Subnet;
  readonly serverSubnet?: network.Subnet;
  readonly privateDnsZone?: privatedns.PrivateZone;
  readonly dnsLink?: privatedns.VirtualNetworkLink;
  /** the static outbound address of the agent (allow it on the on-premises firewall) */
  readonly egressIp: pulumi.Output<string>;

  constructor(name: string, args: AzureNetworkArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("datasync:azure:AzureNetwork", name, {}, opts);
    const parent = { parent: this };
    const base = { resourceGroupName: args.resourceGroupName, location: args.location, tags: args.tags };
    this.vnet = new network.VirtualNetwork(`${name}-vnet`, { ...base, addressSpace: { addressPrefixes: [args.addressPrefix ?? "10.42.0.0/16"] } }, parent);
    // A NAT gateway takes Standard SKU static public IPs only ("Azure NAT Gateway resource",
    // https://learn.microsoft.com/azure/nat-gateway/nat-gateway-resource)
    this.publicIp = new network.PublicIPAddress(`${name}-egress-ip`, { ...base, sku: { name: "Standard", tier: "Regional" }, publicIPAllocationMethod: "Static", publicIPAddressVersion: "IPv4" }, parent);
    this.natGateway = new network.NatGateway(
      `${name}-nat`,
      { ...base, sku: { name: "Standard" }, publicIpAddresses: [{ id: this.publicIp.id }], idleTimeoutInMinutes: NAT_IDLE_TIMEOUT_MINUTES },
      parent,
    );
    // "the subnet can't contain other resource types" and is delegated to ACI
    // ("Virtual network scenarios and resources", https://learn.microsoft.com/azure/container-instances/container-instances-virtual-network-concepts)
    this.agentSubnet = new network.Subnet(
      `${name}-agent`,
      {
        resourceGroupName: args.resourceGroupName,
        virtualNetworkName: this.vnet.name,
        addressPrefix: args.agentSubnetPrefix ?? "10.42.0.0/24",
        delegations: [{ name: "aci", serviceName: "Microsoft.ContainerInstance/containerGroups" }],
        natGateway: { id: this.natGateway.id },
      },
      parent,
    );
    if (args.access === "private") {
      // Private access: a subnet delegated to Microsoft.DBforMySQL/flexibleServers in the server's region and a
      // private DNS zone ending in .mysql.database.azure.com linked to the network ("Private Network Access
      // using virtual network integration", https://learn.microsoft.com/azure/mysql/flexible-server/concepts-networking-vnet)
      this.serverSubnet = new network.Subnet(
        `${name}-mysql`,
        {
          resourceGroupName: args.resourceGroupName,
          virtualNetworkName: this.vnet.name,
          addressPrefix: args.serverSubnetPrefix ?? "10.42.1.0/24",
          delegations: [{ name: "mysql", serviceName: "Microsoft.DBforMySQL/flexibleServers" }],
        },
        { ...parent, dependsOn: [this.agentSubnet] }, // one subnet change at a time on a network
      );
      const zone = args.privateDnsZoneName ?? `${name}.private.mysql.database.azure.com`;
      if (!zone.endsWith(".mysql.database.azure.com")) throw new Error(`AzureNetwork ${name}: privateDnsZoneName "${zone}" must end with .mysql.database.azure.com (Azure refuses other names for flexible servers).`);
      this.privateDnsZone = new privatedns.PrivateZone(`${name}-dns`, { resourceGroupName: args.resourceGroupName, location: "Global", privateZoneName: zone, tags: args.tags }, parent);
      this.dnsLink = new privatedns.VirtualNetworkLink(
        `${name}-dns-link`,
        { resourceGroupName: args.resourceGroupName, privateZoneName: this.privateDnsZone.name, location: "Global", registrationEnabled: false, virtualNetwork: { id: this.vnet.id } },
        parent,
      );
    }
    this.egressIp = this.publicIp.ipAddress.apply((ip) => ip ?? "");
    this.registerOutputs({ egressIp: this.egressIp });
  }
}
