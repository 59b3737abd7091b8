package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"gopkg.in/yaml.v3"

	"github.com/nostressplanner/liveupdates/stream"
)

// knownEnv is every environment variable a liveupdates role reads: the one
// list the manifests are checked against. Keep it in step with the roles'
// LoadConfig functions.
var knownEnv = map[string]bool{
	// common
	"LIVE_NATS_URL": true, "LIVE_NATS_USER": true, "LIVE_NATS_PASSWORD": true, "LIVE_HTTP_ADDR": true, "LIVE_METRICS_ADDR": true, "LIVE_LOG_LEVEL": true, "LIVE_LOG_FORMAT": true,
	"LIVE_STREAM_STORAGE": true, "LIVE_STREAM_MAX_AGE": true, "LIVE_STREAM_MAX_BYTES": true,
	"LIVE_STREAM_REPLICAS": true, "LIVE_STREAM_DUPLICATES": true,
	// api
	"LIVE_API_KEYS": true, "LIVE_API_MAX_EVENT_BYTES": true, "LIVE_API_MAX_REQUEST_BYTES": true,
	"LIVE_API_RATE": true, "LIVE_API_BURST": true, "LIVE_POLL_SECRET": true,
	// relay
	"PUSHER_APP_ID": true, "PUSHER_KEY": true, "PUSHER_SECRET": true, "PUSHER_CLUSTER": true, "PUSHER_HOST": true,
	"LIVE_RELAY_BATCH_WINDOW": true, "LIVE_RELAY_MAX_IN_FLIGHT": true, "LIVE_RELAY_MAX_DELIVER": true, "LIVE_RELAY_ACK_WAIT": true,
	"LIVE_RELAY_PARTITIONS": true, "LIVE_RELAY_CHANNEL_PREFIX": true, "LIVE_RELAY_PRIVATE_CHANNELS": true,
	// poller
	"LIVE_POLLER_CORS_ORIGINS": true, "LIVE_POLLER_MAX_EVENTS": true,
}

// secretEnv must come from a Secret through secretKeyRef, never a literal or
// a ConfigMap.
var secretEnv = map[string]bool{
	"PUSHER_APP_ID": true, "PUSHER_KEY": true, "PUSHER_SECRET": true, "PUSHER_CLUSTER": true,
	"LIVE_API_KEYS": true, "LIVE_POLL_SECRET": true, "LIVE_NATS_PASSWORD": true,
}

// Each role: its replicas and the secrets it must be given.
var roles = map[string]struct {
	replicas int
	secrets  []string
}{
	"api":    {2, []string{"LIVE_API_KEYS", "LIVE_POLL_SECRET"}},
	"relay":  {2, []string{"PUSHER_APP_ID", "PUSHER_KEY", "PUSHER_SECRET", "PUSHER_CLUSTER"}},
	"poller": {3, []string{"LIVE_POLL_SECRET", "PUSHER_KEY", "PUSHER_CLUSTER", "PUSHER_SECRET"}},
}

const (
	image       = "ghcr.io/nostressplanner/liveupdates:"
	longestPoll = 30 // seconds, the poller's longest long-poll
)

