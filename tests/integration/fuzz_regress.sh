#!/bin/sh
# fuzz_regress - replay every kept fuzz input (seeds and former crashers)
# through the fuzz targets built as plain programs; under the sanitizer
# build a regression aborts the run.
set -u
top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
failed=0
for t in $(cd "$top_srcdir/tests/fuzz" && ls fuzz_*.c | sed 's/^fuzz_//; s/\.c$//'); do
    bin="$top_builddir/tests/fuzz/replay_$t"
    if [ ! -x "$bin" ]; then
        echo "fuzz_regress: $bin is missing" >&2
        exit 1
    fi
    n=$(find "$top_srcdir/tests/data/fuzz/$t" "$top_srcdir/tests/data/fuzz-seeds/$t" -type f ! -name .gitkeep 2>/dev/null | wc -l)
    if [ "$n" -eq 0 ]; then
        echo "fuzz_regress: no inputs for $t" >&2
        failed=1
        continue
    fi
    if ! "$bin" "$top_srcdir/tests/data/fuzz/$t" "$top_srcdir/tests/data/fuzz-seeds/$t"; then
        echo "fuzz_regress: $t: an input crashed the target" >&2
        failed=1
    fi
done
exit $failed
