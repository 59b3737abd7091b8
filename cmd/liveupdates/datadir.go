package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// dataDirLockFile is the file in LIVE_DATA_DIR that dev holds locked while
// it runs.
const dataDirLockFile = "liveupdates.lock"

// errDataDirInUse is returned when another process holds LIVE_DATA_DIR.
var errDataDirInUse = errors.New("data directory in use")

// lockDataDir takes an exclusive lock on LIVE_DATA_DIR for as long as dev
// runs. Two embedded nats-servers on one store each write their own
// messages under the same sequence numbers, and after a restart a change
// that was answered 202 is gone; so a second dev on the same directory is
// refused at once. flock is released by the kernel when the process dies,
// so a crash never leaves a stale lock behind. release unlocks and closes.
func lockDataDir(dir string) (release func() error, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("LIVE_DATA_DIR=%q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return nil, fmt.Errorf("LIVE_DATA_DIR=%q: %w", dir, err)
	}
	path := filepath.Join(abs, dataDirLockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("LIVE_DATA_DIR=%q: open lock file: %w", dir, err)
	}
	if busy, err := lockFile(f); err != nil || busy {
		holder := ""
		if b, rerr := os.ReadFile(path); rerr == nil && len(strings.TrimSpace(string(b))) > 0 {
			holder = " (pid " + strings.TrimSpace(string(b)) + ")"
		}
		if cerr := f.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		if busy {
			return nil, errors.Join(fmt.Errorf("%w: LIVE_DATA_DIR=%q is used by another liveupdates dev%s; stop it, or give this one its own LIVE_DATA_DIR (and LIVE_NATS_LISTEN, LIVE_HTTP_ADDR)", errDataDirInUse, abs, holder), err)
		}
		return nil, fmt.Errorf("LIVE_DATA_DIR=%q: lock %s: %w", dir, path, err)
	}
	// The pid is for the message above only; the lock is the flock.
	if err := f.Truncate(0); err == nil {
		if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
			return nil, errors.Join(fmt.Errorf("LIVE_DATA_DIR=%q: write lock file: %w", dir, err), f.Close())
		}
	}
	return func() error {
		// Closing the descriptor releases the flock.
		if err := f.Close(); err != nil {
			return fmt.Errorf("release LIVE_DATA_DIR lock: %w", err)
		}
		return nil
	}, nil
}
