package query

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/fleetingest/fleetingest/analytics/window"
)

// Plan is an executed plan (EXPLAIN ANALYZE, BUFFERS) of a query.
type Plan struct {
	// Text is the plan in Postgres' JSON format.
	Text string
	// Buffers is the shared buffers the query hit or read.
	Buffers int64
	// Planning and Execution are the times Postgres reported, in milliseconds.
	Planning, Execution float64
	root                planNode
}

type planNode struct {
	Relation   string     `json:"Relation Name"`
	ActualRows float64    `json:"Actual Rows"`
	Loops      float64    `json:"Actual Loops"`
	SharedHit  int64      `json:"Shared Hit Blocks"`
	SharedRead int64      `json:"Shared Read Blocks"`
	Plans      []planNode `json:"Plans"`
}

// RowsByTable sums the rows every scan returned, by table: history tables (raw) and
// rollup tables.
func (p Plan) RowsByTable() (raw, rollup map[string]int64) {
	raw, rollup = map[string]int64{}, map[string]int64{}
	var walk func(n planNode)
	walk = func(n planNode) {
		if n.Relation != "" {
			rows := int64(n.ActualRows * n.Loops)
			if strings.HasSuffix(n.Relation, "_hourly") {
				rollup[n.Relation] += rows
			} else {
				raw[n.Relation] += rows
			}
		}
		for _, c := range n.Plans {
			walk(c)
		}
	}
	walk(p.root)
	return raw, rollup
}

// ExplainVehicle runs the per-vehicle statement under EXPLAIN (ANALYZE, BUFFERS).
func ExplainVehicle(ctx context.Context, db DBTX, vehicleID string, w window.Window, meters []MeterSpan) (Plan, error) {
	var text string
	err := db.QueryRow(ctx, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "+vehicleSQL, vehicleArgs(vehicleID, w, meters)...).Scan(&text)
	if err != nil {
		return Plan{}, fmt.Errorf("explaining the per-vehicle query: %w", err)
	}
	var out []struct {
		Plan      planNode `json:"Plan"`
		Planning  float64  `json:"Planning Time"`
		Execution float64  `json:"Execution Time"`
	}
	if err := json.Unmarshal([]byte(text), &out); err != nil || len(out) == 0 {
		return Plan{}, fmt.Errorf("decoding the plan: %w", err)
	}
	return Plan{Text: text, Buffers: out[0].Plan.SharedHit + out[0].Plan.SharedRead, Planning: out[0].Planning, Execution: out[0].Execution, root: out[0].Plan}, nil
}

// ExplainAlerts runs one shard's alert statement under EXPLAIN (ANALYZE, BUFFERS) and returns
// the plan as text.
func ExplainAlerts(ctx context.Context, db DBTX, hours window.Range) (string, error) {
	rows, err := db.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+alertSQL, alertMode, hours.From, hours.To)
	if err != nil {
		return "", fmt.Errorf("explaining the alert query: %w", err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return "", err
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String(), rows.Err()
}
