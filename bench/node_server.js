#!/usr/bin/env node
// The benchmark's Node server: a Watchers bot server on npm's `socket.io` 4.x,
// the same protocol as tests/node/watchers_server.js (bearer auth at connect,
// external/listen and external/send with acks, `message` broadcasts to rooms),
// but quiet: it prints nothing per request, so it measures Socket.IO and not
// stdout.  127.0.0.1 only, websocket transport only.
//
//   node node_server.js --token TOKEN --api-key KEY
//
// Prints {"port": N} when ready, then reads newline-delimited JSON commands on
// stdin, each answered by one line:
//   {"cmd":"post_many","room":"r","count":N,"size":100}
//       N messages whose texts are the index, zero-padded to 8 digits, then
//       padded to `size` characters; answered {"event":"posted_many",...}
//       once they are all handed to the socket.
//   {"cmd":"post_stamped","room":"r","count":N,"interval_ms":2}
//       one message every interval_ms whose text is process.hrtime.bigint()
//       (CLOCK_MONOTONIC ns, the clock of Python's time.monotonic_ns());
//       answered {"event":"posted_stamped"} after the last one.
//   {"cmd":"stats"}  answered {"event":"stats","sends":N,"listens":N}
//   {"cmd":"listeners"}  answered {"event":"listeners","rooms":N,"sockets":N}:
//       how many rooms have at least one listener, and connected sockets.
//   {"cmd":"drop"}  cuts the TCP link of every socket (ws terminate(): no
//       Socket.IO or Engine.IO close, like the emulator's drop()); answered
//       {"event":"dropped","count":N} once the server has seen them all go
//       (their rooms are left), so a following "listeners" counts only the
//       clients that came back.
// Exits when stdin closes.

"use strict";

const http = require("http");
const readline = require("readline");
const { Server } = require("socket.io");

const opts = { tokens: [], apiKeys: [], project: "node" };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const [name, value] = [argv[i], argv[i + 1]];
  if (value === undefined) throw new Error(`missing value for ${name}`);
  if (name === "--token") opts.tokens.push(value);
  else if (name === "--api-key") opts.apiKeys.push(value);
  else throw new Error(`unknown option ${name}`);
}

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

const httpServer = http.createServer((req, res) => { res.writeHead(404); res.end(); });
const io = new Server(httpServer, { transports: ["websocket"], serveClient: false });

let nextId = 1;
let sends = 0;
let listens = 0;

function error(statusCode, message) {
  return { status: "error", statusCode, message };
}

function check(payload, fields) {
  if (payload === null || typeof payload !== "object") return error(400, "payload must be an object");
  if (!opts.apiKeys.includes(payload.apiKey)) return error(401, "Invalid api key");
  for (const f of fields) {
    if (typeof payload[f] !== "string" || !payload[f]) return error(400, `${f} must be a non-empty string`);
  }
  return null;
}

function broadcast(room, text, userId) {
  io.to(room).emit("message", {
    project: opts.project, roomId: room, message: { id: nextId++, text }, userId,
  });
}

io.use((socket, next) => {
  const auth = socket.handshake.auth;
  if (auth && opts.tokens.includes(auth.bearer)) next();
  else next(new Error("Unauthorized: invalid bearer token"));
});

io.on("connection", (socket) => {
  socket.on("external/listen", (payload, ack) => {
    const answer = typeof ack === "function" ? ack : () => {};
    const err = check(payload, ["roomId"]);
    if (err) return answer(err);
    socket.join(payload.roomId);
    listens++;
    answer({ status: "ok", roomId: payload.roomId });
  });
  socket.on("external/send", (payload, ack) => {
    const answer = typeof ack === "function" ? ack : () => {};
    const err = check(payload, ["roomId", "userId", "text"]);
    if (err) return answer(err);
    sends++;
    broadcast(payload.roomId, payload.text, payload.userId);
    answer();
  });
});

function padded(i, size) {
  const head = String(i).padStart(8, "0");
  return size > head.length ? head + "x".repeat(size - head.length) : head;
}

function command(cmd) {
  switch (cmd.cmd) {
    case "post_many": {
      const room = String(cmd.room);
      const size = Number(cmd.size || 100);
      const first = nextId;
      for (let i = 0; i < Number(cmd.count); i++) broadcast(room, padded(i, size), "human");
      out({ event: "posted_many", count: Number(cmd.count), firstId: first });
      break;
    }
    case "post_stamped": {
      const room = String(cmd.room);
      let left = Number(cmd.count);
      const timer = setInterval(() => {
        broadcast(room, process.hrtime.bigint().toString(), "human");
        if (--left <= 0) {
          clearInterval(timer);
          out({ event: "posted_stamped" });
        }
      }, Number(cmd.interval_ms || 2));
      break;
    }
    case "stats":
      out({ event: "stats", sends, listens });
      break;
    case "listeners": {
      const nsp = io.of("/");
      // Every socket is in the room named by its own id, and an empty room is
      // deleted: the rest are the rooms listened to.
      out({ event: "listeners", rooms: nsp.adapter.rooms.size - nsp.sockets.size,
            sockets: nsp.sockets.size });
      break;
    }
    case "drop": {
      const sockets = [...io.of("/").sockets.values()];
      let left = sockets.length;
      const done = () => { if (--left === 0) out({ event: "dropped", count: sockets.length }); };
      if (!left) out({ event: "dropped", count: 0 });
      for (const socket of sockets) {
        socket.once("disconnect", done);
        socket.conn.transport.socket.terminate();
      }
      break;
    }
    default:
      out({ event: "bad_command" });
  }
}

const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on("line", (line) => {
  if (!line.trim()) return;
  try {
    command(JSON.parse(line));
  } catch (err) {
    out({ event: "command_failed", error: String(err.message) });
  }
});
rl.on("close", () => {
  io.close();
  setTimeout(() => process.exit(0), 200).unref();
  httpServer.close(() => process.exit(0));
});
httpServer.listen(0, "127.0.0.1", () => out({ port: httpServer.address().port }));
