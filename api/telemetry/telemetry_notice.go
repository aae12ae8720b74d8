package telemetry

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
)

// HourVersion is an hour of a shard's data and its version: every transaction that changes
// the hour's readings gives it a new, higher version (the shard's rollup_hours).
type HourVersion struct {
	Hour    time.Time
	Version int64
}

// MarshalNotice encodes the commit notice of a batch that changed hours on shard
// (telemetrypb.CommitNotice).
func MarshalNotice(shard int, changed []HourVersion) ([]byte, error) {
	n := &telemetrypb.CommitNotice{
		Shard:    int32(shard),
		Hours:    make([]int64, len(changed)),
		Versions: make([]int64, len(changed)),
	}
	for i, c := range changed {
		n.Hours[i], n.Versions[i] = c.Hour.Unix(), c.Version
	}
	data, err := proto.Marshal(n)
	if err != nil {
		return nil, fmt.Errorf("encoding commit notice: %w", err)
	}
	return data, nil
}

// UnmarshalNotice decodes a commit notice: the shard and the hours it changed.
func UnmarshalNotice(data []byte) (shard int, changed []HourVersion, err error) {
	var n telemetrypb.CommitNotice
	if err := proto.Unmarshal(data, &n); err != nil {
		return 0, nil, fmt.Errorf("decoding commit notice: %w", err)
	}
	if len(n.GetHours()) != len(n.GetVersions()) {
		return 0, nil, fmt.Errorf("commit notice of %d hours and %d versions", len(n.GetHours()), len(n.GetVersions()))
	}
	changed = make([]HourVersion, len(n.GetHours()))
	for i, h := range n.GetHours() {
		changed[i] = HourVersion{Hour: time.Unix(h, 0).UTC(), Version: n.GetVersions()[i]}
	}
	return int(n.GetShard()), changed, nil
}
