// Package deadletter is a fleet's dead-letter stream: the readings a shard database refused
// for good (a constraint or data error that would fail on every attempt), parked there by
// the shard's ingester so that they no longer hold up the shard, listed for an operator, and
// replayed to their shard's stream once the cause is fixed. It owns the format of a parked
// reading, one stream message a reading:
//
//	stream    ingester.Topology.DeadLetterStream(), e.g. FI_prod_fleet-a_deadletter
//	subject   ingester.Topology.DeadLetterSubject(shard), e.g. fi.prod.fleet-a.deadletter.0
//	data      a telemetrypb.ReadingBatch holding the one reading, exactly as a shard stream
//	          message carries it (telemetry.MarshalBatch), so a replay republishes it as is
//	headers   Fi-Published-At: when the reading was first published to its shard's stream,
//	          Unix nanoseconds (telemetry.HeaderPublishedAt)
//	          Fi-Refused: why the database refused it, one line of at most 500 bytes
//	          Fi-Source: the shard stream and sequence of the message it arrived in,
//	          "FI_prod_fleet-a_0:1234"
//	          Nats-Msg-Id: "<source>:<kind>:<device id>:<timestamp, Unix µs>", so a batch
//	          parked again after a crash (redelivered before its acknowledgement) parks
//	          nothing twice within the stream's two-minute duplicate window
//
// A replay publishes a parked reading's data to its shard's subject with its Fi-Published-At
// (the ingester checks the reading's timestamp against its first publish, not the replay's)
// and Nats-Msg-Id "deadletter:<dead-letter sequence>", waits for the stream's
// acknowledgement, then deletes the parked message. A replay repeated after a failure
// between the two publishes the reading again; the shard's (device, timestamp) key stores it
// once.
package deadletter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
	"github.com/fleetingest/fleetingest/ingester"
)

// Headers of a parked reading (see the package documentation).
const (
	HeaderReason = "Fi-Refused"
	HeaderSource = "Fi-Source"
)

// MaxReasonBytes bounds the reason kept with a parked reading.
const MaxReasonBytes = 500

// AnyShard is the Filter.Shard of every shard.
const AnyShard = -1

// Refusal is a reading a shard database refused for good, to park.
type Refusal struct {
	// Reading is the refused reading.
	Reading telemetry.Reading
	// Reason is the database's error.
	Reason string
	// PublishedAt is when the reading was first published to its shard's stream.
	PublishedAt time.Time
	// Stream and Seq name the stream message the reading arrived in.
	Stream string
	Seq    uint64
}

// Parked is one reading of the dead-letter stream.
type Parked struct {
	// Seq is its sequence in the dead-letter stream: what `replay --seq` names.
	Seq uint64
	// Shard it was refused by, and is replayed to.
	Shard int
	// Reading is the parked reading (zero when Err is set).
	Reading telemetry.Reading
	// Reason the database gave.
	Reason string
	// PublishedAt is when the reading was first published to its shard's stream.
	PublishedAt time.Time
	// ParkedAt is when it was parked.
	ParkedAt time.Time
	// Source names the stream message it arrived in ("<stream>:<sequence>").
	Source string
	// Err says why the message does not decode as a parked reading (one published on the
	// dead-letter subject by something else); such a message is listed, never replayed.
	Err error

	data        []byte
	publishedAt string
}

// Filter selects parked readings: those of one shard (AnyShard: all), and one sequence
// (0: all).
type Filter struct {
	Shard int
	Seq   uint64
}

func (f Filter) match(p Parked) bool {
	return (f.Shard == AnyShard || f.Shard == p.Shard) && (f.Seq == 0 || f.Seq == p.Seq)
}

// Park publishes each refusal of shard to the dead-letter stream and waits for the stream to
// acknowledge it. It returns the first failure; refusals parked before it are deduplicated
// when they are parked again.
func Park(ctx context.Context, js jetstream.JetStream, t ingester.Topology, shard int, refusals []Refusal) error {
	for _, r := range refusals {
		msg, id, err := Encode(t, shard, r)
		if err != nil {
			return err
		}
		if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(t.DeadLetterStream())); err != nil {
			return fmt.Errorf("parking a reading of %s in stream %s: %w", r.Reading.DeviceID(), t.DeadLetterStream(), err)
		}
	}
	return nil
}

// Encode is the dead-letter message of a refusal of shard, and its message id.
func Encode(t ingester.Topology, shard int, r Refusal) (*nats.Msg, string, error) {
	b := &telemetrypb.ReadingBatch{}
	r.Reading.Append(b)
	data, err := telemetry.MarshalBatch(b)
	if err != nil {
		return nil, "", err
	}
	msg := nats.NewMsg(t.DeadLetterSubject(shard))
	msg.Data = data
	source := r.Stream + ":" + strconv.FormatUint(r.Seq, 10)
	msg.Header.Set(telemetry.HeaderPublishedAt, strconv.FormatInt(r.PublishedAt.UnixNano(), 10))
	msg.Header.Set(HeaderReason, oneLine(r.Reason, MaxReasonBytes))
	msg.Header.Set(HeaderSource, source)
	id := fmt.Sprintf("%s:%s:%s:%d", source, r.Reading.Kind(), r.Reading.DeviceID(), r.Reading.TimestampMicros())
	return msg, id, nil
}

