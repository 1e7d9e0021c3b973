// A whole session over MCP's Streamable HTTP transport, driven by the
// official TypeScript SDK (@modelcontextprotocol/sdk, pinned in testdata/npm)
// against a real `flapjack serve`. Usage:
//   node http-client.mjs SDK_DIR URL TOKEN OTHER_TOKEN REPO GATE
// It prints one JSON object with what it saw; the Go test judges it.
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [sdkDir, url, token, otherToken, repo, gate] = process.argv.slice(2);
const load = (p) => import(pathToFileURL(join(sdkDir, "dist/esm", p)).href);
const { Client } = await load("client/index.js");
const { StreamableHTTPClientTransport } = await load("client/streamableHttp.js");
const { ResourceUpdatedNotificationSchema } = await load("types.js");

const out = { updates: [], progress: [] };
const connect = async (tok) => {
  const client = new Client({ name: "flapjack-ts-test", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(url + "/mcp"), {
    requestInit: { headers: { Authorization: "Bearer " + tok } },
  });
  await client.connect(transport);
  return client;
};
const json = (res) => {
  if (res.isError) throw new Error(res.content.map((c) => c.text).join(" "));
  return res.structuredContent;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

try {
  // Without a token: refused by the server, before any MCP.
  const anon = await fetch(url + "/mcp", { method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json, text/event-stream" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "x", version: "1" } } }) });
  out.anonymousStatus = anon.status;
  out.anonymousChallenge = anon.headers.get("www-authenticate");

  const client = await connect(token);
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => { out.updates.push(n.params.uri); });
  out.tools = (await client.listTools()).tools.map((t) => t.name).sort();

  const agent = json(await client.callTool({ name: "flapjack_create_code_agent", arguments: { defaultRepoUrl: repo, runtime: "local" } }));
  const started = json(await client.callTool({ name: "flapjack_start_code_session", arguments: { codeAgentId: agent.id, prompt: "first" } }));
  const id = started.session_id;
  for (let i = 0; i < 200; i++) {
    const s = json(await client.callTool({ name: "flapjack_get_code_session", arguments: { codeSessionId: id } }));
    if (s.status === "finished" || s.status === "error") { out.firstStatus = s.status; break; }
    await sleep(100);
  }
  const uri = "flapjack://sessions/" + id;
  await client.subscribeResource({ uri });
  const before = json(await client.callTool({ name: "flapjack_get_code_session", arguments: { codeSessionId: id } }));
  json(await client.callTool({ name: "flapjack_send_code_session_message", arguments: { codeSessionId: id, prompt: "wait for the gate" } }));

  // A waiting events call with a progress token: progress arrives while it waits.
  const waited = await client.callTool({ name: "flapjack_list_code_session_events",
    arguments: { codeSessionId: id, since: 1000000, waitSeconds: 6 } }, undefined,
    { onprogress: (p) => out.progress.push(p.message ?? ""), timeout: 30000 });
  out.waitedEvents = json(waited).events.length;

  writeFileSync(gate, "go");
  for (let i = 0; i < 300; i++) {
    const s = json(await client.callTool({ name: "flapjack_get_code_session", arguments: { codeSessionId: id } }));
    if (s.status === "finished" || s.status === "error") { out.finalStatus = s.status; break; }
    await sleep(100);
  }
  await sleep(1500); // the last updates
  out.sessionUpdates = out.updates.filter((u) => u === uri).length;
  const statusEvents = json(await client.callTool({ name: "flapjack_list_code_session_events",
    arguments: { codeSessionId: id, since: before.last_event_seq } })).events.filter((e) => e.event_type === "status").length;
  out.statusChanges = statusEvents;
  const read = await client.readResource({ uri });
  out.resourceId = JSON.parse(read.contents[0].text).id;
  const listed = await client.listResources();
  out.listed = listed.resources.map((r) => r.uri);

  // Another org's token: the session does not exist for it.
  const other = await connect(otherToken);
  const res = await other.callTool({ name: "flapjack_get_code_session", arguments: { codeSessionId: id } });
  out.otherError = res.isError ? res.content[0].text : "none";
  try { await other.readResource({ uri }); out.otherRead = "allowed"; } catch (e) { out.otherRead = String(e.message); }
  await other.close();
  await client.close();
} catch (e) {
  out.error = String(e && e.stack || e);
}
console.log(JSON.stringify(out));
