package ingester

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DeadLetterStreamConfig is the desired dead-letter stream of a fleet: one for every shard
// (the subject names the shard), where ingesters park the readings their database refuses
// for good, one message a reading (package ingester/deadletter owns the format). File
// storage, limits retention (a parked reading stays until it is replayed or removed, however
// often it is listed), no MaxAge (a parked reading is accepted data), DiscardNew with
// MaxBytes: when it is full an ingester cannot park, so it holds its batch unacknowledged
// rather than drop a reading. Duplicates are detected over two minutes, so a batch parked
// again after a crash parks nothing twice.
func DeadLetterStreamConfig(t Topology, o StreamOptions) jetstream.StreamConfig {
	o = o.WithDefaults()
	return jetstream.StreamConfig{
		Name:        t.DeadLetterStream(),
		Description: fmt.Sprintf("fleetingest readings refused for good by the shard databases of %s/%s", t.Namespace, t.Fleet),
		Subjects:    []string{t.DeadLetterSubjects()},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    o.MaxBytes,
		MaxMsgs:     -1,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		Duplicates:  2 * time.Minute,
	}
}

// ensureDeadLetter creates or repairs the dead-letter stream.
func ensureDeadLetter(ctx context.Context, js jetstream.JetStream, t Topology, o StreamOptions) (StreamState, error) {
	s, st, err := ensureStreamConfig(ctx, js, DeadLetterStreamConfig(t, o))
	st.Shard = -1
	if err != nil {
		return st, err
	}
	st.Pending = s.CachedInfo().State.Msgs
	st.Bytes = s.CachedInfo().State.Bytes
	return st, nil
}
