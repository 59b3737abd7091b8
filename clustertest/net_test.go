package clustertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// netPrefix starts the name of every network namespace and link this suite
// creates, followed by the creating process id: "lct<pid>n0" is node 0's
// namespace, "lct<pid>br" the bridge, "lct<pid>v0" node 0's veth. The pid
// lets a later run remove what a killed run left behind, and nothing else.
const netPrefix = "lct"

// topo is a bridge in the root namespace with one network namespace per
// NATS node behind a veth. The roles and the test stay in the root
// namespace and reach the nodes on the bridge's subnet; cutting a node off
// is a pair of blackhole routes in the namespaces, so clients still reach
// every node while the routes between the cut node and its peers go dark.
type topo struct {
	id     string // netPrefix + pid
	subnet string // "10.213.N"
	nodes  int
}

func (n *topo) bridge() string      { return n.id + "br" }
func (n *topo) ns(i int) string     { return n.id + "n" + strconv.Itoa(i) }
func (n *topo) veth(i int) string   { return n.id + "v" + strconv.Itoa(i) }
func (n *topo) nodeIP(i int) string { return fmt.Sprintf("%s.%d", n.subnet, 10+i) }

// newTopo builds the bridge and a namespace per node, removed at cleanup.
func newTopo(t *testing.T, nodes int) *topo {
	t.Helper()
	removeStale(t)
	n := &topo{id: netPrefix + strconv.Itoa(os.Getpid()), nodes: nodes}
	subnet, err := freeSubnet()
	if err != nil {
		t.Fatalf("network: %v", err)
	}
	n.subnet = subnet
	t.Cleanup(func() { n.remove(t) })
	steps := [][]string{
		{"link", "add", n.bridge(), "type", "bridge"},
		{"addr", "add", n.subnet + ".1/24", "dev", n.bridge()},
		{"link", "set", n.bridge(), "up"},
	}
	for i := range nodes {
		steps = append(steps,
			[]string{"netns", "add", n.ns(i)},
			[]string{"link", "add", n.veth(i), "type", "veth", "peer", "name", "eth0", "netns", n.ns(i)},
			[]string{"link", "set", n.veth(i), "master", n.bridge()},
			[]string{"link", "set", n.veth(i), "up"},
			[]string{"-n", n.ns(i), "addr", "add", n.nodeIP(i) + "/24", "dev", "eth0"},
			[]string{"-n", n.ns(i), "link", "set", "eth0", "up"},
			[]string{"-n", n.ns(i), "link", "set", "lo", "up"},
		)
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			t.Fatalf("network setup (needs root and iproute2): %v", err)
		}
	}
	return n
}

// cut drops every packet between node i and the other nodes, both ways,
// until heal: each side blackholes the other's address.
func (n *topo) cut(i int) error { return n.routes("add", i) }

// heal removes what cut added.
func (n *topo) heal(i int) error { return n.routes("del", i) }

func (n *topo) routes(op string, i int) error {
	for j := range n.nodes {
		if j == i {
			continue
		}
		if err := ip("-n", n.ns(i), "route", op, "blackhole", n.nodeIP(j)+"/32"); err != nil {
			return err
		}
		if err := ip("-n", n.ns(j), "route", op, "blackhole", n.nodeIP(i)+"/32"); err != nil {
			return err
		}
	}
	return nil
}

// remove deletes the namespaces (their veth ends go with them) and the
// bridge. The processes inside were killed before, by their own cleanup.
func (n *topo) remove(t *testing.T) {
	for i := range n.nodes {
		if err := ip("netns", "del", n.ns(i)); err != nil && !strings.Contains(err.Error(), "No such file") {
			t.Errorf("network cleanup: %v", err)
		}
	}
	if err := ip("link", "del", n.bridge()); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
		t.Errorf("network cleanup: %v", err)
	}
}

// ip runs the ip command, bounded in time.
func ip(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// freeSubnet picks a 10.213.N.0/24 that no interface of this machine uses.
func freeSubnet() (string, error) {
	out, err := exec.Command("ip", "-4", "-o", "addr").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ip addr: %w: %s", err, out)
	}
	for k := range 150 {
		s := fmt.Sprintf("10.213.%d", 100+(os.Getpid()+k)%150)
		if !strings.Contains(string(out), " "+s+".") {
			return s, nil
		}
	}
	return "", fmt.Errorf("no free 10.213.N.0/24 subnet")
}

var staleName = regexp.MustCompile(`^` + netPrefix + `(\d+)(n\d+|br)$`)

// removeStale deletes namespaces and bridges of earlier runs whose process
// is gone (a run killed by a timeout never reaches its cleanup).
func removeStale(t *testing.T) {
	dead := func(name string) bool {
		m := staleName.FindStringSubmatch(name)
		if m == nil || m[1] == strconv.Itoa(os.Getpid()) {
			return false
		}
		_, err := os.Stat("/proc/" + m[1])
		return os.IsNotExist(err)
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && dead(f[0]) {
				if err := ip("netns", "del", f[0]); err != nil {
					t.Logf("stale namespace: %v", err)
				}
			}
		}
	}
	if out, err := exec.Command("ip", "-o", "link", "show", "type", "bridge").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			if name := strings.TrimSuffix(f[1], ":"); dead(name) {
				if err := ip("link", "del", name); err != nil {
					t.Logf("stale bridge: %v", err)
				}
			}
		}
	}
}
