# shellcheck shell=bash
# Helpers for the cluster tests (tests/it_cluster_*.sh), on top of lib.sh:
#
#   start_member NAME ROLE [ARGS…]  # cairn ROLE (scheduler|worker) in the background, data in
#                                   # $TMP/NAME, log in $TMP/NAME.log; MPID[NAME] is its pid.
#                                   # Set MEMBER_PREFIX to run it under a command (ip netns exec …).
#   member NAME ROLE ADDRESS [ARGS…] # start_member on its own loopback ADDRESS (/32), private port
#                                   # $P, joining through $SEED, 200 ms heartbeats and 2 s suspicion,
#                                   # then the test's MEMBER_ARGS, then ARGS (later flags win).
#   view_size NAME GROUP            # size of the last view NAME logged for GROUP (0 if none)
#   view_ver NAME GROUP             # its version
#   view_members NAME GROUP         # its member lines
#   check_view_block NAME GROUP     # fails unless the last block is exactly in the documented form
#   views_are GROUP SIZE NAME…      # true if every NAME's last GROUP view has SIZE members

declare -A MPID
MEMBER_PREFIX=()
MEMBER_ARGS=()

start_member() {
	local name=$1 role=$2
	shift 2
	mkdir -p "$TMP/$name"
	"${MEMBER_PREFIX[@]}" "$CAIRN" "$role" --data_dir="$TMP/$name" "$@" >>"$TMP/$name.log" 2>&1 &
	MPID[$name]=$!
	_cairn_pids+=("$!")
	_cairn_logs+=("$TMP/$name.log")
}

member() {
	local name=$1 role=$2 addr=$3
	shift 3
	start_member "$name" "$role" --private_ip_selector="$addr/32" --private_port="$P" --discovery=static \
		--static_members="$SEED" --heartbeat_interval_ms=200 --suspect_timeout_ms=2000 "${MEMBER_ARGS[@]}" "$@"
}

# The last block NAME logged for GROUP: its header line's fields, then its lines.
_last_block() {
	awk -v g="group=$2" '
		$0 ~ ("view changed " g " ") { buf = ""; grab = 1; next }
		grab { buf = buf $0 "\n"; if ($0 == "]") { last = buf; grab = 0 } }
		END { printf "%s", last }' "$TMP/$1.log"
}

view_size() {
	_last_block "$1" "$2" | sed -n '1s/^Members {size:\([0-9]*\), ver:[0-9]*} \[$/\1/p' | grep . || echo 0
}

view_ver() {
	_last_block "$1" "$2" | sed -n '1s/^Members {size:[0-9]*, ver:\([0-9]*\)} \[$/\1/p' | grep . || echo 0
}

view_members() {
	_last_block "$1" "$2" | grep '^        Member ' || true
}

check_view_block() {
	local block size n
	block=$(_last_block "$1" "$2")
	size=$(view_size "$1" "$2")
	n=$(grep -c '' <<<"$block")
	[ "$n" -eq $((size + 2)) ] || fail "$1's last $2 view has $n lines for size $size:
$block"
	grep -Eq '^Members \{size:[0-9]+, ver:[0-9]+\} \[$' <<<"$(head -n 1 <<<"$block")" ||
		fail "$1's view header is malformed: $(head -n 1 <<<"$block")"
	[ "$(tail -n 1 <<<"$block")" = "]" ] || fail "$1's view does not end with ]"
	sed '1d;$d' <<<"$block" | grep -Evq '^        Member \[[0-9a-f.:]+\]:[0-9]+ - [0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}( this)?$' &&
		fail "$1's view has a malformed member line:
$block"
	[ "$(grep -c ' this$' <<<"$block")" -eq 1 ] || fail "$1's view does not mark exactly one member 'this'"
}

views_are() {
	local group=$1 size=$2 name
	shift 2
	for name in "$@"; do
		[ "$(view_size "$name" "$group")" -eq "$size" ] || return 1
	done
}
