#!/bin/sh
# flapjack demo agent: stands in for a real agent CLI so the local runtime can be
# tried without one. Run it with
#   FLAPJACK_LOCAL_AGENT_COMMAND=/path/to/testdata/agents/demo-agent.sh
# It prints cursor-agent stream-json lines and appends a line to NOTES.md.

cat >/dev/null # the prompt also arrives on stdin; FLAPJACK_PROMPT is easier to use

# The first line of the message (FLAPJACK_USER_PROMPT: without the template's
# preamble), without characters that would need escaping in JSON.
first=$(printf '%s\n' "${FLAPJACK_USER_PROMPT-$FLAPJACK_PROMPT}" | head -n 1 | tr -d '\000-\037"\\')

printf '{"type":"system","subtype":"init","session_id":"demo","model":"demo","cwd":"."}\n'
printf '{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"Hello, I am the flapjack demo agent. I do not think; I note your request in NOTES.md: %s"}]},"session_id":"demo"}\n' "$first"
printf '{"type":"tool_call","subtype":"started","call_id":"demo-1","tool_call":{"writeToolCall":{"args":{"path":"NOTES.md"}}},"session_id":"demo"}\n'
sleep 1
printf -- '- flapjack demo agent was asked: %s\n' "$first" >>NOTES.md
printf '{"type":"tool_call","subtype":"completed","call_id":"demo-1","tool_call":{"writeToolCall":{"args":{"path":"NOTES.md"},"result":{"success":{"linesCreated":1}}}},"session_id":"demo"}\n'
printf '{"type":"result","subtype":"success","is_error":false,"duration_ms":1000,"result":"The flapjack demo agent added a line to NOTES.md.","session_id":"demo"}\n'
exit 0
