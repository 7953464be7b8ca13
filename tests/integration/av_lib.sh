# av_lib.sh - shared by the antivirus tests (sourced, not run)
#
# Sources lib.sh ($RC, $T, check, fail, finish) unless the caller already
# sourced smtpd_lib.sh, and adds:
#
#   $AVDB                   the project's test signatures (tests/data/
#                           antivirus/db)
#   $AVF                    the files they detect, made by mkfiles.sh
#                           into $T/files (eicar.com, rc-payload.bin ...)
#   av_chain DIR [KEY = VALUE...]   a chain.d in DIR with one antivirus
#                           stage on $AVDB, database_check_interval = 0,
#                           and the given lines (which win over those
#                           two); a relaychain.conf beside
#                           it (DIR.conf) with ambiguous_mime_action from
#                           $AV_AMBIGUOUS (default: reject)
#   mail_text SUBJECT TEXT  a plain message with TEXT as its body
#   mail_attach SUBJECT FILE NAME [TYPE]   a multipart message with FILE
#                           attached in base64 as NAME
#   av_filter CONF MSG      "relaychain filter -v": sets AV_RC (exit
#                           status) and AV_LOG (the antivirus log line)
if [ -z "${SMTPD_PIDS+set}" ]; then
    . "$top_srcdir/tests/integration/lib.sh"
fi

LC_ALL=C
export LC_ALL
AVDB="$top_srcdir/tests/data/antivirus/db"
AVF="$T/files"
for prog in zip base64 sigtool; do
    if ! command -v "$prog" >/dev/null 2>&1; then
        echo "$0: $prog is missing (scripts/setup installs it)" >&2
        exit 1
    fi
done
sh "$top_srcdir/tests/data/antivirus/mkfiles.sh" "$AVF"

av_chain() {
    local dir kv
    dir=$1
    shift
    mkdir -p "$dir"
    {
        echo "stage = antivirus"
        for kv in "database_directory = $AVDB" "database_check_interval = 0"; do
            case " $* " in
            *" ${kv%% *} = "*) ;;
            *) echo "$kv" ;;
            esac
        done
        for kv in "$@"; do
            echo "$kv"
        done
    } >"$dir/05-antivirus.conf"
    printf 'chain_directory = %s\nambiguous_mime_action = %s\n' "$dir" \
        "${AV_AMBIGUOUS:-reject}" >"$dir.conf"
}

mail_text() {
    printf 'From: alice@example.com\nTo: bob@example.org\nSubject: %s\n' "$1"
    printf 'Message-ID: <%s@example.com>\n\n%s\n' "$(echo "$1" | tr -c 'a-zA-Z0-9\n' -)" "$2"
}

mail_attach() {
    printf 'From: alice@example.com\nTo: bob@example.org\nSubject: %s\n' "$1"
    printf 'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="=_av1"\n\n'
    printf -- '--=_av1\nContent-Type: text/plain\n\nSee the attachment.\n\n'
    printf -- '--=_av1\nContent-Type: %s; name="%s"\n' "${4:-application/octet-stream}" "$3"
    printf 'Content-Disposition: attachment; filename="%s"\n' "$3"
    printf 'Content-Transfer-Encoding: base64\n\n'
    base64 -w 76 "$2"
    printf -- '--=_av1--\n'
}

av_filter() {
    "$RC" filter -v -c "$1" <"$2" >"$T/av.out" 2>"$T/av.err"
    AV_RC=$?
    AV_LOG=$(grep ': antivirus: ' "$T/av.err" | tail -n 1)
}
