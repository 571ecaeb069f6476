# shellcheck shell=bash
# A throwaway S3 server for tests: Ceph radosgw (1 mon, 1 memstore osd, 1 rgw) on 127.0.0.1, all
# state under one directory. radosgw checks SigV4 signatures and x-amz-content-sha256, which is why
# it is the test server; memstore keeps the osd in RAM, for speed.
#
#   source tests/s3_fixture.sh
#   s3_fixture_require  # in a test: skips it (exit 77) when the Ceph packages are not installed
#   s3_up DIR      # starts the cluster; exports S3_ENDPOINT S3_ACCESS_KEY S3_SECRET_KEY S3_BUCKET
#                  # S3_REGION S3_DIR; on failure it cleans up after itself, shows the logs and returns 1
#   s3_session_credentials  # turns radosgw's STS on (restarting radosgw) and gets temporary keys and
#                  # a session token from it (GetSessionToken): exports S3_STS_ACCESS_KEY
#                  # S3_STS_SECRET_KEY S3_STS_TOKEN
#   s3_rgw_stop    # stops radosgw only (the cluster stays), waits until it is gone
#   s3_rgw_start   # starts radosgw again on the same port and waits until it answers
#   s3_down DIR    # stops every daemon by its pid file, SIGKILLs stragglers, removes DIR
#
# Or from a shell: bash tests/s3_fixture.sh up DIR (prints the exports), bash tests/s3_fixture.sh down DIR.
#
# Needs, as root: apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw (and curl,
# python3). Ports are picked free at start, never fixed. Daemons run in the foreground of our own
# background jobs (-f), so their pids are known the moment they start: a failure at any point can
# stop them. Every wait polls with a deadline; none sleeps for a fixed time to wait for readiness.

S3_FIXTURE_PACKAGES="ceph-mon ceph-osd radosgw"

# s3_fixture_missing: prints the commands of the fixture that are not installed (empty if none).
s3_fixture_missing() {
	local c
	for c in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool ceph-authtool curl; do
		command -v "$c" >/dev/null 2>&1 || printf '%s ' "$c"
	done
}

# s3_fixture_require: for a test (after tests/lib.sh): skips it (exit 77) unless the fixture's commands
# are installed, naming what is missing and the packages that hold it.
s3_fixture_require() {
	local missing
	missing=$(s3_fixture_missing)
	[ -z "$missing" ] || skip "$(basename "$0" .sh) needs radosgw; not installed: $missing" \
		"(apt-get install -y --no-install-recommends $S3_FIXTURE_PACKAGES)"
}

# _s3_alive PID: true while PID is a running process (a zombie counts as gone: the daemons are
# reparented, and PID 1 in a container may never reap them).
_s3_alive() {
	local st
	[ -r "/proc/$1/stat" ] || return 1
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
	[ -n "$st" ] && [ "$st" != Z ]
}

# _s3_poll SECONDS WHAT CMD…: runs CMD every 0.1 s until it succeeds; fails naming WHAT after SECONDS.
_s3_poll() {
	local secs=$1 what=$2 deadline
	shift 2
	deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if [ $SECONDS -ge "$deadline" ]; then
			echo "s3_fixture: timed out after ${secs}s waiting for $what" >&2
			return 1
		fi
		sleep 0.1
	done
}

