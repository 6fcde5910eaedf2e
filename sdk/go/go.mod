module github.com/dlinkwm/dlinkwm/sdk/go

go 1.24
