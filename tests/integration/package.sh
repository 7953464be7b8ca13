#!/bin/sh
# package - scripts/deb makes a Debian package that lintian passes without
# an error, with the programs, manual pages, the example chain in
# /usr/share/doc, the systemd unit and /etc/relaychain as conffiles;
# unpacked in a scratch root (dpkg -x) its own "relaychain check" accepts
# the shipped configuration and the shipped examples.
#
# Then, when this runs as root with unshare(1) and overlayfs, the package
# is installed for real with dpkg into a throw-away copy of this system
# (an overlay over /, in a private mount namespace; the host is not
# changed): postinst must create the system user and give it the spool,
# "relaychain check" must pass as that user (as the unit's ExecStartPre
# runs it), and purge must remove what the package made, except a spool
# that still holds mail.
#
# Skipped (77) in a sanitizer build (an AddressSanitizer program is no
# package to install; scripts/deb refuses it) and in a build configured
# with another --prefix, such as make distcheck's (the programs then have
# that prefix compiled in, not /etc/relaychain).
. "$top_srcdir/tests/integration/lib.sh"

mkvar() {
    sed -n "s/^$1 = //p" "$top_builddir/Makefile" | head -n 1
}
if [ -n "$(mkvar SAN_CFLAGS)" ]; then
    echo "SKIP: a sanitizer build is not packaged (scripts/deb refuses it)"
    exit 77
fi
if [ "$(mkvar sysconfdir)" != /etc ] || [ "$(mkvar localstatedir)" != /var ]; then
    echo "SKIP: built for sysconfdir $(mkvar sysconfdir); a package needs /etc"
    exit 77
fi
for p in dpkg-deb dpkg-shlibdeps lintian; do
    if ! command -v "$p" >/dev/null; then
        fail "$p is missing (scripts/setup installs it)"
        finish
    fi
done

"$top_srcdir/scripts/deb" -b "$top_builddir" -o "$T" >"$T/deb.out" 2>"$T/deb.err" ||
    { cat "$T/deb.err"; fail "scripts/deb"; finish; }
deb=$(cat "$T/deb.out")
check "scripts/deb names the package it made ($deb)" test -f "$deb"

dpkg-deb -f "$deb" Package Depends >"$T/fields"
check "package name relaychain" grep -qx 'Package: relaychain' "$T/fields"
check "depends on adduser (postinst makes the user)" \
    grep -q '^Depends: .*adduser' "$T/fields"
check "depends on the libraries it links (libmilter)" \
    grep -q '^Depends: .*libmilter' "$T/fields"
dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles >"$T/conffiles"
check "relaychain.conf is a conffile" \
    grep -qx /etc/relaychain/relaychain.conf "$T/conffiles"
dpkg-deb -c "$deb" | awk '{ print $1, $2, $6 }' >"$T/list"
for f in ./usr/sbin/relaychaind ./usr/bin/relaychain \
    ./lib/systemd/system/relaychaind.service \
    ./usr/share/man/man8/relaychaind.8.gz \
    ./usr/share/man/man5/relaychain.conf.5.gz \
    ./usr/share/man/man1/relaychain.1.gz \
    ./usr/share/doc/relaychain/copyright \
    ./usr/share/doc/relaychain/examples/chain.d/20-antivirus.conf \
    ./usr/share/doc/relaychain/examples/chain.d/antivirus/eicar-example.ndb \
    ./etc/relaychain/relaychain.conf ./etc/relaychain/chain.d/ \
    ./var/spool/relaychain/; do
    check "the package holds $f" grep -q " $f\$" "$T/list"
done
check "every file is root's" sh -c "! awk '\$2 != \"root/root\"' '$T/list' | grep -q ."

# lintian: no error. Warnings are printed for the log.
lintian --allow-root --display-info "$deb" >"$T/lintian" 2>&1
cat "$T/lintian"
check "lintian reports no error (E:)" sh -c "! grep -q '^E:' '$T/lintian'"

# The package's own programs, unpacked, on its own configuration.
R=$T/root
dpkg -x "$deb" "$R"
check "relaychaind runs from the package" "$R/usr/sbin/relaychaind" -V
"$R/usr/bin/relaychain" check -c "$R/etc/relaychain/relaychain.conf" \
    >"$T/check.out" 2>"$T/check.err"
rc=$?
check "relaychain check accepts the shipped relaychain.conf (got $rc: $(cat "$T/check.err"))" \
    [ "$rc" -eq 0 ]
check "the shipped chain.d is the package's, and empty" \
    grep -q '^chain: 0 stages' "$T/check.out"
sed "s|^chain_directory = .*|chain_directory = $R/usr/share/doc/relaychain/examples/chain.d|" \
    "$R/etc/relaychain/relaychain.conf" >"$T/examples.conf"
"$R/usr/bin/relaychain" check -c "$T/examples.conf" >"$T/ex.out" 2>"$T/ex.err"
rc=$?
check "relaychain check accepts the shipped example chain (got $rc: $(cat "$T/ex.err"))" \
    [ "$rc" -eq 0 ]
check "the example chain runs rewrite, antivirus, disclaimer" \
    sh -c "grep -q '^chain: 3 stages' '$T/ex.out' &&
           grep -q '^2\\. antivirus' '$T/ex.out'"