# _s3_free_ports N: prints N distinct TCP ports of 127.0.0.1 that were free a moment ago (all bound
# at once, so they differ).
_s3_free_ports() {
	/usr/bin/python3 -c 'import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

# _s3_daemon DIR NAME CMD…: starts CMD in the background with its output in DIR/log/NAME.out and
# records its pid in DIR/pids/NAME.
_s3_daemon() {
	local d=$1 name=$2
	shift 2
	"$@" </dev/null >>"$d/log/$name.out" 2>&1 &
	echo $! >"$d/pids/$name"
}

# _s3_running DIR NAME: true while the daemon NAME is alive; fails with its log when it died.
_s3_running() {
	local pid
	pid=$(cat "$1/pids/$2" 2>/dev/null) || return 1
	_s3_alive "$pid" && return 0
	echo "s3_fixture: $2 exited; last lines of $1/log/$2.out:" >&2
	tail -n 20 "$1/log/$2.out" >&2
	return 1
}

_s3_write_conf() {
	local d=$1 fsid=$2 mon_v2=$3 mon_v1=$4 rgw_port=$5
	cat >"$d/ceph.conf" <<CONF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon_v2,v1:127.0.0.1:$mon_v1]
public network = 127.0.0.0/8
ms bind ipv6 = false
# No cephx: a throwaway cluster on loopback. With auth none, the mon client must use crc mode, or
# radosgw loops on auth error -13.
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
run dir = $d/run
crash dir = $d/crash
admin socket = $d/run/\$name.asok
log file = $d/log/\$name.log
mon cluster log file = $d/log/cluster.\$channel.log
keyring = $d/keyring
# One osd: pools of size 1 with few placement groups.
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
# The mon batches map changes for 1 s by default; radosgw creates a dozen pools one after the other
# at its first start, each waiting for a new map. Short batches bring the start-up from 16 s to 2 s.
paxos propose interval = 0.05
paxos min wait = 0.01
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 1
mon data avail crit = 0
[mon]
mon data = $d/mon/\$name
[osd]
osd data = $d/osd/\$name
osd objectstore = memstore
memstore device bytes = 4294967296
[client.rgw.a]
rgw data = $d/rgw
# tcp_nodelay: without it every small keep-alive GET stalls 40 ms (delayed ACK).
rgw frontends = beast endpoint=127.0.0.1:$rgw_port tcp_nodelay=1
rgw thread pool size = 64
CONF
}

_s3_osd_up() {
	timeout 10 ceph -c "$1/ceph.conf" osd stat -f json 2>/dev/null | grep -q '"num_up_osds":1'
}

_s3_rgw_answers() {
	_s3_running "$1" rgw || return 2
	curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$2/" || return 1
}

# _s3_wait_rgw DIR PORT: polls until radosgw answers HTTP, failing at once if it died.
_s3_wait_rgw() {
	local deadline=$((SECONDS + 120)) rc
	while :; do
		rc=0
		_s3_rgw_answers "$1" "$2" 2>/dev/null || rc=$?
		[ $rc -eq 0 ] && return 0
		[ $rc -eq 2 ] && { _s3_running "$1" rgw; return 1; }
		[ $SECONDS -lt $deadline ] || { echo "s3_fixture: radosgw did not answer within 120s" >&2; return 1; }
		sleep 0.1
	done
}

# _s3_up_body DIR: the whole start-up, run in its own bash with set -e (so any failing step stops it);
# writes the exports to DIR/env.
_s3_up_body() {
	set -euo pipefail
	local d=$1 mon_v2 mon_v1 rgw_port fsid osd_uuid id ak sk bucket=cairn-test t0=$SECONDS
	mkdir -p "$d"/{mon,osd,rgw,run,log,crash,pids}
	read -r mon_v2 mon_v1 rgw_port <<<"$(_s3_free_ports 3)"
	fsid=$(cat /proc/sys/kernel/random/uuid)
	_s3_write_conf "$d" "$fsid" "$mon_v2" "$mon_v1" "$rgw_port"
	local c=$d/ceph.conf
	ceph-authtool --create-keyring "$d/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
	monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_v2,v1:127.0.0.1:$mon_v1]" "$d/monmap" >/dev/null
	ceph-mon -c "$c" -i a --mkfs --monmap "$d/monmap" --keyring "$d/keyring" >>"$d/log/mon-mkfs.out" 2>&1
	_s3_daemon "$d" mon ceph-mon -f -c "$c" -i a
	osd_uuid=$(cat /proc/sys/kernel/random/uuid)
	# The first command that reaches the mon also waits for it to be up.
	id=$(timeout 60 ceph -c "$c" osd new "$osd_uuid")
	mkdir -p "$d/osd/osd.$id"
	ceph-osd -c "$c" -i "$id" --mkfs --osd-uuid "$osd_uuid" >>"$d/log/osd-mkfs.out" 2>&1
	_s3_daemon "$d" osd ceph-osd -f -c "$c" -i "$id"
	_s3_poll 120 "osd.$id to be up" _s3_osd_up "$d" || { _s3_running "$d" osd; return 1; }
	_s3_daemon "$d" rgw radosgw -f -c "$c" -n client.rgw.a
	_s3_wait_rgw "$d" "$rgw_port"
	ak=$(od -An -N10 -tx1 /dev/urandom | tr -d ' \n')
	sk=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
	timeout 60 radosgw-admin -c "$c" user create --uid=test --display-name=test \
		--access-key="$ak" --secret-key="$sk" >>"$d/log/user.out" 2>&1
	# curl signs the query exactly as written and does not add x-amz-content-sha256 (S3.md): the
	# header carries the SHA-256 of the empty body.
	curl -sS --fail-with-body --max-time 30 -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ak:$sk" \
		-H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
		"http://127.0.0.1:$rgw_port/$bucket" >>"$d/log/bucket.out" 2>&1 ||
		{ echo "s3_fixture: creating bucket $bucket failed:" >&2; cat "$d/log/bucket.out" >&2; return 1; }
	cat >"$d/env" <<ENV
