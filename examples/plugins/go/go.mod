module example.com/hello

go 1.24

require github.com/dlinkwm/dlinkwm/sdk/go v0.0.0

replace github.com/dlinkwm/dlinkwm/sdk/go => ../../../sdk/go
