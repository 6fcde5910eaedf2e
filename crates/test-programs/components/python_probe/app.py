"""A Python component for the sandbox tests: entries that try what a plugin may only do when
granted (read a file, read the environment), run forever, or eat memory."""

import os

import dlinkwm
from dlinkwm import WitWorld  # noqa: F401 (the component's exports)


@dlinkwm.entry
def read_file(path):
    with open(path) as file:
        return file.read()


@dlinkwm.entry
def env(name):
    return os.environ.get(name)


@dlinkwm.entry
def spin():
    while True:
        pass


@dlinkwm.entry
def allocate(mebibytes):
    hoard = bytearray(mebibytes * 1024 * 1024)
    return len(hoard)


_state = {"count": 0}


@dlinkwm.entry
def count():
    _state["count"] += 1
    return _state["count"]


@dlinkwm.on_save_state
def save():
    return str(_state["count"]).encode()


@dlinkwm.on_restore_state
def restore(state):
    _state["count"] = int(state.decode())
