#!/usr/bin/env bash
# Runs one process ("$@") so that it can never outlive the test process.
#
# The test process holds the write end of our stdin. When it exits, by any
# means including SIGKILL, the kernel closes that pipe, the guard sees EOF, and the
# child is killed. The child's pid is printed as the first line on stdout so
# the harness can signal it directly (SIGKILL, SIGTERM, SIGSTOP, SIGCONT).
# Usage: watchdog.sh LOGFILE COMMAND [ARGS...]
log="$1"; shift
exec 3<&0
"$@" </dev/null >>"$log" 2>&1 3<&- &
child=$!
echo "$child"
exec 1>/dev/null
# `read` is a builtin, so killing $guard below leaves no helper process behind.
( while read -r -u 3 _; do :; done; kill -KILL "$child" 2>/dev/null ) &
guard=$!
exec 3<&-
wait "$child"
status=$?
kill "$guard" 2>/dev/null
exit "$status"
