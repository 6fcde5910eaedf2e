//! ABI constants, copied from crates/dlinkwm-abi/src/lib.rs (the one definition of the ABI).
//! This file is the only place in the Zig SDK where they are written; the test
//! crates/dlinkwm-abi/tests/sdk_constants.rs checks that it matches.

pub const abi_version: i32 = 1;
pub const import_module = "dlinkwm";

pub const entry_ok: i32 = 0;
pub const entry_error: i32 = 1;

pub const Format = enum(i32) {
    raw = 0,
    json = 1,
    postcard = 2,
    _,
};

pub const Status = enum(i32) {
    ok = 0,
    @"error" = 1,
    unknown_method = 2,
    permission_denied = 3,
    unsupported_format = 4,
    _,
};

pub const LogLevel = enum(i32) {
    err = 0,
    warn = 1,
    info = 2,
    debug = 3,
    trace = 4,
};
