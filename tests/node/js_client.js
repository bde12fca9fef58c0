#!/usr/bin/env node
// A Watchers.io bot written the way the vendor's JavaScript sample does it,
// on npm's `socket.io-client` 4.x, for tests/test_interop_node.py: our Python
// emulator is checked against the real Node client.
//
// Usage:
//   node js_client.js --url URL --token TOKEN --api-key KEY --room ROOM
//                     --user-id BOT_ID --text TEXT [--expect TEXT ...] [--timeout MS]
//
// Connects with io(url, {transports: ["websocket"], upgrade: false, auth: {bearer}}),
// listens to ROOM inside the `connect` handler, sends TEXT once the listen is
// acknowledged (with an ack callback, as the sample does), and waits until the
// send is acknowledged and it has seen its own message and every --expect text
// as `message` events.
// Prints one JSON line per thing it saw:
//   {"event":"connect","id":...}
//   {"event":"listen_ack","args":[...]}
//   {"event":"send_ack","args":[...],"error":<first arg or null>}
//   {"event":"message","payload":{...}}
//   {"event":"connect_error","message":...,"data":...}   (then exits 1)
//   {"event":"disconnect","reason":...}
//   {"event":"done"}                                     (then exits 0)
//   {"event":"timeout","missing":[...],"acked":bool}     (then exits 2)
// Secrets (token, API key) are never printed.

"use strict";

const { io } = require("socket.io-client");

function parseArgs(argv) {
  const opts = { expect: [], timeout: 10000 };
  const names = {
    "--url": "url", "--token": "token", "--api-key": "apiKey", "--room": "room",
    "--user-id": "userId", "--text": "text", "--timeout": "timeout",
  };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i];
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`missing value for ${name}`);
    if (name === "--expect") opts.expect.push(value);
    else if (names[name]) opts[names[name]] = value;
    else throw new Error(`unknown option ${name}`);
  }
  for (const required of ["url", "token", "apiKey", "room", "userId", "text"]) {
    if (!opts[required]) throw new Error(`missing --${required}`);
  }
  opts.timeout = Number(opts.timeout);
  return opts;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`js_client.js: ${err.message}\n`);
  process.exit(64);
}

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function finish(code) {
  socket.close();
  // Let stdout drain before exiting.
  process.stdout.write("", () => process.exit(code));
}

const socket = io(opts.url, {
  transports: ["websocket"],
  upgrade: false,
  auth: { bearer: opts.token },
});

// Texts still to be seen as `message` events: our own, then the expected ones.
const missing = new Set([opts.text, ...opts.expect]);
let sent = false;
let acked = false;

function maybeDone() {
  if (acked && missing.size === 0) {
    out({ event: "done" });
    finish(0);
  }
}

socket.on("connect", () => {
  out({ event: "connect", id: socket.id });
  socket.emit("external/listen", { roomId: opts.room, apiKey: opts.apiKey }, (...args) => {
    out({ event: "listen_ack", args });
    if (sent) return; // listened again after a reconnect
    sent = true;
    const payload = {
      roomId: opts.room,
      apiKey: opts.apiKey,
      userId: opts.userId,
      text: opts.text,
    };
    socket.emit("external/send", payload, (...ackArgs) => {
      out({ event: "send_ack", args: ackArgs, error: ackArgs.length ? ackArgs[0] : null });
      acked = true;
      maybeDone();
    });
  });
});

socket.on("message", (payload) => {
  out({ event: "message", payload });
  const text = payload && payload.message ? payload.message.text : undefined;
  missing.delete(text);
  maybeDone();
});

socket.on("connect_error", (err) => {
  out({
    event: "connect_error",
    message: err && err.message !== undefined ? err.message : null,
    data: err && err.data !== undefined ? err.data : null,
    active: socket.active,
  });
  finish(1);
});

socket.on("disconnect", (reason) => {
  out({ event: "disconnect", reason });
});

setTimeout(() => {
  out({ event: "timeout", missing: [...missing], acked });
  finish(2);
}, opts.timeout); // also keeps the process alive until finish()
