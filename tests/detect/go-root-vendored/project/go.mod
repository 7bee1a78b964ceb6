module github.com/acme/api

go 1.21

require (
	github.com/acme/lib v1.2.0 // indirect
)
