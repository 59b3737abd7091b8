package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nostressplanner/liveupdates/relay"
	"github.com/nostressplanner/liveupdates/wire"
)

// statusReport is what `liveupdates status` prints (as JSON with --json).
type statusReport struct {
	Stream      streamStatus     `json:"stream"`
	Consumers   []consumerStatus `json:"consumers"`
	Ephemeral   int              `json:"ephemeralConsumers"` // pollers' and tails' ordered consumers
	DeadLetters *streamStatus    `json:"deadLetters"`        // nil: LIVE_DLQ not created yet
	// Partitions are the partitioned relay's leases (LIVE_RELAY_PARTITIONS);
	// none when no relay ever ran partitioned.
	Partitions []partitionStatus `json:"partitions,omitempty"`
}

// partitionStatus is one partition of the partitioned relay: who sends it,
// and how far Pusher has it.
type partitionStatus struct {
	Partition int `json:"partition"`
	// Owner is the relay replica holding the lease; empty when none does
	// (the lease expired or was released, and no replica took it yet).
	Owner string `json:"owner,omitempty"`
	// Age is how long ago the owner last renewed the lease, as a Go
	// duration; a lease renewed longer ago than LIVE_RELAY_LEASE_TTL is
	// about to pass to another replica.
	Age string `json:"age,omitempty"`
	// Checkpoint is the seq up to which Pusher has every change of the
	// partition; Behind the changes the stream holds after it.
	Checkpoint uint64 `json:"checkpoint"`
	Behind     uint64 `json:"behind"`
}

type streamStatus struct {
	Name     string          `json:"name"`
	Messages uint64          `json:"messages"`
	Bytes    uint64          `json:"bytes"`
	FirstSeq uint64          `json:"firstSeq"`
	LastSeq  uint64          `json:"lastSeq"`
	Replicas int             `json:"replicas"`
	Leader   string          `json:"leader,omitempty"`
	Peers    []replicaStatus `json:"peers,omitempty"`
}

type replicaStatus struct {
	Name    string `json:"name"`
	Current bool   `json:"current"`
	Offline bool   `json:"offline,omitempty"`
	Lag     uint64 `json:"lag"`
}

type consumerStatus struct {
	Name string `json:"name"`
	// Pending is what the consumer has not been given yet: its lag in
	// changes.
	Pending uint64 `json:"pending"`
	// AckPending is what it was given and has not acknowledged.
	AckPending    int    `json:"ackPending"`
	Redelivered   int    `json:"redelivered"`
	DeliveredSeq  uint64 `json:"deliveredSeq"`
	AckFloorSeq   uint64 `json:"ackFloorSeq"`
	Waiting       int    `json:"waitingPulls"`
	FilterSubject string `json:"filter,omitempty"`
	Paused        bool   `json:"paused,omitempty"`
	// PinnedClients are the priority groups' pinned client ids (one active
	// relay per partition), when the consumer has any.
	PinnedClients []string `json:"pinnedClients,omitempty"`
}

// runStatus prints the stream, its durable consumers with their lag and
// pending changes, and the dead letters: what an operator looks at first.
func runStatus(ctx context.Context, env *settings) error {
	c, _, err := dialTool(env, "status", failFast)
	if err != nil {
		return err
	}
	defer c.nc.Close()
	rep, err := gatherStatus(ctx, c.js)
	if err != nil {
		return err
	}
	if env.Bool("json") {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		return nil
	}
	return printStatus(env.stdout, rep)
}

