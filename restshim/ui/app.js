// flapjack's dashboard: the REST API of the server it comes from, signed in
// with a cookie. Every string from an agent, a template or a user is put in
// the page as text (textContent, never innerHTML): nothing it holds can run.
"use strict";

const state = { csrf: "", agents: new Map(), timers: [], stream: null };
const TERMINAL = new Set(["finished", "error", "cancelled", "expired"]);
const STATUSES = ["pending", "creating", "running", "finished", "error", "cancelled", "expired"];

// ---- DOM ----

// el makes an element; props are properties (never innerHTML), children
// are nodes or strings (made text nodes).
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else if (k === "href") e.setAttribute("href", safeHref(v));
    else if (k in e && typeof v !== "string") e[k] = v;
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// safeHref keeps links to the page's own routes and to http(s) URLs only.
function safeHref(v) {
  const s = String(v);
  if (s.startsWith("#")) return s;
  try {
    const u = new URL(s, location.href);
    if (u.protocol === "https:" || u.protocol === "http:") return u.href;
  } catch (_) { /* not a URL */ }
  return "#";
}

function show(...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes);
}

function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("show"), 3500);
}

// ---- API ----

class APIError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = state.csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  if (!res.ok) {
    const e = (data && data.error) || {};
    if (res.status === 401 && path !== "/ui/signin") signedOut();
    throw new APIError(res.status, e.code || String(res.status), e.message || res.statusText);
  }
  return data;
}

function fail(err) { toast(err.code ? err.code + ": " + err.message : String(err)); }

// ---- time ----

function relTime(iso) {
  if (!iso) return el("span", { class: "muted" }, "—");
  const t = new Date(iso);
  const s = Math.round((Date.now() - t.getTime()) / 1000);
  let text;
  if (s < 45) text = "just now";
  else if (s < 3600) text = Math.round(s / 60) + " min ago";
  else if (s < 86400) text = Math.round(s / 3600) + " h ago";
  else text = Math.round(s / 86400) + " d ago";
  return el("time", { datetime: iso, title: t.toLocaleString() }, text);
}

function badge(status) { return el("span", { class: "badge s-" + status }, status); }

// ---- Markdown, as text ----

// markdown renders a subset (paragraphs, headings, lists, code, emphasis,
// links) into nodes. HTML in the text is not HTML here: it stays text.
function markdown(src) {
  const root = el("div", { class: "md" });
  const lines = String(src).split("\n");
  let list = null;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith("```")) {
      const code = [];
      for (i++; i < lines.length && !lines[i].startsWith("```"); i++) code.push(lines[i]);
      root.append(el("pre", {}, el("code", {}, code.join("\n"))));
      list = null;
      continue;
    }
    const h = /^(#{1,6})\s+(.*)$/.exec(line);
    const li = /^\s*(?:[-*]|\d+\.)\s+(.*)$/.exec(line);
    if (h) { root.append(el("h" + Math.min(h[1].length + 2, 6), {}, inline(h[2]))); list = null; }
    else if (li) {
      if (!list) { list = el(/^\s*\d/.test(line) ? "ol" : "ul"); root.append(list); }
      list.append(el("li", {}, inline(li[1])));
    } else if (line.trim() === "") list = null;
    else { root.append(el("p", {}, inline(line))); list = null; }
  }
  return root;
}

