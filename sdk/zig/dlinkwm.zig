//! The DlinkWM plugin SDK for Zig (ABI version 1, docs/abi.md).
//!
//!     const dlinkwm = @import("dlinkwm");
//!
//!     export fn greet(ptr: ?[*]u8, len: usize, format: i32) i32 {
//!         return dlinkwm.entry(ptr, len, format, greetImpl);
//!     }
//!     fn greetImpl(input: dlinkwm.Input) !void {
//!         const params = try input.json(struct { name: []const u8 });
//!         defer params.deinit();
//!         try dlinkwm.outputJson(params.value.name);
//!     }
//!
//! Build (pip install ziglang):
//!     python -m ziglang build-exe -target wasm32-freestanding -fno-entry -rdynamic -O ReleaseSmall
//!         --dep dlinkwm -Mroot=plugin.zig -Mdlinkwm=<path to>/sdk/zig/dlinkwm.zig -femit-bin=plugin.wasm
//!
//! Importing this file exports what the ABI requires (`dlinkwm_abi_version`, `dlinkwm_alloc`,
//! `dlinkwm_free`). Buffers crossing the ABI come from `allocator`.
const std = @import("std");
pub const abi = @import("abi.zig");
pub const Format = abi.Format;
pub const Status = abi.Status;
pub const LogLevel = abi.LogLevel;

/// The allocator every buffer crossing the ABI comes from.
pub const allocator = std.heap.wasm_allocator;

// The host's imports (module "dlinkwm").
const host = struct {
    extern "dlinkwm" fn set_output(ptr: [*]const u8, len: usize) void;
    extern "dlinkwm" fn set_error(ptr: [*]const u8, len: usize) void;
    extern "dlinkwm" fn host_call(name: [*]const u8, name_len: usize, format: i32, input: [*]const u8, input_len: usize) i32;
    extern "dlinkwm" fn host_result_len() usize;
    extern "dlinkwm" fn host_result_read(dst: [*]u8) void;
    extern "dlinkwm" fn log(level: i32, ptr: [*]const u8, len: usize) void;
};

export fn dlinkwm_abi_version() i32 {
    return abi.abi_version;
}

export fn dlinkwm_alloc(size: usize) ?[*]u8 {
    const block = allocator.alloc(u8, @max(size, 1)) catch return null;
    return block.ptr;
}

export fn dlinkwm_free(ptr: ?[*]u8, size: usize) void {
    if (ptr) |p| allocator.free(p[0..@max(size, 1)]);
}

/// An entry's input: its bytes and the format the host chose (also the output's format).
pub const Input = struct {
    bytes: []const u8,
    format: Format,

    /// The input decoded from JSON into `T` (unknown fields ignored); `deinit` the result.
    pub fn json(self: Input, comptime T: type) !std.json.Parsed(T) {
        if (self.format != .json) return fail("this entry speaks JSON only (format {d} asked)", .{@intFromEnum(self.format)});
        return std.json.parseFromSlice(T, allocator, self.bytes, .{ .ignore_unknown_fields = true }) catch |e|
            fail("invalid JSON input: {s}", .{@errorName(e)});
    }
};

var message_set = false;

/// Runs `body` as an entry: frees the host's input buffer afterwards, and turns an error into the
/// call's error message (the one given to `fail`, or the error's name).
pub fn entry(ptr: ?[*]u8, len: usize, format: i32, comptime body: fn (Input) anyerror!void) i32 {
    const bytes: []u8 = if (ptr) |p| p[0..len] else &.{};
    defer if (ptr) |p| allocator.free(p[0..@max(len, 1)]);
    message_set = false;
    body(.{ .bytes = bytes, .format = @enumFromInt(format) }) catch |e| {
        if (!message_set) setError(@errorName(e));
        return abi.entry_error;
    };
    return abi.entry_ok;
}

/// Sets the call's error message and returns `error.EntryFailed`: `return dlinkwm.fail(...)`.
pub fn fail(comptime fmt: []const u8, args: anytype) error{EntryFailed} {
    const message = std.fmt.allocPrint(allocator, fmt, args) catch {
        setError("out of memory formatting an error");
        return error.EntryFailed;
    };
    defer allocator.free(message);
    setError(message);
    return error.EntryFailed;
}

fn setError(message: []const u8) void {
    host.set_error(message.ptr, message.len);
    message_set = true;
}

/// Sets the entry's output (the host copies it).
pub fn output(bytes: []const u8) void {
    host.set_output(bytes.ptr, bytes.len);
}

/// Sets the output to `value` encoded as JSON.
pub fn outputJson(value: anytype) !void {
    const encoded = try std.json.Stringify.valueAlloc(allocator, value, .{});
    defer allocator.free(encoded);
    output(encoded);
}

/// A host method's answer (or error message); `deinit` it.
pub const HostResult = struct {
    status: Status,
    bytes: []u8,

    pub fn deinit(self: HostResult) void {
        allocator.free(self.bytes);
    }
};

/// Calls host method `method` with `input` encoded in `format`. Failures are values.
pub fn hostCall(method: []const u8, format: Format, input: []const u8) !HostResult {
    const status = host.host_call(method.ptr, method.len, @intFromEnum(format), input.ptr, input.len);
    const bytes = try allocator.alloc(u8, host.host_result_len());
    if (bytes.len > 0) host.host_result_read(bytes.ptr);
    return .{ .status = @enumFromInt(status), .bytes = bytes };
}

/// Calls host method `method` with `params` in JSON and decodes its answer as `Out`; `deinit`
/// the result. A failure of the method becomes this call's error message (`error.HostMethod`),
/// so `try` hands it on as the entry's error.
pub fn callJson(comptime Out: type, method: []const u8, params: anytype) !std.json.Parsed(Out) {
    const encoded = try std.json.Stringify.valueAlloc(allocator, params, .{});
    defer allocator.free(encoded);
    const answer = try hostCall(method, .json, encoded);
    defer answer.deinit();
    if (answer.status != .ok) {
        setError(answer.bytes);
        return error.HostMethod;
    }
    return std.json.parseFromSlice(Out, allocator, answer.bytes, .{ .ignore_unknown_fields = true, .allocate = .alloc_always }) catch |e|
        fail("{s} answered with unexpected JSON: {s}", .{ method, @errorName(e) });
}

/// Logs one formatted line at `level`, as a host `tracing` event.
pub fn log(level: LogLevel, comptime fmt: []const u8, args: anytype) void {
    const line = std.fmt.allocPrint(allocator, fmt, args) catch return;
    defer allocator.free(line);
    host.log(@intFromEnum(level), line.ptr, line.len);
}
