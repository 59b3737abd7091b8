package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nostressplanner/liveupdates/bench/internal/measure"
	"github.com/nostressplanner/liveupdates/retry"
)

// cpuMeter reads a process's CPU time at the start and end of a phase.
type cpuMeter struct {
	pids  []int
	start time.Duration
}

func startCPU(pids ...int) (*cpuMeter, error) {
	d, err := procsCPU(pids)
	return &cpuMeter{pids: pids, start: d}, err
}

func (m *cpuMeter) seconds() (float64, error) {
	d, err := procsCPU(m.pids)
	return (d - m.start).Seconds(), err
}

// procsCPU is the CPU time of the processes, added up.
func procsCPU(pids []int) (time.Duration, error) {
	var sum time.Duration
	for _, pid := range pids {
		d, err := measure.ProcCPU(pid)
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

// procsRSS is the resident memory of the processes, added up.
func procsRSS(pids []int) (int64, error) {
	var sum int64
	for _, pid := range pids {
		n, err := measure.ProcRSS(pid)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// phase is one measured stretch of a mode: the server's CPU time across it,
// the load tool's own (on a shared machine it says how much of the cores
// the client took from the server), and a CPU profile of it when asked.
type phase struct {
	server, self *cpuMeter
	prof         func() error
	t0           time.Time
}

// spent is what a phase cost.
type spent struct {
	seconds, cpu, loadCPU float64
}

// perItem is the server's CPU microseconds per item; 0 for no items.
func (s spent) perItem(n int64) float64 {
	if n <= 0 {
		return 0
	}
	return s.cpu * 1e6 / float64(n)
}

// startPhase starts measuring; profileFor is how long a profile of the
// phase should run.
func startPhase(c config, profileFor time.Duration) (*phase, error) {
	server, err := startCPU(c.pids...)
	if err != nil {
		return nil, err
	}
	self, err := startCPU(os.Getpid())
	if err != nil {
		return nil, err
	}
	return &phase{server: server, self: self, prof: profile(c, profileFor), t0: time.Now()}, nil
}

// end reads the phase's figures, then waits for its profile to be written.
func (p *phase) end() (spent, error) {
	el := time.Since(p.t0).Seconds()
	cpu, err1 := p.server.seconds()
	self, err2 := p.self.seconds()
	return spent{seconds: el, cpu: cpu, loadCPU: self}, errors.Join(err1, err2, p.prof())
}

// timed lets workers run c.warm unmeasured (the servers' first requests pay
// for warming up), then c.duration measured, with counting true only then.
func timed(c config, counting *atomic.Bool) (spent, error) {
	time.Sleep(c.warm)
	p, err := startPhase(c, c.duration)
	if err != nil {
		return spent{}, err
	}
	counting.Store(true)
	time.Sleep(c.duration)
	counting.Store(false)
	return p.end()
}

// profile fetches a CPU profile of the next d from the server's debug
// address, when asked to; wait returns once it is written.
func profile(c config, d time.Duration) (wait func() error) {
	if c.profileURL == "" {
		return func() error { return nil }
	}
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			u := c.profileURL + "?seconds=" + strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second)))
			res, err := http.Get(u)
			if err != nil {
				return fmt.Errorf("profile %s: %w", u, err)
			}
			defer res.Body.Close()
			if res.StatusCode != http.StatusOK {
				return fmt.Errorf("profile %s: %s", u, res.Status)
			}
			f, err := os.Create(c.profOut)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, res.Body); err != nil {
				f.Close()
				return fmt.Errorf("profile %s: %w", u, err)
			}
			return f.Close()
		}()
	}()
	return func() error { return <-done }
}

// waitFor checks cond every interval until it holds, within passes or ctx
// ends, and reports whether it held. cond runs once more after each wait.
func waitFor(ctx context.Context, within, every time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || retry.Sleep(ctx, every) != nil {
			return false
		}
	}
}

// ms is a duration in milliseconds, the unit of every latency reported.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func errOf(p *error) error {
	if p == nil {
		return nil
	}
	return *p
}
