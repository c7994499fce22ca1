// Package netplane is each node's pod network and Service data plane. The agent runs one
// Plane per node and hands it every state snapshot (Update); the Plane keeps three things
// in line with the latest one, in its own goroutine, changing each only when what it
// renders changed:
//
//  1. The pod network: once the leader gave this node's Node object a spec.podCIDR (a /24
//     of --pod-cidr, services.Plan), a Podman bridge network (Config.Network, "skiff")
//     with that subnet and its .1 as gateway. Ready is closed once it exists; the node
//     loop starts pods on it only then. IP forwarding and bridge netfilter are enabled.
//  2. Routes: every other node's pod subnet via that node's InternalIP ("host-gw"), and
//     the Service range on the LAN device (so host processes reach cluster IPs on a LAN
//     without a default route). They carry `proto 77`: netplane only ever changes its own.
//  3. The Services: one nftables table, `table ip skiff`, rendered from the snapshot
//     (Render) and applied with `nft -f -` in one transaction (Transaction).
//
// # Pod network: host-gw
//
// Each node's pods live on its own /24; the other nodes reach them by a plain route via
// the node's LAN address. No encapsulation (VXLAN would cost ~50 bytes of every packet, a
// kernel module and CPU a Raspberry Pi does not have to spare), no routing daemon (BGP),
// no overlay state: the routes are a pure function of the Node objects every node already
// has. What it asks of the LAN: all nodes on one layer-2 segment (they are next hops of
// each other, as in a shop or a home lab behind one switch), and that segment not
// dropping packets whose source is a pod address (some Wi-Fi access points and cloud
// networks do; then an overlay is needed, and none is built here). Pod traffic between
// nodes keeps the pod's address: netavark masquerades everything leaving its subnet, so
// the table binds an identity SNAT for pod-to-pod traffic just before netavark's rule
// (NAT uses the first chain that binds an address). Pod traffic to anything else is still
// masqueraded by netavark. Where the host's FORWARD policy is DROP (Docker, ufw), netplane
// accepts the pod range in that chain (nftables cannot override another table's drop).
// Netavark 1.4 leaves bridge ports without hairpin mode, which a pod reaching its own
// Service needs; netplane turns it on as ports appear (hairpin.go).
//
// # Services: nftables, not a proxy in the agent
//
// The data plane is kube-proxy's nftables mode, re-derived for skiff: a map from cluster
// IP (and external and load-balancer IPs) . protocol . port to a chain per Service port,
// another for node ports on every local address, a chain per endpoint that DNATs, `numgen
// random` to spread new connections evenly over ready endpoints, timed ClientIP affinity
// with per-endpoint sets (see spread), masquerading marked with 0x4000 for traffic that
// must come back through this node (off-cluster clients of a cluster IP, node ports with
// the Cluster policy, hairpin), the Local policies (only this node's endpoints, the
// client's address kept, pods and the node itself short-circuited to any endpoint,
// nothing local: drop), and a filter chain refusing new connections to a Service without
// endpoints at once (TCP reset, ICMP port unreachable) rather than letting them hang. The
// same chains serve pods (prerouting) and host processes (output).
//
// Measured with bench/net.sh on the 2-core development machine (busy with other work, so
// read ratios, not absolutes): through a ClusterIP, 3600-5000 new connections/s with a
// p50 of 0.7-0.9 ms and 18-28k requests/s on kept connections with a p50 of ~100-160 µs,
// the same as straight to the pod IP within run-to-run noise (4000-5400/s, 0.6-0.8 ms;
// 21-25k/s, 120-150 µs); the kernel handles only the first packet of a connection
// differently, conntrack the rest. A userspace proxy in the agent (Go, splice) managed
// ~1800 connections/s (p50 1.9 ms) and ~8.5k requests/s (p50 370 µs): less than half,
// with two sockets and two copies per connection, every byte through the agent, the
// client's address lost (so no externalTrafficPolicy Local) and every connection cut
// when the agent restarts. nftables costs at reprogramming instead, and Transaction keeps
// that small by sending only the maps and chains that changed: for 100 Services of 10
// endpoints, 13-20 ms to render, 83-99 ms of CPU for the first program of the whole table,
// 10 ms for one endpoint changing readiness, 33 ms when every endpoint moves; for 1000
// Services of 10 endpoints 2.5 s, 61 ms and 0.6 s. The table survives an agent restart
// (Stop leaves it; Teardown removes it), so Services keep working meanwhile.
//
// Left out: IPv6 (the table is `ip`), SCTP is rendered but untested, conntrack entries
// of removed UDP endpoints are not flushed (kube-proxy runs conntrack -D; a UDP client
// sending to a gone endpoint keeps its stale entry until it goes quiet for 30-120 s),
// loadBalancerSourceRanges, healthCheckNodePort, and topology-aware routing.
package netplane
