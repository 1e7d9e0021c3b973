// An ACP agent for flapjack's tests, written with the official TypeScript SDK
// (@agentclientprotocol/sdk, pinned in testdata/npm). Usage:
//   node standin.mjs <path to the SDK's node_modules/@agentclientprotocol/sdk>
// What a turn does depends on words in the prompt:
//   (always)  a thought, a plan, message chunks, a tool call with a diff that
//             asks permission, then writes notes.txt through fs/write_text_file
//             and reads it back through fs/read_text_file, and an update of a
//             kind flapjack has no event for.
//   outside   also asks to write /etc/flapjack-standin and to read /etc/hostname
//   hang      streams one chunk, then waits for session/cancel
import { Readable, Writable } from "node:stream";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const sdkDir = process.argv[2];
const acp = await import(pathToFileURL(join(sdkDir, "dist/v1/stable/acp.js")).href);

const cancelled = new Map(); // sessionId -> resolve of its pending turn
const cwds = new Map();
let next = 1;

const say = (client, sessionId, update) => client.notify(acp.methods.client.session.update, { sessionId, update });

const app = acp.agent({ name: "flapjack-standin" })
  .onRequest(acp.methods.agent.initialize, () => ({
    protocolVersion: acp.PROTOCOL_VERSION,
    agentCapabilities: { loadSession: true },
    agentInfo: { name: "flapjack-standin", version: "1.0.0" },
  }))
  .onRequest(acp.methods.agent.session.new, ({ params }) => {
    const sessionId = `standin-${process.pid}-${next++}`;
    cwds.set(sessionId, params.cwd);
    return { sessionId };
  })
  .onRequest(acp.methods.agent.session.load, ({ params }) => {
    cwds.set(params.sessionId, params.cwd);
    return {};
  })
  .onNotification(acp.methods.agent.session.cancel, ({ params }) => {
    process.stderr.write(`standin: session/cancel received for ${params.sessionId}\n`);
    const done = cancelled.get(params.sessionId);
    if (done) done();
  })
  .onRequest(acp.methods.agent.session.prompt, async ({ params, client }) => {
    const { sessionId } = params;
    const cwd = cwds.get(sessionId);
    const text = params.prompt.map((b) => b.text ?? "").join("");
    if (text.includes("hang")) {
      const waiting = new Promise((resolve) => cancelled.set(sessionId, resolve));
      await say(client, sessionId, { sessionUpdate: "agent_message_chunk", content: { type: "text", text: "working" } });
      // A plan is logged at once: the sign for tests that the turn is under way.
      await say(client, sessionId, { sessionUpdate: "plan", entries: [{ content: "wait", priority: "low", status: "in_progress" }] });
      await waiting;
      return { stopReason: "cancelled" };
    }
    await say(client, sessionId, { sessionUpdate: "agent_thought_chunk", content: { type: "text", text: "Plan the notes." } });
    await say(client, sessionId, { sessionUpdate: "plan", entries: [
      { content: "write notes.txt", priority: "high", status: "in_progress" },
      { content: "read it back", priority: "medium", status: "pending" },
    ] });
    for (const chunk of ["Writing ", "the notes", "."]) {
      await say(client, sessionId, { sessionUpdate: "agent_message_chunk", content: { type: "text", text: chunk } });
    }
    const notes = join(cwd, "notes.txt");
    const body = `session ${sessionId}\nprompt: ${text}\n`;
    await say(client, sessionId, { sessionUpdate: "tool_call", toolCallId: "call-1", title: "Write notes.txt", kind: "edit",
      status: "pending", locations: [{ path: notes }], rawInput: { path: notes },
      content: [{ type: "diff", path: notes, oldText: null, newText: body }] });
    const perm = await client.request(acp.methods.client.session.requestPermission, { sessionId,
      toolCall: { toolCallId: "call-1", title: "Write notes.txt", kind: "edit", locations: [{ path: notes }] },
      options: [
        { optionId: "yes", name: "Allow", kind: "allow_once" },
        { optionId: "always", name: "Always allow", kind: "allow_always" },
        { optionId: "no", name: "Reject", kind: "reject_once" },
      ] });
    if (perm.outcome.outcome === "selected" && perm.outcome.optionId !== "no") {
      await client.request(acp.methods.client.fs.writeTextFile, { sessionId, path: notes, content: body });
      const back = await client.request(acp.methods.client.fs.readTextFile, { sessionId, path: notes });
      await say(client, sessionId, { sessionUpdate: "tool_call_update", toolCallId: "call-1", status: "completed",
        rawOutput: { bytes: back.content.length } });
    } else {
      await say(client, sessionId, { sessionUpdate: "tool_call_update", toolCallId: "call-1", status: "failed" });
    }
    if (text.includes("outside")) {
      const perm2 = await client.request(acp.methods.client.session.requestPermission, { sessionId,
        toolCall: { toolCallId: "call-2", title: "Write /etc/flapjack-standin", kind: "edit", locations: [{ path: "/etc/flapjack-standin" }] },
        options: [{ optionId: "yes", name: "Allow", kind: "allow_once" }, { optionId: "no", name: "Reject", kind: "reject_once" }] });
      await say(client, sessionId, { sessionUpdate: "agent_message_chunk", content: { type: "text",
        text: `outside permission: ${perm2.outcome.optionId ?? perm2.outcome.outcome}. ` } });
      try {
        await client.request(acp.methods.client.fs.readTextFile, { sessionId, path: "/etc/hostname" });
        await say(client, sessionId, { sessionUpdate: "agent_message_chunk", content: { type: "text", text: "read outside: allowed" } });
      } catch (e) {
        await say(client, sessionId, { sessionUpdate: "agent_message_chunk", content: { type: "text", text: "read outside: refused" } });
      }
    }
    await say(client, sessionId, { sessionUpdate: "available_commands_update", availableCommands: [{ name: "notes", description: "Write notes" }] });
    // An update of a kind from a newer protocol, written as it would arrive.
    process.stdout.write(JSON.stringify({ jsonrpc: "2.0", method: "session/update",
      params: { sessionId, update: { sessionUpdate: "x_future_update", note: "from the future" } } }) + "\n");
    await say(client, sessionId, { sessionUpdate: "agent_message_chunk", content: { type: "text", text: " Done." } });
    return { stopReason: "end_turn" };
  });

app.connect(acp.ndJsonStream(Writable.toWeb(process.stdout), Readable.toWeb(process.stdin)));
