#!/bin/sh
# install - "make install" puts everything where the programs, the
# manual pages and the systemd unit say it is: the unit's ExecStart and
# ExecStartPre name the installed programs, its ReadWritePaths exist, the
# configuration the programs read by default is the installed one (and
# /etc/relaychain/relaychain.conf, as the manual says, unless the build
# has a --prefix other than /usr), and "relaychain check" accepts it and
# the installed example chain. A second install keeps an edited
# relaychain.conf; uninstall removes only what it installed.
. "$top_srcdir/tests/integration/lib.sh"

mkvar() {
    sed -n "s/^$1 = //p" "$top_builddir/Makefile" | head -n 1
}
D=$T/dest
make -s -C "$top_builddir" install DESTDIR="$D" >"$T/install.out" 2>&1 ||
    { cat "$T/install.out"; fail "make install"; finish; }

# The directories as the build expands them (prefix, exec_prefix...).
dirs=$(make -s -C "$top_builddir" --no-print-directory -f Makefile \
    -f - print-dirs <<'EOF'
print-dirs:
	@printf '%s\n' 'bindir=$(bindir)' 'sbindir=$(sbindir)' \
	    'sysconfdir=$(sysconfdir)' 'localstatedir=$(localstatedir)' \
	    'unitdir=$(systemdsystemunitdir)' 'docdir=$(docdir)' 'mandir=$(mandir)'
EOF
)
echo "installed with:"
echo "$dirs"
getdir() {
    echo "$dirs" | sed -n "s/^$1=//p"
}
bindir=$(getdir bindir)
sbindir=$(getdir sbindir)
sysconfdir=$(getdir sysconfdir)
localstatedir=$(getdir localstatedir)
unitdir=$(getdir unitdir)
docdir=$(getdir docdir)
mandir=$(getdir mandir)

conf=$sysconfdir/relaychain/relaychain.conf
check "relaychain.conf installed at $conf" test -f "$D$conf"
check "an empty chain.d beside it" test -d "$D$sysconfdir/relaychain/chain.d"
check "relaychaind in $sbindir" test -x "$D$sbindir/relaychaind"
check "relaychain in $bindir" test -x "$D$bindir/relaychain"
for m in man1/relaychain.1 man5/relaychain.conf.5 man8/relaychaind.8; do
    check "manual page $m" test -f "$D$mandir/$m"
done
check "example chain in $docdir/examples" \
    test -f "$D$docdir/examples/chain.d/10-rewrite.conf"
check "guides in $docdir" test -f "$D$docdir/postfix-milter.md"
check "spool $localstatedir/spool/relaychain, mode 0700" \
    sh -c "[ \"\$(stat -c %a '$D$localstatedir/spool/relaychain')\" = 700 ]"

# Without --prefix or with --prefix=/usr, the paths of the manual.
prefix=$(mkvar prefix)
if [ "$prefix" = /usr/local ] || [ "$prefix" = /usr ]; then
    check "sysconfdir is /etc for prefix $prefix" [ "$sysconfdir" = /etc ]
    check "the spool is /var/spool/relaychain" [ "$localstatedir" = /var ]
    check "relaychain.conf(5) names /etc/relaychain/relaychain.conf" \
        grep -q '^\.I /etc/relaychain/relaychain.conf' \
        "$top_srcdir/docs/relaychain.conf.5"
fi

# The programs' default is the installed file, and the queue default is
# the installed spool.
"$D$bindir/relaychain" check -h >"$T/help" 2>&1
check "relaychain check's default is $conf (got: $(grep default "$T/help"))" \
    grep -qF "(default $conf)" "$T/help"
"$D$sbindir/relaychaind" -h >"$T/dhelp" 2>&1
check "relaychaind's default is $conf" grep -qF "(default $conf)" "$T/dhelp"

# The installed configuration loads; its chain is empty until a stage is
# copied in. chain_directory is relative, so it follows the file.
"$D$bindir/relaychain" check -c "$D$conf" >"$T/check.out" 2>"$T/check.err"
rc=$?
check "check of the installed relaychain.conf exits 0 (got $rc: $(cat "$T/check.err"))" \
    [ "$rc" -eq 0 ]
check "it is a content filter on 127.0.0.1:10024" \
    grep -q '^  smtp_listen = 127.0.0.1:10024$' "$T/check.out"
check "the installed chain is empty" grep -q '^chain: 0 stages' "$T/check.out"
check "queue_directory defaults to the installed spool" \
    grep -qF "queue_directory = $localstatedir/spool/relaychain (default)" \
    "$T/check.out"
sed "s|^chain_directory = .*|chain_directory = $D$docdir/examples/chain.d|" \
    "$D$conf" >"$T/examples.conf"
"$D$bindir/relaychain" check -c "$T/examples.conf" >"$T/ex.out" 2>"$T/ex.err"
rc=$?
check "the installed example chain loads (got $rc: $(cat "$T/ex.err"))" [ "$rc" -eq 0 ]
check "the example chain has its three stages" grep -q '^chain: 3 stages' "$T/ex.out"

# The unit names what was installed.
unit=$D$unitdir/relaychaind.service
if [ -z "$unitdir" ]; then
    fail "no systemdsystemunitdir (configure --with-systemdsystemunitdir=no?)"
    finish
fi
check "relaychaind.service installed in $unitdir" test -f "$unit"
for key in ExecStartPre ExecStart; do
    cmd=$(sed -n "s/^$key=//p" "$unit" | cut -d' ' -f1)
    check "$key names an installed program ($cmd)" test -x "$D$cmd"
