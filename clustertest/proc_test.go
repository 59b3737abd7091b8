package clustertest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is one real process that a scenario starts, kills and restarts. Its
// output goes to a log file that a failing test prints the end of.
type proc struct {
	name    string
	argv    []string // the command line; "ip netns exec ..." for a NATS node
	env     []string
	logPath string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process has exited
	exitErr error
	// expectExit is set while the test itself stops the process, so an
	// exit on its own (a crash) can be told apart.
	expectExit bool
	crashes    []string
}

func newProc(t *testing.T, dir, name string, env []string, argv ...string) *proc {
	p := &proc{name: name, argv: argv, env: env, logPath: dir + "/" + name + ".log"}
	t.Cleanup(func() {
		// Bounded: SIGKILL does not wait for anything.
		p.kill()
		if t.Failed() {
			p.printTail(t, 25)
		}
	})
	return p
}

// start runs the process; it fails the test if it cannot be started.
func (p *proc) start(t *testing.T) {
	t.Helper()
	if err := p.startErr(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
}

func (p *proc) startErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !isClosed(p.done) {
		return fmt.Errorf("%s is already running", p.name)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== %s start %s\n", time.Now().Format(time.TimeOnly), strings.Join(p.argv, " "))
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = logf, logf
	// The kernel kills the process if this test binary dies first (a test
	// timeout never runs the cleanups).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	p.cmd, p.done, p.exitErr, p.expectExit = cmd, done, nil, false
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.exitErr = err
		if !p.expectExit {
			p.crashes = append(p.crashes, fmt.Sprintf("%s exited on its own at %s: %v", p.name, time.Now().Format(time.TimeOnly), err))
		}
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// signal sends sig to the running process and returns the channel closed
// at its exit; nil when it is not running.
func (p *proc) signal(sig syscall.Signal) chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || isClosed(p.done) {
		return nil
	}
	p.expectExit = true
	// An error means the process is exiting anyway (os.ErrProcessDone);
	// its Wait reports how.
	_ = p.cmd.Process.Signal(sig)
	return p.done
}

// kill SIGKILLs the process and waits for its exit (bounded: the kernel
// does not let a SIGKILL wait).
func (p *proc) kill() {
	if done := p.signal(syscall.SIGKILL); done != nil {
		<-done
	}
}

// stop asks the process to stop with SIGTERM and waits up to grace; past it
// the process is SIGKILLed and stop reports how long it had been waiting.
func (p *proc) stop(grace time.Duration) error {
	done := p.signal(syscall.SIGTERM)
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-time.After(grace):
		p.kill()
		return fmt.Errorf("%s did not stop within %v of SIGTERM; killed", p.name, grace)
	}
}

// running reports whether the process is up.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !isClosed(p.done)
}

// forgetCrashes clears the record of exits the test did not cause, for an
// exit the caller has already accounted for.
func (p *proc) forgetCrashes() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.crashes = nil
}

// lastLine is the last line the process wrote: why it exited, usually.
func (p *proc) lastLine() string {
	lines := p.tail(1)
	if len(lines) == 0 {
		return ""
	}
	return lines[0]
}

// crashed lists the exits the test did not cause.
func (p *proc) crashed() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.crashes...)
}

func (p *proc) printTail(t *testing.T, n int) {
	t.Logf("--- last lines of %s:\n%s", p.name, strings.Join(p.tail(n), "\n"))
}

// tail returns the last n lines of the process's log.
func (p *proc) tail(n int) []string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines
}
