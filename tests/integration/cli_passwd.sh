#!/bin/sh
# cli_passwd - "relaychain passwd FILE USER" stores a yescrypt hash that
# other programs built on crypt(3) accept (mkpasswd from whois, Python's
# crypt module), keeps the other lines of the file byte for byte, makes
# the file mode 0640, and on a terminal asks twice without echo.
. "$top_srcdir/tests/integration/lib.sh"

PY=/usr/bin/python3
pw="$T/smtp_passwd"

hash_of() {
    sed -n "s/^$2://p" "$1"
}

# mkpasswd_agrees FILE USER PASS: mkpasswd, given the stored salt and PASS,
# computes the stored hash.
mkpasswd_agrees() {
    h=$(hash_of "$1" "$2")
    [ -n "$h" ] && [ "$(mkpasswd -m yescrypt -S "${h%\$*}" "$3")" = "$h" ]
}

# python_agrees FILE USER PASS: the same through Python's crypt module.
python_agrees() {
    h=$(hash_of "$1" "$2")
    [ -n "$h" ] && "$PY" -W ignore -c 'import crypt, sys
sys.exit(crypt.crypt(sys.argv[1], sys.argv[2]) != sys.argv[2])' "$3" "$h"
}

not() {
    ! "$@"
}

mode_of() {
    stat -c %a "$1"
}

# 1. A new file, the password on standard input.
out=$(echo 'first secret' | "$RC" passwd "$pw" alice 2>"$T/err"); rc=$?
check "new: exit 0 (got $rc: $(cat "$T/err"))" [ "$rc" -eq 0 ]
check "new: says added (got: $out)" [ "$out" = "$pw: added alice" ]
check "new: mode 0640 (got $(mode_of "$pw"))" [ "$(mode_of "$pw")" = 640 ]
check "new: one yescrypt line" sh -c '[ "$(wc -l < "$1")" -eq 1 ] && grep -q "^alice:\$y\\$" "$1"' - "$pw"
check "new: mkpasswd agrees" mkpasswd_agrees "$pw" alice 'first secret'
check "new: python crypt agrees" python_agrees "$pw" alice 'first secret'
check "new: a wrong password does not match" not mkpasswd_agrees "$pw" alice 'first secreT'

# 2. A second run changes the password in place.
first_hash=$(hash_of "$pw" alice)
out=$(echo 'second secret' | "$RC" passwd "$pw" alice 2>"$T/err"); rc=$?
check "change: exit 0 (got $rc: $(cat "$T/err"))" [ "$rc" -eq 0 ]
check "change: says changed (got: $out)" [ "$out" = "$pw: changed the password of alice" ]
check "change: new password" mkpasswd_agrees "$pw" alice 'second secret'
check "change: new salt" [ "$(hash_of "$pw" alice)" != "$first_hash" ]
check "change: old password refused" not python_agrees "$pw" alice 'first secret'

# 3. An existing file with comments and a hash from another implementation
# (openssl passwd -6), world-readable: other lines stay, mode is fixed.
bob=$(openssl passwd -6 'bob pass')
printf '# SMTP AUTH users\n\nbob:%s\n   # carol left\nalice:%s\n' "$bob" "$first_hash" > "$T/keep"
chmod 644 "$T/keep"
sed '/^alice:/d' "$T/keep" > "$T/others.txt"
echo 'third secret' | "$RC" passwd "$T/keep" alice >/dev/null 2>"$T/err"; rc=$?
check "keep: exit 0 (got $rc: $(cat "$T/err"))" [ "$rc" -eq 0 ]
check "keep: mode 0640 (got $(mode_of "$T/keep"))" [ "$(mode_of "$T/keep")" = 640 ]
sed '/^alice:/d' "$T/keep" > "$T/after.txt"
check "keep: other lines byte for byte" cmp -s "$T/others.txt" "$T/after.txt"
check "keep: alice stays on line 5" sh -c 'sed -n 5p "$1" | grep -q "^alice:\$y\\$"' - "$T/keep"
check "keep: alice's new password" python_agrees "$T/keep" alice 'third secret'
check "keep: bob's openssl hash still verifies" python_agrees "$T/keep" bob 'bob pass'
check "keep: no warning (got: $(cat "$T/err"))" [ ! -s "$T/err" ]
check "keep: no temporary file left" sh -c '[ -z "$(ls -A "$1" | grep "^keep\.[A-Za-z0-9]\{6\}$")" ]' - "$T"

