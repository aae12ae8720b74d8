package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fleetingest/fleetingest/ingester/store"
)

// dsnOptions name a shard database: --dsn or --dsn-file (a mounted secret).
type dsnOptions struct {
	dsn     string
	dsnFile string
}

func (o *dsnOptions) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.dsn, "dsn", "", "shard database URL, e.g. postgres://user@host:5432/db (or use --dsn-file)")
	cmd.Flags().StringVar(&o.dsnFile, "dsn-file", "", "file holding the shard database URL (e.g. a mounted Secret)")
}

// resolve returns the DSN from exactly one of the flags.
func (o dsnOptions) resolve() (string, error) {
	switch {
	case o.dsn != "" && o.dsnFile != "":
		return "", errors.New("give either --dsn or --dsn-file, not both")
	case o.dsn != "":
		return o.dsn, nil
	case o.dsnFile != "":
		data, err := os.ReadFile(o.dsnFile)
		if err != nil {
			return "", fmt.Errorf("reading --dsn-file: %w", err)
		}
		dsn := strings.TrimSpace(string(data))
		if dsn == "" {
			return "", fmt.Errorf("--dsn-file %s is empty", o.dsnFile)
		}
		return dsn, nil
	default:
		return "", errors.New("--dsn or --dsn-file is required")
	}
}

func newMigrateCommand() *cobra.Command {
	var o dsnOptions
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the shard schema's pending migrations to a shard database",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMigrate(cmd.Context(), o, logger("migrate"))
		},
	}
	o.addFlags(cmd)
	return cmd
}

func runMigrate(ctx context.Context, o dsnOptions, log *slog.Logger) error {
	dsn, err := o.resolve()
	if err != nil {
		return err
	}
	pool, err := store.OpenPool(ctx, dsn, store.PoolConfig{MaxConns: 2, ApplicationName: "fleetingest-migrate"})
	if err != nil {
		return err
	}
	defer pool.Close()
	applied, err := store.Migrate(ctx, pool)
	if err != nil {
		return err
	}
	log.Info("shard schema up to date", "applied", applied)
	return nil
}
