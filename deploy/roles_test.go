package deploy

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/nostressplanner/liveupdates/poller"
	"github.com/nostressplanner/liveupdates/producer"
	"github.com/nostressplanner/liveupdates/relay"
	"github.com/nostressplanner/liveupdates/testutil"
)

// readmeEnv is every variable the README's configuration table documents.
// cmd/liveupdates checks that this table matches the variables the binary
// reads, so the manifests are checked against the real list through it.
var readmeEnv = sync.OnceValues(func() (map[string]bool, error) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	name := regexp.MustCompile("`((?:LIVE|PUSHER)_[A-Z0-9_]+)`")
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || strings.TrimSpace(cells[0]) != "" { // a table row: the variables are its first cell
			continue
		}
		for _, m := range name.FindAllStringSubmatch(cells[1], -1) {
			out[m[1]] = true
		}
	}
	return out, nil
})

func TestEveryManifestVariableIsDocumentedAndRead(t *testing.T) {
	t.Parallel()
	known, err := readmeEnv()
	if err != nil {
		t.Fatal(err)
	}
	for name := range knownEnv {
		if !known[name] {
			t.Errorf("%s is in deploy_test.go's known list but not in the README's configuration table", name)
		}
	}
	for role, rc := range liveContainers(t, manifests(t)) {
		for name := range environment(t, manifests(t), rc.c) {
			if !known[name] {
				t.Errorf("%s: %s is not a documented setting of liveupdates", role, name)
			}
		}
	}
}

// TestTheRolesAcceptTheirManifestConfiguration loads each role's
// configuration from the environment its manifest gives it, the way the
// binary would at start, with the Secret's values filled in.
func TestTheRolesAcceptTheirManifestConfiguration(t *testing.T) {
	t.Parallel()
	secrets := map[string]string{
		"LIVE_API_KEYS": "key-one,key-two", "LIVE_POLL_SECRET": strings.Repeat("s", 32),
		"PUSHER_APP_ID": "1", "PUSHER_KEY": "key", "PUSHER_SECRET": "secret", "PUSHER_CLUSTER": "eu",
	}
	objs := manifests(t)
	containers := liveContainers(t, objs)
	var relayCfg relay.Config
	var pollerCfg poller.Config
	for _, role := range []string{"api", "relay", "poller"} {
		rc, ok := containers[role]
		if !ok {
			t.Errorf("no manifest runs the %s role", role)
			continue
		}
		env := environment(t, objs, rc.c)
		getenv := func(k string) string {
			if env[k] == "<secret>" {
				return secrets[k]
			}
			return env[k]
		}
		var err error
		switch role {
		case "api":
			_, err = producer.LoadAPIConfig(getenv)
		case "relay":
			relayCfg, err = relay.LoadConfig(getenv)
		case "poller":
			pollerCfg, err = poller.LoadConfig(getenv)
		}
		if err != nil {
			t.Errorf("%s refuses its manifest's environment: %v", role, err)
		}
	}
	checkRelayAndPoller(t, "the manifests", relayCfg, pollerCfg)
}

