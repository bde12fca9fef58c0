#!/usr/bin/env node
// A minimal but faithful Watchers.io bot server on npm's `socket.io` 4.x, for
// tests/test_interop_node.py: the Python client is checked against the real
// Node implementation of Socket.IO, not only against our own emulator.
//
// Usage:
//   node watchers_server.js --port 0 --token TOKEN [--token T2] --api-key KEY [--project node]
//
// Listens on 127.0.0.1 (port 0 = any free port), websocket transport only, and
// prints one JSON line {"port": N} on stdout when ready.  Then it prints one
// JSON line per event of interest (connect, refused, listen, send, exception,
// disconnect, posted, kicked, ...), and reads newline-delimited JSON commands
// on stdin:
//   {"cmd":"post","room":"r","text":"t","userId":"human"}  broadcast as a human
//   {"cmd":"post_many","room":"r","count":N}               texts "msg-0".."msg-N-1"
//   {"cmd":"kick"}                                          server-side disconnect of all sockets
//   {"cmd":"exception_mode","on":true}                      NestJS-style `exception` instead of
//                                                           the external/send ack
//   {"cmd":"ping","n":1}                                    answered {"event":"pong","n":1}
// Every command is answered by at least one line.  The server exits when
// stdin closes (so a test that dies never leaves it running).
// Secrets (tokens, API keys) are never printed.

"use strict";

const http = require("http");
const readline = require("readline");
const { Server } = require("socket.io");

function parseArgs(argv) {
  const opts = { port: 0, tokens: [], apiKeys: [], project: "node" };
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i];
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`missing value for ${name}`);
    i++;
    switch (name) {
      case "--port": opts.port = Number(value); break;
      case "--token": opts.tokens.push(value); break;
      case "--api-key": opts.apiKeys.push(value); break;
      case "--project": opts.project = value; break;
      default: throw new Error(`unknown option ${name}`);
    }
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    throw new Error("--port must be an integer in 0..65535");
  }
  if (!opts.tokens.length || !opts.apiKeys.length) {
    throw new Error("at least one --token and one --api-key are required");
  }
  return opts;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`watchers_server.js: ${err.message}\n`);
  process.exit(2);
}

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

const httpServer = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
const io = new Server(httpServer, {
  transports: ["websocket"],
  serveClient: false,
});

let nextId = 1;
let exceptionMode = false;

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function nonEmptyString(value) {
  return typeof value === "string" && value.trim() !== "";
}

function error(statusCode, message) {
  return { status: "error", statusCode, message };
}

// The request checks a NestJS validation pipe and guard would make.
// Returns an error answer, or null when the payload is valid.
function check(payload, fields) {
  if (!isObject(payload)) return error(400, "payload must be an object");
  if (!nonEmptyString(payload.apiKey)) return error(401, "apiKey is required");
  if (!opts.apiKeys.includes(payload.apiKey)) return error(401, "Invalid api key");
  for (const field of fields) {
    if (!nonEmptyString(payload[field])) return error(400, `${field} must be a non-empty string`);
  }
  return null;
}

function masked(payload) {
  if (!isObject(payload)) return payload;
  const copy = { ...payload };
  if ("apiKey" in copy) copy.apiKey = "***";
  return copy;
}

function broadcast(room, text, userId) {
  const payload = {
    project: opts.project,
    roomId: room,
    message: { id: nextId++, text },
    userId,
  };
  io.to(room).emit("message", payload);
  return payload;
}

io.use((socket, next) => {
  const auth = socket.handshake.auth;
  const bearer = isObject(auth) ? auth.bearer : undefined;
  if (typeof bearer === "string" && opts.tokens.includes(bearer)) {
    next();
  } else {
    out({ event: "refused", sid: socket.id });
    next(new Error("Unauthorized: invalid bearer token"));
  }
});

