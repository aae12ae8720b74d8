// Package telemetry holds the device payload types, their strict decoding and validation, and
// the wire format of stream messages (telemetrypb.ReadingBatch).
package telemetry

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
)

// Kind names the two telemetry streams.
type Kind uint8

const (
	// KindMeter is a grid-side (AC) smart-meter reading.
	KindMeter Kind = iota + 1
	// KindVehicle is a charger-side (DC) vehicle reading.
	KindVehicle
)

func (k Kind) String() string {
	switch k {
	case KindMeter:
		return "meter"
	case KindVehicle:
		return "vehicle"
	default:
		return "unknown"
	}
}

// Reading is one validated reading of either kind: exactly one of Meter and Vehicle is set.
type Reading struct {
	Meter   *telemetrypb.MeterReading
	Vehicle *telemetrypb.VehicleReading
}

// Kind returns which stream the reading belongs to.
func (r Reading) Kind() Kind {
	if r.Meter != nil {
		return KindMeter
	}
	return KindVehicle
}

// DeviceID returns the meter or vehicle id.
func (r Reading) DeviceID() string {
	if r.Meter != nil {
		return r.Meter.GetMeterId()
	}
	return r.Vehicle.GetVehicleId()
}

// TimestampMicros returns the end of the reading's interval in Unix microseconds.
func (r Reading) TimestampMicros() int64 {
	if r.Meter != nil {
		return r.Meter.GetTimestampMicros()
	}
	return r.Vehicle.GetTimestampMicros()
}

// Time returns the end of the reading's interval.
func (r Reading) Time() time.Time {
	return time.UnixMicro(r.TimestampMicros()).UTC()
}

// Append adds r to the batch.
func (r Reading) Append(b *telemetrypb.ReadingBatch) {
	if r.Meter != nil {
		b.Meters = append(b.Meters, r.Meter)
		return
	}
	b.Vehicles = append(b.Vehicles, r.Vehicle)
}

// BatchLen returns the number of readings in b.
func BatchLen(b *telemetrypb.ReadingBatch) int {
	return len(b.GetMeters()) + len(b.GetVehicles())
}

// MarshalBatch encodes a stream message.
func MarshalBatch(b *telemetrypb.ReadingBatch) ([]byte, error) {
	data, err := proto.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encoding reading batch: %w", err)
	}
	return data, nil
}

// UnmarshalBatch decodes a stream message and checks that every reading in it is one the
// gateway could have accepted (ids of the right grammar, finite numbers), so that a corrupt
// or foreign message is refused whole rather than written in part.
func UnmarshalBatch(data []byte) (*telemetrypb.ReadingBatch, error) {
	var b telemetrypb.ReadingBatch
	if err := proto.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("decoding reading batch: %w", err)
	}
	upgradeEnergy(&b)
	if err := CheckBatch(&b); err != nil {
		return nil, err
	}
	return &b, nil
}

// upgradeEnergy gives the readings of a message of the previous version, which carry energy
// only as float kWh, their energy in mWh. A reading of this version carries both, and its
// mWh are taken as they are.
func upgradeEnergy(b *telemetrypb.ReadingBatch) {
	for _, m := range b.GetMeters() {
		if kwh := m.GetKwhConsumedAc(); m.GetMwhConsumedAc() == 0 && kwh != 0 { //nolint:staticcheck // the previous version's field
			m.MwhConsumedAc = MWhFromKWh(kwh)
		}
	}
	for _, v := range b.GetVehicles() {
		if kwh := v.GetKwhDeliveredDc(); v.GetMwhDeliveredDc() == 0 && kwh != 0 { //nolint:staticcheck // the previous version's field
			v.MwhDeliveredDc = MWhFromKWh(kwh)
		}
	}
}

// HeaderPublishedAt names the stream-message header that carries, as Unix nanoseconds, when
// a message was first published, on a message published again later (a replay): an ingester
// checks the readings' timestamps against it instead of the message's own stream time.
const HeaderPublishedAt = "Fi-Published-At"

// PublishSlack is what an ingester allows beyond the acceptance window around a message's
// publish time: the gateway checked the readings against its own clock a moment before
// JetStream stamped the message with the server's.
const PublishSlack = time.Hour

// CheckPublished refuses a batch holding a reading that no gateway could have accepted when
// the batch was published at pub: older than l.MaxLateness or further ahead than
// l.MaxFutureSkew, give or take PublishSlack. It needs no clock, so an ingester applies it to
// messages of any age.
func CheckPublished(b *telemetrypb.ReadingBatch, pub time.Time, l Limits) error {
	oldest := pub.Add(-l.MaxLateness - PublishSlack).UnixMicro()
	newest := pub.Add(l.MaxFutureSkew + PublishSlack).UnixMicro()
	check := func(id string, ts int64) error {
		if ts < oldest || ts > newest {
			return fmt.Errorf("reading of %s at %s lies outside the acceptance window of a message published at %s",
				id, time.UnixMicro(ts).UTC().Format(time.RFC3339), pub.UTC().Format(time.RFC3339))
		}
		return nil
	}
	for _, m := range b.GetMeters() {
		if err := check(m.GetMeterId(), m.GetTimestampMicros()); err != nil {
			return err
		}
	}
	for _, v := range b.GetVehicles() {
		if err := check(v.GetVehicleId(), v.GetTimestampMicros()); err != nil {
			return err
		}
	}
	return nil
}