func gatherStatus(ctx context.Context, js jetstream.JetStream) (statusReport, error) {
	var rep statusReport
	st, err := js.Stream(ctx, wire.StreamName)
	if err != nil {
		return rep, fmt.Errorf("stream %s: %w", wire.StreamName, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return rep, fmt.Errorf("stream %s info: %w", wire.StreamName, err)
	}
	rep.Stream = newStreamStatus(info)
	lister := st.ListConsumers(ctx)
	for ci := range lister.Info() {
		if ci.Config.Durable == "" {
			rep.Ephemeral++
			continue
		}
		cs := consumerStatus{
			Name: ci.Name, Pending: ci.NumPending, AckPending: ci.NumAckPending, Redelivered: ci.NumRedelivered,
			DeliveredSeq: ci.Delivered.Stream, AckFloorSeq: ci.AckFloor.Stream, Waiting: ci.NumWaiting,
			FilterSubject: ci.Config.FilterSubject, Paused: ci.Paused,
		}
		if len(ci.Config.FilterSubjects) > 0 {
			cs.FilterSubject = strings.Join(ci.Config.FilterSubjects, ",")
		}
		for _, g := range ci.PriorityGroups {
			if g.PinnedClientID != "" {
				cs.PinnedClients = append(cs.PinnedClients, g.Group+"="+g.PinnedClientID)
			}
		}
		rep.Consumers = append(rep.Consumers, cs)
	}
	if err := lister.Err(); err != nil {
		return rep, fmt.Errorf("list consumers of %s: %w", wire.StreamName, err)
	}
	slices.SortFunc(rep.Consumers, func(a, b consumerStatus) int { return strings.Compare(a.Name, b.Name) })

	dlq, err := js.Stream(ctx, wire.DLQStreamName)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
	case err != nil:
		return rep, fmt.Errorf("stream %s: %w", wire.DLQStreamName, err)
	default:
		info, err := dlq.Info(ctx)
		if err != nil {
			return rep, fmt.Errorf("stream %s info: %w", wire.DLQStreamName, err)
		}
		s := newStreamStatus(info)
		rep.DeadLetters = &s
	}
	leases, err := relay.Leases(ctx, js)
	switch {
	case errors.Is(err, relay.ErrNotPartitioned):
	case err != nil:
		return rep, err
	default:
		for _, l := range leases {
			ps := partitionStatus{Partition: l.Partition, Owner: l.Owner, Checkpoint: l.Checkpoint, Behind: l.Behind}
			if l.Owner != "" {
				ps.Age = l.Age.Round(time.Millisecond).String()
			}
			rep.Partitions = append(rep.Partitions, ps)
		}
	}
	return rep, nil
}

func newStreamStatus(info *jetstream.StreamInfo) streamStatus {
	s := streamStatus{
		Name: info.Config.Name, Messages: info.State.Msgs, Bytes: info.State.Bytes,
		FirstSeq: info.State.FirstSeq, LastSeq: info.State.LastSeq, Replicas: info.Config.Replicas,
	}
	if info.Cluster != nil {
		s.Leader = info.Cluster.Leader
		for _, p := range info.Cluster.Replicas {
			s.Peers = append(s.Peers, replicaStatus{Name: p.Name, Current: p.Current, Offline: p.Offline, Lag: p.Lag})
		}
	}
	return s
}

func printStatus(w io.Writer, rep statusReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	s := rep.Stream
	fmt.Fprintf(tw, "stream\t%s: %d changes, %s, seq %d..%d, replicas %d\n", s.Name, s.Messages, humanBytes(s.Bytes), s.FirstSeq, s.LastSeq, s.Replicas)
	if s.Leader != "" {
		peers := []string{s.Leader + " (leader)"}
		for _, p := range s.Peers {
			state := "current"
			switch {
			case p.Offline:
				state = "offline"
			case !p.Current:
				state = fmt.Sprintf("behind by %d", p.Lag)
			}
			peers = append(peers, fmt.Sprintf("%s (%s)", p.Name, state))
		}
		fmt.Fprintf(tw, "\t%s\n", strings.Join(peers, ", "))
	}
	if len(rep.Consumers) == 0 {
		fmt.Fprintf(tw, "consumers\tnone durable (the relay creates its own when it starts)\n")
	}
	for _, c := range rep.Consumers {
		line := fmt.Sprintf("%s: lag %d, ack pending %d, redelivered %d, delivered up to seq %d, acked up to seq %d, waiting pulls %d",
			c.Name, c.Pending, c.AckPending, c.Redelivered, c.DeliveredSeq, c.AckFloorSeq, c.Waiting)
		if c.FilterSubject != "" {
			line += ", filter " + c.FilterSubject
		}
		if c.Paused {
			line += ", PAUSED"
		}
		if len(c.PinnedClients) > 0 {
			line += ", pinned " + strings.Join(c.PinnedClients, " ")
		}
		fmt.Fprintf(tw, "consumer\t%s\n", line)
	}
	for _, p := range rep.Partitions {
		owner := "no owner (waits for a replica to take its lease)"
		if p.Owner != "" {
			owner = fmt.Sprintf("owner %s (renewed %s ago)", p.Owner, p.Age)
		}
		fmt.Fprintf(tw, "partition\t%d: %s, checkpoint seq %d, behind %d\n", p.Partition, owner, p.Checkpoint, p.Behind)
	}
	fmt.Fprintf(tw, "readers\t%d ephemeral consumers (pollers, tails)\n", rep.Ephemeral)
	if d := rep.DeadLetters; d == nil {
		fmt.Fprintf(tw, "dead letters\tnone (%s not created yet)\n", wire.DLQStreamName)
	} else {
		line := fmt.Sprintf("%d in %s", d.Messages, d.Name)
		if d.Messages > 0 {
			line += fmt.Sprintf(" (seq %d..%d): liveupdates dlq list", d.FirstSeq, d.LastSeq)
		}
		fmt.Fprintf(tw, "dead letters\t%s\n", line)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
