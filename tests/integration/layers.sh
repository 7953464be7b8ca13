#!/bin/sh
# layers - the layer rule of core/README holds (scripts/layers): no file in
# core/ or filters/ includes or calls upward or across front ends, and the
# library's files form no cycle. The checker is shown to catch each kind
# of violation on a copy of the tree with one planted.
. "$top_srcdir/tests/integration/lib.sh"

L="$top_srcdir/scripts/layers"

# ------------------------------------------------------------- the tree
"$L" "$top_srcdir" "$top_builddir" >"$T/out" 2>&1
rc=$?
check "the tree keeps the layer rule (exit $rc)" [ "$rc" -eq 0 ]
[ "$rc" -eq 0 ] || cat "$T/out" >&2

# ------------------------------------------------------------- planted
mkdir -p "$T/src" "$T/build"
(cd "$top_srcdir" && tar cf - core filters) | (cd "$T/src" && tar xf -)
(cd "$top_builddir" && find core filters -name '*.o' ! -name 'tests_*' |
    tar cf - -T -) | (cd "$T/build" && tar xf -)
"$L" "$T/src" "$T/build" >"$T/copy.out" 2>&1
check "the copy is clean before anything is planted" [ ! -s "$T/copy.out" ]

# An include upward, with its file:line.
printf '#include "chain/chain.h"\n' >>"$T/src/core/util/buf.h"
n=$(wc -l <"$T/src/core/util/buf.h")
"$L" "$T/src" >"$T/inc.out" 2>&1
check "an upward include fails the check" [ $? -eq 1 ]
check "and is named with file:line" \
    grep -q "^include core/util/buf.h:$n: util may not include core/chain/chain.h" "$T/inc.out"
cp "$top_srcdir/core/util/buf.h" "$T/src/core/util/buf.h"

# An include across front ends.
printf '#include "smtpd/smtpd.h"\n' >>"$T/src/core/milterd/milterd.c"
"$L" "$T/src" >"$T/across.out" 2>&1
check "an include across front ends fails the check" \
    grep -q "^include core/milterd/milterd.c:[0-9]*: milterd may not include core/smtpd/smtpd.h" "$T/across.out"
cp "$top_srcdir/core/milterd/milterd.c" "$T/src/core/milterd/milterd.c"

# A call upward through a declaration of the file's own: no include shows
# it, the object does.
cat >"$T/src/core/msg/planted.c" <<'C'
struct smtpc_pool;
struct smtpc_pool *smtpc_pool_new(void);
void *planted(void) { return smtpc_pool_new(); }
C
cc -c -o "$T/build/core/msg/planted.o" "$T/src/core/msg/planted.c"
"$L" "$T/src" "$T/build" >"$T/call.out" 2>&1
check "a call upward fails the check" \
    grep -q "^call core/msg/planted.c: uses smtpc_pool_new of core/net/nexthop.c (msg may not use net)" "$T/call.out"
rm -f "$T/src/core/msg/planted.c" "$T/build/core/msg/planted.o"

# A cycle inside one layer: two files of util that call each other.
cat >"$T/src/core/util/one.c" <<'C'
int two(int);
int one(int n) { return n ? two(n - 1) : 0; }
C
cat >"$T/src/core/util/two.c" <<'C'
int one(int);
int two(int n) { return n ? one(n - 1) : 1; }
C
cc -c -o "$T/build/core/util/one.o" "$T/src/core/util/one.c"
cc -c -o "$T/build/core/util/two.o" "$T/src/core/util/two.c"
"$L" "$T/src" "$T/build" >"$T/cycle.out" 2>&1
check "a cycle fails the check" grep -q "^cycle .*core/util/one.c" "$T/cycle.out"
check "and names both files" grep -q "^cycle .*core/util/two.c" "$T/cycle.out"

finish
