//go:build !unix

package main

import "os"

// lockFile does not lock where flock is missing (Windows, Plan 9, wasm):
// there dev relies on its NATS and HTTP ports being taken to refuse a
// second process on the same machine, which covers the default settings
// but not two devs moved to other ports.
func lockFile(*os.File) (busy bool, err error) { return false, nil }
