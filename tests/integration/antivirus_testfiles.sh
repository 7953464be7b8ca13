#!/bin/sh
# antivirus_testfiles - Debian's clamav-testfiles attached to messages
#
# The package holds one small test program (clam.exe) packed, archived
# and wrapped 44 ways (UPX, NSIS, 7z, ARJ, CAB, CHM, cpio, RTF, PDF, OLE2,
# TNEF, mail, ...). Two databases are built here with sigtool:
#   1. clam.hdb: only the MD5 of clam.exe itself, so each file is found
#      only if libclamav decodes the message and unpacks the file down
#      to clam.exe;
#   2. files.hsb: the SHA-256 of every other file, named after it, so
#      each is found by its own hash as an attachment.
# Every file, attached in base64 to a message, must be rejected by the
# antivirus stage under both, with the expected name. One exception:
# clam_cache_emax.tgz nests archives as deep as libclamav's default
# limit, and the message adds a level; with max_recursion = 17 (the
# default) it is "unchecked" (rejected, never passed: the same file
# would hit the same limit on every retry), with 30 it is
# found. And clam.exe.html is not found by its own hash: libclamav's
# mail parser hands a decoded HTML attachment on as normalized text, so
# the hash of the file as sent never matches (the clam.exe inside it is
# found all the same, under 1).
. "$top_srcdir/tests/integration/av_lib.sh"

tf=/usr/share/clamav-testfiles
if [ ! -f "$tf/clam.exe" ]; then
    echo "$0: $tf is missing (scripts/setup installs clamav-testfiles)" >&2
    exit 1
fi

mkdir -p "$T/db1" "$T/db2"
sigtool --md5 "$tf/clam.exe" | sed 's/:[^:]*$/:ClamAV-Test-File/' >"$T/db1/clam.hdb"
for f in "$tf"/*; do
    [ "$(basename "$f")" = clam.exe ] ||
        sigtool --sha256 "$f" | sed "s/:[^:]*\$/:TestFile-$(basename "$f")/"
done >"$T/db2/files.hsb"
check "files.hsb has a line per file but clam.exe" \
    [ "$(wc -l <"$T/db2/files.hsb")" -eq "$(($(ls "$tf" | wc -l) - 1))" ]
av_chain "$T/one" "database_directory = $T/db1"
av_chain "$T/deep" "database_directory = $T/db1" "max_recursion = 30"
av_chain "$T/each" "database_directory = $T/db2"

n=0
for f in "$tf"/*; do
    name=$(basename "$f")
    n=$((n + 1))
    mail_attach "$name" "$f" "$name" >"$T/msg.eml"
    av_filter "$T/one.conf" "$T/msg.eml"
    if [ "$name" = clam_cache_emax.tgz ]; then
        check "$name, default max_recursion: unchecked, rejected (exit $AV_RC; $AV_LOG)" \
            sh -c "[ $AV_RC -eq 2 ] && echo '$AV_LOG' | grep -q 'reject, unchecked (max_recursion exceeded)'"
        av_filter "$T/deep.conf" "$T/msg.eml"
    fi
    check "$name, clam.exe's MD5 only: unpacked and found (exit $AV_RC; $AV_LOG)" \
        sh -c "[ $AV_RC -eq 2 ] && echo '$AV_LOG' | grep -q 'reject, virus=ClamAV-Test-File.UNOFFICIAL, engine=libclamav'"
    [ "$name" != clam.exe ] && [ "$name" != clam.exe.html ] || continue
    av_filter "$T/each.conf" "$T/msg.eml"
    check "$name, its own SHA-256: found (exit $AV_RC; $AV_LOG)" \
        sh -c "[ $AV_RC -eq 2 ] && echo '$AV_LOG' | grep -qF 'virus=TestFile-$name.UNOFFICIAL'"
done
check "all of the package's files were tried ($n)" [ "$n" -ge 40 ]

finish
