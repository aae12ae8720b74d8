// Package mappingio reads and writes vehicle → meter mappings as JSON or CSV, for backup
// (export keeps every interval in JSON) and bulk set-up (import sets current mappings).
package mappingio

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	analyticsv1 "github.com/fleetingest/fleetingest/api/analytics/v1"
	"github.com/fleetingest/fleetingest/api/placement"
)

// Formats.
const (
	JSON = "json"
	CSV  = "csv"
)

// Interval is one mapping interval in the JSON form.
type Interval struct {
	MeterID string     `json:"meterId"`
	From    time.Time  `json:"from"`
	To      *time.Time `json:"to,omitempty"`
}

// Mapping is one vehicle's mapping in the JSON form (the registry's value shape).
type Mapping struct {
	VehicleID string     `json:"vehicleId"`
	MeterID   string     `json:"meterId,omitempty"`
	Intervals []Interval `json:"intervals,omitempty"`
	UpdatedAt *time.Time `json:"updatedAt,omitempty"`
}

// FromProto converts an API mapping.
func FromProto(m *analyticsv1.Mapping) Mapping {
	out := Mapping{VehicleID: m.GetVehicleId(), MeterID: m.GetMeterId()}
	for _, iv := range m.GetIntervals() {
		x := Interval{MeterID: iv.GetMeterId(), From: iv.GetFrom().AsTime()}
		if iv.To != nil {
			to := iv.GetTo().AsTime()
			x.To = &to
		}
		out.Intervals = append(out.Intervals, x)
	}
	if m.UpdatedAt != nil {
		at := m.GetUpdatedAt().AsTime()
		out.UpdatedAt = &at
	}
	return out
}

// Write writes mappings: JSON as one array with intervals, CSV as vehicleId,meterId rows
// (current mappings; unmapped vehicles have an empty meterId).
func Write(w io.Writer, format string, ms []Mapping) error {
	switch format {
	case JSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if ms == nil {
			ms = []Mapping{}
		}
		if err := enc.Encode(ms); err != nil {
			return fmt.Errorf("writing mappings as JSON: %w", err)
		}
		return nil
	case CSV:
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"vehicleId", "meterId"})
		for _, m := range ms {
			_ = cw.Write([]string{m.VehicleID, m.MeterID})
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return fmt.Errorf("writing mappings as CSV: %w", err)
		}
		return nil
	}
	return fmt.Errorf("unknown format %q (want json or csv)", format)
}

// Row is one mapping to set: the vehicle's current meter.
type Row struct {
	VehicleID, MeterID string
}

// Read reads mappings to set. JSON: an array of objects with vehicleId and meterId (other
// fields, such as an export's intervals, are ignored). CSV: vehicleId,meterId rows, with an
// optional header. Rows without a meter (unmapped vehicles in an export) are skipped; an
// invalid id fails the whole read, naming its row.
func Read(r io.Reader, format string) ([]Row, error) {
	var rows []Row
	switch format {
	case JSON:
		var ms []Mapping
		if err := json.NewDecoder(r).Decode(&ms); err != nil {
			return nil, fmt.Errorf("reading mappings as JSON: %w", err)
		}
		for _, m := range ms {
			rows = append(rows, Row{VehicleID: m.VehicleID, MeterID: m.MeterID})
		}
	case CSV:
		cr := csv.NewReader(r)
		cr.FieldsPerRecord = -1
		cr.TrimLeadingSpace = true
		for line := 1; ; line++ {
			rec, err := cr.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("reading mappings as CSV: %w", err)
			}
			if len(rec) < 2 {
				return nil, fmt.Errorf("CSV line %d: want vehicleId,meterId", line)
			}
			if line == 1 && strings.EqualFold(rec[0], "vehicleId") {
				continue
			}
			rows = append(rows, Row{VehicleID: strings.TrimSpace(rec[0]), MeterID: strings.TrimSpace(rec[1])})
		}
	default:
		return nil, fmt.Errorf("unknown format %q (want json or csv)", format)
	}
	out := rows[:0]
	for i, row := range rows {
		if row.MeterID == "" {
			continue
		}
		if !placement.ValidDeviceID(row.VehicleID) || !placement.ValidDeviceID(row.MeterID) {
			return nil, fmt.Errorf("mapping %d (%q → %q): invalid device id", i+1, row.VehicleID, row.MeterID)
		}
		out = append(out, row)
	}
	return out, nil
}
