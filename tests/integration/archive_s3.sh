#!/bin/sh
# archive_s3 - the archive stage's S3 store and its spool against a real
# S3 API server on loopback
#
# The server is s3rver (npm, installed by scripts/setup into
# tests/s3rver/), file-backed in $T, one bucket. s3rver checks the access
# key but not SigV4 signatures, so the store talks to it through
# tests/integration/s3_sigv4_proxy.py, which computes every signature
# again with botocore (Debian's python3-botocore), refuses a request
# whose signature or Content-MD5 does not hold, and logs each request.
# tests/archive-s3-probe drives the store (and the spool) directly:
#   1. 40 records put (each with Content-MD5, none refused), listed back
#      in pages of 7 (continuation tokens), in name order, each got back
#      equal byte for byte; a list from a name on starts at that name;
#   2. a name the store does not hold: ERR_INPUT with 404 NoSuchKey;
#      remove, then get: 404; put again;
#   3. a wrong secret: the put fails with 403 SignatureDoesNotMatch from
#      the signature check, and nothing reaches the server;
#   4. a credentials file other users may read is refused at open, and
#      so are a bad bucket name, a prefix with "..", an ftp endpoint;
#   5. s3_object_lock = yes: the put carries COMPLIANCE and a retain
#      until date 7 years on (retention = 7y); remove is refused; without
#      retention the store does not open;
#   6. the server stopped: 30 records go into a spool and are
#      acknowledged at once, the backlog is 30; the server restarted, the
#      backlog drains and the store holds records 1..70, each once, equal
#      to what was written.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

PROBE="$top_builddir/tests/archive-s3-probe"
if [ ! -e "$PROBE" ]; then
    echo "$0: $PROBE is missing" >&2
    exit 1
fi
. "$top_srcdir/tests/integration/s3_lib.sh"
s3_setup

conf() { # conf FILE PREFIX CREDS [LINES...]
    f=$1 pre=$2 cr=$3
    shift 3
    {
        echo "store = s3://archive/$pre"
        echo "s3_endpoint = http://127.0.0.1:$px_port"
        echo "s3_region = us-east-1"
        echo "s3_credentials_file = $cr"
        echo "s3_list_page = 7"
        for l in "$@"; do echo "$l"; done
    } >"$f"
}
conf "$T/a.conf" relay/a "$T/creds"

# 1. put, list in pages, get back
out=$("$PROBE" "$T/a.conf" put 1 40 2>&1)
check "put 40: $out" [ "$out" = "put 40" ]
n=$(grep -c '^ok PUT /archive/relay/a/probe/.* md5=ok' "$T/proxy.log")
check "40 signed PUTs with Content-MD5 reached the server, got $n" \
    [ "$n" -eq 40 ]
out=$("$PROBE" "$T/a.conf" check 40 2>&1)
check "check 40: $out" [ "$out" = "checked 40" ]
pages=$(grep -c '^ok GET /archive?continuation-token=' "$T/proxy.log")
check "list took continuation tokens (6 more pages of 7), got $pages" \
    [ "$pages" -eq 5 ]
out=$("$PROBE" "$T/a.conf" list probe probe/0000000000000020 2>&1)
check "list from probe/...20: 9 names from it, got: $(echo "$out" | head -2)" \
    [ "$(echo "$out" | wc -l)-$(echo "$out" | head -1)" = \
    "9-probe/0000000000000020" ]

# 2. missing, remove
out=$("$PROBE" "$T/a.conf" get probe/00000000000000ff 2>&1)
check "get of a missing name: ERR_INPUT with 404 NoSuchKey, got: $out" \
    sh -c 'echo "$1" | grep -q "^error: input: .*HTTP 404 NoSuchKey"' - "$out"
check "remove probe/...28" "$PROBE" "$T/a.conf" remove probe/0000000000000028
out=$("$PROBE" "$T/a.conf" get probe/0000000000000028 2>&1)
check "get after remove: 404, got: $out" \
    sh -c 'echo "$1" | grep -q "HTTP 404"' - "$out"
check "put 0x28 again" "$PROBE" "$T/a.conf" put 40 1

# 3. a wrong secret
printf 'access_key_id = S3RVER\nsecret_access_key = wrong\n' >"$T/bad.creds"
chmod 600 "$T/bad.creds"
conf "$T/bad.conf" relay/bad "$T/bad.creds"
out=$("$PROBE" "$T/bad.conf" put 1 1 2>&1)
check "a wrong secret: 403 SignatureDoesNotMatch, got: $out" \
    sh -c 'echo "$1" | grep -q "^error: io: s3 put .*HTTP 403 SignatureDoesNotMatch"' - "$out"
check "the signature check refused it" \
    grep -q '^refused SignatureDoesNotMatch PUT /archive/relay/bad/' "$T/proxy.log"
