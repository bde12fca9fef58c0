// watchers-bot playground. Plain JS, no build step: everything it does goes
// through the emulator's control API (/_emulator/api/...); live updates come
// from its Server-Sent Events stream. Data is shown with textContent only.
"use strict";

const API = "/_emulator/api/";
// Dark enough on white and on the bot row background (contrast >= 4.5:1).
const COLOURS = ["#0b57d0", "#a6361c", "#1e6b34", "#7b3fa0", "#8a5300", "#0f6b6b", "#b0246a"];

const S = {
  rooms: new Map(),      // room -> {messages: [], users: []}
  room: null,
  packets: [],
  bots: new Map(),       // sid -> bot info
  colours: new Map(),    // user -> colour
  transcript: null,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

function clock(at) {
  return new Date(at * 1000).toLocaleTimeString([], { hour12: false });
}

function showError(text) {
  $("error").textContent = text || "";
}

async function api(route, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(API + route, options);
  const type = response.headers.get("Content-Type") || "";
  const value = type.startsWith("application/json") ? await response.json() : await response.text();
  if (!response.ok) {
    const reason = (value && value.error) || response.statusText;
    showError(`${route}: ${reason}`);
    throw new Error(reason);
  }
  showError("");
  return value;
}

function colourOf(user) {
  if (!S.colours.has(user)) S.colours.set(user, COLOURS[S.colours.size % COLOURS.length]);
  return S.colours.get(user);
}

// ------------------------------------------------------------------ rooms and chat

function room(name) {
  if (!S.rooms.has(name)) {
    S.rooms.set(name, { messages: [], users: ["alice", "bob"] });
    renderRooms();
    addOption($("filter-room"), name);
    if (S.room === null) selectRoom(name);
  }
  return S.rooms.get(name);
}

function addOption(select, value, label) {
  if ([...select.options].some((o) => o.value === value)) return;
  select.append(el("option", { value, text: label || value }));
}

function renderRooms() {
  const list = $("room-list");
  list.replaceChildren();
  for (const [name, r] of S.rooms) {
    const button = el("button", { type: "button", "aria-current": String(name === S.room) },
      name, el("span", { class: "count muted", text: String(r.messages.length) }));
    button.addEventListener("click", () => selectRoom(name));
    list.append(el("li", {}, button));
  }
}

function selectRoom(name) {
  S.room = name;
  room(name);
  $("chat-room").textContent = name;
  renderRooms();
  renderMessages();
  renderUsers();
}

function renderUsers() {
  const select = $("as-user");
  const keep = select.value;
  select.replaceChildren();
  if (S.room === null) return;
  for (const user of S.rooms.get(S.room).users) select.append(el("option", { value: user, text: user }));
  if (S.rooms.get(S.room).users.includes(keep)) select.value = keep;
}

function messageItem(m) {
  const who = el("span", { class: "who", text: m.user });
  if (m.by === "human") who.style.color = colourOf(m.user);
  return el("li", { class: "msg " + m.by, "data-by": m.by },
    who, m.by === "bot" ? el("span", { class: "badge", text: "bot" }) : null,
    el("time", { datetime: new Date(m.at * 1000).toISOString(), text: clock(m.at) }),
    el("p", { text: m.text }));
}

function renderMessages() {
  const list = $("messages");
  list.replaceChildren(...(S.room ? S.rooms.get(S.room).messages.map(messageItem) : []));
  list.scrollTop = list.scrollHeight;
}

function onMessage(m) {
  const r = room(m.room);
  r.messages.push(m);
  if (m.by === "human" && !r.users.includes(m.user)) {
    r.users.push(m.user);
    if (m.room === S.room) renderUsers();
  }
  if (m.room === S.room) {
    const list = $("messages");
    list.append(messageItem(m));
    list.scrollTop = list.scrollHeight;
  }
  renderRooms();
}

// ------------------------------------------------------------------ inspector

function botName(sid) {
  const bot = sid && S.bots.get(sid);
  return bot ? `${bot.user || "bot"} (${sid.slice(0, 6)})` : sid ? sid.slice(0, 6) : "";
}

function packetMatches(p) {
  const room = $("filter-room").value, bot = $("filter-bot").value, ev = $("filter-event").value;
  if (room && p.room !== room) return false;
  if (bot && p.sid !== bot && p.direction !== "push") return false;
  if (ev === "other") return !["message", "external/listen", "external/send"].includes(p.event);
  return !ev || p.event === ev;
}

function packetItem(p) {
  let ack = "", ackClass = "";
  if (p.direction === "request") {
    if (!p.acked) {
      ack = p.mode === "exception" ? "no ack: exception event" : "no ack";
      ackClass = "ack-bad";
    }
    else {
      const bad = p.ack && typeof p.ack === "object" && p.ack.status === "error";
      ack = (bad ? "error ack" : "ack") + ` in ${p.ack_ms.toFixed(1)} ms`;
      ackClass = bad ? "ack-bad" : "ack-ok";
    }
  }
  const summary = el("summary", {},
    el("time", { text: clock(p.at) }),
    el("span", { class: "dir", text: p.direction === "push" ? "→ bot" : "→ server" }),
    el("code", { class: "event", text: p.event }),
    el("span", { text: p.room || "" }),
    el("span", { class: "muted", text: p.direction === "push" ? "" : botName(p.sid) }),
    el("span", { class: "ack " + ackClass, text: ack }));
  const raw = { ...p };
  delete raw.seq;
  return el("li", { "data-event": p.event }, el("details", {}, summary,
    el("pre", { text: JSON.stringify(raw, null, 2) })));
}

function renderPackets() {
  $("packets").replaceChildren(...S.packets.filter(packetMatches).map(packetItem));
}

function onPacket(p) {
  S.packets.push(p);
  if (S.packets.length > 2000) S.packets.shift();
  if (packetMatches(p)) $("packets").append(packetItem(p));
}

// ------------------------------------------------------------------ bots

function onBot(b) {
  const before = S.bots.get(b.sid);
  S.bots.set(b.sid, b);
  if (!before) {
    history(`${clock(b.connected_at)} ${botName(b.sid)} connected`);
  } else if (b.disconnected_at && !before.disconnected_at) {
    history(`${clock(b.disconnected_at)} ${botName(b.sid)} disconnected`);
  }
  if (b.disconnected_at) {
    for (const select of [$("filter-bot"), $("fault-target")]) {
      const option = [...select.options].find((o) => o.value === b.sid);
      if (option && select.id === "fault-target") option.remove();
    }
  } else {
    addOption($("filter-bot"), b.sid, botName(b.sid));
    addOption($("fault-target"), b.sid, botName(b.sid));
  }
  renderBots();
}

function history(text) {
  $("history").append(el("li", { text }));
}

function renderBots() {
  const list = $("bots");
  list.replaceChildren();
  for (const b of S.bots.values()) {
    const up = !b.disconnected_at;
    list.append(el("li", { "data-state": up ? "connected" : "disconnected" },
      el("strong", { text: b.user || "(no messages sent yet)" }), " ",
      el("code", { text: b.sid }), " ",
      el("span", { class: up ? "up" : "gone", text: up ? "connected" : "disconnected" }),
      el("div", { class: "muted", text: "rooms: " + (b.rooms.join(", ") || "none") +
        (b.room_count > b.rooms.length ? ` (+${b.room_count - b.rooms.length} more)` : "") }),
      el("div", { class: "muted", text: `since ${clock(b.connected_at)}` +
        (up ? "" : `, gone at ${clock(b.disconnected_at)}`) })));
  }
}

// ------------------------------------------------------------------ faults

function target() {
  return $("fault-target").value || null;
}

function faultLog(e) {
  const what = { ...e };
  for (const k of ["seq", "kind", "at", "fault"]) delete what[k];
  $("fault-log").append(el("li", { text: `${clock(e.at)} ${e.fault} ${JSON.stringify(what)}` }));
}

function bindFaults() {
  $("fault-drop").addEventListener("click", () => api("drop", { sid: target() }));
  $("fault-kick").addEventListener("click", () => api("kick", { sid: target() }));
  $("fault-freeze").addEventListener("click", () =>
    api("freeze", { sid: target(), duration: Number($("freeze-for").value) || null }));
  $("fault-thaw").addEventListener("click", () => api("thaw", { sid: target() }));
  $("fault-restart").addEventListener("click", () =>
    api("restart", { down_for: Number($("down-for").value) || 0 }));
  $("fault-ack").addEventListener("click", () => {
    const mode = $("ack-mode").value, message = $("ack-message").value.trim();
    const body = { event: $("ack-event").value, mode, times: $("ack-once").checked ? 1 : null };
    if (mode === "delay") body.delay = Number($("ack-delay").value) || 1;
    if (mode === "error" && message) body.error = { status: "error", statusCode: 500, message };
    if (mode === "exception" && message) body.error = message;
    if (mode === "normal") body.times = null;
    api("ack", body);
  });
  $("fault-push").addEventListener("click", () => {
    let args;
    try { args = JSON.parse($("push-args").value); } catch (e) {
      showError("arguments: not JSON: " + e.message); return;
    }
    if (!Array.isArray(args)) { showError("arguments: must be a JSON list"); return; }
    api("push", { event: $("push-event").value || "message", args, room: S.room,
      sid: target() }).catch(() => {});
  });
}

// ------------------------------------------------------------------ transcripts

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function showTranscript(t) {
  S.transcript = t;
  $("loaded").textContent = `Loaded: room ${t.room}, ${t.turns.length} turn(s).`;
  $("turns").replaceChildren(...t.turns.map((turn, n) =>
    el("li", { text: `${n}. ${turn.by === "bot" ? "[bot] " : ""}${turn.user}: ${turn.text}` })));
  $("from-turn").max = String(Math.max(t.turns.length - 1, 0));
}

async function currentTranscript() {
  if (S.room === null) throw new Error("pick a room first");
  return api("transcript?room=" + encodeURIComponent(S.room));
}

function bindTranscripts() {
  $("save-transcript").addEventListener("click", async () => {
    const t = await currentTranscript();
    showTranscript(t);
    download(`transcript-${t.room}.json`, JSON.stringify(t, null, 2) + "\n", "application/json");
  });
  $("load-transcript").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    try {
      const t = JSON.parse(await file.text());
      if (t.format !== "watchers-bot-transcript") throw new Error("not a watchers-bot transcript");
      showTranscript(t);
      room(t.room);
      selectRoom(t.room);
      showError("");
    } catch (e) { showError("load: " + e.message); }
  });
  $("replay").addEventListener("click", () => {
    if (!S.transcript) { showError("replay: load or save a transcript first"); return; }
    $("replay-status").textContent = "replaying…";
    api("replay", { transcript: S.transcript, from_turn: Number($("from-turn").value) || 0,
      room: S.transcript.room }).catch(() => { $("replay-status").textContent = ""; });
  });
  $("export").addEventListener("click", async () => {
    const handler = $("export-handler").value.trim();
    if (!handler) { showError("export: name the bot's handler as module:function"); return; }
    const t = S.transcript || await currentTranscript();
    const source = await api("export", { transcript: t, handler });
    const name = `test_${t.room.replace(/[^A-Za-z0-9]+/g, "_")}.py`;
    download(name, source, "text/x-python");
    $("export-status").textContent = `Exported ${name}: run it with pytest.`;
  });
}

