#!/bin/sh
# cli_planted_links - the root commands never follow what the spool's
# owner planted there
#
# relaychain queue and relaychain quarantine run as root in directories
# the daemon's user (here nobody) can write. That user plants, in queue/,
# hold/ and the quarantine, entries named like queue IDs that are
# symbolic links to a file outside the spool, FIFOs, a symbolic link in
# place of hold/, of the trigger FIFO and of the quarantine directory
# itself. Every command runs under timeout(1) (a FIFO must not hang it)
# and must: not print the outside file, not change or remove it, name the
# refused entry, and leave the planted entries where they are. IDs with
# "../" are refused before any file is touched. A link to the spool that
# root made is still followed.
. "$top_srcdir/tests/integration/lib.sh"

LC_ALL=C
export LC_ALL
if [ "$(id -u)" -ne 0 ]; then
    echo "$0: run as root: the commands are root's, the planter is nobody"
    exit 77
fi
chmod 755 "$T"
as_nobody() {
    setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"
}

S="$T/spool" Q="$T/quarantine" O="$T/outside"
mkdir -p "$S/queue" "$S/hold" "$S/corrupt" "$S/defer" "$S/tmp" "$Q" "$O" \
    "$T/chain.d"
# shaped like a quarantine file, so that a command that reads it shows it
printf 'Envelope-From: root@example\n\nSECRET-CONTENT outside the spool\n' \
    >"$O/secret"
chmod 644 "$O/secret"
cp "$O/secret" "$T/secret.orig"
chown -R nobody:nogroup "$S" "$Q"
cat >"$T/rc.conf" <<EOF
chain_directory = $T/chain.d
queue_directory = $S
quarantine_directory = $Q
next_hop = maildir:$T/Maildir
EOF
mkdir -p "$T/Maildir"

# What nobody plants: links to the secret, FIFOs.
as_nobody ln -s "$O/secret" "$S/queue/AAAALINK01"
as_nobody mkfifo "$S/queue/AAAAFIFO01"
as_nobody ln -s "$O/secret" "$S/hold/AAAALINK02"
as_nobody ln -s "$O/secret" "$S/defer/AAAALINK01"
as_nobody ln -s "$O/secret" "$Q/QLINK01"
as_nobody mkfifo "$Q/QFIFO01"
# A hard link needs fs.protected_hardlinks off to be made by nobody;
# root makes it here, to stand for such a system.
ln "$O/secret" "$Q/QHARD01"
as_nobody ln -s "$O/secret" "$S/trigger"

# run NAME ARGS... - relaychain ARGS, bounded; output in $T/NAME.out,
# status in $T/NAME.rc
run() {
    name=$1
    shift
    timeout 20 "$RC" "$@" >"$T/$name.out" 2>&1
    echo $? >"$T/$name.rc"
}
rc_of() {
    cat "$T/$1.rc"
}
no_secret() {
    ! grep -q SECRET-CONTENT "$T/$1.out"
}
said() {
    grep -qF -- "$2" "$T/$1.out"
}

run list queue -c "$T/rc.conf" list
check "queue list: ends (no hang on the FIFO)" [ "$(rc_of list)" -ne 124 ]
check "queue list: the link is refused by name" \
    said list "$S/queue/AAAALINK01: not a regular file"
check "queue list: the FIFO is refused by name" \
    said list "$S/queue/AAAAFIFO01: not a regular file"
check "queue list: the secret is not shown" no_secret list

for id in AAAALINK01 AAAAFIFO01 AAAALINK02; do
    run "show-$id" queue -c "$T/rc.conf" show "$id"
    check "queue show $id: fails, in time" \
        sh -c "[ $(rc_of "show-$id") -ne 0 ] && [ $(rc_of "show-$id") -ne 124 ]"
    check "queue show $id: refused by name" said "show-$id" "/$id: not a regular file"
    check "queue show $id: the secret is not shown" no_secret "show-$id"
done

run delete queue -c "$T/rc.conf" delete ALL
check "queue delete ALL: ends, fails" \
    sh -c "[ $(rc_of delete) -ne 0 ] && [ $(rc_of delete) -ne 124 ]"
check "queue delete ALL: the link is refused" \
    said delete "$S/queue/AAAALINK01: not a regular file"
run hold queue -c "$T/rc.conf" hold ALL
check "queue hold ALL: ends" [ "$(rc_of hold)" -ne 124 ]
check "queue hold ALL: nothing moved" \
    sh -c "[ -L '$S/queue/AAAALINK01' ] && [ -p '$S/queue/AAAAFIFO01' ] && [ ! -e '$S/hold/AAAAFIFO01' ]"
run release queue -c "$T/rc.conf" release AAAALINK02
check "queue release of a link: refused by name, not moved" \
    sh -c "[ $(rc_of release) -ne 0 ] && grep -qF '$S/hold/AAAALINK02: not a regular file' '$T/release.out' && [ -L '$S/hold/AAAALINK02' ]"
run requeue queue -c "$T/rc.conf" requeue ALL
check "queue requeue ALL: the link stays in hold/" [ -L "$S/hold/AAAALINK02" ]
run flush queue -c "$T/rc.conf" flush AAAALINK01
check "queue flush of a link: no such message" \
    sh -c "[ $(rc_of flush) -ne 0 ] && grep -q 'AAAALINK01: no such message' '$T/flush.out'"

# The trigger is a link: nothing is written through it.
run trig queue -c "$T/rc.conf" flush
check "queue flush: the trigger link is refused by name" \
    said trig "$S/trigger: not a FIFO: refused"

