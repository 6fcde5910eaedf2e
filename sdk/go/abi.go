package dlinkwm

// ABI constants, copied from crates/dlinkwm-abi/src/lib.rs (the one definition of the ABI).
// This file is the only place in the Go SDK where they are written; the test
// crates/dlinkwm-abi/tests/sdk_constants.rs checks that it matches.

// ABIVersion is the version of the DlinkWM ABI this SDK implements.
const ABIVersion int32 = 1

// ImportModule is the wasm module name of the host's imports.
const ImportModule = "dlinkwm"

// What an entry returns.
const (
	EntryOK    int32 = 0
	EntryError int32 = 1
)

// Format is how an entry's input and output, or a host call's, are encoded.
type Format int32

// The formats.
const (
	FormatRaw      Format = 0
	FormatJSON     Format = 1
	FormatPostcard Format = 2
)

// Status is the outcome of a host call.
type Status int32

// The statuses of a host call.
const (
	StatusOK                Status = 0
	StatusError             Status = 1
	StatusUnknownMethod     Status = 2
	StatusPermissionDenied  Status = 3
	StatusUnsupportedFormat Status = 4
)

// LogLevel is the level of a log line.
type LogLevel int32

// The log levels.
const (
	LogError LogLevel = 0
	LogWarn  LogLevel = 1
	LogInfo  LogLevel = 2
	LogDebug LogLevel = 3
	LogTrace LogLevel = 4
)