# 4. Refusals leave the file as it was.
cp "$pw" "$T/before"
: | "$RC" passwd "$pw" alice >/dev/null 2>"$T/err"; rc=$?
check "empty stdin: exit 1 (got $rc)" [ "$rc" -eq 1 ]
check "empty stdin: message (got: $(cat "$T/err"))" grep -qF "relaychain: passwd: no password on standard input" "$T/err"
echo '' | "$RC" passwd "$pw" alice >/dev/null 2>"$T/err"; rc=$?
check "empty password: exit 1 (got $rc)" [ "$rc" -eq 1 ]
check "empty password: message (got: $(cat "$T/err"))" grep -qF "empty password" "$T/err"
echo pw | "$RC" passwd "$pw" 'a:b' >/dev/null 2>"$T/err"; rc=$?
check "colon user: exit 1 (got $rc)" [ "$rc" -eq 1 ]
check "colon user: message (got: $(cat "$T/err"))" grep -qF "'a:b': user name has a ':'" "$T/err"
check "refusals: file unchanged" cmp -s "$T/before" "$pw"
echo pw | "$RC" passwd "$T/nodir/passwd" alice >/dev/null 2>"$T/err"; rc=$?
check "no directory: exit 1 (got $rc)" [ "$rc" -eq 1 ]
check "no directory: names it (got: $(cat "$T/err"))" grep -qF "$T/nodir: cannot open the directory" "$T/err"
"$RC" passwd "$pw" >/dev/null 2>"$T/err"; rc=$?
check "usage: exit 1 (got $rc)" [ "$rc" -eq 1 ]
check "usage: on stderr" grep -q "^usage: relaychain passwd FILE USER" "$T/err"
"$RC" passwd -h | grep -q "^usage: relaychain passwd FILE USER" || fail "passwd -h"

# 5. A file the daemon would refuse is still changed, with a warning.
printf 'alice:%s\nbroken line\n' "$first_hash" > "$T/broken"
chmod 600 "$T/broken"
echo pw | "$RC" passwd "$T/broken" alice >/dev/null 2>"$T/err"; rc=$?
check "broken: exit 0 (got $rc)" [ "$rc" -eq 0 ]
check "broken: warning with path:line (got: $(cat "$T/err"))" grep -qF "warning: $T/broken:2: no ':' between user and hash" "$T/err"
check "broken: mode 0600 kept" [ "$(mode_of "$T/broken")" = 600 ]

# 6. On a terminal: asked twice, nothing echoed, the terminal's echo is
# back afterwards; a mismatch or ^C changes nothing.
cat > "$T/term.py" <<'PY'
# term.py SEND1 SEND2 COMMAND...: run COMMAND on a new terminal, answer the
# two prompts, print everything the terminal showed, exit with its status.
import os, pty, select, sys, time

send = [sys.argv[1], sys.argv[2]]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[3], sys.argv[3:])
seen = b""

def more(deadline):
    global seen
    r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.time()))
    if not r:
        return False
    try:
        data = os.read(fd, 4096)
    except OSError:
        data = b""
    seen += data
    return bool(data)

for prompt, answer in ((b"New password: ", send[0]), (b"Retype new password: ", send[1])):
    deadline = time.time() + 20
    while prompt not in seen:
        if not more(deadline):
            break
    if prompt not in seen:
        break
    os.write(fd, answer.encode() + (b"" if answer == "\x03" else b"\n"))
    if answer == "\x03":
        break
deadline = time.time() + 20
while more(deadline):
    pass
for _ in range(200):
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.1)
else:
    os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    seen += b"\n(killed: it did not exit)\n"
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
PY
tty_run() {
    "$PY" "$T/term.py" "$1" "$2" sh -c 'trap "" INT; "$0" passwd "$1" "$2"; rc=$?; stty -a | grep -o "[ -]echo " ; exit $rc' "$RC" "$3" "$4"
}
out=$(tty_run 'tty pass 1' 'tty pass 1' "$pw" carol); rc=$?
check "tty: exit 0 (got $rc: $out)" [ "$rc" -eq 0 ]
check "tty: asked twice (got: $out)" sh -c 'echo "$1" | grep -q "New password:" && echo "$1" | grep -q "Retype new password:"' - "$out"
check "tty: password not echoed (got: $out)" sh -c '! echo "$1" | grep -q "tty pass"' - "$out"
check "tty: echo back on afterwards (got: $out)" sh -c 'echo "$1" | grep -q "^ echo"' - "$out"
check "tty: mkpasswd agrees" mkpasswd_agrees "$pw" carol 'tty pass 1'
cp "$pw" "$T/before"
out=$(tty_run 'one' 'other' "$pw" carol); rc=$?
check "tty mismatch: exit 1 (got $rc)" [ "$rc" -eq 1 ]
check "tty mismatch: message (got: $out)" sh -c 'echo "$1" | grep -q "the passwords do not match"' - "$out"
check "tty mismatch: echo back on (got: $out)" sh -c 'echo "$1" | grep -q "^ echo"' - "$out"
out=$(tty_run "$(printf '\003')" '' "$pw" carol); rc=$?
check "tty ^C: exit 1 (got $rc)" [ "$rc" -eq 1 ]
check "tty ^C: interrupted (got: $out)" sh -c 'echo "$1" | grep -q "relaychain: passwd: interrupted"' - "$out"
check "tty ^C: echo back on (got: $out)" sh -c 'echo "$1" | grep -q "^ echo"' - "$out"
check "tty refusals: file unchanged" cmp -s "$T/before" "$pw"
finish
