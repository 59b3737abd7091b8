package ops

import "github.com/nostressplanner/liveupdates/wire"

// NATSPermissions is what one role's NATS user may publish and subscribe
// to: subject patterns as nats-server takes them in an authorization block.
// Anything not allowed is denied.
type NATSPermissions struct {
	Publish   []string
	Subscribe []string
}

// The JetStream API subjects the roles call, by stream. The consumer
// patterns name the stream, never a consumer, so the relay may add or rename
// consumers on LIVE_EVENTS without a change here:
// $JS.API.CONSUMER.<verb>.LIVE_EVENTS.<consumer>[.<filter>] is matched by
// $JS.API.CONSUMER.*.LIVE_EVENTS.>, and the two-token verbs (MSG.NEXT,
// DURABLE.CREATE) by their own patterns.
const (
	streamName = wire.StreamName
	dlqName    = wire.DLQStreamName
)

// RelayKVBuckets are the key-value buckets of the relay's partitioned mode
// (LIVE_RELAY_PARTITIONS > 0): relay.LeaseBucket and relay.CheckpointBucket,
// spelled out here because ops must not import the relay (a test in
// cmd/liveupdates keeps them equal). Partitioned mode needs its user to
// reach these buckets; without it the relay cannot start.
var RelayKVBuckets = []string{"liveupdates_relay_leases", "liveupdates_relay_checkpoints"}

// kvBucket is what a user needs to use one key-value bucket the way
// nats.go's jetstream.KeyValue does: ensure its stream KV_<bucket>
// (CreateOrUpdateKeyValue: info, create, update), write keys (Put, Create,
// Update, Delete publish to $KV.<bucket>.<key>), read them (Get: direct
// get), and list or watch keys (an ordered push consumer on KV_<bucket>:
// create, info and delete it, and answer its flow control on $JS.FC). The
// pushed keys arrive on the role's own inbox.
func kvBucket(bucket string) []string {
	st := "KV_" + bucket
	return concat(
		[]string{"$KV." + bucket + ".>"},
		streamRead(st), streamEnsure(st),
		[]string{
			"$JS.API.CONSUMER.*." + st,
			"$JS.API.CONSUMER.*." + st + ".>",
			"$JS.FC." + st + ".>",
		})
}

func streamRead(name string) []string {
	return []string{
		"$JS.API.STREAM.INFO." + name,
		"$JS.API.STREAM.MSG.GET." + name,
		"$JS.API.DIRECT.GET." + name,
		"$JS.API.DIRECT.GET." + name + ".>",
	}
}

func streamEnsure(name string) []string {
	return []string{
		"$JS.API.STREAM.CREATE." + name,
		"$JS.API.STREAM.UPDATE." + name,
	}
}

func inbox(role string) string { return "_INBOX." + role + ".>" }

// InboxPrefix is the inbox prefix of a role's connection: its replies come
// on subjects only its own user may subscribe to, so one role cannot read
// what JetStream answers another (the relay's fetched changes, say).
func InboxPrefix(role string) string { return "_INBOX." + role }

// NATSRoles returns the permissions of each role's NATS user, by role name:
//
//   - api publishes changes and ensures LIVE_EVENTS (create, update limits);
//     it reads a stored change back to compare a duplicate. It cannot
//     delete or purge anything, nor create consumers.
//   - relay ensures LIVE_EVENTS and LIVE_DLQ, creates and reads its
//     consumers on LIVE_EVENTS (any name), acks, publishes dead letters to
//     live.dlq.>, reads a change back to dead-letter it, and listens to the
//     consumer advisories (max deliveries). In partitioned mode it also
//     keeps its leases and checkpoints in the buckets RelayKVBuckets. It
//     cannot publish changes, nor delete or purge a stream.
//   - poller reads: stream info, direct get, and ordered (ephemeral)
//     consumers with their pulls. It cannot publish changes, create or
//     update a stream (it waits for the api or the relay to create
//     LIVE_EVENTS), delete a consumer, nor delete or purge anything.
//   - operator is the operator tools' user (publish, tail, dlq, status):
//     every subject. Give it only to people.
func NATSRoles() map[string]NATSPermissions {
	jsInfo := "$JS.API.INFO"
	api := NATSPermissions{
		Publish:   append(append([]string{wire.StreamSubjects, jsInfo}, streamRead(streamName)...), streamEnsure(streamName)...),
		Subscribe: []string{inbox("api")},
	}
	relay := NATSPermissions{
		Publish: concat(
			[]string{wire.DLQStreamSubjects, jsInfo},
			streamRead(streamName), streamEnsure(streamName),
			streamRead(dlqName), streamEnsure(dlqName),
			[]string{
				"$JS.API.CONSUMER.*." + streamName,        // LIST, NAMES
				"$JS.API.CONSUMER.*." + streamName + ".>", // CREATE, INFO, DELETE, UNPIN of its consumers
				"$JS.API.CONSUMER.DURABLE.CREATE." + streamName + ".>",
				"$JS.API.CONSUMER.MSG.NEXT." + streamName + ".>",
				"$JS.ACK." + streamName + ".>",
			},
			kvBucket(RelayKVBuckets[0]), kvBucket(RelayKVBuckets[1])),
		Subscribe: []string{inbox("relay"), "$JS.EVENT.ADVISORY.CONSUMER.*." + streamName + ".>"},
	}
	poller := NATSPermissions{
		Publish: concat(
			[]string{jsInfo},
			streamRead(streamName),
			[]string{
				"$JS.API.CONSUMER.CREATE." + streamName,
				"$JS.API.CONSUMER.CREATE." + streamName + ".>",
				"$JS.API.CONSUMER.INFO." + streamName + ".>",
				"$JS.API.CONSUMER.MSG.NEXT." + streamName + ".>",
			}),
		Subscribe: []string{inbox("poller")},
	}
	operator := NATSPermissions{Publish: []string{">"}, Subscribe: []string{">"}}
	return map[string]NATSPermissions{"api": api, "relay": relay, "poller": poller, "operator": operator}
}

func concat(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}
