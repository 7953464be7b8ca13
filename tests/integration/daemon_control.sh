#!/bin/sh
# daemon_control - "relaychain reload" and "relaychain status" over the
# control socket, with the daemon running as an unprivileged user
#
# relaychaind runs as nobody with a DKIM stage:
#   1. a key made by "relaychain dkim keygen" as root without -u (mode
#      0600, owner root) stops the start, and the error names the key
#      file and the chain.d line; "keygen -u nobody" makes one it reads;
#   2. "relaychain reload" answers ok (exit 0) with the configuration
#      and the chain, and the daemon logs that it came from the control
#      socket;
#   3. a reload that fails -- the key given back to root, an unknown key
#      in relaychain.conf -- exits 1 and prints the file:line and reason;
#      one that changes a key only a restart applies says so;
#      the running configuration keeps relaying and signing; "relaychain
#      status" repeats the failure as the last reload, and after a good
#      reload says ok again;
#   4. the socket is the daemon user's, mode 0600; another user is
#      refused; a line over 64 octets and an unknown command get an
#      error line; a client that says nothing does not hold up status; a second daemon on the same control_socket refuses to
#      start while the first answers; after kill -9 the stale socket is
#      replaced at the next start;
#   5. with no daemon, status says "not running" and exits 1, and reload
#      exits 1.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 3)
port=$1 sink_port=$2 port2=$3
chain=$T/chain.d
ctl=$T/run/control
mkdir -p "$chain/dkim"
chmod 755 "$chain" "$chain/dkim"
cat >"$chain/90-dkim.conf" <<'EOF'
stage = dkim
domain = example.com
selector = sel1
key_file = dkim/sel1.private
EOF
"$RC" dkim keygen -d example.com -s sel1 -D "$chain/dkim" >/dev/null \
    2>"$T/keygen-root.err"
check "keygen as root without -u says the key belongs to root" \
    grep -q 'belongs to root.*-u USER' "$T/keygen-root.err"

sink_start sink "$sink_port"
rcd_conf "$T/r.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF
chain_directory = $chain
user = nobody
control_socket = $ctl
EOF
# The daemon's user must be able to keep quarantined mail.
install -d -o nobody -m 700 "$T/quarantine"

# 1. A key only root can read stops the start, naming it.
timeout 20 "$RCD" -f -c "$T/r.conf" >"$T/start1.out" 2>&1
rc=$?
check "a root-only key: relaychaind does not start (exit $rc)" [ "$rc" -eq 1 ]
check "a root-only key: the error names the chain.d line and the key" \
    grep -q "90-dkim.conf:4: key_file: $chain/dkim/sel1.private: .*Permission denied" \
    "$T/start1.out"
rm -f "$chain/dkim/sel1.private" "$chain/dkim/sel1.txt"
"$RC" dkim keygen -d example.com -s sel1 -D "$chain/dkim" -u nobody \
    >/dev/null 2>"$T/keygen.err"
check "keygen -u nobody: the key belongs to nobody, mode 0600" \
    sh -c "[ \"\$(stat -c '%U %a' '$chain/dkim/sel1.private')\" = 'nobody 600' ]"
rcd_start rcd "$T/r.conf" "$port" || finish
pid=$RCD_PID
check "the daemon runs as nobody" \
    sh -c "[ \"\$(ps -o user= -p $pid)\" = nobody ]"
check "the control socket is nobody's, mode 0600" \
    sh -c "[ \"\$(stat -c '%U %a' '$ctl')\" = 'nobody 600' ]"

send() {
    timeout 60 swaks --server "127.0.0.1:$port" --helo client.test.example \
        --from alice@example.com --to bob@example.org \
        --header "Subject: $1" >"$T/$1.out" 2>&1
}

