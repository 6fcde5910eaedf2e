// The DlinkWM plugin SDK for AssemblyScript (ABI version 1, docs/abi.md).
//
//     import * as dlinkwm from "<path to>/sdk/assemblyscript/assembly/index";
//     export * from "<path to>/sdk/assemblyscript/assembly/exports";
//
//     export function greet(ptr: usize, len: usize, format: i32): i32 {
//       const input = dlinkwm.takeInput(ptr, len, format);
//       return dlinkwm.outputJsonString("hi " + input.text());
//     }
//
// Build with the incremental runtime (the stub runtime never frees) and the SDK's abort handler:
//   npx asc assembly/index.ts -o plugin.wasm --runtime incremental -O3 --noAssert
//       --exportStart _initialize --use abort=<path to>/sdk/assemblyscript/assembly/index/onAbort
export * from "./abi";
import {
  ENTRY_ERROR,
  ENTRY_OK,
  FORMAT_JSON,
  LOG_DEBUG,
  LOG_ERROR,
  LOG_INFO,
  LOG_WARN,
  STATUS_OK,
} from "./abi";

// The host's imports (module "dlinkwm").
@external("dlinkwm", "set_output")
declare function set_output(ptr: usize, len: usize): void;
@external("dlinkwm", "set_error")
declare function set_error(ptr: usize, len: usize): void;
@external("dlinkwm", "host_call")
declare function host_call(namePtr: usize, nameLen: usize, format: i32, inPtr: usize, inLen: usize): i32;
@external("dlinkwm", "host_result_len")
declare function host_result_len(): usize;
@external("dlinkwm", "host_result_read")
declare function host_result_read(dst: usize): void;
@external("dlinkwm", "log")
declare function host_log(level: i32, ptr: usize, len: usize): void;

/** An entry's input: its bytes and the format the host chose (also the output's format). */
export class Input {
  constructor(public bytes: Uint8Array, public format: i32) {}

  /** The input as UTF-8 text. */
  text(): string {
    return String.UTF8.decode(this.bytes.buffer);
  }
}

/** Copies the input the host passed to an entry and frees the host's buffer (the entry owns it). */
export function takeInput(ptr: usize, len: usize, format: i32): Input {
  const bytes = new Uint8Array(<i32>len);
  if (len > 0) {
    memory.copy(bytes.dataStart, ptr, len);
    heap.free(ptr);
  }
  return new Input(bytes, format);
}

/** Sets the entry's output (the host copies it) and returns ENTRY_OK. */
export function output(bytes: Uint8Array): i32 {
  set_output(bytes.dataStart, <usize>bytes.length);
  return ENTRY_OK;
}

/** Sets `text` as the output, as UTF-8 (the raw format). */
export function outputString(text: string): i32 {
  const utf8 = String.UTF8.encode(text);
  set_output(changetype<usize>(utf8), <usize>utf8.byteLength);
  return ENTRY_OK;
}

/** Sets the output to `text` encoded as a JSON string. */
export function outputJsonString(text: string): i32 {
  return outputString(jsonQuote(text));
}

/** Sets the call's error message and returns ENTRY_ERROR. */
export function error(message: string): i32 {
  const utf8 = String.UTF8.encode(message);
  set_error(changetype<usize>(utf8), <usize>utf8.byteLength);
  return ENTRY_ERROR;
}

/** A host method's answer: `status` is STATUS_OK and `bytes` the answer, or another status and
 * `bytes` the error message. */
export class HostResult {
  constructor(public status: i32, public bytes: Uint8Array) {}

  get ok(): bool {
    return this.status == STATUS_OK;
  }

  /** The answer (or error message) as UTF-8 text. */
  text(): string {
    return String.UTF8.decode(this.bytes.buffer);
  }
}

/** Calls host method `method` with `input` encoded in `format`. Failures are values. */
export function hostCall(method: string, format: i32, input: Uint8Array): HostResult {
  const name = String.UTF8.encode(method);
  const status = host_call(
    changetype<usize>(name),
    <usize>name.byteLength,
    format,
    input.dataStart,
    <usize>input.length,
  );
  const answer = new Uint8Array(<i32>host_result_len());
  if (answer.length > 0) host_result_read(answer.dataStart);
  return new HostResult(status, answer);
}

/** Calls host method `method` with a JSON document. */
export function hostCallJson(method: string, json: string): HostResult {
  return hostCall(method, FORMAT_JSON, Uint8Array.wrap(String.UTF8.encode(json)));
}

/** Logs one line at `level` (LOG_*), as a host `tracing` event. */
export function log(level: i32, message: string): void {
  const utf8 = String.UTF8.encode(message);
  host_log(level, changetype<usize>(utf8), <usize>utf8.byteLength);
}
export function logError(message: string): void { log(LOG_ERROR, message); }
export function logWarn(message: string): void { log(LOG_WARN, message); }
export function logInfo(message: string): void { log(LOG_INFO, message); }
export function logDebug(message: string): void { log(LOG_DEBUG, message); }

