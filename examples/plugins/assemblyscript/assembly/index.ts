// The AssemblyScript example plugin: `greet` takes {"name": ...} in JSON, asks the host method
// `custom_greet` for a greeting, and answers with a sentence built from it (the Rust `hello`
// example's behaviour).
import * as dlinkwm from "../../../../sdk/assemblyscript/assembly/index";
export * from "../../../../sdk/assemblyscript/assembly/exports";

const GREETING = "hello plugin greets";

export function greet(ptr: usize, len: usize, format: i32): i32 {
  const input = dlinkwm.takeInput(ptr, len, format);
  if (input.format != dlinkwm.FORMAT_JSON) {
    return dlinkwm.error("greet speaks JSON only (format " + input.format.toString() + " asked)");
  }
  const name = dlinkwm.jsonGetString(input.text(), "name");
  if (name === null) return dlinkwm.error('expected a JSON object {"name": string}');
  dlinkwm.logDebug("greet called for " + name);

  const answer = dlinkwm.hostCallJson("custom_greet", '{"name":' + dlinkwm.jsonQuote(name) + "}");
  // The host method's error is a value: hand it on as this entry's error.
  if (!answer.ok) return dlinkwm.error(answer.text());
  const said = dlinkwm.jsonParseString(answer.text());
  if (said === null) return dlinkwm.error("custom_greet did not answer with a JSON string");
  return dlinkwm.outputJsonString(GREETING + " " + name + "; the host said: " + said);
}
