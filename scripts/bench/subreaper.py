#!/usr/bin/python3
"""subreaper - run a program as a child subreaper's child, for benches

    subreaper.py PROGRAM [ARGS...]

GPGME starts gpg through a double fork, so gpg is nobody's child and its
CPU time is lost to the process tree of the program that asked for it.
This process marks itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER,
Linux 3.4), runs PROGRAM as its child, forwards SIGTERM, SIGINT, SIGHUP
and SIGUSR1 to it and reaps every process that is handed to it, so their
CPU time counts in this process's children's times (/proc/PID/stat
cutime and cstime). It exits with PROGRAM's status when PROGRAM ends.
"""
import ctypes
import os
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36


def main():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("subreaper: prctl: " + os.strerror(ctypes.get_errno()))
    pid = os.fork()
    if pid == 0:
        os.execv(sys.argv[1], sys.argv[1:])

    def forward(sig, _frame):
        os.kill(pid, sig)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, forward)
    while True:
        try:
            got, status = os.wait()
        except ChildProcessError:
            sys.exit(1)
        if got == pid:
            sys.exit(os.waitstatus_to_exitcode(status) & 0xff)


if __name__ == "__main__":
    main()
