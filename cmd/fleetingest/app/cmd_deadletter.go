package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/deadletter"
	"github.com/fleetingest/fleetingest/internal/devstack"
)

// deadletterOptions are the flags of `fleetingest deadletter list|replay`.
type deadletterOptions struct {
	dataDir            string
	natsURL, natsCreds string
	namespace, fleet   string
	shard              int
	seq                uint64
	timeout            time.Duration
	json               bool
}

func newDeadletterCommand() *cobra.Command {
	o := &deadletterOptions{}
	cmd := &cobra.Command{
		Use:   "deadletter",
		Short: "List or replay the readings a shard database refused for good (the dead-letter stream)",
		Long: `An ingester whose database refuses readings for good (a constraint or a value the
database will not take, on every attempt) writes the rest of their batch and parks the
refused readings, with the database's reason, in the fleet's dead-letter stream, so that
they hold up nothing. list shows them; once the cause is fixed, replay publishes them to
their shard's stream again, with their original publish time, and removes them from the
dead-letter stream. A replayed reading is stored once, however often it is replayed; one its
database still refuses is parked again.`,
	}
	f := cmd.PersistentFlags()
	f.StringVar(&o.dataDir, "data-dir", ".fleetingest", "the data folder of a running dev stack (fleetingest dev), whose NATS it uses; ignored with --nats-url")
	f.StringVar(&o.natsURL, "nats-url", "", "NATS URL of the fleet (a cluster); default: the dev stack's")
	f.StringVar(&o.natsCreds, "nats-creds", "", "NATS credentials file (optional)")
	f.StringVar(&o.namespace, "namespace", "dev", "Kubernetes namespace of the fleet (names its dead-letter stream)")
	f.StringVar(&o.fleet, "fleet", "local", "FleetIngestion name (names its dead-letter stream)")
	f.IntVar(&o.shard, "shard", deadletter.AnyShard, "only the readings refused by this shard (-1: every shard)")
	f.Uint64Var(&o.seq, "seq", 0, "only the parked reading with this sequence (the SEQ list shows; 0: all)")
	f.DurationVar(&o.timeout, "timeout", time.Minute, "deadline of the command")

	list := &cobra.Command{
		Use:   "list",
		Short: "Show the parked readings: sequence, shard, original publish time, the reading and the reason",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return listDeadLetters(cmd.Context(), *o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	list.Flags().BoolVar(&o.json, "json", false, "one JSON object a parked reading (NDJSON)")
	replay := &cobra.Command{
		Use:   "replay",
		Short: "Publish the parked readings to their shard's stream again and remove them; print how many",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return replayDeadLetters(cmd.Context(), *o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.AddCommand(list, replay)
	return cmd
}

func (o deadletterOptions) topology() ingester.Topology {
	return ingester.Topology{Namespace: o.namespace, Fleet: o.fleet, Shards: 1}
}

func (o deadletterOptions) filter() (deadletter.Filter, error) {
	if o.shard < deadletter.AnyShard {
		return deadletter.Filter{}, fmt.Errorf("--shard %d: want a shard index", o.shard)
	}
	return deadletter.Filter{Shard: o.shard, Seq: o.seq}, nil
}

// connect opens JetStream on the fleet's NATS: --nats-url, or the dev stack's of --data-dir.
// run checks the filter, connects to NATS within the command's timeout and runs fn.
func (o deadletterOptions) run(ctx context.Context, fn func(context.Context, jetstream.JetStream, ingester.Topology, deadletter.Filter) error) error {
	f, err := o.filter()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	js, closeNATS, err := o.connect(ctx)
	if err != nil {
		return err
	}
	defer closeNATS()
	return fn(ctx, js, o.topology(), f)
}

func (o deadletterOptions) connect(ctx context.Context) (jetstream.JetStream, func(), error) {
	if err := o.topology().Validate(); err != nil {
		return nil, nil, err
	}
	url := o.natsURL
	if url == "" {
		data, err := os.ReadFile(filepath.Join(o.dataDir, devstack.NATSURLFile))
		if err != nil {
			return nil, nil, fmt.Errorf("finding the dev stack's NATS (is `fleetingest dev` running in %s? else give --nats-url): %w", o.dataDir, err)
		}
		url = strings.TrimSpace(string(data))
	}
	nc, err := connectNATS(url, o.natsCreds, "fleetingest-deadletter", logger("deadletter"))
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("creating JetStream context: %w", err)
	}
	if !nc.IsConnected() {
		// connectNATS retries in the background; a command waits for the first connection.
		if err := waitConnected(ctx, nc.IsConnected); err != nil {
			nc.Close()
			return nil, nil, fmt.Errorf("connecting to NATS at %s: %w", url, err)
		}
	}
	return js, nc.Close, nil
}

func waitConnected(ctx context.Context, connected func() bool) error {
	for !connected() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

func listDeadLetters(ctx context.Context, o deadletterOptions, stdout, stderr io.Writer) error {
	return o.run(ctx, func(ctx context.Context, js jetstream.JetStream, topo ingester.Topology, f deadletter.Filter) error {
		return listParked(ctx, js, topo, f, o.json, stdout, stderr)
	})
}

// listParked writes the parked readings f selects to stdout, as a table or JSON lines.
func listParked(ctx context.Context, js jetstream.JetStream, topo ingester.Topology, f deadletter.Filter, asJSON bool, stdout, stderr io.Writer) error {
	var err error
	n := 0
	if asJSON {
		enc := json.NewEncoder(stdout)
		err = deadletter.Walk(ctx, js, topo, f, func(p deadletter.Parked) error {
			n++
			return enc.Encode(p)
		})
	} else {
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "SEQ\tSHARD\tPUBLISHED\tREADING\tREASON")
		err = deadletter.Walk(ctx, js, topo, f, func(p deadletter.Parked) error {
			n++
			_, err := fmt.Fprintln(w, parkedRow(p))
			return err
		})
		if ferr := w.Flush(); err == nil {
			err = ferr
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%d parked reading(s) in %s\n", n, topo.DeadLetterStream())
	return nil
}

// parkedRow is a parked reading as a row of list's table.
func parkedRow(p deadletter.Parked) string {
	if p.Err != nil {
		return fmt.Sprintf("%d\t%d\t-\t(not a parked reading: %v)\t%s", p.Seq, p.Shard, p.Err, p.Reason)
	}
	reading := deadletter.ReadingJSON(p.Reading)
	if v := p.Reading.Vehicle; v != nil && v.GetMeterId() != "" {
		reading += " (charging at " + v.GetMeterId() + ")"
	}
	return fmt.Sprintf("%d\t%d\t%s\t%s\t%s", p.Seq, p.Shard, p.PublishedAt.Format(time.RFC3339Nano), reading, p.Reason)
}

func replayDeadLetters(ctx context.Context, o deadletterOptions, stdout, stderr io.Writer) error {
	return o.run(ctx, func(ctx context.Context, js jetstream.JetStream, topo ingester.Topology, f deadletter.Filter) error {
		return replayParked(ctx, js, topo, f, stdout, stderr)
	})
}

// replayParked replays the parked readings f selects and prints how many on stdout.
func replayParked(ctx context.Context, js jetstream.JetStream, topo ingester.Topology, f deadletter.Filter, stdout, stderr io.Writer) error {
	r, err := deadletter.Replay(ctx, js, topo, f)
	for i := range r.Skipped {
		fmt.Fprintf(stderr, "left sequence %d in %s: not a parked reading: %v\n", r.Skipped[i].Seq, topo.DeadLetterStream(), r.Skipped[i].Err)
	}
	fmt.Fprintf(stderr, "replayed %d parked reading(s) from %s to their shards' streams\n", r.Replayed, topo.DeadLetterStream())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, r.Replayed)
	return err
}