type meta struct {
	Name        string            `yaml:"name"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type object struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   meta              `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		Replicas    *int           `yaml:"replicas"`
		ServiceName string         `yaml:"serviceName"`
		ClusterIP   string         `yaml:"clusterIP"`
		Selector    map[string]any `yaml:"selector"`
		Ports       []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
		MaxUnavailable any `yaml:"maxUnavailable"`
		Template       struct {
			Metadata meta    `yaml:"metadata"`
			Spec     podSpec `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata meta `yaml:"metadata"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`

	file string
}

type podSpec struct {
	TerminationGracePeriodSeconds *int        `yaml:"terminationGracePeriodSeconds"`
	Containers                    []container `yaml:"containers"`
	Affinity                      struct {
		PodAntiAffinity struct {
			Required []struct {
				TopologyKey   string `yaml:"topologyKey"`
				LabelSelector struct {
					MatchLabels map[string]string `yaml:"matchLabels"`
				} `yaml:"labelSelector"`
			} `yaml:"requiredDuringSchedulingIgnoredDuringExecution"`
		} `yaml:"podAntiAffinity"`
	} `yaml:"affinity"`
	Volumes []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
	} `yaml:"volumes"`
}

type keyRef struct {
	Name string `yaml:"name"`
	Key  string `yaml:"key"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Env   []struct {
		Name      string  `yaml:"name"`
		Value     *string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef    *keyRef `yaml:"secretKeyRef"`
			ConfigMapKeyRef *keyRef `yaml:"configMapKeyRef"`
			FieldRef        any     `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
		SecretRef any `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	StartupProbe   *probe `yaml:"startupProbe"`
	Lifecycle      struct {
		PreStop struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

// manifests decodes every document of every *.yaml file in this directory
// except the kustomization.
func manifests(t *testing.T) []*object {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatalf("glob: %v", err)
	}
	var objs []*object
	for _, f := range files {
		if f == "kustomization.yaml" || f == composeFile {
			continue
		}
		objs = append(objs, decodeAll(t, f)...)
	}
	if len(objs) == 0 {
		t.Fatal("no manifests found")
	}
	return objs
}

func decodeAll(t *testing.T, file string) []*object {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("read %s: %v", file, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var out []*object
	for i := 0; ; i++ {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s document %d: %v", file, i, err)
		}
		o.file = file
		out = append(out, &o)
	}
}

func find(objs []*object, kind, name string) *object {
	for _, o := range objs {
		if o.Kind == kind && o.Metadata.Name == name {
			return o
		}
	}
	return nil
}

func isWorkload(o *object) bool { return o.Kind == "Deployment" || o.Kind == "StatefulSet" }

// matchLabels returns a selector's labels, for both the workload form
// ({matchLabels: {...}}) and the Service form (a plain map).
func matchLabels(t *testing.T, o *object) map[string]string {
	t.Helper()
	sel := o.Spec.Selector
	if ml, ok := sel["matchLabels"]; ok {
		sel, ok = ml.(map[string]any)
		if !ok {
			t.Fatalf("%s %s: matchLabels is %T", o.Kind, o.Metadata.Name, ml)
		}
	}
	out := map[string]string{}
	for k, v := range sel {
		s, ok := v.(string)
		if !ok {
			t.Fatalf("%s %s: selector %s is %T, want a string", o.Kind, o.Metadata.Name, k, v)
		}
		out[k] = s
	}
	return out
}

func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func portExists(c container, port any) bool {
	for _, p := range c.Ports {
		switch v := port.(type) {
		case string:
			if p.Name == v {
				return true
			}
		case int:
			if p.ContainerPort == v {
				return true
			}
		}
	}
	return false
}

// liveContainers returns the liveupdates containers with their role (the
// subcommand) and the workload they run in.
func liveContainers(t *testing.T, objs []*object) map[string]struct {
	w *object
	c container
} {
	t.Helper()
	out := map[string]struct {
		w *object
		c container
	}{}
	for _, o := range objs {
		if !isWorkload(o) {
			continue
		}
		for _, c := range o.Spec.Template.Spec.Containers {
			if !strings.HasPrefix(c.Image, image) {
				continue
			}
			if len(c.Args) == 0 {
				t.Fatalf("%s %s: liveupdates container without a subcommand", o.Kind, o.Metadata.Name)
			}
			role := c.Args[0]
			if _, dup := out[role]; dup {
				t.Fatalf("role %s runs in two workloads", role)
			}
			out[role] = struct {
				w *object
				c container
			}{o, c}
		}
	}
	return out
}

// environment resolves a container's environment the way the kubelet does:
// envFrom ConfigMaps first, then env. Secret values are "<secret>".
func environment(t *testing.T, objs []*object, c container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		if ef.SecretRef != nil {
			t.Errorf("container %s takes a whole Secret through envFrom; reference each key with secretKeyRef", c.Name)
		}
		if ef.ConfigMapRef == nil {
			continue
		}
		cm := find(objs, "ConfigMap", ef.ConfigMapRef.Name)
		if cm == nil {
			t.Fatalf("container %s: envFrom ConfigMap %s does not exist", c.Name, ef.ConfigMapRef.Name)
		}
		maps.Copy(env, cm.Data)
	}
	for _, e := range c.Env {
		switch {
		case e.Value != nil:
			env[e.Name] = *e.Value
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = "<secret>"
		case e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil:
			cm := find(objs, "ConfigMap", e.ValueFrom.ConfigMapKeyRef.Name)
			if cm == nil {
				t.Fatalf("container %s: ConfigMap %s does not exist", c.Name, e.ValueFrom.ConfigMapKeyRef.Name)
			}
			v, ok := cm.Data[e.ValueFrom.ConfigMapKeyRef.Key]
			if !ok {
				t.Fatalf("container %s: ConfigMap %s has no key %s", c.Name, cm.Metadata.Name, e.ValueFrom.ConfigMapKeyRef.Key)
			}
			env[e.Name] = v
		default:
			env[e.Name] = ""
		}
	}
	return env
}

func TestEveryDocumentIsNamed(t *testing.T) {
	t.Parallel()
	seen := map[string]string{}
	for _, o := range manifests(t) {
		if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
			t.Errorf("%s: a document lacks apiVersion, kind or metadata.name: %q %q %q", o.file, o.APIVersion, o.Kind, o.Metadata.Name)
		}
		key := o.Kind + "/" + o.Metadata.Name
		if f, dup := seen[key]; dup {
			t.Errorf("%s is defined in %s and %s", key, f, o.file)
		}
		seen[key] = o.file
	}
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var k struct {
		Resources []string `yaml:"resources"`
		Namespace string   `yaml:"namespace"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatalf("glob: %v", err)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return f == "kustomization.yaml" || f == composeFile })
	got := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(got, files) {
		t.Fatalf("kustomization resources=%v, want every manifest %v", got, files)
	}
	if k.Namespace == "" {
		t.Fatal("kustomization sets no namespace")
	}
}

func TestSelectorsMatchTemplates(t *testing.T) {
	t.Parallel()
	objs := manifests(t)
	for _, o := range objs {
		switch {
		case isWorkload(o):
			sel := matchLabels(t, o)
			if len(sel) == 0 || !subset(sel, o.Spec.Template.Metadata.Labels) {
				t.Errorf("%s %s: selector %v does not match template labels %v", o.Kind, o.Metadata.Name, sel, o.Spec.Template.Metadata.Labels)
			}
		case o.Kind == "Service" || o.Kind == "PodDisruptionBudget":
			sel := matchLabels(t, o)
			var targets []*object
			for _, w := range objs {
				if isWorkload(w) && len(sel) > 0 && subset(sel, w.Spec.Template.Metadata.Labels) {
					targets = append(targets, w)
				}
			}
			if len(targets) != 1 {
				t.Errorf("%s %s: selector %v matches %d workloads, want exactly 1", o.Kind, o.Metadata.Name, sel, len(targets))
				continue
			}
			if o.Kind != "Service" {
				continue
			}
			// Every Service port reaches a port of the pods it selects.
			for _, p := range o.Spec.Ports {
				tp := p.TargetPort
				if tp == nil {
					tp = p.Port
				}
				if !slices.ContainsFunc(targets[0].Spec.Template.Spec.Containers, func(c container) bool { return portExists(c, tp) }) {
					t.Errorf("Service %s port %s: target %v is no container port of %s", o.Metadata.Name, p.Name, tp, targets[0].Metadata.Name)
				}
			}
		}
	}
}

func TestProbesUseExistingPorts(t *testing.T) {
	t.Parallel()
	for _, o := range manifests(t) {
		if !isWorkload(o) {
			continue
		}
		for _, c := range o.Spec.Template.Spec.Containers {
			for kind, p := range map[string]*probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
				if p == nil || p.HTTPGet == nil {
					continue
				}
				if !portExists(c, p.HTTPGet.Port) {
					t.Errorf("%s %s container %s: %s probe port %v is not a container port", o.Kind, o.Metadata.Name, c.Name, kind, p.HTTPGet.Port)
				}
			}
		}
		// Scrape annotations name a real port too.
		if port, ok := o.Spec.Template.Metadata.Annotations["prometheus.io/port"]; ok {
			n, err := strconv.Atoi(port)
			if err != nil || !slices.ContainsFunc(o.Spec.Template.Spec.Containers, func(c container) bool { return portExists(c, n) }) {
				t.Errorf("%s %s: prometheus.io/port %q is no container port", o.Kind, o.Metadata.Name, port)
			}
		}
	}
}

func TestRoles(t *testing.T) {
	t.Parallel()
	objs := manifests(t)
	live := liveContainers(t, objs)
	if len(live) != len(roles) {
		t.Fatalf("liveupdates roles deployed: %v, want %v", slices.Sorted(maps.Keys(live)), slices.Sorted(maps.Keys(roles)))
	}
	for role, want := range roles {
		t.Run(role, func(t *testing.T) {
			t.Parallel()
			lc, ok := live[role]
			if !ok {
				t.Fatalf("no Deployment runs %s", role)
			}
			w, c := lc.w, lc.c
			if w.Kind != "Deployment" || w.Spec.Replicas == nil || *w.Spec.Replicas != want.replicas {
				t.Errorf("%s %s: replicas %v, want a Deployment of %d", w.Kind, w.Metadata.Name, w.Spec.Replicas, want.replicas)
			}
			for name, p := range map[string]struct {
				probe *probe
				path  string
			}{"liveness": {c.LivenessProbe, "/healthz"}, "readiness": {c.ReadinessProbe, "/readyz"}} {
				if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || !portExists(c, p.probe.HTTPGet.Port) {
					t.Errorf("%s: %s probe must GET %s on a container port", role, name, p.path)
				}
			}
			if !portExists(c, 8080) {
				t.Errorf("%s: no container port 8080", role)
			}
			grace := w.Spec.Template.Spec.TerminationGracePeriodSeconds
			preStop := 0
			if s := c.Lifecycle.PreStop.Sleep; s != nil {
				preStop = s.Seconds
			}
			if grace == nil {
				t.Errorf("%s: no terminationGracePeriodSeconds", role)
			} else if *grace <= longestPoll+preStop {
				t.Errorf("%s: terminationGracePeriodSeconds %d, want more than the longest long-poll (%ds) plus preStop (%ds) plus drain", role, *grace, longestPoll, preStop)
			}
			for _, res := range []string{"cpu", "memory"} {
				if c.Resources.Requests[res] == "" {
					t.Errorf("%s: no %s request", role, res)
				}
			}
			if c.Resources.Limits["memory"] == "" {
				t.Errorf("%s: no memory limit", role)
			}
			if w.Spec.Template.Metadata.Annotations["prometheus.io/scrape"] != "true" || w.Spec.Template.Metadata.Annotations["prometheus.io/path"] != "/metrics" {
				t.Errorf("%s: missing Prometheus scrape annotations", role)
			}

			env := environment(t, objs, c)
			for name := range env {
				if !knownEnv[name] {
					t.Errorf("%s: environment variable %s is not one the roles read", role, name)
				}
			}
			for _, s := range want.secrets {
				if env[s] != "<secret>" {
					t.Errorf("%s: %s must come from the Secret through secretKeyRef", role, s)
				}
			}
			if env["LIVE_HTTP_ADDR"] != ":8080" {
				t.Errorf("%s: LIVE_HTTP_ADDR=%q, want :8080", role, env["LIVE_HTTP_ADDR"])
			}
			checkNATSURL(t, objs, role, env["LIVE_NATS_URL"])
			cfg, err := stream.LoadConfig(func(k string) string { return env[k] })
			if err != nil {
				t.Fatalf("%s: stream.LoadConfig: %v", role, err)
			}
			if cfg.Replicas != 3 {
				t.Errorf("%s: stream replicas %d, want 3", role, cfg.Replicas)
			}
		})
	}
}

// checkNATSURL checks that url names the client Service of the NATS
// StatefulSet on a port it exposes.
func checkNATSURL(t *testing.T, objs []*object, role, url string) {
	t.Helper()
	m := regexp.MustCompile(`^nats://([a-z0-9-]+):(\d+)$`).FindStringSubmatch(url)
	if m == nil {
		t.Errorf("%s: LIVE_NATS_URL=%q, want nats://<service>:<port>", role, url)
		return
	}
	svc := find(objs, "Service", m[1])
	if svc == nil {
		t.Errorf("%s: LIVE_NATS_URL names Service %s, which does not exist", role, m[1])
		return
	}
	nats := find(objs, "StatefulSet", "nats")
	if nats == nil || !subset(matchLabels(t, svc), nats.Spec.Template.Metadata.Labels) {
		t.Errorf("%s: Service %s does not select the NATS StatefulSet", role, m[1])
	}
	port, _ := strconv.Atoi(m[2])
	if !slices.ContainsFunc(svc.Spec.Ports, func(p struct {
		Name       string `yaml:"name"`
		Port       int    `yaml:"port"`
		TargetPort any    `yaml:"targetPort"`
	}) bool {
		return p.Port == port
	}) {
		t.Errorf("%s: Service %s does not expose port %d", role, m[1], port)
	}
}

func TestSecretsAreNeverInline(t *testing.T) {
	t.Parallel()
	for _, o := range manifests(t) {
		if o.Kind == "Secret" && (len(o.Data) > 0 || len(o.StringData) > 0) {
			t.Errorf("%s: Secret %s carries values; create it out of band (README.md)", o.file, o.Metadata.Name)
		}
		if o.Kind == "ConfigMap" {
			for k := range o.Data {
				if secretEnv[k] {
					t.Errorf("%s: ConfigMap %s holds secret %s", o.file, o.Metadata.Name, k)
				}
			}
		}
		if !isWorkload(o) {
			continue
		}
		for _, c := range o.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				if !secretEnv[e.Name] {
					continue
				}
				if e.Value != nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					t.Errorf("%s container %s: %s must be a secretKeyRef", o.Metadata.Name, c.Name, e.Name)
					continue
				}
				if ref := e.ValueFrom.SecretKeyRef; ref.Name == "" || ref.Key != e.Name {
					t.Errorf("%s container %s: %s reads key %q of Secret %q, want key %s", o.Metadata.Name, c.Name, e.Name, ref.Key, ref.Name, e.Name)
				}
			}
		}
	}
}

