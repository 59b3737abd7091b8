package deploy

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"gopkg.in/yaml.v3"

	"github.com/nostressplanner/liveupdates/ops"
)

// natsUsers are the users nats.conf defines: one per role, and the
// operator's.
var natsUsers = []string{"api", "relay", "poller", "operator"}

// natsPasswordVar is the variable of the NATS pod that carries a user's
// password (from the Secret liveupdates-nats-<user>).
func natsPasswordVar(user string) string { return "NATS_" + strings.ToUpper(user) + "_PASSWORD" }

// natsConf returns nats.conf from nats.yaml, parsed by nats-server with the
// passwords of the users taken from the environment (t.Setenv: not parallel).
func natsConf(t *testing.T) *server.Options {
	t.Helper()
	objs := manifests(t)
	cm := find(objs, "ConfigMap", "nats-config")
	if cm == nil || cm.Data["nats.conf"] == "" {
		t.Fatal("ConfigMap nats-config with nats.conf not found")
	}
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(cm.Data["nats.conf"]), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POD_NAME", "nats-0")
	for _, u := range natsUsers {
		t.Setenv(natsPasswordVar(u), "pw-"+u)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server rejects nats.conf: %v", err)
	}
	return opts
}

// TestNATSUsersAreTheRolesPermissions: nats.conf defines exactly the users
// of ops.NATSRoles with exactly their permissions (what dev and the tests of
// cmd/liveupdates run with), accepts nobody without credentials, and each
// role's Deployment logs in as its own user with the password the NATS pod
// was given for it.
func TestNATSUsersAreTheRolesPermissions(t *testing.T) {
	opts := natsConf(t)
	want := ops.NATSRoles()
	if opts.NoAuthUser != "" {
		t.Errorf("nats.conf lets clients without credentials in as %q", opts.NoAuthUser)
	}
	got := map[string]*server.User{}
	for _, u := range opts.Users {
		got[u.Username] = u
	}
	if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want))) {
		t.Fatalf("nats.conf users %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	for name, perms := range want {
		u := got[name]
		if u.Password != "pw-"+name {
			t.Errorf("user %s: password is not taken from %s", name, natsPasswordVar(name))
		}
		if u.Permissions == nil || u.Permissions.Publish == nil || u.Permissions.Subscribe == nil {
			t.Errorf("user %s has no publish and subscribe permissions: anything goes", name)
			continue
		}
		for what, pair := range map[string][2][]string{
			"publish":   {u.Permissions.Publish.Allow, perms.Publish},
			"subscribe": {u.Permissions.Subscribe.Allow, perms.Subscribe},
		} {
			if !slices.Equal(slices.Sorted(slices.Values(pair[0])), slices.Sorted(slices.Values(pair[1]))) {
				t.Errorf("user %s may %s %v, want ops.NATSRoles' %v", name, what, pair[0], pair[1])
			}
		}
	}

	objs := manifests(t)
	natsEnv := map[string]keyRef{}
	for _, e := range find(objs, "StatefulSet", "nats").Spec.Template.Spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			natsEnv[e.Name] = *e.ValueFrom.SecretKeyRef
		}
	}
	for role, lc := range liveContainers(t, objs) {
		var user string
		var password *keyRef
		for _, e := range lc.c.Env {
			switch {
			case e.Name == "LIVE_NATS_USER" && e.Value != nil:
				user = *e.Value
			case e.Name == "LIVE_NATS_PASSWORD" && e.ValueFrom != nil:
				password = e.ValueFrom.SecretKeyRef
			}
		}
		if user != role {
			t.Errorf("%s logs in to NATS as %q, want its own user %q", role, user, role)
			continue
		}
		if password == nil || natsEnv[natsPasswordVar(user)] != *password {
			t.Errorf("%s: LIVE_NATS_PASSWORD from %+v, want the Secret the NATS pod reads for %s (%+v)", role, password, user, natsEnv[natsPasswordVar(user)])
		}
	}
}

