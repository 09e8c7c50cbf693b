/**
 * The kernel's own load balancing reference: nftables DNAT of a VIP to one real, in one lab
 * namespace's own table (nothing outside the namespace is touched).
 */
import type { Lab } from "./netns.ts";

/** The nft binary Debian installs. */
export const NFT_BIN = "/usr/sbin/nft";

/** The table the lab creates, and deletes again. */
export const NFT_TABLE = "tunvs_bench";

/** Renders the ruleset: VIP:port → real:port for TCP and UDP on the given ports. */
export function nftDnatRuleset(vip: string, real: string, ports: number[]): string {
  const set = `{ ${ports.join(", ")} }`;
  return [
    `table ip ${NFT_TABLE} {`,
    "  chain prerouting {",
    "    type nat hook prerouting priority dstnat; policy accept;",
    `    ip daddr ${vip} tcp dport ${set} dnat to ${real}`,
    `    ip daddr ${vip} udp dport ${set} dnat to ${real}`,
    "  }",
    "}",
    "",
  ].join("\n");
}

/** Loads the DNAT table into `role`'s namespace; returns a function that deletes it. */
export async function addNftDnat(
  lab: Lab,
  role: string,
  vip: string,
  real: string,
  ports: number[],
): Promise<() => Promise<void>> {
  await lab.exec(role, [NFT_BIN, "-f", "-"], { stdin: nftDnatRuleset(vip, real, ports) });
  return async () => {
    await lab.exec(role, [NFT_BIN, "delete", "table", "ip", NFT_TABLE], { allowFail: true });
  };
}
