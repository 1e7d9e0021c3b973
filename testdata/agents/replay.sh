#!/bin/sh
# Stand-in for an agent CLI (cursor-agent, claude, codex) in tests: it records
# how it was called, then replays a recorded transcript as the CLI printed it.
#
#   replay.sh LOGDIR TRANSCRIPT [the agent's arguments...]
#
# Call N writes LOGDIR/argv.N (its arguments, each ended by a NUL byte) and
# LOGDIR/stdin.N (what arrived on stdin before it was closed) and
# LOGDIR/cursor-key.N (CURSOR_API_KEY, or <unset>). Files beside
# TRANSCRIPT (x.jsonl) with the same name:
#   x.sh      sourced first, in the workspace: the changes the transcript describes
#   x.stderr  copied to stderr after the transcript
#   x.exit    the exit status (default 0)
#   x.kill    if present, the agent kills itself (SIGKILL) after its output,
#             as a run killed halfway
# --version answers "stand-in 1.0.0" and is not recorded.
# Only sh, cat and printf, so it runs on any Debian.
log=$1
transcript=$2
shift 2
# flapjack asks every CLI its version first; that is no run.
if [ "$1" = "--version" ]; then echo "stand-in 1.0.0"; exit 0; fi
n=1
while [ -e "$log/argv.$n" ]; do n=$((n + 1)); done
: >"$log/argv.$n"
for a in "$@"; do printf '%s\0' "$a" >>"$log/argv.$n"; done
cat >"$log/stdin.$n"
printf '%s' "${CURSOR_API_KEY-<unset>}" >"$log/cursor-key.$n"
base=${transcript%.jsonl}
if [ -f "$base.sh" ]; then . "$base.sh"; fi
cat "$transcript"
if [ -f "$base.stderr" ]; then cat "$base.stderr" >&2; fi
if [ -f "$base.kill" ]; then kill -KILL $$; fi
status=0
if [ -f "$base.exit" ]; then status=$(cat "$base.exit"); fi
exit "$status"