// TestNATSConfRefusesWhatARoleMustNotDo runs nats-server with nats.conf's
// authorization (on one node, on loopback) and checks it does what its
// comments say: nobody gets in without credentials, the poller's user
// cannot publish a change, the api's cannot purge the stream, and the
// api's can publish.
func TestNATSConfRefusesWhatARoleMustNotDo(t *testing.T) {
	opts := natsConf(t)
	opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", -1, 0
	opts.Cluster = server.ClusterOpts{}
	opts.Routes = nil
	opts.StoreDir = t.TempDir()
	opts.PidFile = ""
	opts.NoSigs, opts.NoLog = true, true
	opts.LameDuckDuration = 0
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server refuses nats.conf: %v", err)
	}
	go srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(20 * time.Second) {
		t.Fatal("nats-server not ready within 20s")
	}
	if nc, err := nats.Connect(srv.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("a client without credentials got in")
	}
	js := func(user string) jetstream.JetStream {
		nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(user, "pw-"+user),
			nats.CustomInboxPrefix(ops.InboxPrefix(user)), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		if err != nil {
			t.Fatalf("connect as %s: %v", user, err)
		}
		t.Cleanup(nc.Close)
		j, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	ctx := func() context.Context {
		c, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		t.Cleanup(cancel)
		return c
	}
	api := js("api")
	if _, err := api.CreateStream(ctx(), jetstream.StreamConfig{Name: "LIVE_EVENTS", Subjects: []string{"live.events.>"}}); err != nil {
		t.Fatalf("the api user cannot create LIVE_EVENTS: %v", err)
	}
	if _, err := api.Publish(ctx(), "live.events.e1.vote.updated", []byte(`{}`)); err != nil {
		t.Fatalf("the api user cannot publish a change: %v", err)
	}
	short := func() context.Context {
		c, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		t.Cleanup(cancel)
		return c
	}
	if _, err := js("poller").Publish(short(), "live.events.e1.vote.updated", []byte(`{}`)); err == nil {
		t.Error("the poller user published a change")
	}
	if _, err := api.Conn().RequestWithContext(short(), "$JS.API.STREAM.PURGE.LIVE_EVENTS", nil); err == nil {
		t.Error("the api user's purge request was answered")
	}
	st, err := js("poller").Stream(ctx(), "LIVE_EVENTS")
	if err != nil {
		t.Fatalf("the poller user cannot read LIVE_EVENTS: %v", err)
	}
	if n := st.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("LIVE_EVENTS holds %d messages, want the api's 1", n)
	}
}

// TestOnlyTheRolesReachNATS: the NetworkPolicy on the NATS pods lets every
// liveupdates role reach the client port, only NATS pods reach the route
// port, and no rule opens either to everybody.
func TestOnlyTheRolesReachNATS(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("networkpolicy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var np struct {
		Spec struct {
			PodSelector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"podSelector"`
			PolicyTypes []string `yaml:"policyTypes"`
			Ingress     []struct {
				From []struct {
					PodSelector *struct {
						MatchLabels map[string]string `yaml:"matchLabels"`
					} `yaml:"podSelector"`
					NamespaceSelector any `yaml:"namespaceSelector"`
				} `yaml:"from"`
				Ports []struct {
					Port int `yaml:"port"`
				} `yaml:"ports"`
			} `yaml:"ingress"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(b, &np); err != nil {
		t.Fatal(err)
	}
	objs := manifests(t)
	nats := find(objs, "StatefulSet", "nats")
	if !subset(np.Spec.PodSelector.MatchLabels, nats.Spec.Template.Metadata.Labels) || !slices.Contains(np.Spec.PolicyTypes, "Ingress") {
		t.Fatalf("the NetworkPolicy selects %v, not the NATS pods %v, for ingress", np.Spec.PodSelector.MatchLabels, nats.Spec.Template.Metadata.Labels)
	}
	// allowed reports whether a pod with labels may reach port.
	allowed := func(labels map[string]string, port int) (bool, bool) {
		ok, open := false, false
		for _, rule := range np.Spec.Ingress {
			if !slices.ContainsFunc(rule.Ports, func(p struct {
				Port int `yaml:"port"`
			}) bool {
				return p.Port == port
			}) {
				continue
			}
			if len(rule.From) == 0 {
				open = true
			}
			for _, f := range rule.From {
				if f.NamespaceSelector != nil {
					open = true
				}
				if f.PodSelector != nil && subset(f.PodSelector.MatchLabels, labels) {
					ok = true
				}
			}
		}
		return ok, open
	}
	for role, lc := range liveContainers(t, objs) {
		if ok, _ := allowed(lc.w.Spec.Template.Metadata.Labels, 4222); !ok {
			t.Errorf("%s cannot reach NATS's client port 4222", role)
		}
		if ok, _ := allowed(lc.w.Spec.Template.Metadata.Labels, 6222); ok {
			t.Errorf("%s may reach NATS's route port 6222", role)
		}
	}
	if ok, open := allowed(nats.Spec.Template.Metadata.Labels, 6222); !ok || open {
		t.Errorf("route port 6222: NATS pods allowed %v, open to all %v; want only NATS pods", ok, open)
	}
	if _, open := allowed(map[string]string{"app": "anything"}, 4222); open {
		t.Error("client port 4222 is open to every pod")
	}
	if !portExists(nats.Spec.Template.Spec.Containers[0], 4222) || !portExists(nats.Spec.Template.Spec.Containers[0], 6222) {
		t.Error("the NetworkPolicy's ports are not the NATS container's")
	}
}
