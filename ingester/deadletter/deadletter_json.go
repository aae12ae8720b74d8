package deadletter

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fleetingest/fleetingest/api/telemetry"
)

// parkedJSON is the JSON form of a parked reading: the reading in the shape a device posts
// it (energy in exact kWh), and where it came from.
type parkedJSON struct {
	Seq         uint64          `json:"seq"`
	Shard       int             `json:"shard"`
	Reason      string          `json:"reason"`
	PublishedAt *time.Time      `json:"publishedAt,omitempty"`
	ParkedAt    time.Time       `json:"parkedAt"`
	Source      string          `json:"source,omitempty"`
	Reading     json.RawMessage `json:"reading,omitempty"`
	// AttributedMeterID is the meter a vehicle reading was placed by (empty: none).
	AttributedMeterID string `json:"attributedMeterId,omitempty"`
	Error             string `json:"error,omitempty"`
}

// MarshalJSON writes p as {"seq","shard","reason","publishedAt","parkedAt","source",
// "reading":{…as posted…},"attributedMeterId"}, with "error" instead of the reading for a
// message that does not decode.
func (p Parked) MarshalJSON() ([]byte, error) {
	j := parkedJSON{Seq: p.Seq, Shard: p.Shard, Reason: p.Reason, ParkedAt: p.ParkedAt.UTC(), Source: p.Source}
	if !p.PublishedAt.IsZero() {
		j.PublishedAt = &p.PublishedAt
	}
	if p.Err != nil {
		j.Error = p.Err.Error()
		return json.Marshal(j)
	}
	j.Reading = []byte(ReadingJSON(p.Reading))
	if v := p.Reading.Vehicle; v != nil {
		j.AttributedMeterID = v.GetMeterId()
	}
	return json.Marshal(j)
}

// ReadingJSON is r as a device posts it to the gateway.
func ReadingJSON(r telemetry.Reading) string {
	ts := strconv.Quote(r.Time().Format(time.RFC3339Nano))
	if m := r.Meter; m != nil {
		return fmt.Sprintf(`{"meterId":%s,"kwhConsumedAc":%s,"voltage":%s,"timestamp":%s}`,
			strconv.Quote(m.GetMeterId()), kwh(m.GetMwhConsumedAc()), number(m.GetVoltage()), ts)
	}
	v := r.Vehicle
	return fmt.Sprintf(`{"vehicleId":%s,"soc":%s,"kwhDeliveredDc":%s,"batteryTemp":%s,"timestamp":%s}`,
		strconv.Quote(v.GetVehicleId()), number(v.GetSoc()), kwh(v.GetMwhDeliveredDc()), number(v.GetBatteryTemp()), ts)
}

// kwh writes mWh as exact kWh (at most six decimals).
func kwh(mwh int64) string {
	sign := ""
	if mwh < 0 {
		sign, mwh = "-", -mwh
	}
	whole, frac := mwh/telemetry.MWhPerKWh, mwh%telemetry.MWhPerKWh
	if frac == 0 {
		return sign + strconv.FormatInt(whole, 10)
	}
	return sign + strconv.FormatInt(whole, 10) + "." + strings.TrimRight(fmt.Sprintf("%06d", frac), "0")
}

func number(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
