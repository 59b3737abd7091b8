package deploy

import (
	"bufio"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// nonRootUID is the user the image runs as (distroless's nonroot); the
// manifests' runAsUser and compose's user say the same.
const nonRootUID = 65532

type dockerfile struct {
	froms       []string
	runs        []string
	copies      []string
	user        string
	expose      []string
	entrypoint  string
	stageByName map[string]int
}

func parseDockerfile(t *testing.T) dockerfile {
	t.Helper()
	f, err := os.Open("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var d dockerfile
	d.stageByName = map[string]int{}
	var logical strings.Builder
	sc := bufio.NewScanner(f)
	flush := func() {
		line := strings.TrimSpace(logical.String())
		logical.Reset()
		if line == "" {
			return
		}
		instr, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			fields := strings.Fields(rest)
			d.froms = append(d.froms, fields[0])
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				d.stageByName[fields[2]] = len(d.froms) - 1
			}
		case "RUN":
			d.runs = append(d.runs, rest)
		case "COPY":
			d.copies = append(d.copies, rest)
		case "USER":
			d.user = rest
		case "EXPOSE":
			d.expose = append(d.expose, strings.Fields(rest)...)
		case "ENTRYPOINT":
			d.entrypoint = rest
		}
	}
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			logical.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		logical.WriteString(line)
		flush()
	}
	flush()
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestTheDockerfileBuildsAStaticNonRootImage checks the Dockerfile against
// go.mod and the manifests, since no Docker engine runs here: a build stage
// on go.mod's Go version that builds ./cmd/liveupdates with CGO off, a
// minimal final stage with CA certificates, a non-root user equal to the
// manifests' runAsUser, the HTTP port the roles listen on, and an
// entrypoint that is the binary it copied.
func TestTheDockerfileBuildsAStaticNonRootImage(t *testing.T) {
	t.Parallel()
	d := parseDockerfile(t)
	if len(d.froms) < 2 {
		t.Fatalf("FROM %v: want a multi-stage build", d.froms)
	}
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(string(gomod))
	if goVersion == nil || !strings.HasPrefix(d.froms[0], "golang:"+goVersion[1]) {
		t.Errorf("build stage FROM %s, want golang:%s (go.mod)", d.froms[0], goVersion[1])
	}
	built := false
	for _, r := range d.runs {
		if strings.Contains(r, "go build") && strings.Contains(r, "./cmd/liveupdates") {
			built = true
			if !strings.Contains(r, "CGO_ENABLED=0") {
				t.Errorf("the go build runs without CGO_ENABLED=0: %s", r)
			}
		}
	}
	if !built {
		t.Error("no RUN builds ./cmd/liveupdates")
	}
	final := d.froms[len(d.froms)-1]
	if !strings.HasPrefix(final, "gcr.io/distroless/static") && final != "scratch" {
		t.Errorf("final stage FROM %s, want distroless static (CA certificates, no shell) or scratch", final)
	}
	if final == "scratch" && !strings.Contains(strings.Join(d.copies, "\n"), "ca-certificates") {
		t.Error("a scratch image without CA certificates cannot reach Pusher over HTTPS")
	}
	uid, _, _ := strings.Cut(d.user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 || n != nonRootUID {
		t.Errorf("USER %q, want the numeric non-root %d (Kubernetes checks runAsNonRoot by number)", d.user, nonRootUID)
	}
	var dest string
	for _, c := range d.copies {
		if strings.HasPrefix(c, "--from=") {
			fields := strings.Fields(c)
			dest = fields[len(fields)-1]
		}
	}
	if !strings.Contains(d.entrypoint, `"`+dest+`"`) {
		t.Errorf("ENTRYPOINT %s is not the binary copied to %s", d.entrypoint, dest)
	}

	objs := manifests(t)
	for role, lc := range liveContainers(t, objs) {
		if !strings.Contains(strings.Join(d.expose, " "), strconv.Itoa(lc.c.Ports[0].ContainerPort)) {
			t.Errorf("%s listens on %d, which the Dockerfile does not EXPOSE (%v)", role, lc.c.Ports[0].ContainerPort, d.expose)
		}
	}
	for _, f := range []string{"api.yaml", "relay.yaml", "poller.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "runAsUser: "+strconv.Itoa(nonRootUID)) {
			t.Errorf("%s does not run as the image's user %d", f, nonRootUID)
		}
	}
	if _, err := os.Stat("../.dockerignore"); err != nil {
		t.Errorf(".dockerignore: %v (the build context would carry .git and data/)", err)
	}
}
