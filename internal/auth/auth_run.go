package auth

import (
	"context"
	"errors"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
)

// InsecureNote is what the log and /readyz say of a component serving without
// authentication (`--insecure-no-auth`).
const InsecureNote = "AUTHENTICATION IS OFF (--insecure-no-auth): anyone who reaches this address can write readings and change mappings"

// Devices is what a gateway runs to verify device tokens: the verification keys of a folder
// (re-read while it runs) and the revocations of a bucket (watched while it runs).
type Devices struct {
	*DeviceVerifier
	keys        *KeySet
	revocations *Revocations
	bucket      jetstream.KeyValue
}

// NewDevices reads the device verification keys in keyDir and prepares to watch bucket.
func NewDevices(keyDir string, bucket jetstream.KeyValue, log *slog.Logger) (*Devices, error) {
	if bucket == nil {
		return nil, errors.New("device authentication needs the revocation bucket")
	}
	keys, err := NewKeySet(KeySetConfig{Dir: keyDir, Logger: log})
	if err != nil {
		return nil, err
	}
	revocations, err := NewRevocations(RevocationsConfig{Logger: log})
	if err != nil {
		return nil, err
	}
	v, err := NewDeviceVerifier(DeviceVerifierConfig{Keys: keys, Revocations: revocations})
	if err != nil {
		return nil, err
	}
	return &Devices{DeviceVerifier: v, keys: keys, revocations: revocations, bucket: bucket}, nil
}

// Run re-reads the keys and watches the revocations until ctx ends.
func (d *Devices) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.keys.Run(ctx) })
	g.Go(func() error { return d.revocations.Run(ctx, d.bucket) })
	return g.Wait()
}

// UsersConfig says where user tokens are verified: against the keys of a folder (a local
// issuer: `fleetingest dev`, or a Secret of user verification keys) or by an OIDC issuer.
type UsersConfig struct {
	// KeyDir is the folder of the local issuer's verification keys.
	KeyDir string
	// OIDC is the platform's issuer; used when KeyDir is empty.
	OIDC OIDCConfig
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// Users verifies user tokens, and re-reads the local issuer's keys while it runs.
type Users struct {
	UserVerifier
	keys *KeySet // nil for OIDC
}

// NewUsers builds the verifier cfg names. An OIDC issuer that cannot be reached yet is
// tried again on use (the verifier's Ready reports it).
func NewUsers(ctx context.Context, cfg UsersConfig) (*Users, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.KeyDir == "" {
		cfg.OIDC.Logger = cfg.Logger
		v, err := NewOIDCVerifier(ctx, cfg.OIDC)
		if err != nil {
			return nil, err
		}
		return &Users{UserVerifier: v}, nil
	}
	keys, err := NewKeySet(KeySetConfig{Dir: cfg.KeyDir, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	v, err := NewLocalUserVerifier(LocalUserConfig{Keys: keys})
	if err != nil {
		return nil, err
	}
	return &Users{UserVerifier: v, keys: keys}, nil
}

// Ready reports why tokens cannot be verified yet (an OIDC issuer not reached).
func (u *Users) Ready(ctx context.Context) error {
	if r, ok := u.UserVerifier.(interface{ Ready(context.Context) error }); ok {
		return r.Ready(ctx)
	}
	return nil
}

// Run re-reads the local issuer's keys until ctx ends; for OIDC it waits for ctx.
func (u *Users) Run(ctx context.Context) error {
	if u.keys == nil {
		<-ctx.Done()
		return nil
	}
	return u.keys.Run(ctx)
}
