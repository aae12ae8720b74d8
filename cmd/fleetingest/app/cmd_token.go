package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/internal/auth"
	"github.com/fleetingest/fleetingest/internal/devstack"
)

// tokenKeyOptions say where a token command finds its key: a key file, or the dev data
// folder's keys.
type tokenKeyOptions struct {
	dataDir string
	keyFile string
}

func (o *tokenKeyOptions) flags(cmd *cobra.Command, kind string) {
	cmd.Flags().StringVar(&o.dataDir, "data-dir", ".fleetingest", "the dev data folder, whose newest "+kind+" signing key signs (ignored with --key-file)")
	cmd.Flags().StringVar(&o.keyFile, "key-file", "", "the signing key (<kid>.key) to sign with")
}

// signer loads the signing key: --key-file, or the newest key of the data folder's kind.
func (o tokenKeyOptions) signer(kind string) (*auth.Signer, error) {
	if o.keyFile != "" {
		return auth.LoadSigner(o.keyFile)
	}
	s, err := auth.NewestSigner(filepath.Join(o.dataDir, "auth", kind))
	if err != nil {
		return nil, fmt.Errorf("no %s signing key in %s (start `fleetingest dev` there once, or give --key-file): %w", kind, o.dataDir, err)
	}
	return s, nil
}

func newTokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Make signing keys, mint device and user tokens, revoke tokens",
		Long: `token mints the bearer tokens devices and users present. Each subcommand prints its
result (a token, a key id) alone as the last line of stdout; notes go to stderr.`,
	}
	cmd.AddCommand(newTokenKeygenCommand(), newTokenDeviceCommand(), newTokenUserCommand(), newTokenRevokeCommand())
	return cmd
}

func newTokenKeygenCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Write a new Ed25519 signing key (<kid>.key) and its verification key (<kid>.pub); print the key id",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			kid, err := auth.GenerateKey(out)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s (keep it secret) and %s (give it to the verifiers)\n",
				filepath.Join(out, kid+".key"), filepath.Join(out, kid+".pub"))
			_, err = fmt.Fprintln(cmd.OutOrStdout(), kid)
			return err
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "folder to write the key pair to (created if missing)")
	return cmd
}

func newTokenDeviceCommand() *cobra.Command {
	var (
		keys     tokenKeyOptions
		deviceID string
		prefix   string
		ttl      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "device --device ID | --prefix P",
		Short: "Mint a device token for one device id, or for every id with a prefix (--prefix '' is every device)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var scope auth.Scope
			switch byID, byPrefix := cmd.Flags().Changed("device"), cmd.Flags().Changed("prefix"); {
			case byID == byPrefix:
				return errors.New("give exactly one of --device and --prefix")
			case byID:
				scope = auth.DeviceScope(deviceID)
			default:
				scope = auth.PrefixScope(prefix)
			}
			s, err := keys.signer("device")
			if err != nil {
				return err
			}
			token, claims, err := s.DeviceToken(scope, ttl, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "device token for %s, id %s, key %s, expires %s\n",
				claims.Scope, claims.ID, claims.KeyID, claims.Expiry.Format(time.RFC3339))
			_, err = fmt.Fprintln(cmd.OutOrStdout(), token)
			return err
		},
	}
	keys.flags(cmd, "device")
	cmd.Flags().StringVar(&deviceID, "device", "", "the one device id (a meter or a vehicle) the token covers")
	cmd.Flags().StringVar(&prefix, "prefix", "", "the id prefix the token covers (an aggregator's devices); '' is every device")
	cmd.Flags().DurationVar(&ttl, "ttl", 720*time.Hour, "how long the token is valid (any positive duration)")
	return cmd
}

