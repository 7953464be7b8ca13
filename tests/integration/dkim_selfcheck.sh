#!/bin/sh
# dkim_selfcheck - a broken signing path never lets a broken signature out
#
# tests/relaychain-faults is relaychain linked with a registry that lends
# the stages a fault hook (tests/unit/faultregistry.c): RELAYCHAIN_DKIM_FAULT=body or
# =header corrupts the bytes the signer hashes, not the message. The
# self-check, verifying the final bytes with the public key, must turn that
# into a tempfail (exit 3, 451 4.7.5) whose log line names the hash that
# failed, with nothing written: with the stage's own verifier and with
# libopendkim's (self_check = libopendkim). The installed relaychain has no such hook:
# the variable changes nothing there.
. "$top_srcdir/tests/integration/lib.sh"

FAULTS=$top_builddir/tests/relaychain-faults
PY=/usr/bin/python3
if [ ! -x "$FAULTS" ]; then
    fail "$FAULTS is missing (make check builds it)"
    finish
fi

mkdir -p "$T/chain.d/keys"
for a in rsa ed25519; do
    "$RC" dkim keygen -a $a -d example.com -s $a -D "$T/chain.d/keys" >/dev/null 2>&1 ||
        fail "keygen $a"
done
printf 'chain_directory = chain.d\n' >"$T/relaychain.conf"
dkim_conf() {
    cat >"$T/chain.d/90-dkim.conf" <<CONF
stage = dkim
key_table = keys/keytable
signing_table = keys/signingtable
self_check = $1
# on_error cannot let a failed self-check through: it is a verdict
on_error = continue
CONF
}
printf 'rsa example.com:rsa:rsa.private\ned example.com:ed25519:ed25519.private\n' \
    >"$T/chain.d/keys/keytable"
printf 'example.com rsa\nexample.com ed\n' >"$T/chain.d/keys/signingtable"
printf 'From: Alice <alice@example.com>\nTo: bob@example.net\nSubject: hi\n\nHello.\n' >"$T/in.eml"

for v in builtin libopendkim; do
    dkim_conf $v
    for fault in body header; do
        RELAYCHAIN_DKIM_FAULT=$fault "$FAULTS" filter -c "$T/relaychain.conf" \
            --qid 4B2C9D0E11 -v <"$T/in.eml" >"$T/$fault.out" 2>"$T/$fault.err"; rc=$?
        check "$v, $fault: tempfail, exit 3 (got $rc)" [ "$rc" -eq 3 ]
        check "$v, $fault: 451 4.7.5 (got: $(cat "$T/$fault.err"))" grep -q "451 4.7.5" "$T/$fault.err"
        check "$v, $fault: log names the $fault hash ($(cat "$T/$fault.err"))" grep -q \
            "4B2C9D0E11: dkim: tempfail, self-check failed: $fault hash, d=example.com, s=rsa, [0-9]*ms$" "$T/$fault.err"
        check "$v, $fault: nothing written" [ ! -s "$T/$fault.out" ]
    done

    # The same program without the variable signs, and the result verifies.
    "$FAULTS" filter -c "$T/relaychain.conf" <"$T/in.eml" >"$T/good.eml" 2>"$T/good.err"; rc=$?
    check "$v, no fault: exit 0 (got $rc)" [ "$rc" -eq 0 ]
    check "$v, no fault: verifies" $PY "$top_srcdir/tests/integration/dkim_verify.py" \
        "$T/chain.d/keys/rsa.txt" "$T/chain.d/keys/ed25519.txt" -- "$T/good.eml"
done

# The installed program has no hook.
RELAYCHAIN_DKIM_FAULT=body "$RC" filter -c "$T/relaychain.conf" <"$T/in.eml" >"$T/prod.eml" 2>&1; rc=$?
check "relaychain ignores the variable (exit $rc)" [ "$rc" -eq 0 ]
check "relaychain has no fault hook" sh -c '! grep -q RELAYCHAIN_DKIM_FAULT "$1"' - "$RC"
check "relaychain-faults has it" grep -q RELAYCHAIN_DKIM_FAULT "$FAULTS"

finish
