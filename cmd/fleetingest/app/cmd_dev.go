package app

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetingest/fleetingest/internal/auth"
	"github.com/fleetingest/fleetingest/internal/devstack"
)

func newDevCommand() *cobra.Command {
	var cfg devstack.Config
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole system on this machine: embedded NATS, Postgres shards, gateway, ingesters, analytics",
		Long: `dev runs every component in one process on embedded defaults: an in-process NATS server
with JetStream (file storage under --data-dir), Postgres shards (--shards) started from the
system's PostgreSQL binaries (found on PATH or in /usr/lib/postgresql/*/bin), the gateway, one
ingester per shard and the analytics service, all on --http-addr. Data survives restarts.
Ctrl-C or SIGTERM stops everything it started.

--shards above the data folder's count grows the fleet without moving a row: the new shards
start, then the shard map's new version takes effect 5 s after it is written (printed as
"cutover: <time>"); readings are placed by the version in force at their own timestamp.

Every request needs a token: dev makes a device signing key and a user signing key in
--data-dir on first start, and prints after its ready line an every-device token and an
admin token as export lines (FLEETINGEST_DEVICE_TOKEN, FLEETINGEST_ADMIN_TOKEN); mint more
with "fleetingest token".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Logger = logger("dev")
			stack, err := devstack.Start(cmd.Context(), cfg)
			if err != nil {
				return fmt.Errorf("starting the dev stack: %w", err)
			}
			var b strings.Builder
			fmt.Fprintf(&b, "fleetingest dev ready: %s\n", stack.URL())
			fmt.Fprintf(&b, "  nats:    %s\n", stack.NATSURL())
			for i, dsn := range stack.DSNs() {
				fmt.Fprintf(&b, "  shard %d: %s\n", i, dsn)
			}
			if cfg.InsecureNoAuth {
				fmt.Fprintf(&b, "WARNING: %s\n", auth.InsecureNote)
			} else {
				fmt.Fprintf(&b, "export FLEETINGEST_DEVICE_TOKEN=%s\n", stack.DeviceToken())
				fmt.Fprintf(&b, "export FLEETINGEST_ADMIN_TOKEN=%s\n", stack.AdminToken())
				fmt.Fprintf(&b, "# more tokens: fleetingest token device --data-dir %[1]s --device ID (or --prefix P)\n"+
					"#              fleetingest token user --data-dir %[1]s --name NAME --role viewer|admin\n", cfg.DataDir)
			}
			if c := stack.Cutover(); !c.IsZero() {
				fmt.Fprintf(&b, "cutover: %s\n", c.UTC().Format(time.RFC3339Nano))
			}
			if _, err := io.WriteString(cmd.OutOrStdout(), b.String()); err != nil {
				return errors.Join(fmt.Errorf("printing the dev stack's addresses: %w", err), stack.Stop())
			}
			select {
			case <-cmd.Context().Done():
				return stack.Stop()
			case <-stack.Done():
				return fmt.Errorf("dev stack stopped: %w", stack.Err())
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", ".fleetingest", "folder for NATS' and the Postgres shards' data (kept across restarts)")
	f.IntVar(&cfg.Shards, "shards", 0, "number of Postgres shards (default: the data folder's, 2 for a new one); more grows the fleet before it reports ready, fewer is refused")
	f.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:8080", "address of the HTTP surface (gateway, analytics, /metrics)")
	f.IntVar(&cfg.NATSPort, "nats-port", 4222, "port of the embedded NATS server (0 picks a free one)")
	f.IntVar(&cfg.PostgresPort, "postgres-port", 55432, "port of shard 0; shard i listens on this port + i (0 picks free ones)")
	f.BoolVar(&cfg.InsecureNoAuth, "insecure-no-auth", false, "serve without authentication (no device or user tokens): for experiments only, never where others can reach it")
	f.Int64Var(&cfg.Streams.MaxBytes, "stream-max-bytes", 1<<30, "bytes each shard's stream may hold before the gateway answers 503")
	return cmd
}
