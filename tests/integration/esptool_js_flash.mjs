// Writes a file into an ESP32 through esptool-js (Espressif's JavaScript esptool, unmodified),
// talking to the ROM loader (no stub) over a pty: an independent implementation of the
// protocol against robot-sim's download mode. Used by flash_esptool_js.sh.
//   node esptool_js_flash.mjs ESPTOOL_JS_DIR PTY OFFSET_HEX FILE compress|plain
// Prints "chip ESP32", "mac xx:..", "md5 <hex of the ROM's 32 ASCII hex digits>", exit 0; or
// the error and exit 1. The only glue is PtySerialPort: the WebSerial SerialPort interface
// esptool-js expects, over the pty's file descriptor.
import fs from "node:fs";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [dir, pty, offArg, file, mode] = process.argv.slice(2);
const { ESPLoader, Transport } = await import(pathToFileURL(path.join(dir, "lib/index.js")).href);

// The WebSerial SerialPort interface esptool-js drives, over the pty's file descriptor. The
// descriptor is non-blocking and polled: a blocking read would sit in libuv's thread pool and
// keep node from exiting.
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
class PtySerialPort {
  constructor(p) { this.p = p; this.readable = null; this.writable = null; this.closed = false; }
  getInfo() { return {}; }
  async open({ baudRate }) {
    execFileSync("stty", ["-F", this.p, "raw", "-echo", String(baudRate)]);
    const c = fs.constants;
    const fd = fs.openSync(this.p, c.O_RDWR | c.O_NOCTTY | c.O_NONBLOCK);
    this.fd = fd;
    this.closed = false;
    const self = this;
    this.readable = new ReadableStream({
      async pull(ctrl) {
        const buf = Buffer.alloc(4096);
        for (;;) {
          if (self.closed) { ctrl.close(); return; }
          try {
            const n = fs.readSync(fd, buf, 0, buf.length, null);
            if (n > 0) { ctrl.enqueue(new Uint8Array(buf.subarray(0, n))); return; }
          } catch (e) {
            if (e.code !== "EAGAIN") { ctrl.error(e); return; }
          }
          await sleep(2);
        }
      },
    });
    this.writable = new WritableStream({
      async write(chunk) {
        for (let off = 0; off < chunk.length;) {
          try {
            off += fs.writeSync(fd, chunk, off, chunk.length - off);
          } catch (e) {
            if (e.code !== "EAGAIN") { throw e; }
            await sleep(2);
          }
        }
      },
    });
  }
  async setSignals() {}
  async close() {
    this.closed = true;
    this.readable = null;
    this.writable = null;
    try { fs.closeSync(this.fd); } catch (e) { /* already closed */ }
  }
}

const terminal = { clean() {}, writeLine(s) { console.error(s); }, write(s) { process.stderr.write(s); } };
const transport = new Transport(new PtySerialPort(pty), !!process.env.EJS_TRACE);
const loader = new ESPLoader({ transport, baudrate: 115200, romBaudrate: 115200, terminal });
try {
  await loader.detectChip("no_reset");
  console.log("chip " + loader.chip.CHIP_NAME);
  console.log("mac " + (await loader.chip.readMac(loader)));
  await loader.flashSpiAttach(0);
  const data = new Uint8Array(fs.readFileSync(file));
  const offset = parseInt(offArg, 16);
  await loader.writeFlash({ fileArray: [{ data, address: offset }], flashSize: "keep",
    flashMode: "keep", flashFreq: "keep", eraseAll: false, compress: mode !== "plain" });
  const md5 = await loader.flashMd5sum(offset, data.length);
  console.log("md5 " + md5);
  process.exit(0);
} catch (e) {
  console.error("esptool-js: " + (e && e.message ? e.message : e));
  process.exit(1);
}
