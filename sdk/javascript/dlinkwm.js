// The DlinkWM plugin helper for JavaScript components (componentize-qjs, WIT world
// `dlinkwm:plugin/plugin@0.1.0` in wit/plugin.wit).
//
//     import * as dlinkwm from "./sdk/javascript/dlinkwm.js";
//     export { abiVersion, entries, call, saveState, restoreState } from "./sdk/javascript/dlinkwm.js";
//
//     dlinkwm.entry("greet", (params) => {
//       const said = dlinkwm.host.call("custom_greet", { name: params.name });
//       return `hi ${params.name}, the host said ${said}`;
//     });
//
// Entries take the decoded JSON input (or undefined) and return something JSON can encode; a
// thrown error becomes the call's error message. Build:
//
//     npx componentize-qjs --wit wit --js plugin.js --sync --opt-size --stub-wasi -o plugin.wasm

// The DlinkWM ABI version this helper implements: copied from crates/dlinkwm-abi/src/lib.rs, and
// checked against it by crates/dlinkwm-abi/tests/sdk_constants.rs.
export const ABI_VERSION = 1;

const registered = new Map();
const stateHooks = { save: null, restore: null };

/** Registers `fn` as the entry `name`. */
export function entry(name, fn) {
  registered.set(name, fn);
}

/** Registers `fn() -> Uint8Array | null`: the state handed to the next version on a reload. */
export function onSaveState(fn) {
  stateHooks.save = fn;
}

/** Registers `fn(state: Uint8Array)`: takes the state the previous version saved. */
export function onRestoreState(fn) {
  stateHooks.restore = fn;
}

/** A host method that did not answer: `kind` is "failed", "unknown-method",
 * "permission-denied" or "unsupported-format"; the message is the host's. */
export class HostError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

// QuickJS has no TextEncoder/TextDecoder: UTF-8 by hand.
export function encodeUtf8(text) {
  const bytes = [];
  for (const char of text) {
    const c = char.codePointAt(0);
    if (c < 0x80) bytes.push(c);
    else if (c < 0x800) bytes.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) bytes.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else bytes.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return new Uint8Array(bytes);
}

export function decodeUtf8(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i];
    let c;
    let n;
    if (b < 0x80) [c, n] = [b, 1];
    else if (b >= 0xf0) [c, n] = [b & 7, 4];
    else if (b >= 0xe0) [c, n] = [b & 15, 3];
    else if (b >= 0xc0) [c, n] = [b & 31, 2];
    else [c, n] = [0xfffd, 1];
    if (n > 1) {
      if (i + n > bytes.length) [c, n] = [0xfffd, bytes.length - i];
      else for (let k = 1; k < n; k++) c = (c << 6) | (bytes[i + k] & 63);
    }
    text += String.fromCodePoint(c > 0x10ffff ? 0xfffd : c);
    i += n;
  }
  return text;
}

export const host = {
  /** Calls `method` with bytes in `format` ("raw", "json", "postcard"); returns the answer. */
  callRaw(method, bytes, format = "raw") {
    try {
      return globalThis.hostCall(method, format, bytes);
    } catch (failure) {
      // The import's `host-error` arrives as the thrown error's `payload` ({ tag, val }).
      const payload = failure && typeof failure === "object" && "payload" in failure ? failure.payload : failure;
      if (payload && typeof payload === "object" && "tag" in payload) {
        throw new HostError(payload.tag, String(payload.val));
      }
      throw failure;
    }
  },
  /** Calls `method` with `params` in JSON; returns the decoded answer. */
  call(method, params) {
    const answer = host.callRaw(method, encodeUtf8(JSON.stringify(params ?? null)), "json");
    return answer.length ? JSON.parse(decodeUtf8(answer)) : undefined;
  },
};

/** Logs one line at `level` ("error", "warn", "info", "debug", "trace"). */
export function log(level, message) {
  globalThis.log(level, String(message));
}
export const error = (message) => log("error", message);
export const warn = (message) => log("warn", message);
export const info = (message) => log("info", message);
export const debug = (message) => log("debug", message);

function decode(bytes, format) {
  if (format === "json") return bytes.length ? JSON.parse(decodeUtf8(bytes)) : undefined;
  if (format === "raw") return bytes.length ? decodeUtf8(bytes) : undefined;
  throw new Error("this plugin speaks json (and raw text), not postcard");
}

function encode(value, format) {
  if (format === "json") return encodeUtf8(JSON.stringify(value ?? null));
  if (value === undefined || value === null) return new Uint8Array(0);
  if (typeof value === "string") return encodeUtf8(value);
  throw new Error("the raw format carries only a string; use json");
}

// ---- The world's exports, served from the registered entries.

export function abiVersion() {
  return ABI_VERSION;
}

export function entries() {
  return [...registered.keys()];
}

export function call(name, format, input) {
  const fn = registered.get(name);
  if (!fn) throw `no entry \`${name}\` (entries: ${[...registered.keys()].join(", ")})`;
  try {
    return encode(fn(decode(input, format)), format);
  } catch (failure) {
    // A failed host method is a value; its message becomes this entry's error.
    if (failure instanceof HostError) throw failure.message;
    throw failure instanceof Error ? `${failure.name}: ${failure.message}` : String(failure);
  }
}

export function saveState() {
  return stateHooks.save ? stateHooks.save() ?? null : null;
}

export function restoreState(state) {
  if (!stateHooks.restore) return;
  try {
    stateHooks.restore(state);
  } catch (failure) {
    throw failure instanceof Error ? `${failure.name}: ${failure.message}` : String(failure);
  }
}