func newTokenUserCommand() *cobra.Command {
	var (
		keys   tokenKeyOptions
		name   string
		role   string
		ttl    time.Duration
		issuer auth.IssuerConfig
	)
	cmd := &cobra.Command{
		Use:   "user --name N --role viewer|admin",
		Short: "Mint a user token of the local issuer: viewer reads analytics, admin also changes mappings",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := auth.ParseRole(role)
			if err != nil {
				return fmt.Errorf("--role: %w", err)
			}
			if name == "" {
				return errors.New("--name is required")
			}
			s, err := keys.signer("user")
			if err != nil {
				return err
			}
			token, claims, err := s.WithIssuer(issuer).UserToken(name, r, ttl, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "user token for %s (%s), expires %s\n", claims.Name, role, claims.Expiry.Format(time.RFC3339))
			_, err = fmt.Fprintln(cmd.OutOrStdout(), token)
			return err
		},
	}
	keys.flags(cmd, "user")
	cmd.Flags().StringVar(&name, "name", "", "the user's name (the token's subject)")
	cmd.Flags().StringVar(&role, "role", "", "viewer or admin")
	cmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid (any positive duration)")
	cmd.Flags().StringVar(&issuer.Issuer, "issuer", auth.DefaultIssuer, "the token's issuer (iss), as the analytics service expects it")
	cmd.Flags().StringVar(&issuer.Audience, "audience", auth.DefaultAudience, "the token's audience (aud)")
	cmd.Flags().StringVar(&issuer.RolesClaim, "roles-claim", auth.DefaultRolesClaim, "the claim that holds the roles")
	return cmd
}

// revokeOptions are the flags of `fleetingest token revoke`.
type revokeOptions struct {
	id, token          string
	expires            time.Duration
	dataDir            string
	natsURL, natsCreds string
	namespace, fleet   string
	timeout            time.Duration
}

func newTokenRevokeCommand() *cobra.Command {
	o := revokeOptions{}
	cmd := &cobra.Command{
		Use:   "revoke --id JTI | --token T",
		Short: "Revoke a device token: gateways refuse it within a second",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return revokeToken(cmd.Context(), cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.id, "id", "", "the token's id (jti)")
	f.StringVar(&o.token, "token", "", "the token itself (its id and expiry are read from it)")
	f.DurationVar(&o.expires, "expires-in", 10*365*24*time.Hour, "with --id: how long the revocation must last (at least the token's remaining life)")
	f.StringVar(&o.dataDir, "data-dir", ".fleetingest", "the dev data folder of a running `fleetingest dev` (ignored with --nats)")
	f.StringVar(&o.natsURL, "nats", "", "NATS URL of the fleet (a cluster); default: the dev stack's")
	f.StringVar(&o.natsCreds, "nats-creds", "", "NATS credentials file (optional)")
	f.StringVar(&o.namespace, "namespace", "dev", "Kubernetes namespace of the fleet (names its revocation bucket)")
	f.StringVar(&o.fleet, "fleet", "local", "FleetIngestion name (names its revocation bucket)")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "deadline of the revocation")
	return cmd
}

func revokeToken(ctx context.Context, cmd *cobra.Command, o revokeOptions) error {
	jti, expiresAt := o.id, time.Now().Add(o.expires)
	switch {
	case (o.id == "") == (o.token == ""):
		return errors.New("give exactly one of --id and --token")
	case o.token != "":
		var err error
		if jti, expiresAt, err = auth.ParseUnverified(o.token); err != nil {
			return fmt.Errorf("--token: %w", err)
		}
	}
	url := o.natsURL
	if url == "" {
		data, err := os.ReadFile(filepath.Join(o.dataDir, devstack.NATSURLFile))
		if err != nil {
			return fmt.Errorf("finding the dev stack's NATS (is `fleetingest dev` running in %s? else give --nats): %w", o.dataDir, err)
		}
		url = strings.TrimSpace(string(data))
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	nc, err := connectNATS(url, o.natsCreds, "fleetingest-token", logger("token"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("creating JetStream context: %w", err)
	}
	topo := ingester.Topology{Namespace: o.namespace, Fleet: o.fleet, Shards: 1}
	kv, err := js.KeyValue(ctx, topo.RevocationBucket())
	if err != nil {
		return fmt.Errorf("opening revocation bucket %s at %s: %w", topo.RevocationBucket(), url, err)
	}
	if err := auth.Revoke(ctx, kv, jti, expiresAt); err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "revoked token %s (kept until %s)\n", jti, expiresAt.UTC().Format(time.RFC3339))
	_, err = fmt.Fprintln(cmd.OutOrStdout(), jti)
	return err
}