# 2. A reload that works.
"$RC" reload -c "$T/r.conf" >"$T/reload1.out" 2>&1
rc=$?
check "reload: exit 0 ($rc)" [ "$rc" -eq 0 ]
check "reload: prints the configuration and the chain" \
    grep -q "^relaychain: reload: configuration $T/r.conf, chain of 1 stage(s)\$" \
    "$T/reload1.out"
check "reload: the log says who asked" \
    grep -q 'reload requested on the control socket (uid 0)' "$T/rcd.log"

# 3. Reloads that fail, each with its file:line.
chown root "$chain/dkim/sel1.private"
"$RC" reload -c "$T/r.conf" >"$T/reload2.out" 2>&1
rc=$?
check "reload with a root-only key: exit 1 ($rc)" [ "$rc" -eq 1 ]
check "reload with a root-only key: the file:line and the reason" \
    grep -q "^relaychain: reload failed: $chain/90-dkim.conf:4: key_file: .*Permission denied" \
    "$T/reload2.out"
"$RC" status -c "$T/r.conf" >"$T/status2.out" 2>&1
check "status repeats the failed reload" \
    grep -q "^last reload: .* UTC, failed: $chain/90-dkim.conf:4: key_file: " \
    "$T/status2.out"
send after-failed
check "after the failed reload the running chain still signs" \
    wait_grep 'dkim: continue, signed, d=example.com, s=sel1' "$T/rcd.log" 10
chown nobody "$chain/dkim/sel1.private"
echo "no_such_key = 1" >>"$T/r.conf"
line=$(wc -l <"$T/r.conf")
"$RC" reload -c "$T/r.conf" >"$T/reload3.out" 2>&1
rc=$?
check "reload with an unknown key: exit 1 ($rc)" [ "$rc" -eq 1 ]
check "reload with an unknown key: the file:line" \
    grep -q "^relaychain: reload failed: $T/r.conf:$line: unknown key 'no_such_key'" \
    "$T/reload3.out"
sed -i '/^no_such_key/d' "$T/r.conf"
"$RC" reload -c "$T/r.conf" >"$T/reload4.out" 2>&1
check "a good reload after failed ones: exit 0" [ $? -eq 0 ]
# A key only a restart applies: the reload says so, and keeps going.
cp "$T/r.conf" "$T/r.conf.keep"
sed -i -e "s/^smtp_listen = .*/smtp_listen = 127.0.0.1:$port2/" "$T/r.conf"
"$RC" reload -c "$T/r.conf" >"$T/reload5.out" 2>&1
rc=$?
check "a reload that changes smtp_listen: exit 0 ($rc)" [ "$rc" -eq 0 ]
check "a reload that changes smtp_listen says a restart applies it" \
    grep -q '; smtp_listen changed: restart relaychaind to use it$' "$T/reload5.out"
cp "$T/r.conf.keep" "$T/r.conf"
"$RC" reload -c "$T/r.conf" >/dev/null 2>&1
"$RC" status -c "$T/r.conf" >"$T/status4.out" 2>&1
rc=$?
check "status: exit 0 while running ($rc)" [ "$rc" -eq 0 ]
check "status: the last reload is ok again" \
    grep -q '^last reload: .* UTC, ok: configuration ' "$T/status4.out"
check "status: the configuration file" \
    grep -q "^configuration: $T/r.conf\$" "$T/status4.out"
check "status: the chain" grep -q '^chain: 1 stage: dkim$' "$T/status4.out"

# 4. Who may ask, and what they may send.
check "a user other than root and nobody is refused" \
    sh -c "! su -s /bin/sh daemon -c '\"$RC\" status -c \"$T/r.conf\"' >'$T/other.out' 2>&1"
check "the refusal says why" grep -q 'Permission denied' "$T/other.out"
"$PY" - "$ctl" >"$T/raw.out" 2>&1 <<'EOF'
import socket, sys
for cmd in [b"x" * 100 + b"\n", b"shutdown\n", b"status"]:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(sys.argv[1])
    s.sendall(cmd)
    if not cmd.endswith(b"\n"):
        s.shutdown(socket.SHUT_WR)
    print(s.makefile("rb").read().decode().splitlines()[0])
    s.close()
