// The JavaScript example plugin (a component): `greet` takes {"name": ...} in JSON, asks the host
// method `custom_greet` for a greeting, and answers with a sentence built from it (the Rust
// `hello` example's behaviour).
import * as dlinkwm from "../../../sdk/javascript/dlinkwm.js";
export { abiVersion, entries, call, saveState, restoreState } from "../../../sdk/javascript/dlinkwm.js";

const GREETING = "hello plugin greets";

dlinkwm.entry("greet", (params) => {
  if (typeof params !== "object" || params === null || typeof params.name !== "string") {
    throw new TypeError('expected a JSON object {"name": string}');
  }
  const name = params.name;
  dlinkwm.debug(`greet called for ${name}`);
  // A failed host method throws dlinkwm.HostError; its message becomes this entry's error.
  const said = dlinkwm.host.call("custom_greet", { name });
  return `${GREETING} ${name}; the host said: ${said}`;
});