check "nothing of it reached the server" \
    sh -c '! grep -q "relay/bad" "$1"' - "$T/s3rver.log"

# 4. a credentials file others may read
cp "$T/creds" "$T/open.creds"
chmod 644 "$T/open.creds"
conf "$T/open.conf" relay/open "$T/open.creds"
out=$("$PROBE" "$T/open.conf" put 1 1 2>&1)
check "mode 0644 credentials refused, got: $out" \
    sh -c 'echo "$1" | grep -q "mode 0644 lets .* read it.*chmod 600"' - "$out"

# 4b. specs and keys refused at open, with the file and line
printf 'store = s3://Bad_Bucket/x\ns3_endpoint = http://127.0.0.1:%s\ns3_credentials_file = %s\n' \
    "$px_port" "$T/creds" >"$T/spec.conf"
out=$("$PROBE" "$T/spec.conf" put 1 1 2>&1)
check "a bad bucket name refused, got: $out" \
    sh -c 'echo "$1" | grep -q "^error: config: s3: bucket name may hold"' - "$out"
printf 'store = s3://archive/../x\ns3_endpoint = http://127.0.0.1:%s\ns3_credentials_file = %s\n' \
    "$px_port" "$T/creds" >"$T/spec.conf"
out=$("$PROBE" "$T/spec.conf" put 1 1 2>&1)
check "a prefix with .. refused, got: $out" \
    sh -c 'echo "$1" | grep -q "^error: config: s3: prefix with an empty"' - "$out"
printf 'store = s3://archive/x\ns3_endpoint = ftp://127.0.0.1/\ns3_credentials_file = %s\n' \
    "$T/creds" >"$T/spec.conf"
out=$("$PROBE" "$T/spec.conf" put 1 1 2>&1)
check "an ftp endpoint refused with file:line, got: $out" \
    sh -c 'echo "$1" | grep -q "^error: config: .*spec.conf:2: s3_endpoint: must start with https://"' - "$out"

# 5. Object Lock
conf "$T/lock.conf" relay/locked "$T/creds" "s3_object_lock = yes" \
    "retention = 7y"
out=$("$PROBE" "$T/lock.conf" put 1 1 2>&1)
check "put with object lock: $out" [ "$out" = "put 1" ]
year=$(( $(date -u +%Y) + 7 ))
check "COMPLIANCE until $year in the signed request" \
    grep -q "^ok PUT /archive/relay/locked/probe/0000000000000001 md5=ok x-amz-object-lock-mode=COMPLIANCE x-amz-object-lock-retain-until-date=$year-" \
    "$T/proxy.log"
out=$("$PROBE" "$T/lock.conf" remove probe/0000000000000001 2>&1)
check "remove refused with object lock, got: $out" \
    sh -c 'echo "$1" | grep -q "^error: config: .*keeps every record"' - "$out"
conf "$T/lock2.conf" relay/locked "$T/creds" "s3_object_lock = yes"
out=$("$PROBE" "$T/lock2.conf" put 1 1 2>&1)
check "object lock without retention refused, got: $out" \
    sh -c 'echo "$1" | grep -q "^error: config: .*needs retention"' - "$out"

# 6. the spool across an outage
kill "$S3_PID"
wait "$S3_PID" 2>/dev/null
"$PROBE" "$T/a.conf" spool "$T/spool" 41 30 60 >"$T/spool.out" 2>"$T/spool.err" &
probe_pid=$!
smtpd_track "$probe_pid"
wait_grep '^added 30 backlog 30$' "$T/spool.out" 20 ||
    fail "30 records not acknowledged with the server down: $(cat "$T/spool.out")"
check "the spool's thread tried and was refused (503)" \
    wait_grep 'archive spool .*HTTP 503' "$T/spool.err" 10
n=$(ls "$T/spool" | grep -c '^[0-9a-f]*$')
check "30 files wait in the spool, got $n" [ "$n" -eq 30 ]
s3_start
wait "$probe_pid"
rc=$?
check "the backlog drained after the restart (rc $rc): $(cat "$T/spool.out")" \
    grep -q '^drained 0 shipped 30$' "$T/spool.out"
out=$("$PROBE" "$T/a.conf" check 70 2>&1)
check "records 1..70 each once, equal: $out" [ "$out" = "checked 70" ]
n=$(ls "$T/spool" | grep -v '^last$' | wc -l)
check "the spool is empty but for the last record shipped, got $n files" [ "$n" -eq 0 ]
check "which is kept as last" [ -f "$T/spool/last" ]

if [ "$failures" -gt 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    echo "--- proxy.log (tail)"; tail -n 20 "$T/proxy.log"
    echo "--- proxy.err"; tail -n 20 "$T/proxy.err"
    echo "--- spool.err"; tail -n 20 "$T/spool.err"
fi
finish