run traversal queue -c "$T/rc.conf" show ../outside/secret
check "queue show ../: not a queue ID" \
    sh -c "[ $(rc_of traversal) -ne 0 ] && grep -qF \"'../outside/secret' is not a queue ID\" '$T/traversal.out'"
check "queue show ../: the secret is not shown" no_secret traversal
run traversal2 queue -c "$T/rc.conf" delete ../outside/secret
check "queue delete ../: not a queue ID" said traversal2 "is not a queue ID"

# hold/ itself replaced by nobody with a link to a directory outside
mkdir -p "$O/dir"
as_nobody mv "$S/hold" "$S/hold.old"
as_nobody ln -s "$O/dir" "$S/hold"
run holddir queue -c "$T/rc.conf" list
check "queue list with hold/ a link: refused by name" \
    sh -c "[ $(rc_of holddir) -ne 0 ] && grep -qF '$S/hold: not a directory (a symbolic link?): refused' '$T/holddir.out'"
as_nobody rm "$S/hold"
as_nobody mv "$S/hold.old" "$S/hold"

# ---------------------------------------------------------------- quarantine
run qlist quarantine -c "$T/rc.conf" list
check "quarantine list: ends (no hang on the FIFO)" [ "$(rc_of qlist)" -ne 124 ]
check "quarantine list: the link is refused by name" \
    said qlist "$Q/QLINK01: not a regular file"
check "quarantine list: the FIFO is refused by name" \
    said qlist "$Q/QFIFO01: not a regular file"
check "quarantine list: the hard link is refused by name" \
    said qlist "$Q/QHARD01: has 2 names"
check "quarantine list: the secret is not shown" no_secret qlist
run qshow-hard quarantine -c "$T/rc.conf" show QHARD01
check "quarantine show of a hard link: refused, the secret not shown" \
    sh -c "[ $(rc_of qshow-hard) -ne 0 ] && ! grep -q SECRET-CONTENT '$T/qshow-hard.out'"
for cmd in show release delete; do
    for id in QLINK01 QFIFO01; do
        run "q$cmd-$id" quarantine -c "$T/rc.conf" "$cmd" "$id"
        check "quarantine $cmd $id: fails, in time" \
            sh -c "[ $(rc_of "q$cmd-$id") -ne 0 ] && [ $(rc_of "q$cmd-$id") -ne 124 ]"
        check "quarantine $cmd $id: refused by name" \
            said "q$cmd-$id" "$Q/$id: not a regular file"
        check "quarantine $cmd $id: the secret is not shown" no_secret "q$cmd-$id"
    done
done
check "quarantine release: nothing delivered" \
    [ -z "$(ls -A "$T/Maildir/new")" ]
# a message quarantined as the daemon writes it still works
printf 'Envelope-From: a@example.org\nEnvelope-To: b@example.net\nClient: 127.0.0.1\nHelo: client\nArrival: 1700000000\nReason: test\n\nSubject: held\n\nheld body\n' >"$Q/QGOOD01"
chown nobody:nogroup "$Q/QGOOD01"
chmod 600 "$Q/QGOOD01"
run qshow quarantine -c "$T/rc.conf" show QGOOD01
check "quarantine show of a real file: shown" \
    sh -c "[ $(rc_of qshow) -eq 0 ] && grep -qx 'held body' '$T/qshow.out'"
run qrelease quarantine -c "$T/rc.conf" release QGOOD01
check "quarantine release of a real file: delivered, removed" \
    sh -c "[ $(rc_of qrelease) -eq 0 ] && grep -lqx 'held body' '$T'/Maildir/new/* && [ ! -e '$Q/QGOOD01' ]"
check "quarantine: the planted entries are still there" \
    sh -c "[ -L '$Q/QLINK01' ] && [ -p '$Q/QFIFO01' ]"
run qtraversal quarantine -c "$T/rc.conf" show ../outside/secret
check "quarantine show ../: refused" \
    sh -c "[ $(rc_of qtraversal) -ne 0 ] && grep -q 'needs one message ID' '$T/qtraversal.out'"
check "quarantine show ../: the secret is not shown" no_secret qtraversal

# the quarantine directory itself replaced by nobody's link
as_nobody mkdir "$S/q"
as_nobody ln -s "$O/dir" "$S/q/quarantine"
sed -i "s|^quarantine_directory = .*|quarantine_directory = $S/q/quarantine|" \
    "$T/rc.conf"
run qdir quarantine -c "$T/rc.conf" list
check "quarantine_directory through nobody's link: refused by name" \
    sh -c "[ $(rc_of qdir) -ne 0 ] && grep -qF 'quarantine is a symbolic link owned by uid 65534, not root: refused' '$T/qdir.out'"
# root's own link is followed
ln -s "$Q" "$T/rootlink"
sed -i "s|^quarantine_directory = .*|quarantine_directory = $T/rootlink|" \
    "$T/rc.conf"
run qroot quarantine -c "$T/rc.conf" list
check "quarantine_directory through root's link: listed" \
    sh -c "[ $(rc_of qroot) -eq 0 ] && grep -q 'in quarantine' '$T/qroot.out'"

check "the outside file is unchanged and still there" \
    cmp -s "$O/secret" "$T/secret.orig"
check "nothing was written into the outside directory" \
    [ -z "$(ls -A "$O/dir")" ]

if [ "$failures" -gt 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    for f in "$T"/*.out; do
        echo "=== $f"
        cat "$f"
    done
fi
finish
