// Package ingester owns the data plane's NATS contract: the names of streams, subjects,
// consumers and the mapping bucket, and the one function that creates them (EnsureStreams),
// called by the operator and by `fleetingest dev`. Its sub-packages are the gateway (HTTP →
// JetStream), the shard consumer (JetStream → Postgres), the store (schema and writes),
// the mapping registry (JetStream KV) and the dead-letter stream (deadletter: the readings a
// shard database refused for good, listed and replayed).
package ingester

import (
	"fmt"
	"strings"
)

// ConsumerName is the durable pull consumer every shard's ingester binds to.
const ConsumerName = "ingester"

// Topology names one fleet's NATS objects. Names are derived from the Kubernetes namespace,
// the FleetIngestion's name and the shard index, sanitised to what NATS allows, so that every
// component computes the same names from the same three inputs.
type Topology struct {
	// Namespace is the Kubernetes namespace of the fleet ("dev" for `fleetingest dev`).
	Namespace string
	// Fleet is the FleetIngestion's name ("local" for `fleetingest dev`).
	Fleet string
	// Shards is the number of shards.
	Shards int
}

// Validate reports a topology whose names would be empty or ambiguous.
func (t Topology) Validate() error {
	if t.Namespace == "" || t.Fleet == "" {
		return fmt.Errorf("topology needs a namespace and a fleet name, got %q/%q", t.Namespace, t.Fleet)
	}
	if t.Shards < 1 {
		return fmt.Errorf("topology needs at least one shard, got %d", t.Shards)
	}
	if n := max(len(t.Stream(t.Shards-1)), len(t.DeadLetterStream())); n > MaxNameLen {
		return fmt.Errorf("stream name of %d characters exceeds %d: shorten the namespace or fleet name", n, MaxNameLen)
	}
	return nil
}

// MaxNameLen bounds derived names: the file store keeps a folder per stream and KV buckets
// get a "KV_" prefix, so names stay well inside a file-name's 255 bytes.
const MaxNameLen = 200

// Stream returns the name of shard i's stream, e.g. "FI_prod_fleet-a_0".
func (t Topology) Stream(i int) string {
	return fmt.Sprintf("FI_%s_%s_%d", Sanitize(t.Namespace), Sanitize(t.Fleet), i)
}

// Subject returns the subject shard i's stream listens on, e.g. "fi.prod.fleet-a.0".
func (t Topology) Subject(i int) string {
	return fmt.Sprintf("fi.%s.%s.%d", Sanitize(t.Namespace), Sanitize(t.Fleet), i)
}

// MappingBucket returns the name of the vehicle → meter mapping KV bucket.
func (t Topology) MappingBucket() string {
	return fmt.Sprintf("fi_%s_%s_mappings", Sanitize(t.Namespace), Sanitize(t.Fleet))
}

// CommitSubject returns the subject ingesters publish commit notices on
// (telemetry.MarshalNotice), e.g. "fi.prod.fleet-a.commits": one for all of a fleet's shards.
// No stream listens on it.
func (t Topology) CommitSubject() string {
	return fmt.Sprintf("fi.%s.%s.commits", Sanitize(t.Namespace), Sanitize(t.Fleet))
}

// RevocationBucket returns the name of the KV bucket of revoked device-token ids.
func (t Topology) RevocationBucket() string {
	return fmt.Sprintf("fi_%s_%s_revocations", Sanitize(t.Namespace), Sanitize(t.Fleet))
}

// DeadLetterStream returns the name of the stream that keeps the readings a shard database
// refused for good, for every shard of the fleet, e.g. "FI_prod_fleet-a_deadletter".
func (t Topology) DeadLetterStream() string {
	return fmt.Sprintf("FI_%s_%s_deadletter", Sanitize(t.Namespace), Sanitize(t.Fleet))
}

// DeadLetterSubject returns the subject shard i's refused readings are parked on, e.g.
// "fi.prod.fleet-a.deadletter.0".
func (t Topology) DeadLetterSubject(i int) string {
	return fmt.Sprintf("fi.%s.%s.deadletter.%d", Sanitize(t.Namespace), Sanitize(t.Fleet), i)
}

// DeadLetterSubjects returns the subject filter of every shard's parked readings, e.g.
// "fi.prod.fleet-a.deadletter.*": what the dead-letter stream listens on.
func (t Topology) DeadLetterSubjects() string {
	return fmt.Sprintf("fi.%s.%s.deadletter.*", Sanitize(t.Namespace), Sanitize(t.Fleet))
}

// Buckets returns the names of every KV bucket of the fleet.
func (t Topology) Buckets() []string {
	return []string{t.MappingBucket(), t.RevocationBucket(), t.ShardMapBucket()}
}

// Sanitize maps s onto the characters NATS allows in stream, bucket and subject-token names
// ([A-Za-z0-9_-]); anything else becomes '_'. Kubernetes names never contain '_', so two
// distinct namespace/name pairs never collide.
func Sanitize(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}
