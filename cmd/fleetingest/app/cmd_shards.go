package app

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/internal/devstack"
)

// shardsOptions name the fleet whose shard map is read.
type shardsOptions struct {
	dataDir            string
	natsURL, natsCreds string
	namespace, fleet   string
	timeout            time.Duration
}

func newShardsCommand() *cobra.Command {
	var o shardsOptions
	cmd := &cobra.Command{
		Use:   "shards",
		Short: "Inspect the fleet's shard map",
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Print the shard map's versions, from when each holds, and each shard's share of the slots",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			m, err := o.read(ctx)
			if err != nil {
				return err
			}
			return printShardMap(cmd.OutOrStdout(), m, time.Now())
		},
	}
	f := cmd.PersistentFlags()
	f.StringVar(&o.dataDir, "data-dir", ".fleetingest", "the data folder of a running dev stack (fleetingest dev), whose NATS it uses; ignored with --nats-url")
	f.StringVar(&o.natsURL, "nats-url", "", "NATS URL of the fleet (a cluster); default: the dev stack's")
	f.StringVar(&o.natsCreds, "nats-creds", "", "NATS credentials file (optional)")
	f.StringVar(&o.namespace, "namespace", "dev", "Kubernetes namespace of the fleet (names its shard-map bucket)")
	f.StringVar(&o.fleet, "fleet", "local", "FleetIngestion name (names its shard-map bucket)")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "deadline of the command")
	cmd.AddCommand(status)
	return cmd
}

// read reads the fleet's shard map.
func (o shardsOptions) read(ctx context.Context) (*placement.ShardMap, error) {
	url := o.natsURL
	if url == "" {
		data, err := os.ReadFile(filepath.Join(o.dataDir, devstack.NATSURLFile))
		if err != nil {
			return nil, fmt.Errorf("finding the dev stack's NATS (is `fleetingest dev` running in %s? else give --nats-url): %w", o.dataDir, err)
		}
		url = strings.TrimSpace(string(data))
	}
	nc, err := connectNATS(url, o.natsCreds, "fleetingest-shards", logger("shards"))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("creating JetStream context: %w", err)
	}
	m, _, err := ingester.ReadShardMap(ctx, js, ingester.Topology{Namespace: o.namespace, Fleet: o.fleet, Shards: 1})
	return m, err
}

// printShardMap writes each version: when it holds from, its shards, which is in force now,
// and every shard's slots.
func printShardMap(w io.Writer, m *placement.ShardMap, now time.Time) error {
	var b strings.Builder
	inForce := len(m.Versions) - 1
	for inForce > 0 && m.Versions[inForce].From.After(now) {
		inForce--
	}
	for i, v := range m.Versions {
		from := "the beginning"
		if i > 0 {
			from = v.From.UTC().Format(time.RFC3339Nano)
		}
		note := ""
		switch {
		case i == inForce:
			note = "  (in force)"
		case i > inForce:
			note = "  (takes effect in " + v.From.Sub(now).Round(time.Second).String() + ")"
		}
		fmt.Fprintf(&b, "version %d  from %s  %d shards%s\n", i, from, v.Shards, note)
		slots := make([]int, v.Shards)
		for _, r := range v.Ranges {
			slots[r.Shard] += r.End - r.Start + 1
		}
		for shard, n := range slots {
			fmt.Fprintf(&b, "  shard %d: %d slots (%.1f%%)\n", shard, n, 100*float64(n)/placement.Slots)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
