//go:build tools

// Package tools pins the weed command so that `go mod tidy` keeps it.
package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