EOF
check "a line over 64 octets is answered with an error" \
    sh -c "sed -n 1p '$T/raw.out' | grep -q '^error: one command line of at most 64 octets'"
check "an unknown command is answered with an error" \
    sh -c "sed -n 2p '$T/raw.out' | grep -q '^error: unknown command (status, reload)\$'"
check "a command without its line end is refused" \
    sh -c "sed -n 3p '$T/raw.out' | grep -q '^error: '"
# A client that connects and says nothing holds only its own thread:
# status answers meanwhile, well within the 5 s the silent one is given.
"$PY" - "$ctl" "$RC" "$T/r.conf" >"$T/stall.out" 2>&1 <<'EOF'
import socket, subprocess, sys, time
silent = socket.socket(socket.AF_UNIX)
silent.connect(sys.argv[1])
time.sleep(0.2)
t0 = time.monotonic()
out = subprocess.run([sys.argv[2], "status", "-c", sys.argv[3]],
                     capture_output=True, timeout=30).stdout.decode()
took = time.monotonic() - t0
print("status took %.2f s: %s" % (took, out.splitlines()[0] if out else ""))
t0 = time.monotonic()
silent.settimeout(20)
reply = silent.makefile("rb").read().decode()
print("silent client answered after %.1f s: %s" % (
    time.monotonic() - t0, reply.strip()))
sys.exit(0 if took < 2 and out.startswith("status: running") else 1)
EOF
rc=$?
check "status answers while a silent client holds the socket ($(head -n 1 "$T/stall.out"))" \
    [ "$rc" -eq 0 ]
check "the silent client is answered with an error at its deadline" \
    grep -q 'silent client answered after .*: error: one command line' "$T/stall.out"
sed -e "s/^smtp_listen = .*/smtp_listen = 127.0.0.1:$port2/" "$T/r.conf" \
    >"$T/second.conf"
timeout 30 "$RCD" -f -c "$T/second.conf" >"$T/second.out" 2>&1
rc=$?
check "a second daemon on the same control_socket does not start ($rc)" [ "$rc" -eq 1 ]
check "the second daemon says another one answers there" \
    grep -q "control_socket.*another relaychaind answers there" "$T/second.out"
check "the first daemon still answers" "$RC" status -c "$T/r.conf" >/dev/null
kill -KILL "$pid"
wait "$pid" 2>/dev/null
check "after kill -9 the stale socket is left" [ -S "$ctl" ]
"$RC" status -c "$T/r.conf" >"$T/stale.out" 2>&1
rc=$?
check "status with a stale socket: not running, exit 1 ($rc)" [ "$rc" -eq 1 ]
check "status with a stale socket says not running" \
    grep -q "^relaychain: relaychaind is not running (nothing answers on $ctl)\$" \
    "$T/stale.out"
rcd_start rcd2 "$T/r.conf" "$port" || finish
check "a restart replaces the stale socket" "$RC" status -c "$T/r.conf" >/dev/null
kill -TERM "$RCD_PID"
wait "$RCD_PID"

# 5. Nothing running.
"$RC" status -c "$T/r.conf" >"$T/down.out" 2>&1
rc=$?
check "status without a daemon: exit 1 ($rc)" [ "$rc" -eq 1 ]
check "status without a daemon says not running" \
    grep -q '^relaychain: relaychaind is not running' "$T/down.out"
"$RC" reload -c "$T/r.conf" >"$T/down-reload.out" 2>&1
rc=$?
check "reload without a daemon: exit 1 ($rc)" [ "$rc" -eq 1 ]
rcd_clean_log rcd

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    tail -n 30 "$T/rcd.log"
    for f in start1 reload1 reload2 reload3 reload5 status2 status4 raw stall \
        second stale other; do
        echo "--- $f"
        cat "$T/$f.out"
    done
fi
finish
