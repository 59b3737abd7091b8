package deploy

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"gopkg.in/yaml.v3"

	"github.com/nostressplanner/liveupdates/ops"
	"github.com/nostressplanner/liveupdates/poller"
	"github.com/nostressplanner/liveupdates/producer"
	"github.com/nostressplanner/liveupdates/relay"
)

// composeFile is docker compose's file, not a Kubernetes manifest.
const composeFile = "compose.yaml"

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	User        string            `yaml:"user"`
	ReadOnly    bool              `yaml:"read_only"`
	Profiles    []string          `yaml:"profiles"`
}

func compose(t *testing.T) map[string]composeService {
	t.Helper()
	b, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	return c.Services
}

// interpolate resolves ${VAR:?msg}, ${VAR:-default} and ${VAR} the way
// compose does, from vars.
func interpolate(s string, vars map[string]string) string {
	return regexp.MustCompile(`\$\{([A-Z0-9_]+)(?::([?-])([^}]*))?\}`).ReplaceAllStringFunc(s, func(m string) string {
		p := regexp.MustCompile(`\$\{([A-Z0-9_]+)(?::([?-])([^}]*))?\}`).FindStringSubmatch(m)
		if v, ok := vars[p[1]]; ok && v != "" {
			return v
		}
		if p[2] == "-" {
			return p[3]
		}
		return ""
	})
}

// mounts returns a service's bind mounts, host path (relative to deploy/)
// to container path.
func mounts(svc composeService) map[string]string {
	out := map[string]string{}
	for _, v := range svc.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && strings.HasPrefix(parts[0], ".") {
			out[filepath.Clean(parts[0])] = parts[1]
		}
	}
	return out
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return port
}