done
check "ExecStart is relaychaind -f with the installed file" \
    grep -qx "ExecStart=$sbindir/relaychaind -f -c $conf" "$unit"
check "ExecStartPre runs relaychain check on it" \
    grep -qx "ExecStartPre=$bindir/relaychain check -c $conf" "$unit"
rwp=$(sed -n 's/^ReadWritePaths=//p' "$unit")
check "ReadWritePaths is set" [ -n "$rwp" ]
for p in $rwp; do
    case $p in
    -*) # optional: the milter socket's directory in Postfix's spool
        check "optional path $p is Postfix's" \
            sh -c "case '$p' in -/var/spool/postfix/*) ;; *) exit 1 ;; esac" ;;
    *) check "ReadWritePaths entry $p exists after make install" test -d "$D$p" ;;
    esac
done

# systemd reads the unit without a complaint; the only lines allowed are
# about the programs, which are under DESTDIR, not installed.
if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify --man=no "$unit" >"$T/verify" 2>&1
    grep -v -e "Command $bindir/relaychain is not executable" \
        -e "Command $sbindir/relaychaind is not executable" \
        "$T/verify" >"$T/verify.rest"
    check "systemd-analyze verify: no complaint (got: $(cat "$T/verify.rest"))" \
        [ ! -s "$T/verify.rest" ]
else
    echo "note: no systemd-analyze; the unit's syntax is not checked"
fi

# make install as root, for real, on a throw-away copy of this system (an
# overlay over / in a private mount namespace; the host is not changed),
# after the README's adduser: the spool is the user's, the milter
# directory is made in Postfix's spool, and systemd-analyze finds every
# path of the unit.
if [ "$(id -u)" -eq 0 ] && [ "$localstatedir" = /var ] &&
    command -v unshare >/dev/null && unshare -m true 2>/dev/null &&
    getent group postfix >/dev/null && [ -d /var/spool/postfix ]; then
    O=$T/ov
    mkdir -p "$O/upper" "$O/work" "$O/root"
    cat >"$O/inside.sh" <<'INSIDE'
set -u
O=$1 B=$2 U=$3
M=$O/root
mount -t overlay overlay \
    -o "lowerdir=/,upperdir=$O/upper,workdir=$O/work" "$M" || exit 90
mount -t proc proc "$M/proc" && mount --rbind /dev "$M/dev" &&
    mount -t tmpfs tmpfs "$M/run" || exit 91
rm -rf "$M/var/spool/postfix/relaychain" "$M/var/spool/relaychain" \
    "$M/etc/relaychain"
chroot "$M" sh -c 'getent passwd relaychain >/dev/null ||
    adduser --system --group --no-create-home --home /var/spool/relaychain relaychain' \
    >"$O/adduser.out" 2>&1
# A build on a file system of its own is not in the overlay of /.
[ -f "$M$B/Makefile" ] || exit 90
chroot "$M" make -s -C "$B" install >"$O/install.out" 2>&1 || exit 92
chroot "$M" stat -c '%U:%G %a' /var/spool/relaychain >"$O/spool" 2>&1
chroot "$M" stat -c '%U:%G %a' /var/spool/postfix/relaychain >"$O/milterdir" 2>&1
chroot "$M" systemd-analyze verify --man=no "$U/relaychaind.service" \
    >"$O/verify" 2>&1
exit 0
INSIDE
    timeout 120 unshare -m --propagation private \
        sh "$O/inside.sh" "$O" "$top_builddir" "$unitdir" >"$O/inside.out" 2>&1
    rc=$?
    if [ "$rc" -eq 90 ]; then
        echo "note: no overlay of / with this build in it: make install as root is not tried"
    else
        check "make install as root ran (got $rc: $(cat "$O/inside.out" "$O/install.out" 2>/dev/null))" \
            [ "$rc" -eq 0 ]
        check "the spool is relaychain's, mode 0700 (got: $(cat "$O/spool"))" \
            grep -qx 'relaychain:relaychain 700' "$O/spool"
        check "the milter directory is relaychain:postfix 2750 (got: $(cat "$O/milterdir"))" \
            grep -qx 'relaychain:postfix 2750' "$O/milterdir"
        check "systemd-analyze verify of the installed unit is silent (got: $(cat "$O/verify"))" \
            [ ! -s "$O/verify" ]
    fi
else
    echo "note: not root, not a /var build, or no Postfix: make install as root is not tried"
fi

# An admin's edit survives a second install; uninstall keeps it.
echo "# edited" >>"$D$conf"
make -s -C "$top_builddir" install DESTDIR="$D" >"$T/install2.out" 2>&1 ||
    fail "second make install"
check "a second install keeps the edited relaychain.conf" \
    grep -q '^# edited$' "$D$conf"
make -s -C "$top_builddir" uninstall DESTDIR="$D" >"$T/uninstall.out" 2>&1 ||
    fail "make uninstall"
check "uninstall keeps the edited relaychain.conf" test -f "$D$conf"
check "uninstall removes the unit" test ! -e "$unit"
check "uninstall removes the programs" test ! -e "$D$sbindir/relaychaind"
check "uninstall removes the examples" \
    test ! -e "$D$docdir/examples/chain.d/10-rewrite.conf"
left=$(find "$D" -type f ! -path "$D$conf")
check "uninstall leaves no other file (left: $left)" [ -z "$left" ]
finish
