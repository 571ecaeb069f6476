#!/usr/bin/env bash
# What an action may do with its inputs and its exec root, with cairn running as root (actions get
# uids of their own, inputs are hard links to the CAS) and as an unprivileged user (actions run as
# cairn's own uid, inputs are copies):
#   - an action that makes a plain or an executable input writable and overwrites it (same size)
#     changes neither the blob the CAS serves (ByteStream and BatchReadBlobs) nor what the next
#     action using that input sees;
#   - the action's uid and gid have names (getpwuid, getgrgid, id -un) and a home it may write to;
#   - it creates, appends to and removes scratch files in its working directory, in a new directory
#     and in one that came from the input tree, while its declared outputs come back; it cannot
#     write into the CAS, other exec roots or /etc.
source "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || {
	echo "it_exec_inputs: needs root (to run cairn both as root and as another user); skipped"
	exit 77
}
id nobody >/dev/null 2>&1 || {
	echo "it_exec_inputs: no user nobody; skipped"
	exit 77
}
command -v cc >/dev/null || {
	echo "it_exec_inputs: no C compiler; skipped"
	exit 77
}

cairn_tmpdir
chmod 0711 "$TMP" # the unprivileged cairn must reach its binary and data dir in here
CLIENT=$CAIRN

IN=$TMP/in
mkdir -p "$IN/tools" "$IN/keep"
printf 'DDDD' >"$IN/data.txt"
printf '#!/bin/sh\necho good\n' >"$IN/tools/tool.sh"
chmod 0755 "$IN/tools/tool.sh"
echo kept >"$IN/keep/old.txt"
cat >"$TMP/who.c" <<'EOF'
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <unistd.h>
int main(void)
{
	struct passwd *pw = getpwuid(getuid());
	struct group *gr = getgrgid(getgid());
	printf("user=%s group=%s home=%s\n", pw ? pw->pw_name : "?", gr ? gr->gr_name : "?", pw ? pw->pw_dir : "?");
	return pw && gr ? 0 : 1;
}
EOF
cc -O1 -o "$IN/tools/who" "$TMP/who.c"
data_digest="$(sha256sum <"$IN/data.txt" | cut -d' ' -f1)/$(stat -c %s "$IN/data.txt")"
tool_digest="$(sha256sum <"$IN/tools/tool.sh" | cut -d' ' -f1)/$(stat -c %s "$IN/tools/tool.sh")"

# rexec ARGS… -- CMD…: cairn exec with the input root; stdout in $TMP/out, stderr in $TMP/err, exit code in $RC
rexec() {
	RC=0
	"$CLIENT" exec --remote="grpc://127.0.0.1:$PORT" --input_root="$IN" --skip_cache_lookup "$@" \
		>"$TMP/out" 2>"$TMP/err" || RC=$?
}
expect_rc() { [ "$RC" -eq "$1" ] || { cat "$TMP/out" "$TMP/err"; fail "$2: exit code $RC, expected $1"; }; }
expect_out() { grep -q -- "$1" "$TMP/out" || { cat "$TMP/out" "$TMP/err"; fail "$2: stdout lacks '$1'"; }; }
expect_no() { if grep -q -- "$1" "$TMP/out"; then cat "$TMP/out" "$TMP/err"; fail "$2"; fi; }

# blob_is DIGEST TEXT WHAT: both ways of reading a blob back give TEXT.
blob_is() {
	local how got
	for how in --batch=false --batch=true; do
		got=$("$CLIENT" cas get --remote="grpc://127.0.0.1:$PORT" "$how" "$1" 2>&1) || true
		[ "$got" = "$2" ] || fail "$3: cas get $how returned '$got', expected '$2'"
	done
}

attack_inputs() {
	log "$MODE: an action that overwrites its inputs changes neither the CAS nor the next action's inputs"
	rexec -- /bin/sh -c 'chmod u+w data.txt tools/tool.sh; printf EEEE >data.txt;
		printf "#!/bin/sh\necho evil\n" >tools/tool.sh; cat data.txt; echo; true'
	expect_rc 0 "attacking action"
	blob_is "$data_digest" DDDD "plain input"
	blob_is "$tool_digest" "$(cat "$IN/tools/tool.sh")" "executable input"
	rexec -- /bin/sh -c 'cat data.txt; echo; ./tools/tool.sh'
	expect_rc 0 "second action"
	expect_out "^DDDD$" "second action's plain input"
	expect_out "^good$" "second action's executable input"
	expect_no "EEEE\|evil" "the second action saw what the first wrote into its inputs"
}

identity() {
	log "$MODE: the action's uid and gid have names and a writable home"
	rexec -- /bin/sh -c './tools/who; echo "id=$(id -un):$(id -gn)";
		home=$(getent passwd "$(id -u)" | cut -d: -f6); echo x >"$home/f" && echo home-writable'
	expect_rc 0 "identity action"
	expect_out "^user=cairn-action group=cairn-action home=/tmp/home$" "getpwuid/getgrgid"
	expect_out "^id=cairn-action:cairn-action$" "id -un"
	expect_out "^home-writable$" "home"
}

scratch() {
	log "$MODE: scratch files in the working directory, a new and an input directory; nothing outside"
	local other
	other=$(find "$DATA/exec" -maxdepth 1 -name 'job-*' 2>/dev/null | head -n 1)
	rexec --outputs=out/result.txt -- /bin/sh -c "
		for d in . newdir keep; do
			mkdir -p \$d && echo a >\$d/scratch && echo b >>\$d/scratch && cat \$d/scratch && rm \$d/scratch &&
				[ ! -e \$d/scratch ] && echo scratch-ok-\$d
		done
		echo result >out/result.txt
		for f in $DATA/cas/evil $DATA/exec/evil ${other:-$DATA/exec/job-0-0}/evil /etc/evil /proc/$SERVE_PID/root$DATA/evil; do
			echo x >\$f 2>/dev/null && echo WROTE \$f
		done
		true"
	expect_rc 0 "scratch action"
	expect_out "^scratch-ok-.$" "scratch file in the working directory"
	expect_out "^scratch-ok-newdir$" "scratch file in a new directory"
	expect_out "^scratch-ok-keep$" "scratch file in an input directory"
	expect_no WROTE "an action wrote outside its exec root"
	grep -q "output file out/result.txt" "$TMP/err" || { cat "$TMP/err"; fail "the declared output did not come back"; }
	[ ! -e "$DATA/cas/evil" ] && [ ! -e "$DATA/exec/evil" ] && [ ! -e /etc/evil ] && [ ! -e "$DATA/evil" ] ||
		fail "an action wrote outside its exec root"
}

run_mode() {
	MODE=$1
	DATA=$TMP/$MODE/data
	mkdir -p "$DATA"
	cp "$CLIENT" "$TMP/$MODE/cairn"
	chown -R "$2" "$TMP/$MODE"
	CAIRN=$TMP/$MODE/cairn SERVE_AS=$2 start_serve --executors=2 --action_timeout=60s
	grep -q "$3" "$SERVE_LOG" || fail "$MODE: the log does not say '$3'"
	attack_inputs
	identity
	scratch
	stop_serve
}

run_mode root root "inputs are hard links to the CAS"
run_mode unprivileged nobody "inputs are copies"
echo "it_exec_inputs: ok"
