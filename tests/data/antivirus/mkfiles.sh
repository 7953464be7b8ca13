#!/bin/sh
# mkfiles.sh - make the files the test signature set of db/ detects
#
#   tests/data/antivirus/mkfiles.sh OUTDIR
#
# Writes, byte for byte the same on every run:
#   eicar.com        the EICAR test file (68 octets), put together from
#                    two halves so that no file of the tree holds it whole
#   rc-payload.bin   binary payload: db/relaychain-test.hdb (MD5) and
#                    db/relaychain-test.hsb (SHA-256) hold its hashes
#   rc-body.txt      text with the marker of the body pattern
#                    RelayChain.Test.Body (db/relaychain-test.ndb)
#   rc-logical.txt   text with both strings of the logical signature
#                    RelayChain.Test.Logical (db/relaychain-test.ldb)
#   rc-half.txt      only the first of those strings: must stay clean
#   rc-yara.txt      text the YARA rule of db/relaychain-test.yar matches
#   clean.txt        text none of the signatures matches
#
# The signatures were written for these files (sigtool --md5/--sha256 for
# the hashes, sigtool --hex-dump for the patterns); the antivirus tests
# check that they still agree.
set -eu
out=${1:?usage: mkfiles.sh OUTDIR}
mkdir -p "$out"
printf '%s%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR' \
    '-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' >"$out/eicar.com"
# 4096 octets: every value 0..255, sixteen times, each round shifted.
LC_ALL=C awk 'BEGIN { for (r = 0; r < 16; r++) for (i = 0; i < 256; i++)
    printf "%c", (i * 7 + r * 13) % 256 }' </dev/null >"$out/rc-payload.bin"
{
    echo "Quarterly report, draft 3."
    echo "marker: RELAYCHAIN-TEST-BODY-SIGNATURE-7F3A"
    echo "end of report"
} >"$out/rc-body.txt"
{
    echo "first: relaychain-ldb-part-one"
    echo "some text in between"
    echo "second: relaychain-ldb-part-two"
} >"$out/rc-logical.txt"
echo "first: relaychain-ldb-part-one, and nothing else" >"$out/rc-half.txt"
echo "this file carries the relaychain yara marker 51c4" >"$out/rc-yara.txt"
echo "Minutes of the meeting: nothing to report." >"$out/clean.txt"
