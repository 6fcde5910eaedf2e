// ABI constants, copied from crates/dlinkwm-abi/src/lib.rs (the one definition of the ABI).
// This file is the only place in the AssemblyScript SDK where they are written; the test
// crates/dlinkwm-abi/tests/sdk_constants.rs checks that it matches.

export const ABI_VERSION: i32 = 1;
export const IMPORT_MODULE = "dlinkwm";

export const ENTRY_OK: i32 = 0;
export const ENTRY_ERROR: i32 = 1;

export const FORMAT_RAW: i32 = 0;
export const FORMAT_JSON: i32 = 1;
export const FORMAT_POSTCARD: i32 = 2;

export const STATUS_OK: i32 = 0;
export const STATUS_ERROR: i32 = 1;
export const STATUS_UNKNOWN_METHOD: i32 = 2;
export const STATUS_PERMISSION_DENIED: i32 = 3;
export const STATUS_UNSUPPORTED_FORMAT: i32 = 4;

export const LOG_ERROR: i32 = 0;
export const LOG_WARN: i32 = 1;
export const LOG_INFO: i32 = 2;
export const LOG_DEBUG: i32 = 3;
export const LOG_TRACE: i32 = 4;
