"""The Python example plugin (a component): `greet` takes {"name": ...} in JSON, asks the host
method `custom_greet` for a greeting, and answers with a sentence built from it (the Rust
`hello` example's behaviour)."""

import dlinkwm
from dlinkwm import WitWorld  # noqa: F401 (the component's exports)

GREETING = "hello plugin greets"


@dlinkwm.entry
def greet(params):
    if not isinstance(params, dict) or not isinstance(params.get("name"), str):
        raise ValueError('expected a JSON object {"name": string}')
    name = params["name"]
    dlinkwm.debug(f"greet called for {name}")
    # A failed host method raises dlinkwm.HostError; its message becomes this entry's error.
    said = dlinkwm.host.call("custom_greet", {"name": name})
    return f"{GREETING} {name}; the host said: {said}"