unit=$R/lib/systemd/system/relaychaind.service
for want in 'User=relaychain' 'CapabilityBoundingSet=CAP_NET_BIND_SERVICE' \
    'ProtectSystem=strict' 'NoNewPrivileges=yes' 'PrivateTmp=yes' \
    'ExecStartPre=/usr/bin/relaychain check -c /etc/relaychain/relaychain.conf' \
    'ExecStart=/usr/sbin/relaychaind -f -c /etc/relaychain/relaychain.conf' \
    'ReadWritePaths=/var/spool/relaychain -/var/spool/postfix/relaychain'; do
    check "the unit has $want" grep -qxF "$want" "$unit"
done

# A real install into a throw-away copy of this system.
if [ "$(id -u)" -ne 0 ] || ! command -v unshare >/dev/null ||
    ! unshare -m true 2>/dev/null; then
    echo "note: not root or no mount namespaces: dpkg -i is not tried"
    finish
fi
mkdir -p "$T/ov/upper" "$T/ov/work" "$T/ov/root"
cp "$deb" "$T/ov/relaychain.deb"
# Inside: M is the merged root; each step's output goes to a file named
# after it, checked below from outside.
cat >"$T/ov/inside.sh" <<'EOF'
set -u
O=$1
M=$O/root
mount -t overlay overlay \
    -o "lowerdir=/,upperdir=$O/upper,workdir=$O/work" "$M" || exit 90
mount -t proc proc "$M/proc" && mount --rbind /dev "$M/dev" &&
    mount -t tmpfs tmpfs "$M/run" && mount -t tmpfs tmpfs "$M/tmp" || exit 91
cp "$O/relaychain.deb" "$M/tmp/"
# man-db would re-index every manual page on each dpkg run.
rm -f "$M/var/lib/man-db/auto-update"
ch() { chroot "$M" "$@"; }
# The milter directory is made only where Postfix is.
mkdir -p "$M/var/spool/postfix"
ch sh -c 'getent group postfix >/dev/null || addgroup --system postfix' >/dev/null 2>&1
ch dpkg -i /tmp/relaychain.deb >"$O/dpkg-i.out" 2>&1
echo $? >"$O/dpkg-i.rc"
ch getent passwd relaychain >"$O/passwd" 2>&1
ch stat -c '%U:%G %a' /var/spool/relaychain >"$O/spool" 2>&1
ch stat -c '%U:%G %a' /var/spool/postfix/relaychain >"$O/milterdir" 2>&1
ch su -s /bin/sh relaychain -c 'relaychain check' >"$O/check-as-user" 2>&1
echo $? >"$O/check-as-user.rc"
ch dpkg --purge relaychain >"$O/purge.out" 2>&1
echo $? >"$O/purge.rc"
for d in /etc/relaychain /var/spool/relaychain /var/spool/postfix/relaychain \
    /lib/systemd/system/relaychaind.service; do
    [ -e "$M$d" ] && echo "$d"
done >"$O/left-after-purge"
# Again, with a message in the queue at purge time: it is kept.
ch dpkg -i /tmp/relaychain.deb >"$O/dpkg-i2.out" 2>&1
mkdir -p "$M/var/spool/relaychain/queue"
echo held >"$M/var/spool/relaychain/queue/0A1B2C3D4E5F"
ch dpkg --purge relaychain >"$O/purge2.out" 2>&1
[ -f "$M/var/spool/relaychain/queue/0A1B2C3D4E5F" ] && echo kept >"$O/queued"
exit 0
EOF
timeout 120 unshare -m --propagation private sh "$T/ov/inside.sh" "$T/ov" \
    >"$T/ov/inside.out" 2>&1
rc=$?
if [ "$rc" -eq 90 ]; then
    echo "note: overlayfs over / is not possible here: dpkg -i is not tried"
    finish
fi
check "the install ran (got $rc: $(cat "$T/ov/inside.out"))" [ "$rc" -eq 0 ]
check "dpkg -i succeeds ($(cat "$T/ov/dpkg-i.out"))" \
    [ "$(cat "$T/ov/dpkg-i.rc" 2>/dev/null)" = 0 ]
check "postinst created the system user relaychain (got: $(cat "$T/ov/passwd"))" \
    grep -q '^relaychain:x:[0-9]*:[0-9]*:.*:/var/spool/relaychain:/usr/sbin/nologin$' \
    "$T/ov/passwd"
check "the spool is relaychain's, mode 0700 (got: $(cat "$T/ov/spool"))" \
    grep -qx 'relaychain:relaychain 700' "$T/ov/spool"
check "the milter directory in Postfix's spool is relaychain:postfix 2750 (got: $(cat "$T/ov/milterdir"))" \
    grep -qx 'relaychain:postfix 2750' "$T/ov/milterdir"
check "relaychain check passes as user relaychain, like ExecStartPre (got: $(head -3 "$T/ov/check-as-user"))" \
    [ "$(cat "$T/ov/check-as-user.rc")" = 0 ]
check "dpkg --purge succeeds ($(cat "$T/ov/purge.out"))" \
    [ "$(cat "$T/ov/purge.rc")" = 0 ]
check "purge leaves nothing of the package (left: $(cat "$T/ov/left-after-purge"))" \
    [ ! -s "$T/ov/left-after-purge" ]
check "purge keeps a spool that holds a message ($(cat "$T/ov/purge2.out"))" \
    test -f "$T/ov/queued"
finish
