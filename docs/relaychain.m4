dnl relaychain.m4 - relaychain as a Sendmail milter
dnl
dnl Copy this file to /etc/mail/ and add to /etc/mail/sendmail.mc, before
dnl the MAILER lines:
dnl
dnl     include(`/etc/mail/relaychain.m4')dnl
dnl
dnl then rebuild sendmail.cf (sendmailconfig, or make -C /etc/mail) and
dnl restart Sendmail. S= is relaychain.conf's milter_listen in the same
dnl libmilter syntax: S=local:/path for milter_listen = unix:/path (the
dnl recommended default), S=inet:port@127.0.0.1 for inet. F=T: when
dnl relaychaind cannot be reached Sendmail answers 4xx, so mail never
dnl passes unscanned. T= timeouts: C connect, S sending to the filter,
dnl R reading a reply, E the whole end of message, where the chain runs
dnl (relaychaind sends progress notices while a slow stage works).
dnl
INPUT_MAIL_FILTER(`relaychain', `S=local:/run/relaychain/milter.sock, F=T, T=C:30s;S:60s;R:60s;E:10m')dnl
