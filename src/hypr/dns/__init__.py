"""hypr's DNS: `<workload>.hypr` everywhere, scoped bare names, forwarding to the host's resolvers.

records = build_records(snapshot, host_search)  # pure; host_search: the host's resolv.conf search domains
server = DnsServer(load_upstreams(skip=gateways))
await server.set_records(records)          # one assignment, no re-bind
await server.set_listen_addresses(gateways)  # port 41003; absent addresses are retried in the background
"""

from hypr.dns.records import TTL, Answer, Found, Outcome, Records, build_records, lookup
from hypr.dns.server import DnsServer
from hypr.dns.upstream import Forwarder, load_upstreams, parse_resolv_conf

__all__ = [
    "TTL",
    "Answer",
    "DnsServer",
    "Forwarder",
    "Found",
    "Outcome",
    "Records",
    "build_records",
    "load_upstreams",
    "lookup",
    "parse_resolv_conf",
]
