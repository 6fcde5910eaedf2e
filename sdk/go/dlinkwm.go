// Package dlinkwm is the DlinkWM plugin SDK for Go (ABI version 1, docs/abi.md).
//
//	//go:wasmexport greet
//	func greet(ptr, length uint32, format int32) int32 {
//		return dlinkwm.Entry(ptr, length, format, func(p GreetParams) (string, error) {
//			return "hi " + p.Name, nil
//		})
//	}
//
//	func main() {}
//
// Build (Go 1.24 or later, for go:wasmexport):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.wasm .
//
// Importing the package exports what the ABI requires (dlinkwm_abi_version, dlinkwm_alloc,
// dlinkwm_free). Go's collector may free any memory nothing in Go points to, so the buffers the
// host writes into are kept alive in a table until they are freed.
package dlinkwm

import (
	"encoding/json"
	"fmt"
	"unsafe"
)

//go:wasmimport dlinkwm set_output
func setOutput(ptr unsafe.Pointer, length uint32)

//go:wasmimport dlinkwm set_error
func setError(ptr unsafe.Pointer, length uint32)

//go:wasmimport dlinkwm host_call
func hostCall(name unsafe.Pointer, nameLen uint32, format int32, input unsafe.Pointer, inputLen uint32) int32

//go:wasmimport dlinkwm host_result_len
func hostResultLen() uint32

//go:wasmimport dlinkwm host_result_read
func hostResultRead(dst unsafe.Pointer)

//go:wasmimport dlinkwm log
func hostLog(level int32, ptr unsafe.Pointer, length uint32)

// live holds the buffers handed out by dlinkwm_alloc until they are freed.
var live = map[uint32][]byte{}

//go:wasmexport dlinkwm_abi_version
func abiVersion() int32 { return ABIVersion }

//go:wasmexport dlinkwm_alloc
func alloc(size uint32) uint32 {
	buffer := make([]byte, max(size, 1))
	ptr := uint32(uintptr(unsafe.Pointer(&buffer[0])))
	live[ptr] = buffer
	return ptr
}

//go:wasmexport dlinkwm_free
func free(ptr uint32, size uint32) {
	delete(live, ptr)
}

// bytesPtr is the address of b's data (nil for an empty slice).
func bytesPtr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

func stringPtr(s string) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.StringData(s))
}

// Input is an entry's input: its bytes and the format the host chose (also the output's format).
type Input struct {
	Bytes  []byte
	Format Format
}

// takeInput returns the entry's input buffer and releases it from the table (the entry owns it;
// the collector frees it once the entry no longer uses it).
func takeInput(ptr, length uint32) []byte {
	if ptr == 0 || length == 0 {
		return nil
	}
	buffer := live[ptr]
	delete(live, ptr)
	return buffer[:length]
}

// EntryBytes runs body as an entry on the input's bytes; its output is returned as it is and an
// error becomes the call's error message.
func EntryBytes(ptr, length uint32, format int32, body func(Input) ([]byte, error)) int32 {
	output, err := body(Input{Bytes: takeInput(ptr, length), Format: Format(format)})
	if err != nil {
		return Fail(err)
	}
	setOutput(bytesPtr(output), uint32(len(output)))
	return EntryOK
}

// Entry runs body as a typed entry: the input is decoded into In and the answer encoded from Out,
// in JSON (or, in the raw format, as text when In or Out is a string). An error becomes the
// call's error message.
func Entry[In any, Out any](ptr, length uint32, format int32, body func(In) (Out, error)) int32 {
	return EntryBytes(ptr, length, format, func(input Input) ([]byte, error) {
		var in In
		if err := decode(input.Bytes, input.Format, &in); err != nil {
			return nil, fmt.Errorf("invalid input: %w", err)
		}
		out, err := body(in)
		if err != nil {
			return nil, err
		}
		return encode(out, input.Format)
	})
}

// Fail sets err's message as the call's error and returns EntryError.
func Fail(err error) int32 {
	message := err.Error()
	setError(stringPtr(message), uint32(len(message)))
	return EntryError
}

func decode(bytes []byte, format Format, into any) error {
	switch format {
	case FormatJSON:
		return json.Unmarshal(bytes, into)
	case FormatRaw:
		if text, ok := into.(*string); ok {
			*text = string(bytes)
			return nil
		}
		return fmt.Errorf("the raw format carries only a string; use json")
	default:
		return fmt.Errorf("unsupported format %d: this plugin speaks json", format)
	}
}

func encode(value any, format Format) ([]byte, error) {
	switch format {
	case FormatJSON:
		return json.Marshal(value)
	case FormatRaw:
		if text, ok := value.(string); ok {
			return []byte(text), nil
		}
		return nil, fmt.Errorf("the raw format carries only a string; use json")
	default:
		return nil, fmt.Errorf("unsupported format %d: this plugin speaks json", format)
	}
}

// HostError is a host call that did not succeed: the method's own error, an unknown method, a
// permission the plugin's configuration does not grant, or an unsupported format.
type HostError struct {
	Status  Status
	Message string
}

func (e *HostError) Error() string { return e.Message }

// CallRaw calls host method `method` with `input` encoded in `format` and returns its answer's
// bytes. A failure is a *HostError.
func CallRaw(method string, format Format, input []byte) ([]byte, error) {
	status := Status(hostCall(stringPtr(method), uint32(len(method)), int32(format), bytesPtr(input), uint32(len(input))))
	answer := make([]byte, hostResultLen())
	if len(answer) > 0 {
		hostResultRead(unsafe.Pointer(&answer[0]))
	}
	if status != StatusOK {
		return nil, &HostError{Status: status, Message: string(answer)}
	}
	return answer, nil
}

// Call calls host method `method` with `params` in JSON and decodes its answer into Out.
func Call[Out any](method string, params any) (Out, error) {
	var out Out
	input, err := json.Marshal(params)
	if err != nil {
		return out, err
	}
	answer, err := CallRaw(method, FormatJSON, input)
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(answer, &out); err != nil {
		return out, fmt.Errorf("%s answered with unexpected JSON: %w", method, err)
	}
	return out, nil
}

// Log logs one formatted line at `level`, as a host `tracing` event.
func Log(level LogLevel, format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	hostLog(int32(level), stringPtr(line), uint32(len(line)))
}

// Error logs at the error level.
func Error(format string, args ...any) { Log(LogError, format, args...) }

// Warn logs at the warn level.
func Warn(format string, args ...any) { Log(LogWarn, format, args...) }

// Info logs at the info level.
func Info(format string, args ...any) { Log(LogInfo, format, args...) }

// Debug logs at the debug level.
func Debug(format string, args ...any) { Log(LogDebug, format, args...) }
