// Package app wires flags to configuration and runs fleetingest's subcommands. It holds no
// logic of its own beyond that wiring.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/fleetingest/fleetingest/internal/lograte"
)

// NewRootCommand returns the fleetingest command with every subcommand.
func NewRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "fleetingest",
		Short:         "Telemetry ingestion and charging-efficiency analytics for EV fleets",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var logLevel string
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		var level slog.Level
		if err := level.UnmarshalText([]byte(logLevel)); err != nil {
			return fmt.Errorf("--log-level: %w", err)
		}
		// A burst of one line (a shard down, a client storm) is written once per interval.
		slog.SetDefault(slog.New(lograte.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}), lograte.DefaultInterval)))
		return nil
	}
	root.AddCommand(
		// subcommands
		newGatewayCommand(),
		newDevCommand(),
		newLoadgenCommand(),
		newIngesterCommand(),
		newMigrateCommand(),
		newOperatorCommand(),
		newAnalyticsCommand(),
		newMappingsCommand(),
		newTokenCommand(),
		newDeadletterCommand(),
		newShardsCommand(),
	)
	return root
}

// Main runs the command line and returns the process exit code. SIGINT and SIGTERM cancel the
// command's context, which every subcommand treats as "shut down gracefully".
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := NewRootCommand()
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "fleetingest:", err)
		return 1
	}
	return 0
}

// logger returns the process logger with the component named.
func logger(component string) *slog.Logger {
	return slog.Default().With("component", component)
}
