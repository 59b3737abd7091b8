package testutil

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

// CollectAndLint fails t if any metric in reg breaks Prometheus naming
// conventions (promlint), or if a metric does not start with prefix (such as
// "liveupdates_relay_").
func CollectAndLint(t testing.TB, reg *prometheus.Registry, prefix string) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if len(mf.GetName()) < len(prefix) || mf.GetName()[:len(prefix)] != prefix {
			t.Errorf("metric %s does not start with %s", mf.GetName(), prefix)
		}
	}
	problems, err := promtest.GatherAndLint(reg)
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
