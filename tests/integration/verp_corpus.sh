#!/bin/sh
# verp_corpus - the bounce reader over public bounce samples with known
# answers: the test data of Debian's python3-flufl.bounce (LGPL-3; read
# where the package installs it, not copied), whose table
# (testing/helpers.py, DATA) names each sample's failed addresses and
# whether the failure is temporary. tests/bounce-probe reads every
# sample; a recipient counts as recovered when it is found with the
# right kind (failed, or delayed for a warning), as misattributed when
# an address not in the table is reported. Wants >= 95% recovered and
# none misattributed; prints the figure.
. "$top_srcdir/tests/integration/lib.sh"

PY=/usr/bin/python3
PKG=/usr/lib/python3/dist-packages/flufl/bounce
PROBE="$top_builddir/tests/bounce-probe"
if [ ! -f "$PKG/testing/helpers.py" ] || [ ! -d "$PKG/tests/data" ]; then
    echo "$0: python3-flufl.bounce is missing (scripts/setup installs it)" >&2
    exit 1
fi
[ -x "$PROBE" ] || fail "$PROBE is missing"

"$PROBE" "$PKG"/tests/data/*.txt >"$T/probe.out" 2>"$T/probe.err"
check "the probe reads every sample" [ $? -eq 0 ]
"$PY" - "$PKG/testing/helpers.py" "$T/probe.out" >"$T/score.out" 2>&1 <<'PYEOF'
import ast, os, sys
tree = ast.parse(open(sys.argv[1]).read())
data = None
for node in ast.walk(tree):
    if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == "DATA" for t in node.targets):
        data = ast.literal_eval(node.value)
if not data:
    print("no DATA table in", sys.argv[1])
    sys.exit(1)
found = {}
for line in open(sys.argv[2], encoding="utf-8", errors="replace"):
    f = line.rstrip("\n").split("\t")
    if len(f) >= 4 and f[1] == "rcpt":
        found.setdefault(os.path.basename(f[0]), {})[f[2].lower()] = f[3]
# a sample may be named twice (two detectors): what either expects
expect = {}
for entry in data:
    kind = "delayed" if len(entry) > 3 and entry[3] else "failed"
    want = expect.setdefault(entry[1], {})
    for a in entry[2]:
        want[a.decode().lower()] = kind
want_n = got = 0
missed, wrong = [], []
for name, want in sorted(expect.items()):
    have = found.get(name, {})
    for a, kind in want.items():
        want_n += 1
        if have.get(a) == kind:
            got += 1
        else:
            missed.append("%s:%s(%s)" % (name, a, have.get(a, "none")))
    for a in have:
        if a not in want:
            wrong.append("%s:%s" % (name, a))
pct = 100.0 * got / want_n if want_n else 0.0
print("recovered %d/%d (%.1f%%), misattributed %d" % (got, want_n, pct,
                                                      len(wrong)))
for m in missed:
    print("missed", m)
for w in wrong:
    print("misattributed", w)
sys.exit(0 if pct >= 95.0 and not wrong else 3)
PYEOF
rc=$?
echo "verp_corpus: $(head -n 1 "$T/score.out")"
check "recovered >= 95%, none misattributed: $(head -n 1 "$T/score.out")" [ $rc -eq 0 ]
[ $rc -eq 0 ] || cat "$T/score.out" >&2
finish