io.on("connection", (socket) => {
  out({ event: "connect", sid: socket.id });

  socket.on("disconnect", (reason) => {
    out({ event: "disconnect", sid: socket.id, reason });
  });

  socket.on("external/listen", (payload, ack) => {
    const answer = typeof ack === "function" ? ack : () => {};
    const err = check(payload, ["roomId"]);
    if (err) {
      out({ event: "listen_error", sid: socket.id, statusCode: err.statusCode });
      answer(err);
      return;
    }
    socket.join(payload.roomId);
    out({ event: "listen", sid: socket.id, room: payload.roomId });
    answer({ status: "ok", roomId: payload.roomId });
  });

  socket.on("external/send", (payload, ack) => {
    const answer = typeof ack === "function" ? ack : () => {};
    if (exceptionMode) {
      // What a NestJS gateway does when a handler throws: no ack, an event.
      socket.emit("exception", {
        status: "error",
        message: "Forbidden resource",
        cause: { pattern: "external/send", data: payload },
      });
      out({ event: "exception", sid: socket.id, text: isObject(payload) ? payload.text : null });
      return;
    }
    const err = check(payload, ["roomId", "userId", "text"]);
    if (err) {
      out({ event: "send_error", sid: socket.id, statusCode: err.statusCode });
      answer(err);
      return;
    }
    const sent = broadcast(payload.roomId, payload.text, payload.userId);
    out({
      event: "send",
      sid: socket.id,
      room: payload.roomId,
      userId: payload.userId,
      text: payload.text,
      id: sent.message.id,
    });
    answer();
  });

  socket.onAny((event, payload) => {
    if (event !== "external/listen" && event !== "external/send") {
      out({ event: "unknown", sid: socket.id, name: event, payload: masked(payload) });
    }
  });
});

function command(cmd) {
  switch (cmd.cmd) {
    case "post": {
      const sent = broadcast(String(cmd.room), String(cmd.text), String(cmd.userId || "human"));
      out({ event: "posted", room: sent.roomId, id: sent.message.id, text: sent.message.text });
      break;
    }
    case "post_many": {
      const room = String(cmd.room);
      const count = Number(cmd.count);
      const prefix = cmd.prefix === undefined ? "msg-" : String(cmd.prefix);
      const userId = String(cmd.userId || "human");
      let first = null;
      for (let i = 0; i < count; i++) {
        const sent = broadcast(room, prefix + i, userId);
        if (first === null) first = sent.message.id;
      }
      out({ event: "posted_many", room, count, firstId: first });
      break;
    }
    case "kick": {
      const count = io.of("/").sockets.size;
      io.disconnectSockets(true);
      out({ event: "kicked", count });
      break;
    }
    case "exception_mode":
      exceptionMode = Boolean(cmd.on);
      out({ event: "exception_mode", on: exceptionMode });
      break;
    case "ping":
      out({ event: "pong", n: cmd.n === undefined ? null : cmd.n });
      break;
    default:
      out({ event: "bad_command", cmd: cmd.cmd === undefined ? null : cmd.cmd });
  }
}

function shutdown(code) {
  // Close every socket and the listener, then exit whatever is left open.
  io.close();
  setTimeout(() => process.exit(code), 200).unref();
  httpServer.close(() => process.exit(code));
}

const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on("line", (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    out({ event: "bad_command", error: String(err.message) });
    return;
  }
  if (!isObject(cmd)) {
    out({ event: "bad_command", error: "a command is a JSON object" });
    return;
  }
  try {
    command(cmd);
  } catch (err) {
    out({ event: "command_failed", cmd: String(cmd.cmd), error: String(err.message) });
  }
});
rl.on("close", () => shutdown(0));
process.on("SIGTERM", () => shutdown(0));
process.on("SIGINT", () => shutdown(0));

httpServer.on("error", (err) => {
  process.stderr.write(`watchers_server.js: ${err.message}\n`);
  process.exit(1);
});
httpServer.listen(opts.port, "127.0.0.1", () => {
  out({ port: httpServer.address().port });
});
