// Package mappingio reads and writes vehicle → meter mappings as JSON or CSV: JSON holds
// every interval of every vehicle (an export an import replays, history intact), CSV the
// current mappings as vehicleId,meterId rows (bulk set-up, mapped from now on).
package mappingio

import (
	"cmp"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
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
			x.To = new(iv.GetTo().AsTime())
		}
		out.Intervals = append(out.Intervals, x)
	}
	if m.UpdatedAt != nil {
		out.UpdatedAt = new(m.GetUpdatedAt().AsTime())
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

// Row is one mapping write: the vehicle's meter from now on (From zero), or one interval of
// its history, [From, To) or open from From when To is nil.
type Row struct {
	VehicleID, MeterID string
	From               time.Time
	To                 *time.Time
}

// Read reads mappings to write, in the order to write them: every interval oldest first,
// then the mappings that start now. A JSON object (as Write writes) gives a row per interval,
// its meterId, if any, the meter of its open interval; without intervals, its meterId from
// now on. CSV rows, after an optional header, map from now on. Rows without a meter are
// skipped. An invalid id, or a vehicle's intervals not disjoint with at most the last one
// open, fail the whole read, naming the mapping.
func Read(r io.Reader, format string) ([]Row, error) {
	var rows []Row
	var err error
	switch format {
	case JSON:
		rows, err = readJSON(r)
	case CSV:
		rows, err = readCSV(r)
	default:
		return nil, fmt.Errorf("unknown format %q (want json or csv)", format)
	}
	if err != nil {
		return nil, err
	}
	var history, now []Row
	for _, row := range rows {
		switch {
		case row.MeterID == "":
		case row.From.IsZero():
			now = append(now, row)
		default:
			history = append(history, row)
		}
	}
	slices.SortStableFunc(history, func(a, b Row) int {
		return cmp.Or(a.From.Compare(b.From), strings.Compare(a.VehicleID, b.VehicleID))
	})
	return append(history, now...), nil
}

// readJSON reads an export (or hand-written objects): one row per interval, or one row from
// now for an object without intervals.
func readJSON(r io.Reader) ([]Row, error) {
	var ms []Mapping
	if err := json.NewDecoder(r).Decode(&ms); err != nil {
		return nil, fmt.Errorf("reading mappings as JSON: %w", err)
	}
	var rows []Row
	for i, m := range ms {
		if err := m.check(); err != nil {
			return nil, fmt.Errorf("mapping %d (%q): %w", i+1, m.VehicleID, err)
		}
		if len(m.Intervals) == 0 {
			rows = append(rows, Row{VehicleID: m.VehicleID, MeterID: m.MeterID})
			continue
		}
		for _, iv := range m.Intervals {
			row := Row{VehicleID: m.VehicleID, MeterID: iv.MeterID, From: iv.From.UTC()}
			if iv.To != nil {
				row.To = new(iv.To.UTC())
			}
			rows = append(rows, row)
		}
	}
	return rows, nil
}

// check validates one JSON mapping: ids, and intervals with a start, sorted, disjoint, at
// most the last one open and holding the current meter.
func (m Mapping) check() error {
	if !placement.ValidDeviceID(m.VehicleID) || (m.MeterID != "" && !placement.ValidDeviceID(m.MeterID)) {
		return errors.New("invalid device id")
	}
	for i, iv := range m.Intervals {
		switch {
		case !placement.ValidDeviceID(iv.MeterID):
			return fmt.Errorf("interval %d: invalid meter id %q", i+1, iv.MeterID)
		case iv.From.IsZero():
			return fmt.Errorf("interval %d has no start", i+1)
		case iv.To != nil && !iv.To.After(iv.From):
			return fmt.Errorf("interval %d ends before it starts", i+1)
		case i > 0 && (m.Intervals[i-1].To == nil || iv.From.Before(*m.Intervals[i-1].To)):
			return fmt.Errorf("interval %d overlaps interval %d: intervals must be in time order and disjoint", i+1, i)
		}
	}
	if n := len(m.Intervals); n > 0 && m.MeterID != "" && (m.Intervals[n-1].To != nil || m.Intervals[n-1].MeterID != m.MeterID) {
		return fmt.Errorf("meterId %s is not the meter of an open last interval", m.MeterID)
	}
	return nil
}

// readCSV reads vehicleId,meterId rows (from now on); an invalid id fails, naming its row.
func readCSV(r io.Reader) ([]Row, error) {
	var rows []Row
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
		row := Row{VehicleID: strings.TrimSpace(rec[0]), MeterID: strings.TrimSpace(rec[1])}
		if row.MeterID != "" && (!placement.ValidDeviceID(row.VehicleID) || !placement.ValidDeviceID(row.MeterID)) {
			return nil, fmt.Errorf("mapping %d (%q → %q): invalid device id", len(rows)+1, row.VehicleID, row.MeterID)
		}
		rows = append(rows, row)
	}
	return rows, nil
}
