#!/bin/sh
# config_doc - every key is documented, and relaychain.conf(5) agrees with
# the option tables the parser uses:
#
#   1. "relaychain config --man" leaves the checked-in page unchanged: a
#      key without an entry, a changed type, range or default, or a
#      heading for a key that is gone would change it ("make man" does,
#      and the diff is printed here)
#   2. the generator really catches those: a page with one entry removed
#      gets it back from the help text; a stale heading is refused with
#      page:line; a key documented twice is refused
#   3. relaychain config prints what postconf would: effective values,
#      -n the ones set, -d the defaults, of the main file or of a stage
#      type, and refuses an unknown key
#   4. the page renders without groff warnings, and relaychain(1) names
#      every command relaychain has
. "$top_srcdir/tests/integration/lib.sh"

PAGE="$top_srcdir/docs/relaychain.conf.5"

# ------------------------------------------------------------- 1. in step
# The page documents the defaults of the standard install (/var/spool);
# a build configured with another prefix (make distcheck) has its own.
"$RC" config --man "$PAGE" >"$T/new.5" 2>"$T/man.err"
rc=$?
check "config --man exits 0 (got $rc: $(cat "$T/man.err"))" [ "$rc" -eq 0 ]
if [ "$("$RC" config -d queue_directory)" != "queue_directory = /var/spool/relaychain" ]; then
    echo "$0: built with a prefix whose spool is not /var/spool: the page's defaults are not compared"
elif ! diff -u "$PAGE" "$T/new.5" >"$T/man.diff"; then
    fail "docs/relaychain.conf.5 is not in step with the option tables: run \"make man\" in the build directory, write the prose of new entries and commit; the diff:"
    cat "$T/man.diff" >&2
fi

# Every key of every table has an entry: -d lists them all.
"$RC" config -d | sed 's/ =.*//' >"$T/keys.main"
for k in $(cat "$T/keys.main"); do
    grep -q "^\.BR* $k\( \|$\)" "$PAGE" || fail "main key $k has no entry in relaychain.conf(5)"
done
for t in rewrite disclaimer dkim antivirus antispam; do
    check "config -d -t $t exits 0" sh -c "'$RC' config -d -t $t >'$T/keys.$t'"
    for k in $(sed 's/ =.*//' "$T/keys.$t"); do
        grep -q "^\.BR* $k\( \|$\)" "$PAGE" || fail "key $k of stage $t has no entry in relaychain.conf(5)"
    done
done
n=$(grep -c . "$T/keys.main")
check "the main file has more than 50 keys (got $n)" [ "$n" -gt 50 ]
for k in smtp_listen next_hop delivery user mynetworks relay_domains \
    tls_cert_file auth_password_file recipient_limit; do
    check "$k has its own entry" grep -q "^\.BR $k \" (" "$PAGE"
done

# ------------------------------------------- 2. the generator catches drift
# A key whose entry is missing gets one made from its help text.
awk '/^\.BR recipient_limit /{skip=1; next} skip && /^\.TP/{skip=0} !skip' \
    "$PAGE" | sed '$!N;/^\.TP\n\.TP$/!P;D' >"$T/missing.5"
grep -q "^\.BR recipient_limit" "$T/missing.5" && fail "the test page still has recipient_limit"
"$RC" config --man "$T/missing.5" >"$T/missing.out"
check "a missing key gets an entry" grep -q '^\.BR recipient_limit " (number, 1 to 100000; default: " 1000 )' "$T/missing.out"
check "made from its help text" grep -q "^Recipients per message; more get 452 4.5.3.$" "$T/missing.out"
check "so the page differs, and the test above would fail" \
    sh -c "! cmp -s '$T/missing.5' '$T/missing.out'"

# A stale heading: wrong default, or a key that is no more.
sed 's/^\.BR header_limit .*/.BR header_limit " (number; default: " 5 )/' "$PAGE" >"$T/stale.5"
"$RC" config --man "$T/stale.5" >"$T/stale.out"
check "a stale default is regenerated" grep -q '^\.BR header_limit " (number, 1 to 100000; default: " 1000 )' "$T/stale.out"
sed 's/^\.BR header_limit /.BR header_limits /' "$PAGE" >"$T/gone.5"
"$RC" config --man "$T/gone.5" >/dev/null 2>"$T/gone.err"
rc=$?
line=$(grep -n '^\.BR header_limits ' "$T/gone.5" | cut -d: -f1)
check "a heading for no key: exit 1 (got $rc)" [ "$rc" -eq 1 ]
check "it names page:line and the key ($(cat "$T/gone.err"))" \
    grep -q "gone.5:$line: a heading for header_limits, which is no key" "$T/gone.err"