// TestComposeRunsTheWholeSystem checks compose.yaml against the binary and
// the Kubernetes manifests: a three-node NATS cluster with the per-role
// users, every role from the image of the Dockerfile logged in as its own
// user with a configuration the role accepts, Prometheus scraping each
// role's metrics address, and Grafana provisioned with the dashboard.
// Not parallel: nats.conf reads its passwords from the environment.
func TestComposeRunsTheWholeSystem(t *testing.T) {
	services := compose(t)
	for _, want := range []string{"nats-1", "nats-2", "nats-3", "api", "relay", "poller", "prometheus", "grafana"} {
		if _, ok := services[want]; !ok {
			t.Errorf("compose.yaml has no service %s", want)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	k8s := manifests(t)

	// NATS: the image of nats.yaml, and a nats.conf that clusters the three
	// services with the users of ops.NATSRoles.
	natsImage := find(k8s, "StatefulSet", "nats").Spec.Template.Spec.Containers[0].Image
	var confPath string
	for _, name := range []string{"nats-1", "nats-2", "nats-3"} {
		svc := services[name]
		if svc.Image != natsImage {
			t.Errorf("%s runs %s, want nats.yaml's %s", name, svc.Image, natsImage)
		}
		if svc.Environment["SERVER_NAME"] != name {
			t.Errorf("%s: SERVER_NAME=%q, want its service name", name, svc.Environment["SERVER_NAME"])
		}
		for _, u := range natsUsers {
			if !strings.Contains(svc.Environment[natsPasswordVar(u)], "${"+natsPasswordVar(u)) {
				t.Errorf("%s: %s is not taken from .env", name, natsPasswordVar(u))
			}
		}
		for host, ctr := range mounts(svc) {
			if ctr == "/etc/nats/nats.conf" {
				confPath = host
			}
		}
		if !slices.Contains(svc.Command, "/etc/nats/nats.conf") {
			t.Errorf("%s: command %v does not load /etc/nats/nats.conf", name, svc.Command)
		}
	}
	t.Setenv("SERVER_NAME", "nats-1")
	for _, u := range natsUsers {
		t.Setenv(natsPasswordVar(u), "pw-"+u)
	}
	opts, err := server.ProcessConfigFile(confPath)
	if err != nil {
		t.Fatalf("nats-server rejects %s: %v", confPath, err)
	}
	var routes []string
	for _, r := range opts.Routes {
		routes = append(routes, r.Host)
	}
	if want := []string{"nats-1:6222", "nats-2:6222", "nats-3:6222"}; !slices.Equal(slices.Sorted(slices.Values(routes)), want) || opts.Cluster.Port != 6222 {
		t.Errorf("%s routes %v on cluster port %d, want %v", confPath, routes, opts.Cluster.Port, want)
	}
	checkUsers(t, confPath, opts)
	if _, err := server.NewServer(opts); err != nil {
		t.Errorf("nats-server refuses %s: %v", confPath, err)
	}

	// The roles.
	k8sImage := liveContainers(t, k8s)["api"].c.Image
	scraped := prometheusTargets(t)
	known, err := readmeEnv()
	if err != nil {
		t.Fatal(err)
	}
	fake := map[string]string{"LIVE_API_KEYS": "k1,k2", "LIVE_POLL_SECRET": strings.Repeat("s", 32),
		"PUSHER_APP_ID": "1", "PUSHER_KEY": "key", "PUSHER_SECRET": "secret", "PUSHER_CLUSTER": "eu"}
	for _, u := range natsUsers {
		fake[natsPasswordVar(u)] = "pw-" + u
	}
	var relayCfg relay.Config
	var pollerCfg poller.Config
	for _, role := range []string{"api", "relay", "poller"} {
		svc := services[role]
		if len(svc.Command) == 0 || svc.Command[0] != role {
			t.Errorf("%s: command %v, want [%s]", role, svc.Command, role)
		}
		if svc.Image != k8sImage {
			t.Errorf("%s: image %s, want the manifests' %s", role, svc.Image, k8sImage)
		}
		if svc.Build == nil || filepath.Join(svc.Build.Context, svc.Build.Dockerfile) != "../Dockerfile" {
			t.Errorf("%s: not built from ../Dockerfile: %+v", role, svc.Build)
		}
		if svc.User != fmt.Sprintf("%d:%d", nonRootUID, nonRootUID) || !svc.ReadOnly {
			t.Errorf("%s: user %q read_only %v, want the image's non-root %d on a read-only root", role, svc.User, svc.ReadOnly, nonRootUID)
		}
		env := map[string]string{}
		for k, v := range svc.Environment {
			if !known[k] {
				t.Errorf("%s: %s is not a documented setting of liveupdates", role, k)
			}
			env[k] = interpolate(v, fake)
		}
		if env["LIVE_NATS_USER"] != role || env["LIVE_NATS_PASSWORD"] != "pw-"+role {
			t.Errorf("%s: logs in to NATS as %q with the password of %s, want its own user", role, env["LIVE_NATS_USER"], svc.Environment["LIVE_NATS_PASSWORD"])
		}
		var urls []string
		for _, u := range strings.Split(env["LIVE_NATS_URL"], ",") {
			urls = append(urls, strings.TrimPrefix(u, "nats://"))
		}
		if want := []string{"nats-1:4222", "nats-2:4222", "nats-3:4222"}; !slices.Equal(slices.Sorted(slices.Values(urls)), want) || opts.Port != 4222 {
			t.Errorf("%s: LIVE_NATS_URL=%q, want every NATS node %v", role, env["LIVE_NATS_URL"], want)
		}
		if env["LIVE_STREAM_REPLICAS"] != "3" {
			t.Errorf("%s: LIVE_STREAM_REPLICAS=%q, want 3 on three nodes", role, env["LIVE_STREAM_REPLICAS"])
		}
		if target := role + ":" + portOf(t, env["LIVE_METRICS_ADDR"]); !scraped["liveupdates-"+role][target] {
			t.Errorf("%s: compose/prometheus.yml does not scrape %s (LIVE_METRICS_ADDR)", role, target)
		}
		for _, p := range svc.Ports {
			if parts := strings.Split(p, ":"); parts[len(parts)-1] != portOf(t, env["LIVE_HTTP_ADDR"]) {
				t.Errorf("%s: publishes %s, want LIVE_HTTP_ADDR's port", role, p)
			}
		}
		getenv := func(k string) string { return env[k] }
		var cerr error
		switch role {
		case "api":
			_, cerr = producer.LoadAPIConfig(getenv)
		case "relay":
			relayCfg, cerr = relay.LoadConfig(getenv)
		case "poller":
			pollerCfg, cerr = poller.LoadConfig(getenv)
		}
		if cerr != nil {
			t.Errorf("%s refuses its compose environment: %v", role, cerr)
		}
	}
	checkRelayAndPoller(t, composeFile, relayCfg, pollerCfg)

	// Prometheus and Grafana.
	prom := mounts(services["prometheus"])
	if prom["compose/prometheus.yml"] != "/etc/prometheus/prometheus.yml" || prom["prometheus/alerts.yml"] != "/etc/prometheus/alerts.yml" {
		t.Errorf("prometheus mounts %v, want compose/prometheus.yml and prometheus/alerts.yml in /etc/prometheus", prom)
	}
	graf := mounts(services["grafana"])
	if graf["compose/grafana/provisioning"] != "/etc/grafana/provisioning" {
		t.Errorf("grafana mounts %v, want compose/grafana/provisioning at /etc/grafana/provisioning", graf)
	}
	b, err := os.ReadFile("compose/grafana/provisioning/dashboards/liveupdates.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var prov struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	if err := yaml.Unmarshal(b, &prov); err != nil {
		t.Fatal(err)
	}
	if len(prov.Providers) != 1 || graf["grafana"] != prov.Providers[0].Options.Path {
		t.Errorf("grafana dashboards provider reads %+v, but deploy/grafana is mounted at %q", prov.Providers, graf["grafana"])
	}
}

// checkUsers compares a parsed nats.conf's users with ops.NATSRoles.
func checkUsers(t *testing.T, file string, opts *server.Options) {
	t.Helper()
	want := ops.NATSRoles()
	if opts.NoAuthUser != "" {
		t.Errorf("%s lets clients without credentials in as %q", file, opts.NoAuthUser)
	}
	got := map[string]*server.User{}
	for _, u := range opts.Users {
		got[u.Username] = u
	}
	if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want))) {
		t.Fatalf("%s users %v, want %v", file, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	for name, perms := range want {
		u := got[name]
		if u.Password != "pw-"+name {
			t.Errorf("%s user %s: password is not taken from %s", file, name, natsPasswordVar(name))
		}
		if u.Permissions == nil || u.Permissions.Publish == nil || u.Permissions.Subscribe == nil {
			t.Errorf("%s user %s has no publish and subscribe permissions: anything goes", file, name)
			continue
		}
		for what, pair := range map[string][2][]string{
			"publish":   {u.Permissions.Publish.Allow, perms.Publish},
			"subscribe": {u.Permissions.Subscribe.Allow, perms.Subscribe},
		} {
			if !slices.Equal(slices.Sorted(slices.Values(pair[0])), slices.Sorted(slices.Values(pair[1]))) {
				t.Errorf("%s user %s may %s %v, want ops.NATSRoles' %v", file, name, what, pair[0], pair[1])
			}
		}
	}
}

// prometheusTargets returns compose/prometheus.yml's static targets by job.
func prometheusTargets(t *testing.T) map[string]map[string]bool {
	t.Helper()
	b, err := os.ReadFile("compose/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(cfg.RuleFiles, "alerts.yml") {
		t.Errorf("compose/prometheus.yml does not load alerts.yml")
	}
	out := map[string]map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		out[sc.JobName] = map[string]bool{}
		for _, s := range sc.StaticConfigs {
			for _, tg := range s.Targets {
				out[sc.JobName][tg] = true
			}
		}
	}
	return out
}

