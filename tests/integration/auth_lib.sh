# auth_lib.sh - AUTH sessions for the integration tests (sourced after
# smtpd_lib.sh, not run)
#
# auth_setup - a certificate ($T/cert.pem, $T/key.pem), a password file
# ($T/passwd: alice, "right horse battery") and $good and $bad, AUTH
# PLAIN answers with the right and a wrong password.
auth_setup() {
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
        -subj /CN=relay.test.example -keyout "$T/key.pem" \
        -out "$T/cert.pem" >/dev/null 2>&1 ||
        fail "openssl could not make a certificate"
    printf '%s\n' 'right horse battery' |
        "$RC" passwd "$T/passwd" alice >"$T/passwd.out" 2>&1 ||
        fail "relaychain passwd: $(cat "$T/passwd.out")"
    good=$(printf '\0alice\0right horse battery' | base64 -w0)
    bad=$(printf '\0alice\0wrong horse' | base64 -w0)
}

# session PORT SRC NAME AUTHLINE... - STARTTLS, EHLO, then each AUTH line;
# what the server said is in $T/NAME.out
session() {
    p=$1 src=$2 name=$3
    shift 3
    {
        echo "expect"
        echo "send EHLO client.test.example"
        echo "expect"
        echo "send STARTTLS"
        echo "expect"
        echo "starttls"
        echo "send EHLO client.test.example"
        echo "expect"
        for a in "$@"; do
            echo "send $a"
            echo "expect"
        done
        echo "send QUIT"
        echo "expect"
    } | chat "$p" --src "$src" >"$T/$name.out"
}

# auth_codes FILE - the replies after the second EHLO, AUTH's and QUIT's
auth_codes() {
    grep -E '^[0-9]{3}( |$)' "$1" | sed -n '5,$p' | cut -c1-3 | tr '\n' ' ' |
        sed 's/ $//'
}
