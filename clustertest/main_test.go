package clustertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// bins are the binaries every scenario runs, built once by TestMain from
// this module: nats-server at the version go.mod pins, and liveupdates.
var bins struct{ nats, live string }

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	removeStaleBins()
	dir, err := os.MkdirTemp("", fmt.Sprintf("clustertest-bin-%d-", os.Getpid()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "clustertest:", err)
		return 1
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintln(os.Stderr, "clustertest: remove binaries:", err)
		}
	}()
	bins.nats = filepath.Join(dir, "nats-server")
	bins.live = filepath.Join(dir, "liveupdates")
	start := time.Now()
	if err := build(bins.nats, "github.com/nats-io/nats-server/v2"); err != nil {
		fmt.Fprintln(os.Stderr, "clustertest:", err)
		return 1
	}
	if err := build(bins.live, "./cmd/liveupdates"); err != nil {
		fmt.Fprintln(os.Stderr, "clustertest:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "clustertest: built nats-server and liveupdates in %v\n", time.Since(start).Round(100*time.Millisecond))
	return m.Run()
}

// build compiles pkg (a path inside this module or a module it requires)
// to out. go test puts GOROOT/bin first on PATH, so "go" is this toolchain.
func build(out, pkg string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = ".." // the module root; go test runs in the package directory
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// removeStaleBins removes the binaries of earlier runs whose process is
// gone: a run killed by its timeout never reaches its deferred removal.
func removeStaleBins() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "clustertest-bin-*-*"))
	for _, d := range dirs {
		pid, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), "clustertest-bin-"), "-")
		if _, err := strconv.Atoi(pid); err != nil || pid == strconv.Itoa(os.Getpid()) {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); os.IsNotExist(err) {
			if err := os.RemoveAll(d); err != nil {
				fmt.Fprintln(os.Stderr, "clustertest: remove stale binaries:", err)
			}
		}
	}
}