/** The abort handler (`--use abort=.../index/onAbort`): the message becomes the host's
 * `GuestPanic`, and the trap discards the instance. */
export function onAbort(message: string | null, file: string | null, line: u32, column: u32): void {
  let text = message !== null ? message : "abort";
  if (file !== null) text += " at " + file + ":" + line.toString() + ":" + column.toString();
  error(text);
  unreachable();
}

// ---- JSON helpers (AssemblyScript has no JSON of its own): enough for flat string members.

/** `text` as a JSON string literal, quoted and escaped. */
export function jsonQuote(text: string): string {
  let out = "\"";
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c != 0x22 && c != 0x5c && c >= 0x20) continue;
    out += text.substring(start, i);
    if (c == 0x22) out += "\\\"";
    else if (c == 0x5c) out += "\\\\";
    else if (c == 0x0a) out += "\\n";
    else if (c == 0x0d) out += "\\r";
    else if (c == 0x09) out += "\\t";
    else out += "\\u00" + (c < 0x10 ? "0" : "") + c.toString(16);
    start = i + 1;
  }
  return out + text.substring(start) + "\"";
}

class Cursor {
  constructor(public text: string, public at: i32 = 0) {}

  space(): void {
    while (this.at < this.text.length) {
      const c = this.text.charCodeAt(this.at);
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
      this.at++;
    }
  }

  peek(): i32 {
    return this.at < this.text.length ? this.text.charCodeAt(this.at) : -1;
  }

  /** A string literal at the cursor, unescaped; null when malformed. */
  string(): string | null {
    if (this.peek() != 0x22) return null;
    this.at++;
    let out = "";
    let start = this.at;
    while (this.at < this.text.length) {
      const c = this.text.charCodeAt(this.at);
      if (c == 0x22) {
        out += this.text.substring(start, this.at);
        this.at++;
        return out;
      }
      if (c < 0x20) return null;
      if (c != 0x5c) {
        this.at++;
        continue;
      }
      out += this.text.substring(start, this.at);
      if (this.at + 1 >= this.text.length) return null;
      const e = this.text.charCodeAt(this.at + 1);
      this.at += 2;
      if (e == 0x22) out += "\"";
      else if (e == 0x5c) out += "\\";
      else if (e == 0x2f) out += "/";
      else if (e == 0x62) out += "\b";
      else if (e == 0x66) out += "\f";
      else if (e == 0x6e) out += "\n";
      else if (e == 0x72) out += "\r";
      else if (e == 0x74) out += "\t";
      else if (e == 0x75) {
        if (this.at + 4 > this.text.length) return null;
        const code = I32.parseInt(this.text.substring(this.at, this.at + 4), 16);
        if (isNaN(<f64>code)) return null;
        out += String.fromCharCode(code);
        this.at += 4;
      } else return null;
      start = this.at;
    }
    return null;
  }

  /** Skips one value of any kind; false when malformed. */
  skip(depth: i32): bool {
    this.space();
    const c = this.peek();
    if (c < 0 || depth > 64) return false;
    if (c == 0x22) return this.string() !== null;
    if (c == 0x7b || c == 0x5b) {
      const close = c == 0x7b ? 0x7d : 0x5d;
      this.at++;
      this.space();
      if (this.peek() == close) {
        this.at++;
        return true;
      }
      while (true) {
        if (c == 0x7b) {
          this.space();
          if (this.string() === null) return false;
          this.space();
          if (this.peek() != 0x3a) return false;
          this.at++;
        }
        if (!this.skip(depth + 1)) return false;
        this.space();
        const next = this.peek();
        this.at++;
        if (next == close) return true;
        if (next != 0x2c) return false;
      }
    }
    const begin = this.at;
    while (this.at < this.text.length && "+-.0123456789eEtruefalsn".includes(this.text.charAt(this.at))) {
      this.at++;
    }
    return this.at > begin;
  }
}

/** The string member `key` of the JSON object `json`; null when absent, not a string, or when
 * `json` is not an object. */
export function jsonGetString(json: string, key: string): string | null {
  const c = new Cursor(json);
  c.space();
  if (c.peek() != 0x7b) return null;
  c.at++;
  c.space();
  if (c.peek() == 0x7d) return null;
  while (true) {
    c.space();
    const name = c.string();
    if (name === null) return null;
    c.space();
    if (c.peek() != 0x3a) return null;
    c.at++;
    c.space();
    if (name == key) return c.peek() == 0x22 ? c.string() : null;
    if (!c.skip(0)) return null;
    c.space();
    if (c.peek() != 0x2c) return null;
    c.at++;
  }
}

/** The value of a JSON document that is one string; null otherwise. */
export function jsonParseString(json: string): string | null {
  const c = new Cursor(json);
  c.space();
  const text = c.string();
  c.space();
  return text !== null && c.at == json.length ? text : null;
}