awk '{print} /^\.SH MAIN SETTINGS/{print ".TP"; print ".B header_limit"; print "Twice."}' \
    "$PAGE" >"$T/twice.5"
"$RC" config --man "$T/twice.5" >/dev/null 2>"$T/twice.err"
check "a key documented twice is refused ($(cat "$T/twice.err"))" \
    grep -q "key header_limit is documented twice" "$T/twice.err"

# ------------------------------------------------------ 3. relaychain config
mkdir -p "$T/chain.d"
cat >"$T/rc.conf" <<CONF
chain_directory = chain.d
recipient_limit = 50
mynetworks = 10.0.0.0/8
CONF
"$RC" config -c "$T/rc.conf" >"$T/all.out"
check "config: every key, effective values" sh -c "[ $(grep -c . "$T/all.out") -eq $n ]"
check "config: a set value" grep -qx "recipient_limit = 50" "$T/all.out"
check "config: a default value, unmarked" grep -qx "header_limit = 1000" "$T/all.out"
check "config: an unset key" grep -qx "next_hop =" "$T/all.out"
"$RC" config -n -c "$T/rc.conf" >"$T/set.out"
check "config -n: only the three keys set ($(cat "$T/set.out" | tr '\n' ' '))" \
    sh -c "[ $(grep -c . "$T/set.out") -eq 3 ] && grep -qx 'mynetworks = 10.0.0.0/8' '$T/set.out'"
"$RC" config -c "$T/rc.conf" recipient_limit header_limit >"$T/two.out"
check "config KEY...: those keys" sh -c "[ \"\$(cat '$T/two.out')\" = 'header_limit = 1000
recipient_limit = 50' ]"
check "config -d: the built-in default" sh -c "'$RC' config -d mynetworks | grep -qx 'mynetworks = 127.0.0.0/8 \[::1\]/128'"
check "config -d -t antivirus: a stage default" sh -c "'$RC' config -d -t antivirus engine | grep -qx 'engine = libclamav'"
"$RC" config -c "$T/rc.conf" recipient_limt >/dev/null 2>"$T/typo.err"
rc=$?
check "config: an unknown key exits 1 (got $rc)" [ "$rc" -eq 1 ]
check "config: and is named" grep -q "unknown key 'recipient_limt'" "$T/typo.err"
printf 'recipient_limit = lots\n' >"$T/bad.conf"
"$RC" config -c "$T/bad.conf" >/dev/null 2>"$T/bad.err"
check "config: a bad value is refused with file:line" grep -q "bad.conf:1: recipient_limit:" "$T/bad.err"
printf 'stage = antivirus\nengine = clamd\n' >"$T/av.conf"
check "config -t TYPE -c STAGEFILE -n" sh -c "'$RC' config -t antivirus -n -c '$T/av.conf' | grep -qx 'engine = clamd'"

# ------------------------------------------------------------ 4. man pages
if command -v groff >/dev/null 2>&1; then
    groff -man -ww -z "$PAGE" >"$T/groff.err" 2>&1
    check "relaychain.conf(5) renders without warnings ($(head -n 3 "$T/groff.err"))" \
        sh -c "[ ! -s '$T/groff.err' ]"
    groff -man -ww -z "$top_srcdir/docs/relaychain.1" >"$T/groff1.err" 2>&1
    check "relaychain(1) renders without warnings ($(head -n 3 "$T/groff1.err"))" \
        sh -c "[ ! -s '$T/groff1.err' ]"
fi
"$RC" --help | sed -n 's/^  \([a-z-]*\)  .*/\1/p' >"$T/commands"
check "relaychain --help lists commands" [ -s "$T/commands" ]
for c in $(cat "$T/commands"); do
    h=".SS $(printf '%s' "$c" | sed 's/-/\\-/g')"
    check "relaychain(1) documents relaychain $c ($h)" \
        env H="$h" awk 'BEGIN { h = ENVIRON["H"] }
            $0 == h || index($0, h " ") == 1 { f = 1 } END { exit !f }' \
        "$top_srcdir/docs/relaychain.1"
done
finish
