#!/usr/bin/env node
// The Node client under test (npm socket.io-client 4.x), driven by bench/run.py
// over stdin/stdout with the same commands as bench/driver.py:
//
//   node driver.js URL TOKEN API_KEY
//
// Answers one JSON line per command ({"ready": true} first for the workloads
// the server feeds).  Exits when stdin closes or on {"cmd":"quit"}.

"use strict";

const readline = require("readline");
const { io } = require("socket.io-client");

const [url, token, apiKey] = process.argv.slice(2);
const SEND_ROOM = "bench-send";
const BOT_ID = "bench-bot";
const WAIT_MS = 120000;

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function nowNs() {
  return process.hrtime.bigint();
}

function open() {
  return new Promise((resolve, reject) => {
    const socket = io(url, {
      transports: ["websocket"], upgrade: false, reconnection: false,
      forceNew: true, auth: { bearer: token },
    });
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => reject(err));
  });
}

function call(socket, event, payload) {
  return new Promise((resolve, reject) => {
    socket.timeout(WAIT_MS).emit(event, payload, (err, ...args) => {
      if (err) reject(err); else resolve(args);
    });
  });
}

function sendPayload(text) {
  return { roomId: SEND_ROOM, apiKey, userId: BOT_ID, text };
}

function expectedText(i, size) {
  const head = String(i).padStart(8, "0");
  return size > head.length ? head + "x".repeat(size - head.length) : head;
}

function percentile(values, q) {
  const v = [...values].sort((a, b) => a - b);
  if (!v.length) return null;
  const k = Math.min(v.length - 1, Math.max(0, Math.round((q / 100) * (v.length - 1))));
  return v[k];
}

let socket;

// Resolves once `n` messages were handled by `onMessage`.
function consume(n, onMessage) {
  return new Promise((resolve, reject) => {
    let count = 0;
    const timer = setTimeout(() => {
      socket.off("message", handler);
      reject(new Error(`only ${count} of ${n} messages`));
    }, WAIT_MS);
    function handler(payload) {
      onMessage(payload.message.text, payload.message.id, count);
      if (++count === n) {
        clearTimeout(timer);
        socket.off("message", handler);
        resolve(count);
      }
    }
    socket.on("message", handler);
  });
}

async function run(cmd) {
  switch (cmd.cmd) {
    case "seq": {
      const t0 = nowNs();
      let acks = 0;
      for (let i = 0; i < cmd.n; i++) {
        await call(socket, "external/send", sendPayload(`seq ${i}`));
        acks++;
      }
      return { acks, seconds: Number(nowNs() - t0) / 1e9 };
    }
    case "pipe_cb":  // the Node client pipelines from its ack callbacks in both
    case "pipe": {
      const window = cmd.window || 256;
      const t0 = nowNs();
      let acks = 0;
      await new Promise((resolve, reject) => {
        let next = 0;
        let inflight = 0;
        const timer = setTimeout(() => reject(new Error(`only ${acks} acks`)), WAIT_MS);
        function pump() {
          while (inflight < window && next < cmd.n) {
            inflight++;
            socket.emit("external/send", sendPayload(`pipe ${next++}`), () => {
              inflight--;
              acks++;
              if (acks === cmd.n) { clearTimeout(timer); resolve(); } else pump();
            });
          }
        }
        pump();
      });
      return { acks, seconds: Number(nowNs() - t0) / 1e9 };
    }
    case "burst": {
      const size = cmd.size || 100;
      await call(socket, "external/listen", { roomId: cmd.room, apiKey });
      let inOrder = true;
      let lastId = null;
      let firstNs = 0n;
      const done = consume(cmd.n, (text, id, i) => {
        if (i === 0) firstNs = nowNs();
        if (text !== expectedText(i, size) || (lastId !== null && !(id > lastId))) inOrder = false;
        lastId = id;
      });
      out({ ready: true });
      const count = await done;
      const lastNs = nowNs();
      return { count, in_order: inOrder, first_ns: Number(firstNs), last_ns: Number(lastNs) };
    }
    case "latency": {
      await call(socket, "external/listen", { roomId: cmd.room, apiKey });
      const lat = [];
      const done = consume(cmd.n, (text) => {
        lat.push(Number(nowNs() - BigInt(text)) / 1000);
      });
      out({ ready: true });
      await done;
      return { count: lat.length, p50_us: percentile(lat, 50), p99_us: percentile(lat, 99) };
    }
    case "connect": {
      const times = [];
      for (let i = 0; i < cmd.k; i++) {
        const t0 = nowNs();
        const s = await open();
        await call(s, "external/listen", { roomId: "bench-connect", apiKey });
        times.push(Number(nowNs() - t0) / 1e9);
        s.close();
      }
      times.sort((a, b) => a - b);
      return { count: times.length, median_s: times[Math.floor(times.length / 2)] };
    }
    case "idle": {
      const c0 = process.cpuUsage();
      const t0 = nowNs();
      await new Promise((r) => setTimeout(r, cmd.seconds * 1000));
      const c = process.cpuUsage(c0);
      const wall = Number(nowNs() - t0) / 1e9;
      return { cpu_ms_per_s: (c.user + c.system) / 1000 / wall };
    }
    default:
      throw new Error(`unsupported command ${cmd.cmd}`);
  }
}

async function main() {
  socket = await open();
  out({ ready: true, client: "node" });
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  for await (const line of rl) {
    if (!line.trim()) continue;
    const cmd = JSON.parse(line);
    if (cmd.cmd === "quit") break;
    let result;
    try {
      result = await run(cmd);
      result.ok = true;
    } catch (err) {
      result = { ok: false, error: String(err && err.message) };
    }
    out(result);
  }
  socket.close();
  process.exit(0);
}

main().catch((err) => {
  out({ ok: false, error: String(err && err.message) });
  process.exit(1);
});
