package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	analyticsv1 "github.com/fleetingest/fleetingest/api/analytics/v1"
	"github.com/fleetingest/fleetingest/api/analytics/v1/analyticsv1connect"
	"github.com/fleetingest/fleetingest/api/mappingio"
)

// mappingsOptions are the flags of `fleetingest mappings export|import`.
type mappingsOptions struct {
	server  string
	format  string
	file    string
	timeout time.Duration
	token   string
}

func newMappingsCommand() *cobra.Command {
	o := &mappingsOptions{}
	cmd := &cobra.Command{
		Use:   "mappings",
		Short: "Export or import vehicle → meter mappings (JSON or CSV) through the analytics API",
	}
	fs := cmd.PersistentFlags()
	fs.StringVar(&o.server, "server", "http://127.0.0.1:8080", "base URL of the analytics API")
	fs.StringVar(&o.format, "format", mappingio.JSON, "json (export keeps every interval) or csv (vehicleId,meterId)")
	fs.StringVar(&o.file, "file", "-", "file to write (export) or read (import); - is stdout/stdin")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "deadline of each API call")
	fs.StringVar(&o.token, "token", os.Getenv("FLEETINGEST_ADMIN_TOKEN"), "user token: viewer to export, admin to import (default $FLEETINGEST_ADMIN_TOKEN)")
	cmd.AddCommand(&cobra.Command{
		Use:   "export",
		Short: "Write every mapping: JSON with every interval of every vehicle, CSV the current meters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return exportMappings(cmd.Context(), *o, cmd.OutOrStdout())
		},
	}, &cobra.Command{
		Use:   "import",
		Short: "Replay a JSON export's intervals, oldest first, with their own times (CSV rows: mapped from now on)",
		Long: `Replays a JSON export interval by interval, oldest first, each with its own from and to,
so the mappings arrive as they were. Intervals are refused (and the import stops there) when
they start before the analytics service's --max-lateness: raise it to cover the export's
oldest interval for the import. Intervals the fleet already holds are no change, so an
import can be run again after a refusal. CSV rows, and JSON objects without intervals, map
the vehicle to its meter from now on.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return importMappings(cmd.Context(), *o, cmd.InOrStdin(), logger("mappings"))
		},
	})
	return cmd
}

func (o mappingsOptions) client() analyticsv1connect.AnalyticsServiceClient {
	return analyticsv1connect.NewAnalyticsServiceClient(&http.Client{Timeout: o.timeout}, o.server, bearerToken(o.token))
}

// bearerToken sends token with every call of a Connect client (none when empty).
func bearerToken(token string) connect.ClientOption {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if token != "" {
				req.Header().Set("Authorization", "Bearer "+token)
			}
			return next(ctx, req)
		}
	}))
}

func exportMappings(ctx context.Context, o mappingsOptions, stdout io.Writer) error {
	c := o.client()
	var all []mappingio.Mapping
	for tok := ""; ; {
		res, err := c.ListMappings(ctx, connect.NewRequest(&analyticsv1.ListMappingsRequest{PageSize: 1000, PageToken: tok}))
		if err != nil {
			return fmt.Errorf("listing mappings from %s: %w", o.server, err)
		}
		for _, m := range res.Msg.GetMappings() {
			all = append(all, mappingio.FromProto(m))
		}
		if tok = res.Msg.GetNextPageToken(); tok == "" {
			break
		}
	}
	if o.file == "-" {
		return mappingio.Write(stdout, o.format, all)
	}
	f, err := os.Create(o.file)
	if err != nil {
		return fmt.Errorf("creating %s: %w", o.file, err)
	}
	if err := mappingio.Write(f, o.format, all); err != nil {
		_ = f.Close() // the write's error is the one to report
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", o.file, err)
	}
	return nil
}

func importMappings(ctx context.Context, o mappingsOptions, stdin io.Reader, log *slog.Logger) error {
	r := stdin
	if o.file != "-" {
		f, err := os.Open(o.file)
		if err != nil {
			return fmt.Errorf("opening %s: %w", o.file, err)
		}
		defer func() { _ = f.Close() }() // opened read-only: closing cannot lose data
		r = f
	}
	rows, err := mappingio.Read(r, o.format)
	if err != nil {
		return err
	}
	c := o.client()
	intervals := 0
	for i, row := range rows {
		req := &analyticsv1.CreateMappingRequest{VehicleId: row.VehicleID, MeterId: row.MeterID}
		what := fmt.Sprintf("mapping %s to %s from now on", row.VehicleID, row.MeterID)
		if !row.From.IsZero() {
			intervals++
			req.From = timestamppb.New(row.From)
			to := "open"
			if row.To != nil {
				req.To = timestamppb.New(*row.To)
				to = row.To.Format(time.RFC3339Nano)
			}
			what = fmt.Sprintf("writing %s's interval [%s, %s) on %s", row.VehicleID, row.From.Format(time.RFC3339Nano), to, row.MeterID)
		}
		if _, err := c.CreateMapping(ctx, connect.NewRequest(req)); err != nil {
			return fmt.Errorf("%s (%d of %d; the ones before it are written, and are no change when the import runs again): %w", what, i+1, len(rows), err)
		}
	}
	log.Info("mappings imported", "intervals", intervals, "fromNow", len(rows)-intervals)
	return nil
}
