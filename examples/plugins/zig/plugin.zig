//! The Zig example plugin: `greet` takes {"name": ...} in JSON, asks the host method
//! `custom_greet` for a greeting, and answers with a sentence built from it (the Rust `hello`
//! example's behaviour).
const std = @import("std");
const dlinkwm = @import("dlinkwm");

const greeting = "hello plugin greets";

const GreetParams = struct { name: []const u8 };

export fn greet(ptr: ?[*]u8, len: usize, format: i32) i32 {
    return dlinkwm.entry(ptr, len, format, greetImpl);
}

fn greetImpl(input: dlinkwm.Input) !void {
    const params = try input.json(GreetParams);
    defer params.deinit();
    const name = params.value.name;
    dlinkwm.log(.debug, "greet called for {s}", .{name});

    // A failure of the host method is a value; `try` hands its message on as this entry's error.
    const said = try dlinkwm.callJson([]const u8, "custom_greet", GreetParams{ .name = name });
    defer said.deinit();

    const sentence = try std.fmt.allocPrint(dlinkwm.allocator, greeting ++ " {s}; the host said: {s}", .{ name, said.value });
    defer dlinkwm.allocator.free(sentence);
    try dlinkwm.outputJson(sentence);
}
