package producer

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkHTTPEvent measures the hot path of the ingest API: one POST
// /v1/events/{eventId}/{type} over loopback HTTP, stored by JetStream and
// answered with the hand-written {"id","seq"} body.
func BenchmarkHTTPEvent(b *testing.B) {
	_, js := newStream(b)
	p := NewPublisher(js, Options{})
	api, err := NewAPI(APIConfig{Keys: []string{testKey}, Rate: 1e9, Burst: 1 << 30},
		APIDeps{Publisher: p, Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatalf("NewAPI: %v", err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	hs := httptest.NewServer(mux)
	defer hs.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	post := func() error {
		req, err := http.NewRequest(http.MethodPost, hs.URL+"/v1/events/e42/vote.updated", bytes.NewReader(benchData))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+testKey)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	if err := post(); err != nil { // warm up
		b.Fatalf("warm-up POST: %v", err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := post(); err != nil {
			b.Fatalf("POST /v1/events: %v", err)
		}
	}
}