function onReplay(e) {
  const status = $("replay-status");
  if (e.state === "started") status.textContent = `replaying ${e.room} from turn ${e.from_turn}…`;
  else if (e.state === "failed") status.textContent = `replay failed: ${e.error}`;
  else if (e.same) status.textContent = `replay done: the same ${e.answers.length} answer(s)`;
  else status.textContent = `replay done: different answers: got ${JSON.stringify(e.answers)}, ` +
    `expected ${JSON.stringify(e.expected)}`;
  status.dataset.state = e.state === "done" ? (e.same ? "same" : "different") : e.state;
}

// ------------------------------------------------------------------ tabs and forms

function bindTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const select = (tab) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
    tab.focus();
  };
  tabs.forEach((tab, n) => {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (e) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (step) { e.preventDefault(); select(tabs[(n + step + tabs.length) % tabs.length]); }
      if (e.key === "Home") { e.preventDefault(); select(tabs[0]); }
      if (e.key === "End") { e.preventDefault(); select(tabs[tabs.length - 1]); }
    });
  });
}

function bindForms() {
  $("room-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = $("new-room").value.trim();
    if (!name) return;
    await api("rooms", { room: name });
    room(name);
    selectRoom(name);
    $("new-room").value = "";
  });
  const addUser = () => {
    const user = $("new-user").value.trim();
    if (!user || S.room === null) return;
    const r = S.rooms.get(S.room);
    if (!r.users.includes(user)) r.users.push(user);
    renderUsers();
    $("as-user").value = user;
    $("new-user").value = "";
  };
  $("add-user").addEventListener("click", addUser);
  $("new-user").addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); addUser(); }
  });
  $("compose").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (S.room === null) { showError("pick or create a room first"); return; }
    const text = $("text").value;
    if (!text) return;
    await api("post", { room: S.room, text, user: $("as-user").value || "human" });
    $("text").value = "";
    $("text").focus();
  });
  for (const id of ["filter-room", "filter-bot", "filter-event"]) {
    $(id).addEventListener("change", renderPackets);
  }
}

// ------------------------------------------------------------------ live stream

function connect() {
  const source = new EventSource(API + "events");
  const status = $("link-status");
  source.onopen = () => { status.textContent = "live"; status.className = "status live"; };
  source.onerror = () => {
    status.textContent = "emulator unreachable: reconnecting…"; status.className = "status down";
  };
  const on = (kind, fn) => source.addEventListener(kind, (e) => fn(JSON.parse(e.data)));
  on("room", (e) => room(e.room));
  on("message", onMessage);
  on("packet", onPacket);
  on("bot", onBot);
  on("fault", faultLog);
  on("replay", onReplay);
  on("server", (e) => {
    status.textContent = `emulator ${e.state}…`; status.className = "status down";
  });
}

async function start() {
  bindTabs();
  bindForms();
  bindFaults();
  bindTranscripts();
  try {
    const state = await api("state");
    $("emu-url").textContent = state.url;
    $("emu-project").textContent = state.project;
  } catch (e) { /* shown by api() */ }
  connect();
}

document.addEventListener("DOMContentLoaded", start);
