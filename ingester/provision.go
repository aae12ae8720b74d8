package ingester

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamOptions are the knobs of a fleet's streams and bucket.
type StreamOptions struct {
	// Replicas of every stream and of the bucket. Default 1 (dev); 3 in production.
	Replicas int
	// MaxBytes bounds each shard's stream; when full, publishes are refused (DiscardNew) and
	// the gateway answers 503, so nothing accepted is dropped. Default 1 GiB.
	MaxBytes int64
	// MaxAge, when set, ages out unconsumed messages. Default 0: never, since an aged-out
	// message is lost data.
	MaxAge time.Duration
	// AckWait is how long a message delivered to an ingester may go without an
	// acknowledgement or an in-progress mark before it is redelivered. Ingesters mark the
	// messages of a batch they are writing in progress several times per AckWait, so it
	// bounds only how long the messages of a dead ingester wait: redelivered at most this
	// long after it died. Default 5s.
	AckWait time.Duration
	// MaxAckPending bounds the messages an ingester holds unacknowledged. Default 20,000,
	// at least two batches of the ingester's default size even with one reading a message.
	MaxAckPending int
}

// Defaults for StreamOptions.
const (
	DefaultMaxBytes      int64 = 1 << 30
	DefaultAckWait             = 5 * time.Second
	DefaultMaxAckPending       = 20_000
)

// WithDefaults fills every unset field with its documented default.
func (o StreamOptions) WithDefaults() StreamOptions {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.AckWait == 0 {
		o.AckWait = DefaultAckWait
	}
	if o.MaxAckPending == 0 {
		o.MaxAckPending = DefaultMaxAckPending
	}
	return o
}

// StreamConfig is the desired configuration of shard i's stream: file storage, work-queue
// retention (a message goes once the ingester acked it, and is kept until then even when no
// consumer exists yet), DiscardNew with MaxBytes.
func StreamConfig(t Topology, i int, o StreamOptions) jetstream.StreamConfig {
	o = o.WithDefaults()
	return jetstream.StreamConfig{
		Name:        t.Stream(i),
		Description: fmt.Sprintf("fleetingest readings of %s/%s shard %d", t.Namespace, t.Fleet, i),
		Subjects:    []string{t.Subject(i)},
		Retention:   jetstream.WorkQueuePolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    o.MaxBytes,
		MaxAge:      o.MaxAge,
		MaxMsgs:     -1,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		Duplicates:  2 * time.Minute,
	}
}

// ConsumerConfig is the desired durable pull consumer of a shard's ingester. Messages are
// redelivered forever (MaxDeliver -1): an accepted reading is never given up on.
func ConsumerConfig(o StreamOptions) jetstream.ConsumerConfig {
	o = o.WithDefaults()
	return jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "fleetingest shard ingester",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: o.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      o.Replicas,
	}
}

// BucketConfig is the desired mapping bucket. Placement never reads KV history (each value
// carries the vehicle's intervals), so one revision per key is kept.
func BucketConfig(t Topology, o StreamOptions) jetstream.KeyValueConfig {
	return kvConfig(t.MappingBucket(), "vehicle→meter mappings", t, o)
}

// RevocationBucketConfig is the desired bucket of revoked device-token ids: one key per
// token id, whose value holds the token's expiry (internal/auth); gateways watch it.
func RevocationBucketConfig(t Topology, o StreamOptions) jetstream.KeyValueConfig {
	return kvConfig(t.RevocationBucket(), "revoked device tokens", t, o)
}

// kvConfig is a fleet's KV bucket on file storage keeping one revision per key (no reader
// needs a key's history), with the fleet's replicas.
func kvConfig(bucket, what string, t Topology, o StreamOptions) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: fmt.Sprintf("fleetingest %s of %s/%s", what, t.Namespace, t.Fleet),
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    o.WithDefaults().Replicas,
	}
}

// StreamDrift lists the fields where a live stream differs from the desired one, in the
// fields this package owns. Empty means in sync.
func StreamDrift(live, want jetstream.StreamConfig) []string {
	var d []string
	if len(live.Subjects) != len(want.Subjects) || (len(want.Subjects) > 0 && live.Subjects[0] != want.Subjects[0]) {
		d = append(d, "subjects")
	}
	if live.Retention != want.Retention {
		d = append(d, "retention")
	}
	if live.Discard != want.Discard {
		d = append(d, "discard")
	}
	if live.MaxBytes != want.MaxBytes {
		d = append(d, "maxBytes")
	}
	if live.MaxAge != want.MaxAge {
		d = append(d, "maxAge")
	}
	if live.Storage != want.Storage {
		d = append(d, "storage")
	}
	if live.Replicas != want.Replicas {
		d = append(d, "replicas")
	}
	return d
}

// ConsumerDrift lists the fields where a live durable consumer differs from the desired one,
// in the fields this package owns, each prefixed "consumer " (so that they read apart from
// the stream's). Empty means in sync.
func ConsumerDrift(live, want jetstream.ConsumerConfig) []string {
	var d []string
	if live.AckPolicy != want.AckPolicy {
		d = append(d, "consumer ackPolicy")
	}
	if live.AckWait != want.AckWait {
		d = append(d, "consumer ackWait")
	}
	if live.MaxDeliver != want.MaxDeliver {
		d = append(d, "consumer maxDeliver")
	}
	if live.MaxAckPending != want.MaxAckPending {
		d = append(d, "consumer maxAckPending")
	}
	return d
}

