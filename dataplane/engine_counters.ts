/**
 * The engine's own counters (outcomes and drop reasons), by index into `Engine.counters`, and
 * their metric names.
 *
 * @module
 */

/** Engine-wide counters, by index into `Engine.counters`. */
export const EngineCounter = {
  RX_PACKETS: 0,
  FORWARDED: 1,
  PASSED_THROUGH: 2,
  CONNECTIONS_CREATED: 3,
  CONNECTIONS_EXPIRED: 4,
  ECHO_REPLIES: 5,
  DROP_MALFORMED_IPV4: 6,
  DROP_MALFORMED_TCP: 7,
  DROP_MALFORMED_UDP: 8,
  DROP_MALFORMED_ICMP: 9,
  DROP_NO_SERVICE: 10,
  DROP_NO_CONNECTION: 11,
  DROP_NO_REAL: 12,
  DROP_TABLE_FULL: 13,
  DROP_FRAGMENT: 14,
  DROP_UNSUPPORTED: 15,
  /** ICMP errors about a connection, translated along it (an outcome, apart from FORWARDED). */
  ICMP_ERRORS_TRANSLATED: 16,
  /** Later fragments given their first fragment's addresses (apart from FORWARDED). */
  FRAGMENTS_TRANSLATED: 17,
  /** ICMP errors to a VIP that quote no connection we track. */
  DROP_ICMP_UNTRACKED: 18,
  DROP_NO_LOCAL_PORT: 19,
  /** Client segments given the TOA option (FULLNAT with `toa`); apart from FORWARDED. */
  TOA_INSERTED: 20,
  /** Client segments that should have carried TOA but had no room (forwarded without it). */
  TOA_SKIPPED: 21,
  /** DR packets handed to the packet socket (apart from FORWARDED, which counts them too). */
  DIRECT_SENT: 22,
  /** DR packets the packet socket refused. */
  DROP_DIRECT_SEND_FAILED: 23,
  /** Client SYNs whose MSS was lowered to fit the tunnel. */
  MSS_CLAMPED: 24,
  /** Packets too big for the path to a tunnel or DR real, with DF: answered with frag-needed. */
  FRAG_NEEDED_SENT: 25,
  /** Packets too big for the path to a tunnel or DR real that could be neither sent nor answered. */
  DROP_TOO_BIG: 26,
  /** Client SYNs to a synproxy service answered with a cookie SYN-ACK (no state kept). */
  SYNPROXY_SYNS_ANSWERED: 27,
  /** Client ACKs whose cookie proved valid: a connection was opened towards a real. */
  SYNPROXY_COOKIES_VALIDATED: 28,
  /** Client ACKs to a synproxy service without a connection whose cookie failed (forged, stale). */
  SYNPROXY_COOKIES_REJECTED: 29,
  /** Handshakes with reals completed after a valid cookie. */
  SYNPROXY_HANDSHAKES_COMPLETED: 30,
  /** Handshakes with reals that failed (RST, no answer in time, no real): the client was reset. */
  SYNPROXY_HANDSHAKES_FAILED: 31,
  /** Data carried by a client's cookie ACK, held until the real's handshake completes. */
  SYNPROXY_DATA_HELD: 32,
  /** Held data sent on to the real with the ACK completing its handshake. */
  SYNPROXY_DATA_RELEASED: 33,
  /** Data of a cookie ACK that could not be held (pool full or no room): the client resends it. */
  SYNPROXY_DATA_NOT_HELD: 34,
  /** SYNs to a real sent again on a client segment while the real had not answered. */
  SYNPROXY_SYNS_RESENT: 35,
  /** A real's repeated SYN-ACK answered again with the ACK of its handshake. */
  SYNPROXY_ACKS_RESENT: 36,
  /** Synproxy segments that had no room to be built in the packet's buffer. */
  DROP_SYNPROXY_NO_ROOM: 37,
  /** Client segments dropped while the real had not answered (beyond the one held). */
  DROP_SYNPROXY_PENDING: 38,
  /** Offloaded packets (virtio_net_hdr) of a kind the engine cannot take: GSO of ICMP, a bad header. */
  DROP_OFFLOAD: 39,
  /** GSO super-packets cut into segments in software (for a tunnel real). */
  GSO_SEGMENTED: 40,
  /**
   * Bare ACKs a real answered the proxy's SYN with (an earlier connection of the tuple still in
   * its TIME_WAIT): answered with a RST that ends it and the SYN sent again at once.
   */
  SYNPROXY_REAL_STALE_ACKS: 41,
} as const;

/** Metric names of `EngineCounter`, indexed alike. */
export const ENGINE_COUNTER_NAMES: readonly string[] = [
  "rx_packets",
  "forwarded",
  "passed_through",
  "connections_created",
  "connections_expired",
  "echo_replies",
  "drop_malformed_ipv4",
  "drop_malformed_tcp",
  "drop_malformed_udp",
  "drop_malformed_icmp",
  "drop_no_service",
  "drop_no_connection",
  "drop_no_real",
  "drop_table_full",
  "drop_fragment",
  "drop_unsupported",
  "icmp_errors_translated",
  "fragments_translated",
  "drop_icmp_untracked",
  "drop_no_local_port",
  "toa_inserted",
  "toa_skipped",
  "direct_sent",
  "drop_direct_send_failed",
  "mss_clamped",
  "frag_needed_sent",
  "drop_too_big",
  "synproxy_syns_answered",
  "synproxy_cookies_validated",
  "synproxy_cookies_rejected",
  "synproxy_handshakes_completed",
  "synproxy_handshakes_failed",
  "synproxy_data_held",
  "synproxy_data_released",
  "synproxy_data_not_held",
  "synproxy_syns_resent",
  "synproxy_acks_resent",
  "drop_synproxy_no_room",
  "drop_synproxy_pending",
  "drop_offload",
  "gso_segmented",
  "synproxy_real_stale_acks",
];