func TestPollerHasADisruptionBudget(t *testing.T) {
	t.Parallel()
	objs := manifests(t)
	poller := liveContainers(t, objs)["poller"].w
	for _, o := range objs {
		if o.Kind == "PodDisruptionBudget" && subset(matchLabels(t, o), poller.Spec.Template.Metadata.Labels) {
			return
		}
	}
	t.Fatal("no PodDisruptionBudget selects the poller")
}

// Not parallel: t.Setenv provides POD_NAME, which nats.conf reads from the
// environment as the kubelet's downward API does.
func TestNATSCluster(t *testing.T) {
	objs := manifests(t)
	sts := find(objs, "StatefulSet", "nats")
	if sts == nil {
		t.Fatal("no StatefulSet nats")
	}
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 {
		t.Fatalf("nats replicas %v, want 3", sts.Spec.Replicas)
	}
	headless := find(objs, "Service", sts.Spec.ServiceName)
	if headless == nil || headless.Spec.ClusterIP != "None" {
		t.Fatalf("serviceName %q is not a headless Service", sts.Spec.ServiceName)
	}
	pod := sts.Spec.Template.Spec
	anti := pod.Affinity.PodAntiAffinity.Required
	if len(anti) == 0 || anti[0].TopologyKey != "kubernetes.io/hostname" || !subset(anti[0].LabelSelector.MatchLabels, sts.Spec.Template.Metadata.Labels) {
		t.Errorf("nats pods lack required anti-affinity across nodes: %+v", anti)
	}
	var pdb *object
	for _, o := range objs {
		if o.Kind == "PodDisruptionBudget" && subset(matchLabels(t, o), sts.Spec.Template.Metadata.Labels) {
			pdb = o
		}
	}
	if pdb == nil || pdb.Spec.MaxUnavailable != 1 {
		t.Errorf("nats needs a PodDisruptionBudget with maxUnavailable 1, got %+v", pdb)
	}
	if len(sts.Spec.VolumeClaimTemplates) == 0 {
		t.Fatal("nats has no volumeClaimTemplates")
	}

	c := pod.Containers[0]
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	var cmName string
	for _, v := range pod.Volumes {
		if v.ConfigMap != nil && mounts[v.Name] != "" {
			cmName = v.ConfigMap.Name
			if !slices.Contains(c.Args, filepath.Join(mounts[v.Name], "nats.conf")) {
				t.Errorf("nats args %v do not load %s/nats.conf", c.Args, mounts[v.Name])
			}
		}
	}
	cm := find(objs, "ConfigMap", cmName)
	if cm == nil || cm.Data["nats.conf"] == "" {
		t.Fatalf("ConfigMap %q with nats.conf not found", cmName)
	}
	conf := cm.Data["nats.conf"]
	if !strings.Contains(conf, "sync_interval") {
		t.Error("nats.conf does not document sync_interval (the single-node durability trade-off)")
	}

	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatalf("write: %v", err)
	}
	t.Setenv("POD_NAME", "nats-1")
	for _, u := range natsUsers {
		t.Setenv(natsPasswordVar(u), "pw-"+u)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server rejects nats.conf: %v", err)
	}
	if opts.ServerName != "nats-1" {
		t.Errorf("server_name=%q, want it taken from POD_NAME", opts.ServerName)
	}
	if !opts.JetStream {
		t.Error("nats.conf has no jetstream block")
	}
	dataMount := mounts[sts.Spec.VolumeClaimTemplates[0].Metadata.Name]
	if dataMount == "" || !strings.HasPrefix(opts.StoreDir, dataMount+"/") {
		t.Errorf("store_dir %q is not on the PersistentVolumeClaim mounted at %q", opts.StoreDir, dataMount)
	}
	if opts.MaxPayload <= 0 {
		t.Error("nats.conf sets no max_payload")
	}
	cfg, err := stream.LoadConfig(func(string) string { return "" })
	if err != nil {
		t.Fatalf("stream.LoadConfig: %v", err)
	}
	if opts.MaxPayload < cfg.MaxMsgSize {
		t.Errorf("max_payload %d is below the stream's max message size %d", opts.MaxPayload, cfg.MaxMsgSize)
	}
	if opts.Cluster.Name == "" || opts.Cluster.Port == 0 {
		t.Errorf("nats.conf has no cluster block: %+v", opts.Cluster)
	}
	if !portExists(c, opts.Cluster.Port) || !portExists(c, opts.HTTPPort) || !portExists(c, opts.Port) {
		t.Errorf("client %d, cluster %d or monitoring %d port is not a container port", opts.Port, opts.Cluster.Port, opts.HTTPPort)
	}
	var routes []string
	for _, r := range opts.Routes {
		routes = append(routes, r.Host)
	}
	var want []string
	for i := range *sts.Spec.Replicas {
		want = append(want, fmt.Sprintf("%s-%d.%s:%d", sts.Metadata.Name, i, sts.Spec.ServiceName, opts.Cluster.Port))
	}
	if !slices.Equal(slices.Sorted(slices.Values(routes)), want) {
		t.Errorf("routes %v, want every pod %v", routes, want)
	}

	// nats-server's own validation of the whole option set, short of
	// listening.
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server refuses the options: %v", err)
	}
	srv.Shutdown()
}