// TestTheDashboardShowsMetricsTheRolesRegister: every query of the Grafana
// dashboard names metrics the roles register, grouped only by labels those
// metrics have, and the dashboard covers what an operator watches.
func TestTheDashboardShowsMetricsTheRolesRegister(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("grafana/liveupdates.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana/liveupdates.json: %v", err)
	}
	d := roleMetrics(t)
	metric := regexp.MustCompile(`\bliveupdates_[a-z0-9_]+`)
	suffix := regexp.MustCompile(`_(bucket|sum|count)$`)
	by := regexp.MustCompile(`\bby \(([^)]*)\)`)
	labelsOf := regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			names := metric.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q reads no liveupdates metric", p.Title, tg.Expr)
			}
			for _, m := range names {
				base := suffix.ReplaceAllString(m, "")
				if !d.names[m] {
					m = base
				}
				if !d.names[m] {
					t.Errorf("panel %q reads %s, which no role registers", p.Title, m)
					continue
				}
				used[m] = true
				var labels []string
				if l := labelsOf.FindStringSubmatch(d.descs[m]); l != nil && l[1] != "" {
					labels = strings.Split(l[1], ",")
				}
				for _, g := range by.FindAllStringSubmatch(tg.Expr, -1) {
					for _, label := range strings.Split(g[1], ",") {
						label = strings.TrimSpace(label)
						if label != "le" && label != "instance" && label != "job" && !slices.Contains(labels, label) {
							t.Errorf("panel %q groups %s by %q, a label it does not have (%v)", p.Title, m, label, labels)
						}
					}
				}
			}
		}
	}
	// What the issue asks the dashboard to show.
	for what, m := range map[string]string{
		"publish rate":          "liveupdates_producer_changes_total",
		"publish errors":        "liveupdates_api_http_requests_total",
		"relay lag":             "liveupdates_relay_consumer_pending_messages",
		"pusher status codes":   "liveupdates_relay_pusher_request_duration_seconds",
		"dead letters":          "liveupdates_relay_dead_lettered_total",
		"poller clients":        "liveupdates_poller_active_clients",
		"waiting long-polls":    "liveupdates_poller_long_polls_waiting",
		"publish to pusher p99": "liveupdates_relay_publish_to_pusher_seconds",
		"wake latency (lag)":    "liveupdates_poller_lag_messages",
	} {
		if !used[m] {
			t.Errorf("the dashboard does not show %s (%s)", what, m)
		}
	}
	if dash.UID == "" {
		t.Error("the dashboard has no uid (links and provisioning need one)")
	}
}
