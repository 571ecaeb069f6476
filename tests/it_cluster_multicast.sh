#!/usr/bin/env bash
# Multicast discovery between hosts, and a partition that heals. Loopback addresses do not carry
# multicast between "hosts", so the test builds its own LAN: three network namespaces, each with an
# address on a bridge, multicast on. Three workers started with no address of any other find each
# other; one taken off the LAN (its link down) leaves the others' views and sees only itself; put
# back, every view is whole again. Needs root (network namespaces); reports SKIPPED without.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
cairn_tmpdir

if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null; then
	echo "SKIPPED: needs root and iproute2 to make network namespaces" >&2
	exit 77
fi
# names of this run's own (interfaces have at most 15 characters)
NET=cm$((RANDOM % 100000))
lan_down() {
	local i
	for i in 1 2 3; do ip netns del "$NET$i" 2>/dev/null; done
	ip link del "$NET-br" 2>/dev/null
	return 0
}
at_exit lan_down
ip link add "$NET-br" type bridge || { echo "SKIPPED: cannot make a bridge here" >&2; exit 77; }
ip link set "$NET-br" up
for i in 1 2 3; do
	ip netns add "$NET$i"
	ip link add "$NET-h$i" type veth peer name eth0 netns "$NET$i"
	ip link set "$NET-h$i" master "$NET-br" up
	ip -n "$NET$i" addr add "10.77.0.$((10 + i))/24" dev eth0
	ip -n "$NET$i" link set eth0 up multicast on
	ip -n "$NET$i" link set lo up
done

for i in 1 2 3; do
	MEMBER_PREFIX=(ip netns exec "$NET$i")
	start_member "w$i" worker --private_ip_selector=10.77.0.0/24 --discovery=multicast \
		--heartbeat_interval_ms=200 --suspect_timeout_ms=2000
done
MEMBER_PREFIX=()

log "three workers with no address of one another find each other by multicast"
wait_for -t 60 views_are all 3 w1 w2 w3
for w in w1 w2 w3; do check_view_block "$w" all; done
view_members w1 all | grep -q '^        Member \[10.77.0.13\]:10081 - ' || fail "w1 does not list w3 at [10.77.0.13]:10081"

log "w3 off the LAN: the others drop it, it sees only itself"
ip link set "$NET-h3" down
wait_for -t 60 views_are all 2 w1 w2
wait_for -t 60 views_are all 1 w3

log "back on the LAN: every view whole again"
ip link set "$NET-h3" up
wait_for -t 60 views_are all 3 w1 w2 w3
for w in w1 w2 w3; do check_view_block "$w" all; sanitizer_clean "$TMP/$w.log"; done
log "ok"