export S3_ENDPOINT=http://127.0.0.1:$rgw_port
export S3_ACCESS_KEY=$ak
export S3_SECRET_KEY=$sk
export S3_BUCKET=$bucket
export S3_REGION=us-east-1
export S3_DIR=$d
ENV
	echo "s3_fixture: radosgw up on 127.0.0.1:$rgw_port in $((SECONDS - t0))s (state in $d)" >&2
}

# s3_up DIR: see the top of this file.
s3_up() {
	local d=${1:?s3_up DIR}
	local missing
	missing=$(s3_fixture_missing)
	if [ -n "$missing" ]; then
		echo "s3_fixture: not installed: $missing(apt-get install -y --no-install-recommends $S3_FIXTURE_PACKAGES)" >&2
		return 1
	fi
	[ ! -e "$d" ] || [ -z "$(ls -A "$d")" ] || { echo "s3_fixture: $d is not empty" >&2; return 1; }
	# A separate bash, so that set -e holds inside whatever context the caller is in.
	if ! bash -c 'source "$1"; _s3_up_body "$2"' s3_fixture "${BASH_SOURCE[0]}" "$d"; then
		echo "s3_fixture: start-up failed; last lines of the daemons' logs:" >&2
		tail -n 15 "$d"/log/*.log >&2 2>/dev/null || true
		s3_down "$d"
		return 1
	fi
	# shellcheck disable=SC1091
	source "$d/env"
}

# _s3_stop_pids PIDFILE…: SIGTERM, up to 10 s to exit, then SIGKILL and wait until gone.
_s3_stop_pids() {
	local f pid pids=() deadline alive sig
	for f in "$@"; do
		[ -f "$f" ] || continue
		pid=$(cat "$f" 2>/dev/null) || continue
		[[ $pid =~ ^[0-9]+$ ]] || continue
		pids+=("$pid")
		kill -TERM "$pid" 2>/dev/null || true
	done
	[ ${#pids[@]} -gt 0 ] || return 0
	for sig in TERM KILL; do
		[ $sig = KILL ] && for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
		deadline=$((SECONDS + 10))
		while :; do
			alive=0
			for pid in "${pids[@]}"; do _s3_alive "$pid" && alive=1; done
			[ $alive = 0 ] && return 0
			[ $SECONDS -lt $deadline ] || break
			sleep 0.05
		done
	done
	echo "s3_fixture: some daemons survived SIGKILL: ${pids[*]}" >&2
	return 1
}

# s3_down DIR: see the top of this file. Safe to call twice, or on a half-started DIR.
s3_down() {
	local d=${1:?s3_down DIR}
	[ -d "$d" ] || return 0
	# One at a time, clients before servers: radosgw's shutdown still talks to the osd (stopped
	# together, radosgw hung for 15 s), and both talk to the mon.
	_s3_stop_pids "$d/pids/rgw"
	_s3_stop_pids "$d/pids/osd"
	_s3_stop_pids "$d/pids/mon"
	rm -rf "$d"
}

# _s3_form_post SERVICE BODY: a SigV4-signed form POST to radosgw as the test user; prints the answer.
_s3_form_post() {
	local hash
	hash=$(printf %s "$2" | sha256sum | cut -d' ' -f1)
	curl -sS --fail-with-body --max-time 30 --aws-sigv4 "aws:amz:us-east-1:$1" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
		-H "x-amz-content-sha256: $hash" -H 'Content-Type: application/x-www-form-urlencoded' --data "$2" "$S3_ENDPOINT/"
}

# s3_session_credentials: see the top of this file. With STS off, radosgw ignores an
# x-amz-security-token it never issued; with it on, it checks every token, but also reports a wrong
# signature as AccessDenied instead of SignatureDoesNotMatch: so it is on only for the tests that
# need it. The key (16 bytes) encrypts the tokens. The user is allowed sts:GetSessionToken by a user
# policy (which needs the user-policy capability to put).
s3_session_credentials() {
	local policy out
	printf 'rgw s3 auth use sts = true\nrgw sts key = %s\n' "$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" \
		>>"$S3_DIR/ceph.conf" # in [client.rgw.a], the last section
	s3_rgw_stop && s3_rgw_start || { echo "s3_fixture: radosgw did not start again with STS" >&2; return 1; }
	timeout 60 radosgw-admin -c "$S3_DIR/ceph.conf" caps add --uid=test --caps="user-policy=*" >>"$S3_DIR/log/user.out" 2>&1 ||
		{ echo "s3_fixture: radosgw-admin caps add failed" >&2; return 1; }
	policy='%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C'
	policy+='%22Action%22%3A%5B%22sts%3AGetSessionToken%22%5D%2C%22Resource%22%3A%22%2A%22%7D%5D%7D'
	_s3_form_post iam "Action=PutUserPolicy&PolicyDocument=$policy&PolicyName=sts&UserName=test&Version=2010-05-08" \
		>>"$S3_DIR/log/user.out" || { echo "s3_fixture: PutUserPolicy failed" >&2; return 1; }
	out=$(_s3_form_post sts "Action=GetSessionToken&DurationSeconds=3600&Version=2011-06-15") ||
		{ echo "s3_fixture: GetSessionToken failed: $out" >&2; return 1; }
	S3_STS_ACCESS_KEY=$(sed -n 's:.*<AccessKeyId>\([^<]*\)</AccessKeyId>.*:\1:p' <<<"$out")
	S3_STS_SECRET_KEY=$(sed -n 's:.*<SecretAccessKey>\([^<]*\)</SecretAccessKey>.*:\1:p' <<<"$out")
	S3_STS_TOKEN=$(sed -n 's:.*<SessionToken>\([^<]*\)</SessionToken>.*:\1:p' <<<"$out")
	[ -n "$S3_STS_ACCESS_KEY" ] && [ -n "$S3_STS_SECRET_KEY" ] && [ -n "$S3_STS_TOKEN" ] ||
		{ echo "s3_fixture: no credentials in the GetSessionToken answer: $out" >&2; return 1; }
	export S3_STS_ACCESS_KEY S3_STS_SECRET_KEY S3_STS_TOKEN
}

# s3_rgw_stop: stops radosgw of the cluster started by s3_up (for tests of retries).
s3_rgw_stop() {
	_s3_stop_pids "$S3_DIR/pids/rgw"
}

# s3_rgw_start: starts radosgw again on the port it had; returns once it answers.
s3_rgw_start() {
	_s3_daemon "$S3_DIR" rgw radosgw -f -c "$S3_DIR/ceph.conf" -n client.rgw.a
	_s3_wait_rgw "$S3_DIR" "${S3_ENDPOINT##*:}"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -euo pipefail
	case "${1:-}" in
	up) s3_up "${2:?usage: $0 up DIR}" && cat "$2/env" ;;
	down) s3_down "${2:?usage: $0 down DIR}" ;;
	*) echo "usage: $0 up|down DIR" >&2; exit 2 ;;
	esac
fi
