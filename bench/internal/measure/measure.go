// Package measure holds what the peer benchmark's load tool and driver share:
// percentiles and medians, a process's CPU time and resident memory from
// /proc, the few wire formats they parse (SSE frames, Prometheus text, a
// number inside a JSON payload), and the HS256 token Centrifugo asks of a
// unidirectional client. Standard library only: the benchmark must not pull
// Centrifugo's or anybody's client into this module.
package measure

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Percentile returns the p-th percentile (0 < p <= 100) of xs by the
// nearest-rank method, so the value is always one that was measured; 0 for
// no values. xs is not modified.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// Median is the middle value (the mean of the two middle ones for an even
// count); 0 for no values.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go runs on.
const clockTicks = 100

// ParseStatCPU returns utime+stime of a /proc/<pid>/stat line. The command
// name (field 2) is in parentheses and may hold spaces or parentheses, so
// fields are counted after the last ')'.
func ParseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("proc stat: no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// After the name: state(3) ppid(4) ... utime(14) stime(15), so
	// utime is f[11] and stime f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("proc stat: %d fields after the name, want at least 13", len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("proc stat utime/stime: %w", err)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// ProcCPU is the CPU time (user and system) process pid has used so far.
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	return ParseStatCPU(b)
}

// ParseStatusRSS returns VmRSS, in bytes, of a /proc/<pid>/status file.
func ParseStatusRSS(status []byte) (int64, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("proc status: VmRSS %q, want <n> kB", bytes.TrimSpace(rest))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("proc status VmRSS: %w", err)
		}
		return kb * 1024, nil
	}
	return 0, errors.New("proc status: no VmRSS line")
}

// ProcRSS is the resident memory of process pid, in bytes.
func ProcRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	return ParseStatusRSS(b)
}

// SSEEvent is one Server-Sent Events frame; comments (": heartbeat") and
// the retry field are dropped.
type SSEEvent struct {
	ID, Event, Data string
}

// SSEReader reads frames from an event stream.
type SSEReader struct {
	r *bufio.Reader
}

// NewSSEReader reads frames from r.
func NewSSEReader(r *bufio.Reader) *SSEReader { return &SSEReader{r: r} }

// line returns the next line without its end, copying only when the line
// is longer than the reader's buffer.
func (s *SSEReader) line() ([]byte, error) {
	line, err := s.r.ReadSlice('\n')
	if !errors.Is(err, bufio.ErrBufferFull) {
		return bytes.TrimRight(line, "\r\n"), err
	}
	long := slices.Clone(line)
	for errors.Is(err, bufio.ErrBufferFull) {
		line, err = s.r.ReadSlice('\n')
		long = append(long, line...)
	}
	return bytes.TrimRight(long, "\r\n"), err
}

// Next returns the next frame that has data. Lines may end in \n, \r\n or
// \r\n alone (Centrifugo opens its stream with a bare "\r\n"); several data
// lines join with \n as the SSE specification says.
func (s *SSEReader) Next() (SSEEvent, error) {
	var ev SSEEvent
	var data []string
	for {
		line, err := s.line()
		if err != nil {
			return SSEEvent{}, err
		}
		if len(line) == 0 {
			if data != nil {
				ev.Data = strings.Join(data, "\n")
				return ev, nil
			}
			ev = SSEEvent{}
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "id":
			ev.ID = string(value)
		case "event":
			ev.Event = string(value)
		case "data":
			data = append(data, string(value))
		}
	}
}

// IntField finds the first `"name":<integer>` in a JSON text and returns the
// integer: enough to pick a round number or a seq out of a frame without
// decoding it, which both servers' frames are paid for the same way.
func IntField(text, name string) (int64, bool) {
	key := `"` + name + `":`
	i := strings.Index(text, key)
	if i < 0 {
		return 0, false
	}
	rest := strings.TrimLeft(text[i+len(key):], " ")
	j := 0
	for j < len(rest) && (rest[j] == '-' || rest[j] >= '0' && rest[j] <= '9') {
		j++
	}
	n, err := strconv.ParseInt(rest[:j], 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// PromValue returns the value of the first sample of metric name (any
// labels) in a Prometheus text exposition.
func PromValue(text []byte, name string) (float64, bool) {
	for line := range bytes.Lines(text) {
		line = bytes.TrimRight(line, "\n")
		rest, ok := bytes.CutPrefix(line, []byte(name))
		if !ok || len(rest) == 0 || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if rest[0] == '{' {
			end := bytes.IndexByte(rest, '}')
			if end < 0 {
				continue
			}
			rest = rest[end+1:]
		}
		f := strings.Fields(string(rest))
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		return v, true
	}
	return 0, false
}

// HS256 signs claims as a JSON Web Token with HMAC-SHA256, the connection
// token Centrifugo accepts with client.token.hmac_secret_key.
func HS256(claims map[string]any, secret string) (string, error) {
	enc := base64.RawURLEncoding
	body, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("jwt claims: %w", err)
	}
	unsigned := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(body)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(unsigned))
	return unsigned + "." + enc.EncodeToString(mac.Sum(nil)), nil
}

// ParseUpdates reads a poll answer, {"cursor":"<seq>","events":[...]}, for
// its cursor and the seq of every change in it, without decoding the
// changes: 5,000 long-polling clients share the server's two cores, and a
// full JSON decode of every answer would take them from the server.
func ParseUpdates(body []byte) (cursor uint64, seqs []uint64, err error) {
	const key = `"cursor":"`
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return 0, nil, fmt.Errorf("poll answer has no cursor: %.80s", body)
	}
	rest := body[i+len(key):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return 0, nil, fmt.Errorf("poll answer cursor is not closed: %.80s", body)
	}
	if cursor, err = strconv.ParseUint(string(rest[:end]), 10, 64); err != nil {
		return 0, nil, fmt.Errorf("poll answer cursor: %w", err)
	}
	text := string(body)
	for {
		j := strings.Index(text, `"seq":`)
		if j < 0 {
			return cursor, seqs, nil
		}
		n, ok := IntField(text[j:], "seq")
		if !ok || n <= 0 {
			return 0, nil, fmt.Errorf("poll answer has a bad seq: %.80s", text[j:])
		}
		seqs = append(seqs, uint64(n))
		text = text[j+len(`"seq":`):]
	}
}
