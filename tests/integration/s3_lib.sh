#!/bin/sh
# s3_lib - an S3 API server on loopback for the archive tests, sourced
# after smtpd_lib.sh (which gives T, PY, free_ports, wait_listen,
# smtpd_track and fail).
#
# The server is s3rver (npm, installed by scripts/setup into
# tests/s3rver/), file-backed in $T/s3data, one bucket "archive".
# s3rver checks the access key but not SigV4 signatures, so clients talk
# to it through tests/integration/s3_sigv4_proxy.py, which computes every
# signature again with botocore (Debian's python3-botocore), refuses a
# request whose signature or Content-MD5 does not hold, answers 503 while
# s3rver is down, and logs each request to $T/proxy.log.
#
# s3_setup starts both and writes $T/creds (mode 0600); then s3_port,
# px_port (the endpoint to use: http://127.0.0.1:$px_port) and S3_PID
# are set. s3_start starts s3rver again after a kill "$S3_PID".

PROXY="$top_srcdir/tests/integration/s3_sigv4_proxy.py"
# scripts/setup installs s3rver in the source tree's tests/s3rver; a
# tree unpacked inside it (make distcheck) uses that one.
S3RVER=
for d in "$top_srcdir" "$top_srcdir/.." "$top_srcdir/../.."; do
    f=$d/tests/s3rver/node_modules/s3rver/bin/s3rver.js
    if [ -z "$S3RVER" ] && [ -f "$f" ]; then
        S3RVER=$f
    fi
done
if [ -z "$S3RVER" ]; then
    echo "$0: tests/s3rver/node_modules/s3rver is missing (scripts/setup installs s3rver)" >&2
    exit 1
fi
if ! command -v node >/dev/null 2>&1 ||
    ! "$PY" -c 'import botocore.auth' 2>/dev/null; then
    echo "$0: node or python3-botocore is missing (scripts/setup)" >&2
    exit 1
fi

# s3rver 3.7 makes its continuation tokens with DES, which OpenSSL 3
# keeps in its legacy provider.
s3_start() {
    node --openssl-legacy-provider "$S3RVER" -d "$T/s3data" -a 127.0.0.1 \
        -p "$s3_port" --configure-bucket archive --no-vhost-buckets \
        >>"$T/s3rver.log" 2>&1 &
    S3_PID=$!
    smtpd_track "$S3_PID"
    wait_listen "$s3_port" || fail "s3rver does not listen on $s3_port"
}

s3_setup() {
    set -- $(free_ports 2)
    s3_port=$1 px_port=$2
    mkdir -p "$T/s3data"
    s3_start
    "$PY" "$PROXY" "$px_port" "$s3_port" S3RVER S3RVER us-east-1 \
        "$T/proxy.log" 2>"$T/proxy.err" &
    smtpd_track $!
    wait_listen "$px_port" || fail "the SigV4 check does not listen"
    printf 'access_key_id = S3RVER\nsecret_access_key = S3RVER\n' >"$T/creds"
    chmod 600 "$T/creds"
}
