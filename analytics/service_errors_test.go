package analytics

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fleetingest/fleetingest/analytics/shards"
	"github.com/fleetingest/fleetingest/api/placement"
)

// TestACallerThatWentAwayIsNoShardFailure asks every shard with a context its caller already
// cancelled (a client that hung up, a reset stream): nothing is logged or counted against
// the shards.
func TestACallerThatWentAwayIsNoShardFailure(t *testing.T) {
	set, err := shards.Open(context.Background(), shards.Config{DSNs: []string{"postgres://127.0.0.1:1/a", "postgres://127.0.0.1:1/b"}, MinConns: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s := &Service{shards: set, metrics: m, cfg: Config{ShardMap: placement.Fixed{Map: placement.MustShardMap(2)}, Logger: slog.New(slog.NewTextHandler(&logs, nil))}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 100 {
		s.fanOut(ctx, func(ctx context.Context, shard int) error {
			return set.Do(ctx, shard, func(ctx context.Context, db shards.DBTX) error {
				_, err := db.Exec(ctx, "SELECT 1")
				return err
			})
		})
		_ = s.shardError("reading vehicle EV-1", context.Canceled)
	}
	if logs.Len() > 0 {
		t.Errorf("cancelled requests were logged:\n%s", strings.Join(strings.SplitN(logs.String(), "\n", 4)[:3], "\n"))
	}
	if n := testutil.ToFloat64(m.missing); n != 0 {
		t.Errorf("%v shard failures counted for cancelled requests", n)
	}
}
