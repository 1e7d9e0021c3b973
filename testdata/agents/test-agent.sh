#!/bin/sh
# Test agent for core/local: an exec agent whose behaviour is chosen by words in
# its prompt (FLAPJACK_PROMPT; the same text arrives on stdin). Only sh, printf,
# sleep, cat, head and tr (and git, chmod, setsid for a few cases), so it runs
# on any Debian.
#
#   fail        write to stderr, exit 3
#   sleep       start a background sleep, print "child <pid>", wait (for cancel tests)
#   stubborn    like sleep, but the whole group ignores SIGTERM
#   spam N      print N assistant lines as fast as possible
#   print-key   echo $CURSOR_API_KEY to stdout
#   env         print the run's variables
#   args        print the argument count and what arrived on stdin
#   bigline     print one 2 MiB line
#   hugeline    print one 5 MiB line (beyond the 4 MiB cap)
#   badutf8     print invalid UTF-8 on stdout and stderr
#   selfcommit  commit a file itself, then leave another uncommitted
#   escape      leave a process in another session holding stdout, exit 0
#   nochange    change nothing
#   hooks       install git hooks and an fsmonitor that create ../hook-ran, change a file
#   rm-readme   also delete README.md
# anything else: a normal cursor-agent stream-json run that appends to agent.txt.

input=$(cat)
p=$FLAPJACK_PROMPT

say() { printf '{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"%s"}]},"session_id":"s1"}\n' "$1"; }

case $p in
*fail*)
	say "about to fail"
	printf 'warning: first\n' >&2
	i=1
	while [ "$i" -le 6 ]; do
		printf 'error line %s\n' "$i" >&2
		i=$((i + 1))
	done
	exit 3
	;;
*stubborn*)
	trap '' TERM
	sleep 300 &
	printf 'child %s\n' "$!"
	wait
	exit 0
	;;
*sleep*)
	sleep 300 &
	printf 'child %s\n' "$!"
	wait
	exit 0
	;;
*spam*)
	n=${p##*spam }
	n=${n%% *}
	i=1
	while [ "$i" -le "$n" ]; do
		say "line $i"
		i=$((i + 1))
	done
	exit 0
	;;
*print-key*)
	printf '%s\n' "$CURSOR_API_KEY"
	exit 0
	;;
*env*)
	printf 'CURSOR_API_KEY=%s\n' "${CURSOR_API_KEY-<unset>}"
	printf 'FLAPJACK_MASTER_KEY=%s\n' "${FLAPJACK_MASTER_KEY-<unset>}"
	printf 'FLAPJACK_SESSION_ID=%s\n' "${FLAPJACK_SESSION_ID-<unset>}"
	printf 'FLAPJACK_MESSAGE_ID=%s\n' "${FLAPJACK_MESSAGE_ID-<unset>}"
	printf 'FLAPJACK_MODEL=%s\n' "${FLAPJACK_MODEL-<unset>}"
	exit 0
	;;
*args*)
	printf 'argc=%s\n' "$#"
	printf 'stdin=%s\n' "$input"
	exit 0
	;;
*bigline*)
	head -c 2097152 /dev/zero | tr '\000' 'a'
	printf '\n'
	exit 0
	;;
*hugeline*)
	head -c 5242880 /dev/zero | tr '\000' 'b'
	printf '\nafter\n'
	exit 0
	;;
*badutf8*)
	printf 'bad \377\376 bytes\n'
	printf 'err \377\n' >&2
	exit 0
	;;
*selfcommit*)
	printf 'by the agent\n' >self.txt
	git add self.txt
	git -c user.name=agent -c user.email=agent@example.com commit -q -m "agent's own commit"
	printf 'left over\n' >left.txt
	exit 0
	;;
*hooks*)
	# The hooks directory is the repository's (shared by worktrees).
	hooks=$(git rev-parse --git-path hooks)
	mkdir -p "$hooks"
	for h in pre-commit post-commit commit-msg; do
		printf '#!/bin/sh\ntouch "%s/hook-ran"\n' "$(cd .. && pwd)" >"$hooks/$h"
		chmod +x "$hooks/$h"
	done
	git config core.fsmonitor "touch '$(cd .. && pwd)/fsmonitor-ran'; false"
	printf 'changed\n' >hooked.txt
	exit 0
	;;
*escape*)
	# The child reports itself only once it is in its own session.
	setsid sh -c 'printf "escaped %s\n" "$$"; : >.escaped; exec sleep 300' &
	while [ ! -e .escaped ]; do sleep 0.05; done
	exit 0
	;;
*nochange*)
	printf '{"type":"result","subtype":"success","is_error":false,"duration_ms":5,"result":"nothing to do","session_id":"s1"}\n'
	exit 0
	;;
esac

case $p in
*rm-readme*) rm -f README.md ;;
esac
printf '{"type":"system","subtype":"init","session_id":"s1","model":"%s","cwd":"."}\n' "$FLAPJACK_MODEL"
printf '{"type":"user","message":{"role":"user","content":[{"type":"text","text":"ignored"}]},"session_id":"s1"}\n'
say "working on it"
printf 'plain output\n'
printf '{"type":"tool_call","subtype":"started","call_id":"c1","tool_call":{"writeToolCall":{"args":{"path":"agent.txt"}}},"session_id":"s1"}\n'
printf '%s\n' "$FLAPJACK_MESSAGE_ID" >>agent.txt
printf '{"type":"tool_call","subtype":"completed","call_id":"c1","tool_call":{"writeToolCall":{"args":{"path":"agent.txt"},"result":{"success":{"linesCreated":1}}}},"session_id":"s1"}\n'
printf 'progress on stderr\n' >&2
say "done"
printf '{"type":"result","subtype":"success","is_error":false,"duration_ms":1234,"result":"all done","session_id":"s1"}\n'