// Decode reads a message of the dead-letter stream of t. A message that is not a parked
// reading comes back with Err set.
func Decode(t ingester.Topology, m *jetstream.RawStreamMsg) Parked {
	p := Parked{Seq: m.Sequence, Shard: AnyShard, ParkedAt: m.Time, data: m.Data}
	p.Reason = m.Header.Get(HeaderReason)
	p.Source = m.Header.Get(HeaderSource)
	prefix := strings.TrimSuffix(t.DeadLetterSubjects(), "*")
	shard, err := strconv.Atoi(strings.TrimPrefix(m.Subject, prefix))
	if err != nil || !strings.HasPrefix(m.Subject, prefix) || shard < 0 {
		p.Err = fmt.Errorf("subject %q names no shard", m.Subject)
		return p
	}
	p.Shard = shard
	p.publishedAt = m.Header.Get(telemetry.HeaderPublishedAt)
	ns, err := strconv.ParseInt(p.publishedAt, 10, 64)
	if err != nil {
		p.Err = fmt.Errorf("header %s %q is not Unix nanoseconds", telemetry.HeaderPublishedAt, p.publishedAt)
		return p
	}
	p.PublishedAt = time.Unix(0, ns).UTC()
	b, err := telemetry.UnmarshalBatch(m.Data)
	switch {
	case err != nil:
		p.Err = err
	case telemetry.BatchLen(b) != 1:
		p.Err = fmt.Errorf("holds %d readings, not one", telemetry.BatchLen(b))
	case len(b.GetMeters()) == 1:
		p.Reading = telemetry.Reading{Meter: b.GetMeters()[0]}
	default:
		p.Reading = telemetry.Reading{Vehicle: b.GetVehicles()[0]}
	}
	return p
}

// Walk calls fn with every parked reading f selects, oldest first, until fn returns an
// error, which Walk returns.
func Walk(ctx context.Context, js jetstream.JetStream, t ingester.Topology, f Filter, fn func(Parked) error) error {
	s, err := js.Stream(ctx, t.DeadLetterStream())
	if err != nil {
		return fmt.Errorf("opening dead-letter stream %s: %w", t.DeadLetterStream(), err)
	}
	subject := t.DeadLetterSubjects()
	if f.Shard != AnyShard {
		subject = t.DeadLetterSubject(f.Shard)
	}
	seq := max(f.Seq, 1)
	for {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading dead-letter stream %s at sequence %d: %w", t.DeadLetterStream(), seq, err)
		}
		p := Decode(t, m)
		if !f.match(p) {
			return nil // past the one sequence asked for
		}
		if err := fn(p); err != nil {
			return err
		}
		seq = m.Sequence + 1
	}
}

// List returns the parked readings f selects, oldest first.
func List(ctx context.Context, js jetstream.JetStream, t ingester.Topology, f Filter) ([]Parked, error) {
	var out []Parked
	err := Walk(ctx, js, t, f, func(p Parked) error {
		out = append(out, p)
		return nil
	})
	return out, err
}

// Replayed is what Replay did.
type Replayed struct {
	// Replayed readings were published to their shard's stream and removed from the
	// dead-letter stream.
	Replayed int
	// Skipped are messages that do not decode as parked readings (left in place).
	Skipped []Parked
}

// Replay republishes every parked reading f selects to its shard's stream, keeping its first
// publish time, and removes it from the dead-letter stream once its shard's stream has
// acknowledged it. A reading its shard refuses again is parked again by its ingester.
func Replay(ctx context.Context, js jetstream.JetStream, t ingester.Topology, f Filter) (Replayed, error) {
	var r Replayed
	s, err := js.Stream(ctx, t.DeadLetterStream())
	if err != nil {
		return r, fmt.Errorf("opening dead-letter stream %s: %w", t.DeadLetterStream(), err)
	}
	err = Walk(ctx, js, t, f, func(p Parked) error {
		if p.Err != nil {
			r.Skipped = append(r.Skipped, p)
			return nil
		}
		msg := nats.NewMsg(t.Subject(p.Shard))
		msg.Data = p.data
		msg.Header.Set(telemetry.HeaderPublishedAt, p.publishedAt)
		id := "deadletter:" + strconv.FormatUint(p.Seq, 10)
		if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(t.Stream(p.Shard))); err != nil {
			return fmt.Errorf("replaying parked reading %d to stream %s: %w", p.Seq, t.Stream(p.Shard), err)
		}
		if err := s.DeleteMsg(ctx, p.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("removing replayed reading %d from stream %s (replayed; a replay again stores it once): %w", p.Seq, t.DeadLetterStream(), err)
		}
		r.Replayed++
		return nil
	})
	return r, err
}

// oneLine makes s a header value: line breaks become spaces, and it is cut to at most n
// bytes of valid UTF-8.
func oneLine(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