function inline(text) {
  const out = [];
  const re = /(`[^`]+`)|(\*\*[^*]+\*\*)|(\*[^*]+\*)|(\[[^\]]+\]\([^)\s]+\))/g;
  let last = 0, m;
  while ((m = re.exec(text))) {
    if (m.index > last) out.push(text.slice(last, m.index));
    const t = m[0];
    if (m[1]) out.push(el("code", {}, t.slice(1, -1)));
    else if (m[2]) out.push(el("strong", {}, t.slice(2, -2)));
    else if (m[3]) out.push(el("em", {}, t.slice(1, -1)));
    else {
      const lm = /^\[([^\]]+)\]\(([^)\s]+)\)$/.exec(t);
      out.push(el("a", { href: lm[2], rel: "noopener noreferrer", target: "_blank" }, lm[1]));
    }
    last = m.index + t.length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

// ---- routing ----

function stopTimers() {
  state.timers.forEach(clearInterval);
  state.timers = [];
  if (state.stream) { state.stream.close(); state.stream = null; }
}

function every(ms, fn) { state.timers.push(setInterval(fn, ms)); }

async function route() {
  stopTimers();
  const hash = location.hash || "#/";
  const m = /^#\/(?:s\/([\w-]+)|templates(?:\/([\w-]+))?)?(?:\?(.*))?$/.exec(hash);
  try {
    if (!state.csrf) return signInPage();
    document.getElementById("nav").hidden = false;
    if (!m) return show(el("p", {}, "No such page. ", el("a", { href: "#/" }, "Sessions")));
    if (m[1]) return await sessionPage(m[1]);
    if (hash.startsWith("#/templates")) return await templatesPage(m[2]);
    return await sessionsPage(new URLSearchParams(m[3] || ""));
  } catch (err) {
    if (err.status !== 401) show(el("p", { class: "muted" }, "Could not load: " + err.message));
  }
}

// ---- sign in / out ----

function signedOut() {
  state.csrf = "";
  document.getElementById("nav").hidden = true;
  stopTimers();
  signInPage();
}

function signInPage() {
  document.getElementById("nav").hidden = true;
  const input = el("input", { type: "password", id: "token", autocomplete: "off", required: true, placeholder: "fj_live_..." });
  const form = el("form", { class: "card", id: "signin", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const me = await api("POST", "/ui/signin", { token: input.value });
      input.value = "";
      state.csrf = me.csrf;
      route();
    } catch (err) { fail(err); }
  } },
  el("h1", {}, "Sign in"),
  el("label", {}, el("span", {}, "API token (flapjack token create). It is exchanged for a cookie and not kept in this browser."), input),
  el("button", { class: "primary", type: "submit" }, "Sign in"));
  show(form);
  input.focus();
}

document.getElementById("signout").addEventListener("click", async () => {
  try { await api("POST", "/ui/signout"); } catch (_) { /* signed out anyway */ }
  signedOut();
});

// ---- sessions ----

async function loadAgents() {
  const list = await api("GET", "/api/code-agents?limit=500");
  state.agents = new Map(list.map((a) => [a.id, a]));
  return list;
}

function agentName(id) {
  const a = state.agents.get(id);
  return a ? a.name : id;
}

function usageText(u) {
  if (!u) return "";
  const parts = [];
  if (u.input_tokens != null || u.output_tokens != null) parts.push(((u.input_tokens || 0) + (u.output_tokens || 0)) + " tok");
  if (u.cost_usd != null) parts.push("$" + u.cost_usd.toFixed(2));
  return parts.join(" · ");
}

async function sessionsPage(params) {
  const agents = await loadAgents();
  const status = params.get("status") || "", agent = params.get("agent") || "";
  const filter = () => {
    const q = new URLSearchParams();
    if (statusSel.value) q.set("status", statusSel.value);
    if (agentSel.value) q.set("agent", agentSel.value);
    location.hash = "#/" + (q.toString() ? "?" + q : "");
  };
  const statusSel = el("select", { id: "status-filter", "aria-label": "Status", onchange: filter },
    el("option", { value: "" }, "Any status"), STATUSES.map((s) => el("option", { value: s, selected: s === status }, s)));
  const agentSel = el("select", { id: "agent-filter", "aria-label": "Template", onchange: filter },
    el("option", { value: "" }, "Any template"), agents.map((a) => el("option", { value: a.id, selected: a.id === agent }, a.name)));
  const body = el("tbody", { id: "sessions" });
  const table = el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Status"), el("th", {}, "Template"),
    el("th", { class: "hide-sm" }, "Repository"), el("th", {}, "PR"), el("th", {}, "Last activity"), el("th", { class: "hide-sm" }, "Usage"))), body);
  show(el("h1", {}, "Sessions"), el("div", { class: "filters" }, statusSel, agentSel), table);
  const load = async () => {
    const q = new URLSearchParams({ limit: "50" });
    if (status) q.set("status", status);
    if (agent) q.set("codeAgentId", agent);
    const list = await api("GET", "/api/code-sessions?" + q);
    body.replaceChildren(...(list.length ? list.map((s) => el("tr", { "data-id": s.id },
      el("td", {}, el("a", { href: "#/s/" + s.id }, badge(s.status)), s.archived ? el("span", { class: "muted" }, " archived") : null),
      el("td", {}, el("a", { href: "#/s/" + s.id }, agentName(s.code_agent_id))),
      el("td", { class: "hide-sm" }, s.repo_url),
      el("td", {}, s.pr_url ? el("a", { href: s.pr_url, rel: "noopener noreferrer", target: "_blank" }, "PR") : ""),
      el("td", {}, relTime(s.last_event_at || s.created_at)),
      el("td", { class: "hide-sm" }, usageText(s.usage)))) : [el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No sessions yet. Start one from a template."))]));
  };
  await load();
  every(2000, () => load().catch(() => {}));
}

// ---- one session ----

async function sessionPage(id) {
  let detail = await api("GET", "/api/code-sessions/" + encodeURIComponent(id));
  if (!state.agents.size) await loadAgents().catch(() => {});
  const head = el("div");
  const messages = el("div", { class: "messages" });
  const timeline = el("ol", { class: "timeline", id: "timeline", "aria-live": "polite" });
  const prompt = el("textarea", { id: "followup", required: true, "aria-label": "Follow-up prompt" });
  const followup = el("form", { class: "card", id: "followup-form", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", "/api/code-sessions/" + id + "/messages", { prompt: prompt.value });
      prompt.value = "";
      toast("Sent");
      refresh();
    } catch (err) { fail(err); }
  } }, el("label", {}, el("span", {}, "Follow-up"), prompt), el("button", { class: "primary", type: "submit" }, "Send"));
  const cancel = el("button", { id: "cancel", class: "danger", type: "button", onclick: async () => {
    if (!confirm("Cancel this session? The agent is stopped.")) return;
    try { await api("POST", "/api/code-sessions/" + id + "/cancel"); toast("Cancelled"); refresh(); } catch (err) { fail(err); }
  } }, "Cancel");
  const archive = el("button", { id: "archive", type: "button", onclick: async () => {
    if (!confirm("Archive this session? Its stored key is wiped.")) return;
    try { await api("POST", "/api/code-sessions/" + id + "/archive"); toast("Archived"); refresh(); } catch (err) { fail(err); }
  } }, "Archive");

  const draw = () => {
    const s = detail;
    head.replaceChildren(...[
      el("h1", {}, agentName(s.code_agent_id), " ", badge(s.status), s.archived ? el("span", { class: "muted" }, " archived") : null),
      el("p", { class: "meta" }, s.repo_url, " @ ", s.starting_ref, " · started ", relTime(s.created_at),
        s.pr_url ? [" · ", el("a", { id: "pr", href: s.pr_url, rel: "noopener noreferrer", target: "_blank" }, "pull request")] : null),
      s.error ? el("p", { class: "s-error" }, s.error) : null,
      el("div", { class: "row" }, TERMINAL.has(s.status) ? null : cancel, TERMINAL.has(s.status) && !s.archived ? archive : null),
    ].filter(Boolean));
    messages.replaceChildren(...(s.messages || []).map((m) => el("div", { class: "msg" },
      el("div", { class: "meta" }, "#" + m.id, " · ", m.status, " · ", relTime(m.created_at)),
      el("div", {}, m.prompt),
      m.result_text ? el("div", { class: "muted" }, m.result_text) : null)));
    followup.hidden = s.archived;
  };
  const refresh = async () => {
    detail = await api("GET", "/api/code-sessions/" + encodeURIComponent(id));
    draw();
  };
  draw();
  show(head, el("h2", {}, "Messages"), messages, followup, el("h2", {}, "Timeline"), timeline);
  every(2000, () => refresh().catch(() => {}));

  // The timeline: every event once, in order, resumed after a dropped
  // connection from the last one shown (EventSource sends Last-Event-ID).
  let lastSeq = 0;
  const src = new EventSource("/api/code-sessions/" + encodeURIComponent(id) + "/events/stream");
  state.stream = src;
  const onEvent = (msg) => {
    let ev;
    try { ev = JSON.parse(msg.data); } catch (_) { return; }
    if (ev.seq <= lastSeq) return;
    lastSeq = ev.seq;
    timeline.append(eventItem(ev));
  };
  for (const t of ["status", "user_message", "assistant", "thinking", "tool_call", "file_edit", "stdout", "stderr",
    "result", "error", "pr", "webhook", "stalled", "agent", "plan", "permission", "message"]) src.addEventListener(t, onEvent);
}

function eventItem(ev) {
  const p = ev.payload || {};
  const meta = el("div", { class: "meta" }, "#" + ev.seq, " ", ev.event_type, " · ", relTime(ev.created_at));
  let body;
  switch (ev.event_type) {
    case "assistant":
    case "thinking":
      body = markdown(p.text != null ? p.text : JSON.stringify(p));
      break;
    case "tool_call":
      body = el("details", {}, el("summary", {}, (p.name || p.tool || "tool") + (p.path ? " " + p.path : "") + (p.status ? " · " + p.status : "")),
        el("pre", {}, "args: " + JSON.stringify(p.args, null, 2)),
        p.result !== undefined ? el("pre", {}, "result: " + JSON.stringify(p.result, null, 2)) : null);
      break;
    case "file_edit":
      body = el("div", {}, (p.files || []).map((f) => el("div", {}, el("code", {}, f.path), f.status ? " " + f.status : "")),
        p.diff ? el("details", {}, el("summary", {}, "diff"), el("pre", {}, p.diff)) : null);
      break;
    case "stdout":
    case "stderr":
    case "agent":
      body = el("pre", {}, p.line != null ? p.line : JSON.stringify(p));
      break;
    case "user_message":
      body = el("div", {}, el("strong", {}, "Prompt: "), p.prompt != null ? p.prompt : JSON.stringify(p));
      break;
    case "result":
      body = el("div", {}, p.text != null ? p.text : "", p.duration_ms != null ? el("span", { class: "meta" }, " (" + p.duration_ms + " ms)") : null);
      break;
    case "status":
      body = el("div", {}, badge(p.status || "?"), p.reason ? " " + p.reason : "", p.error ? " " + p.error : "");
      break;
    default:
      body = el("pre", {}, JSON.stringify(p, null, 2));
  }
  return el("li", { class: "t-" + ev.event_type, "data-seq": ev.seq }, meta, body);
}

// ---- templates ----

async function templatesPage(id) {
  const agents = await loadAgents();
  if (id === "new") return templateForm(null);
  if (id) {
    const a = state.agents.get(id) || await api("GET", "/api/code-agents/" + encodeURIComponent(id));
    return templateForm(a);
  }
  show(el("div", { class: "row" }, el("h1", {}, "Templates"), el("a", { href: "#/templates/new", id: "new-template" }, "New template")),
    agents.length ? el("table", {}, el("tbody", {}, agents.map((a) => el("tr", {},
      el("td", {}, el("a", { href: "#/templates/" + a.id }, a.name)),
      el("td", { class: "hide-sm" }, a.default_repo_url || ""),
      el("td", { class: "muted hide-sm" }, a.model_id))))) : el("p", { class: "muted" }, "No templates yet."));
}

function field(label, input) { return el("label", {}, el("span", {}, label), input); }

function templateForm(a) {
  const v = a || { name: "", description: "", default_repo_url: "", default_starting_ref: "main", model_id: "auto", preamble: "", runtime: "", auto_create_pr: true };
  const f = {
    name: el("input", { id: "t-name", value: v.name }),
    description: el("input", { id: "t-description", value: v.description || "" }),
    repo: el("input", { id: "t-repo", value: v.default_repo_url || "", placeholder: "https://github.com/acme/app" }),
    ref: el("input", { id: "t-ref", value: v.default_starting_ref || "main" }),
    model: el("input", { id: "t-model", value: v.model_id || "auto" }),
    runtime: el("select", { id: "t-runtime" }, ["", "cloud", "local"].map((r) => el("option", { value: r, selected: r === (v.runtime || "") }, r || "server default"))),
    preamble: el("textarea", { id: "t-preamble" }, v.preamble || ""),
    pr: el("input", { id: "t-pr", type: "checkbox", checked: !!v.auto_create_pr }),
  };
  const body = () => ({ name: f.name.value, description: f.description.value, defaultRepoUrl: f.repo.value || null,
    defaultStartingRef: f.ref.value, modelId: f.model.value, runtime: f.runtime.value, preamble: f.preamble.value, autoCreatePR: f.pr.checked });
  const form = el("form", { class: "card", id: "template-form", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const saved = a ? await api("PATCH", "/api/code-agents/" + a.id, body()) : await api("POST", "/api/code-agents", body());
      toast("Saved");
      const next = "#/templates/" + saved.id;
      if (location.hash === next) route(); else location.hash = next;
    } catch (err) { fail(err); }
  } }, el("h1", {}, a ? "Template " + a.name : "New template"),
  field("Name", f.name), field("Description", f.description), field("Repository", f.repo), field("Starting ref", f.ref),
  field("Model", f.model), field("Runtime", f.runtime), field("Preamble", f.preamble),
  el("label", { class: "check" }, f.pr, "Open a pull request"),
  el("div", { class: "row" }, el("button", { class: "primary", type: "submit" }, "Save"),
    a ? el("button", { class: "danger", type: "button", id: "t-delete", onclick: async () => {
      if (!confirm("Delete this template? Its sessions go on.")) return;
      try { await api("DELETE", "/api/code-agents/" + a.id); toast("Deleted"); location.hash = "#/templates"; } catch (err) { fail(err); }
    } }, "Delete") : null));
  const parts = [form];
  if (a) {
    const s = { prompt: el("textarea", { id: "s-prompt", required: true }), repo: el("input", { id: "s-repo", placeholder: a.default_repo_url || "" }),
      ref: el("input", { id: "s-ref", placeholder: a.default_starting_ref || "" }) };
    parts.push(el("form", { class: "card", id: "start-form", onsubmit: async (ev) => {
      ev.preventDefault();
      const req = { codeAgentId: a.id, prompt: s.prompt.value };
      if (s.repo.value) req.repoUrl = s.repo.value;
      if (s.ref.value) req.startingRef = s.ref.value;
      try {
        const st = await api("POST", "/api/code-sessions", req);
        location.hash = "#/s/" + st.session_id;
      } catch (err) { fail(err); }
    } }, el("h2", {}, "Start a session"), field("Prompt", s.prompt), field("Repository (optional)", s.repo), field("Starting ref (optional)", s.ref),
    el("button", { class: "primary", type: "submit", id: "s-start" }, "Start")));
  }
  show(...parts);
}

// ---- start ----

window.addEventListener("hashchange", route);
(async () => {
  try {
    const me = await api("GET", "/ui/me");
    state.csrf = me.csrf;
  } catch (_) { /* not signed in */ }
  route();
})();
