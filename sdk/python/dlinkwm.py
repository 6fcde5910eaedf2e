"""The DlinkWM plugin helper for Python components (componentize-py, WIT world
`dlinkwm:plugin/plugin@0.1.0` in wit/plugin.wit).

    import dlinkwm
    from dlinkwm import WitWorld  # the world's exports, implemented here

    @dlinkwm.entry
    def greet(params):
        said = dlinkwm.host.call("custom_greet", {"name": params["name"]})
        return f"hi {params['name']}, the host said {said}"

Entries take the decoded JSON input (or nothing) and return something JSON can encode; an
exception becomes the call's error message. Build:

    componentize-py -d wit -w plugin componentize app -p . -p <path to>/sdk/python -o plugin.wasm
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import types

# The DlinkWM ABI version this helper implements: copied from crates/dlinkwm-abi/src/lib.rs, and
# checked against it by crates/dlinkwm-abi/tests/sdk_constants.rs.
ABI_VERSION = 1

_entries = {}
_state_hooks = {"save": None, "restore": None}


def entry(function=None, *, name=None):
    """Registers `function` as the entry `name` (default: the function's name)."""

    def register(function):
        _entries[name or function.__name__] = function
        return function

    return register(function) if function is not None else register


def on_save_state(function):
    """Registers `function() -> bytes | None`: the state handed to the next version on a reload."""
    _state_hooks["save"] = function
    return function


def on_restore_state(function):
    """Registers `function(state: bytes)`: takes the state the previous version saved."""
    _state_hooks["restore"] = function
    return function


class HostError(Exception):
    """A host method that did not answer: `kind` is "failed", "unknown-method",
    "permission-denied" or "unsupported-format"; the message is the host's."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.message = message


_HOST_ERRORS = {
    types.HostError_Failed: "failed",
    types.HostError_UnknownMethod: "unknown-method",
    types.HostError_PermissionDenied: "permission-denied",
    types.HostError_UnsupportedFormat: "unsupported-format",
}


class host:
    """Calling the methods the host application registered."""

    @staticmethod
    def call_raw(method, data, format=types.Format.RAW):
        """Calls `method` with bytes in `format`; returns the answer's bytes."""
        try:
            return wit_world.host_call(method, format, bytes(data))
        except Err as error:
            raise HostError(_HOST_ERRORS.get(type(error.value), "failed"), error.value.value)

    @staticmethod
    def call(method, params=None):
        """Calls `method` with `params` in JSON; returns the decoded answer."""
        answer = host.call_raw(method, json.dumps(params).encode(), types.Format.JSON)
        return json.loads(answer) if answer else None


def log(level, message):
    """Logs one line at `level` (types.LogLevel) through the host's `tracing`."""
    wit_world.log(level, str(message))


def error(message):
    log(types.LogLevel.ERROR, message)


def warn(message):
    log(types.LogLevel.WARN, message)


def info(message):
    log(types.LogLevel.INFO, message)


def debug(message):
    log(types.LogLevel.DEBUG, message)


def _decode(data, format):
    if format == types.Format.JSON:
        return json.loads(data) if data else None
    if format == types.Format.RAW:
        return data.decode() if data else None
    raise ValueError("this plugin speaks json (and raw text), not postcard")


def _encode(value, format):
    if format == types.Format.JSON:
        return json.dumps(value, ensure_ascii=False).encode()
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode()
    raise ValueError("the raw format carries only a string; use json")


class WitWorld(wit_world.WitWorld):
    """The world's exports, served from the registered entries."""

    def abi_version(self):
        return ABI_VERSION

    def entries(self):
        return list(_entries)

    def call(self, entry, format, input):
        function = _entries.get(entry)
        if function is None:
            raise Err(f"no entry `{entry}` (entries: {', '.join(_entries)})")
        try:
            argument = _decode(input, format)
            result = function() if argument is None and function.__code__.co_argcount == 0 else function(argument)
            return _encode(result, format)
        except HostError as failure:
            # A failed host method is a value; its message becomes this entry's error.
            raise Err(failure.message)
        except Exception as failure:
            raise Err(f"{type(failure).__name__}: {failure}")

    def save_state(self):
        hook = _state_hooks["save"]
        return hook() if hook else None

    def restore_state(self, state):
        hook = _state_hooks["restore"]
        if hook:
            try:
                hook(state)
            except Exception as failure:
                raise Err(f"{type(failure).__name__}: {failure}")
