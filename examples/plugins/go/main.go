// The Go example plugin: `greet` takes {"name": ...} in JSON, asks the host method
// `custom_greet` for a greeting, and answers with a sentence built from it (the Rust `hello`
// example's behaviour).
package main

import (
	dlinkwm "github.com/dlinkwm/dlinkwm/sdk/go"
)

const greeting = "hello plugin greets"

// GreetParams is the input of greet and the parameters of the host method custom_greet.
type GreetParams struct {
	Name string `json:"name"`
}

//go:wasmexport greet
func greet(ptr, length uint32, format int32) int32 {
	return dlinkwm.Entry(ptr, length, format, func(p GreetParams) (string, error) {
		dlinkwm.Debug("greet called for %s", p.Name)
		// A failure of the host method is a value; returning it makes it this entry's error.
		said, err := dlinkwm.Call[string]("custom_greet", p)
		if err != nil {
			return "", err
		}
		return greeting + " " + p.Name + "; the host said: " + said, nil
	})
}

func main() {}