// StreamState is what EnsureStreams observed of one shard's stream.
type StreamState struct {
	Shard   int
	Name    string
	Created bool
	// Updated lists the fields that had drifted and were put back (the durable consumer's
	// prefixed "consumer ").
	Updated []string
	// Pending is the number of messages not yet acknowledged by the ingester (consumer lag).
	Pending uint64
	Bytes   uint64
}

// BucketState is what EnsureStreams observed of one KV bucket.
type BucketState struct {
	Name    string
	Created bool
}

// Provisioned is what EnsureStreams did and saw.
type Provisioned struct {
	Streams []StreamState
	// Buckets are the mapping, revocation and shard-map buckets, in that order.
	Buckets []BucketState
	// DeadLetter is the fleet's dead-letter stream (Shard is -1: it serves every shard;
	// Pending is the number of readings parked in it).
	DeadLetter StreamState
}

// EnsureStreams creates or repairs every stream, durable consumer, the buckets and the
// dead-letter stream of a fleet: it compares each live configuration with the desired one
// and updates what drifted.
// It is the one place these objects are made; the operator and `fleetingest dev` call it,
// gateways and ingesters only bind to what it made.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, t Topology, o StreamOptions) (Provisioned, error) {
	if err := t.Validate(); err != nil {
		return Provisioned{}, err
	}
	o = o.WithDefaults()
	var p Provisioned
	for i := 0; i < t.Shards; i++ {
		st, err := ensureStream(ctx, js, StreamConfig(t, i, o), ConsumerConfig(o))
		if err != nil {
			return p, err
		}
		st.Shard = i
		p.Streams = append(p.Streams, st)
	}
	for _, want := range []*jetstream.KeyValueConfig{new(BucketConfig(t, o)), new(RevocationBucketConfig(t, o))} {
		created, err := ensureBucket(ctx, js, *want)
		if err != nil {
			return p, err
		}
		p.Buckets = append(p.Buckets, BucketState{Name: want.Bucket, Created: created})
	}
	sm, err := ensureShardMap(ctx, js, t, o)
	if err != nil {
		return p, err
	}
	p.Buckets = append(p.Buckets, sm)
	p.DeadLetter, err = ensureDeadLetter(ctx, js, t, o)
	return p, err
}

func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, cc jetstream.ConsumerConfig) (StreamState, error) {
	s, st, err := ensureStreamConfig(ctx, js, want)
	if err != nil {
		return st, err
	}
	if live, err := s.Consumer(ctx, cc.Durable); err == nil {
		st.Updated = append(st.Updated, ConsumerDrift(live.CachedInfo().Config, cc)...)
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return st, fmt.Errorf("looking up consumer %s on stream %s: %w", cc.Durable, want.Name, err)
	}
	c, err := s.CreateOrUpdateConsumer(ctx, cc)
	if err != nil {
		return st, fmt.Errorf("creating consumer %s on stream %s: %w", cc.Durable, want.Name, err)
	}
	ci := c.CachedInfo()
	st.Pending = ci.NumPending + uint64(ci.NumAckPending)
	st.Bytes = s.CachedInfo().State.Bytes
	return st, nil
}

// ensureStreamConfig creates the stream want, or puts back the fields of the live one that
// drifted from it.
func ensureStreamConfig(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) (jetstream.Stream, StreamState, error) {
	st := StreamState{Name: want.Name}
	s, err := js.Stream(ctx, want.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if s, err = js.CreateStream(ctx, want); err != nil {
			return nil, st, fmt.Errorf("creating stream %s: %w", want.Name, err)
		}
		st.Created = true
	case err != nil:
		return nil, st, fmt.Errorf("looking up stream %s: %w", want.Name, err)
	default:
		if drift := StreamDrift(s.CachedInfo().Config, want); len(drift) > 0 {
			live := s.CachedInfo().Config
			live.Subjects, live.Retention, live.Discard = want.Subjects, want.Retention, want.Discard
			live.MaxBytes, live.MaxAge, live.Storage, live.Replicas = want.MaxBytes, want.MaxAge, want.Storage, want.Replicas
			live.Description = want.Description
			if s, err = js.UpdateStream(ctx, live); err != nil {
				return nil, st, fmt.Errorf("updating stream %s (%v drifted): %w", want.Name, drift, err)
			}
			st.Updated = drift
		}
	}
	return s, st, nil
}

func ensureBucket(ctx context.Context, js jetstream.JetStream, want jetstream.KeyValueConfig) (bool, error) {
	kv, err := js.KeyValue(ctx, want.Bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		if _, err := js.CreateKeyValue(ctx, want); err != nil {
			return false, fmt.Errorf("creating bucket %s: %w", want.Bucket, err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("looking up bucket %s: %w", want.Bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return false, fmt.Errorf("reading status of bucket %s: %w", want.Bucket, err)
	}
	if live, ok := st.(*jetstream.KeyValueBucketStatus); ok && !bucketDrifted(live.Config(), want) {
		return false, nil
	}
	if _, err := js.UpdateKeyValue(ctx, want); err != nil {
		return false, fmt.Errorf("updating bucket %s: %w", want.Bucket, err)
	}
	return false, nil
}

// bucketDrifted reports whether a live bucket differs from the desired one in the fields
// this package owns.
func bucketDrifted(live, want jetstream.KeyValueConfig) bool {
	return live.History != want.History || live.Replicas != want.Replicas || live.Storage != want.Storage || live.TTL != want.TTL
}