// checkRelayAndPoller checks what a deployment (the manifests or compose)
// gives the relay and the poller together: the relay runs partitioned (per
// eventId order across a replica's crash) with the default ack wait (a
// killed replica's changes come back in seconds); the poller tells
// browsers about the relay's Pusher app (else /v1/config says "pusher":
// null and browsers only poll) and the very channels the relay sends to.
func checkRelayAndPoller(t *testing.T, where string, rc relay.Config, pc poller.Config) {
	t.Helper()
	def, err := relay.LoadConfig(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if !rc.PusherEnabled() {
		t.Errorf("%s: the relay's environment leaves Pusher disabled", where)
	}
	if rc.Partitions < 2 {
		t.Errorf("%s: relay LIVE_RELAY_PARTITIONS=%d, want partitioned mode with several partitions per replica", where, rc.Partitions)
	}
	if rc.AckWait != def.AckWait {
		t.Errorf("%s: relay ack wait %v, want the default %v so a killed replica's changes come back in seconds", where, rc.AckWait, def.AckWait)
	}
	if !pc.Pusher.Enabled() {
		t.Errorf("%s: the poller has no PUSHER_KEY: /v1/config would answer \"pusher\":null", where)
	}
	if pc.Pusher.Cluster == "" {
		t.Errorf("%s: the poller has no PUSHER_CLUSTER", where)
	}
	if pc.Pusher.Private && pc.Pusher.Secret == "" {
		t.Errorf("%s: private channels but the poller has no PUSHER_SECRET", where)
	}
	pollerPrefix := pc.Pusher.ChannelPrefix
	if pollerPrefix == "" {
		pollerPrefix = "event-"
	}
	if rc.ChannelPrefix != pollerPrefix || rc.PrivateChannels != pc.Pusher.Private {
		t.Errorf("%s: relay sends to prefix %q private %v, poller tells browsers %q private %v",
			where, rc.ChannelPrefix, rc.PrivateChannels, pollerPrefix, pc.Pusher.Private)
	}
}

// roleMetrics registers the metrics of the api, the relay and the poller,
// built the way the binary builds them, on a describer.
func roleMetrics(t *testing.T) *describer {
	t.Helper()
	js := testutil.RunJetStream(t).JS(t)
	d := &describer{names: map[string]bool{}, descs: map[string]string{}}
	metrics, err := producer.NewMetrics(d)
	if err != nil {
		t.Fatal(err)
	}
	pub := producer.NewPublisher(js, producer.Options{Metrics: metrics})
	if _, err := producer.NewAPI(producer.APIConfig{Keys: []string{"k"}}, producer.APIDeps{Publisher: pub, Registerer: d}); err != nil {
		t.Fatal(err)
	}
	relayCfg, err := relay.LoadConfig(func(k string) string {
		return map[string]string{"PUSHER_APP_ID": "1", "PUSHER_KEY": "k", "PUSHER_SECRET": "s", "PUSHER_HOST": "127.0.0.1:1"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := relay.New(relayCfg, relay.Deps{JS: js, Registerer: d}); err != nil {
		t.Fatal(err)
	}
	pollCfg, err := poller.LoadConfig(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := poller.New(pollCfg, poller.Deps{JS: js, Registerer: d}); err != nil {
		t.Fatal(err)
	}

	return d
}

// describer is a Registerer that only records the names of what the roles
// register: vectors without children are not gathered, but they describe.
type describer struct {
	mu    sync.Mutex
	names map[string]bool
	descs map[string]string // name: the Desc, with its labels
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (d *describer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	d.mu.Lock()
	defer d.mu.Unlock()
	for desc := range ch {
		if m := fqName.FindStringSubmatch(desc.String()); m != nil {
			d.names[m[1]] = true
			d.descs[m[1]] = desc.String()
		}
	}
	return nil
}

func (d *describer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := d.Register(c); err != nil {
			panic(err)
		}
	}
}

func (d *describer) Unregister(prometheus.Collector) bool { return true }

// TestAlertsUseMetricsTheRolesExport keeps alerts.yml honest: every metric
// its recording rules read is one a role registers.
func TestAlertsUseMetricsTheRolesExport(t *testing.T) {
	t.Parallel()
	d := roleMetrics(t)

	b, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Expr string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	suffix := regexp.MustCompile(`_(bucket|sum|count)$`)
	var used []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			used = append(used, regexp.MustCompile(`\bliveupdates_[a-z0-9_]+`).FindAllString(r.Expr, -1)...)
		}
	}
	if len(used) == 0 {
		t.Fatal("alerts.yml reads no liveupdates metric")
	}
	for _, m := range used {
		if !d.names[m] && !d.names[suffix.ReplaceAllString(m, "")] {
			names := make([]string, 0, len(d.names))
			for n := range d.names {
				names = append(names, n)
			}
			slices.Sort(names)
			t.Errorf("alerts.yml reads %s, which no role registers; the roles register:\n%s", m, strings.Join(names, "\n"))
		}
	}
}