func TestPrometheusScrapesEveryRole(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("prometheus/prometheus.yml")
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName        string `yaml:"job_name"`
			MetricsPath    string `yaml:"metrics_path"`
			RelabelConfigs []struct {
				SourceLabels []string `yaml:"source_labels"`
				Regex        string   `yaml:"regex"`
				Action       string   `yaml:"action"`
			} `yaml:"relabel_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	for _, f := range cfg.RuleFiles {
		if _, err := os.Stat(filepath.Join("prometheus", f)); err != nil {
			t.Errorf("rule file %s: %v", f, err)
		}
	}
	kept := map[string]map[string]string{} // job -> label -> kept regex
	for _, sc := range cfg.ScrapeConfigs {
		if sc.MetricsPath != "/metrics" {
			t.Errorf("job %s scrapes %q, want /metrics", sc.JobName, sc.MetricsPath)
		}
		kept[sc.JobName] = map[string]string{}
		for _, rc := range sc.RelabelConfigs {
			if rc.Action == "keep" && len(rc.SourceLabels) == 1 {
				kept[sc.JobName][rc.SourceLabels[0]] = rc.Regex
			}
		}
	}
	const (
		component = "__meta_kubernetes_pod_label_app_kubernetes_io_component"
		name      = "__meta_kubernetes_pod_label_app_kubernetes_io_name"
		portName  = "__meta_kubernetes_pod_container_port_name"
	)
	for role := range roles {
		job := "liveupdates-" + role
		k, ok := kept[job]
		if !ok {
			t.Errorf("no scrape job %s", job)
			continue
		}
		if k[component] != role || k[name] != "liveupdates" || k[portName] != "metrics" {
			t.Errorf("job %s keeps %v, want component %s of liveupdates on port metrics (LIVE_METRICS_ADDR)", job, k, role)
		}
	}
	if k := kept["nats"]; k[name] != "nats" || k[portName] != "metrics" {
		t.Errorf("job nats keeps %v, want the exporter port of the nats pods", k)
	}
	// The relabelling keys are the manifests' labels and port names.
	objs := manifests(t)
	live := liveContainers(t, objs)
	for role, lc := range live {
		if lc.w.Spec.Template.Metadata.Labels["app.kubernetes.io/component"] != role || !portExists(lc.c, "metrics") {
			t.Errorf("%s pods lack the label or port name the scrape job keeps", role)
		}
		// The port named metrics is the one the role serves /metrics on,
		// and no Service publishes it.
		env := environment(t, objs, lc.c)
		_, mport, err := net.SplitHostPort(env["LIVE_METRICS_ADDR"])
		if err != nil {
			t.Errorf("%s: LIVE_METRICS_ADDR=%q: %v", role, env["LIVE_METRICS_ADDR"], err)
			continue
		}
		n, _ := strconv.Atoi(mport)
		for _, p := range lc.c.Ports {
			if p.Name == "metrics" && p.ContainerPort != n {
				t.Errorf("%s: port metrics is %d, but LIVE_METRICS_ADDR serves %d", role, p.ContainerPort, n)
			}
		}
		if lc.w.Spec.Template.Metadata.Annotations["prometheus.io/port"] != mport {
			t.Errorf("%s: prometheus.io/port annotation %q, want LIVE_METRICS_ADDR's %s", role, lc.w.Spec.Template.Metadata.Annotations["prometheus.io/port"], mport)
		}
		for _, o := range objs {
			if o.Kind != "Service" || !subset(matchLabels(t, o), lc.w.Spec.Template.Metadata.Labels) {
				continue
			}
			for _, sp := range o.Spec.Ports {
				if sp.TargetPort == "metrics" || sp.TargetPort == n || sp.Port == n {
					t.Errorf("Service %s publishes %s's metrics port", o.Metadata.Name, role)
				}
			}
		}
	}
	sts := find(objs, "StatefulSet", "nats")
	if !slices.ContainsFunc(sts.Spec.Template.Spec.Containers, func(c container) bool { return portExists(c, "metrics") }) {
		t.Error("nats pods have no port named metrics for the scrape job")
	}
}

func TestAlertRules(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Record      string            `yaml:"record"`
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	raw := regexp.MustCompile(`\bliveupdates_[a-z_]+`)
	recordedName := regexp.MustCompile(`\bliveupdates:[a-z0-9_:]+`)
	metricName := regexp.MustCompile(`^liveupdates_(api|relay|poller)_[a-z0-9_]+$`)
	recorded := map[string]bool{}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("group %s: rule %s%s has no expr", g.Name, r.Record, r.Alert)
			}
			switch {
			case r.Record != "":
				recorded[r.Record] = true
				for _, m := range raw.FindAllString(r.Expr, -1) {
					if !metricName.MatchString(m) {
						t.Errorf("recording rule %s uses %s, not of the form liveupdates_<role>_<what>", r.Record, m)
					}
				}
			case r.Alert != "":
				alerts[r.Alert] = true
				if m := raw.FindString(r.Expr); m != "" {
					t.Errorf("alert %s names metric %s directly; record it in the first group so names live in one place", r.Alert, m)
				}
				if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
					t.Errorf("alert %s needs labels.severity and annotations.summary", r.Alert)
				}
			default:
				t.Errorf("group %s: a rule is neither a record nor an alert", g.Name)
			}
		}
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, m := range recordedName.FindAllString(r.Expr, -1) {
				if !recorded[m] {
					t.Errorf("rule %s%s uses %s, which no rule records", r.Record, r.Alert, m)
				}
			}
		}
	}
	for _, a := range []string{"LiveupdatesRelayLagGrowing", "LiveupdatesDeadLetters", "LiveupdatesPollerNotReady"} {
		if !alerts[a] {
			t.Errorf("alert %s is missing", a)
		}
	}
}
