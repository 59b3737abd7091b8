package relay

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/testutil/pusherserver"
	"github.com/nostressplanner/liveupdates/wire"
)

var signature = regexp.MustCompile(`auth_signature=[0-9a-f]{8}`)

func TestRedactHidesSigningParametersAndKeepsTheError(t *testing.T) {
	t.Parallel()
	ue := &url.Error{Op: "Post", URL: "http://api.pusherapp.com/apps/1/batch_events?auth_key=key&auth_signature=0123456789abcdef&auth_timestamp=1&auth_version=1.0&body_md5=ffee", Err: errors.New("EOF")}
	err := redact(fmt.Errorf("trigger: %w", ue))
	if got := err.Error(); strings.Contains(got, "0123456789abcdef") || strings.Contains(got, "auth_key=key") || strings.Contains(got, "ffee") {
		t.Fatalf("redact()=%q still carries a signing parameter", got)
	}
	if got, want := err.Error(), "auth_timestamp=1"; !strings.Contains(got, want) {
		t.Fatalf("redact()=%q, want the rest of the URL kept (%s)", got, want)
	}
	if _, ok := errors.AsType[*url.Error](err); !ok {
		t.Fatal("errors.AsType[*url.Error] no longer finds the cause")
	}
	if redact(nil) != nil {
		t.Fatal("redact(nil) != nil")
	}
}

// TestRelayLogsNoPusherSignature is issue 8 item 12 (the relay's part): a
// failed request's *url.Error quotes the signed URL, and the relay logged
// it whole.
func TestRelayLogsNoPusherSignature(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pusherserver.Options{})
	rg.pusher.FailNext(1, pusherserver.Fault{Drop: true})
	_, ids := rg.publish(change{eventID: "e1", typ: wire.TypeVoteUpdated, data: `{}`})
	run := rg.start(rg.config(), nil)
	rg.waitIDs(30*time.Second, ids)
	logged := false
	for _, e := range run.logs.AllEntries() {
		line, err := e.String()
		if err != nil {
			t.Fatalf("format log entry: %v", err)
		}
		if signature.MatchString(line) || strings.Contains(line, "auth_key=key") {
			t.Fatalf("log line carries a Pusher signature: %s", line)
		}
		if strings.Contains(line, "batch_events") {
			logged = true
		}
	}
	if !logged {
		t.Fatal("no log line names the failed request; the test checked nothing")
	}
	testutil.CollectAndLint(t, run.reg, "liveupdates_relay_")
}
