package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// revocationJSON is the value of a revocation bucket entry; its key is the token's jti.
type revocationJSON struct {
	// ExpiresAt is the revoked token's expiry: after it the entry no longer matters.
	ExpiresAt time.Time `json:"expiresAt"`
}

// Revoke revokes the token with id jti, which expires at expiresAt, by writing it to the
// revocation bucket. Verifiers watching the bucket refuse the token within a second.
func Revoke(ctx context.Context, kv jetstream.KeyValue, jti string, expiresAt time.Time) error {
	if jti == "" {
		return errors.New("revoking a token: the token id is empty")
	}
	value, err := json.Marshal(revocationJSON{ExpiresAt: expiresAt.UTC().Truncate(time.Second)})
	if err != nil {
		return fmt.Errorf("encoding revocation of %s: %w", echo(jti), err)
	}
	if _, err := kv.Put(ctx, jti, value); err != nil {
		return fmt.Errorf("revoking token %s: %w", echo(jti), err)
	}
	return nil
}

// RevocationsConfig configures Revocations.
type RevocationsConfig struct {
	// Now is the clock entries are pruned by. Default time.Now.
	Now func() time.Time
	// PruneInterval is how often entries of expired tokens are dropped from memory.
	// Default 1m.
	PruneInterval time.Duration
	// CheckInterval is how often the watch is compared with the bucket's last revision: a
	// watch that is behind at two checks in a row without delivering anything in between
	// has stalled (as after a NATS restart) and is started again. Default 1s.
	CheckInterval time.Duration
	// RetryMin and RetryMax bound the back-off between attempts to watch the bucket again
	// after a watch ended. Defaults 100ms and 5s.
	RetryMin, RetryMax time.Duration
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

func (c RevocationsConfig) withDefaults() RevocationsConfig {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.PruneInterval == 0 {
		c.PruneInterval = time.Minute
	}
	if c.CheckInterval == 0 {
		c.CheckInterval = time.Second
	}
	if c.RetryMin == 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c RevocationsConfig) validate() error {
	if c.PruneInterval < 0 || c.CheckInterval < 0 || c.RetryMin < 0 || c.RetryMax < c.RetryMin {
		return fmt.Errorf("revocations: intervals must be positive and RetryMin <= RetryMax (got prune %s, check %s, retry %s..%s)", c.PruneInterval, c.CheckInterval, c.RetryMin, c.RetryMax)
	}
	return nil
}

// Revocations is the in-memory copy of the revocation bucket, kept current by Run. It is
// safe for concurrent use.
type Revocations struct {
	cfg RevocationsConfig

	mu sync.RWMutex
	// expiresAt holds the revoked jtis; the zero time for an entry whose value did not decode,
	// which is then kept for good.
	expiresAt map[string]time.Time
	caughtUp  atomic.Bool
}

// NewRevocations returns an empty copy; Run fills it.
func NewRevocations(cfg RevocationsConfig) (*Revocations, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Revocations{cfg: cfg, expiresAt: map[string]time.Time{}}, nil
}

// Revoked reports whether the token with id jti is revoked.
func (r *Revocations) Revoked(jti string) bool {
	r.mu.RLock()
	_, ok := r.expiresAt[jti]
	r.mu.RUnlock()
	return ok
}

// Ready reports whether the copy has caught up with the bucket once. Until then a revoked
// token may still be accepted, so a server should not report ready before.
func (r *Revocations) Ready() bool { return r.caughtUp.Load() }

// Len returns the number of revoked tokens held.
func (r *Revocations) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.expiresAt)
}

// Run watches kv and keeps the copy current until ctx ends. When the watch ends or stalls
// (NATS restarted, the bucket was recreated) it watches again, backing off between
// attempts, and replaces the copy with what the new watch reads.
func (r *Revocations) Run(ctx context.Context, kv jetstream.KeyValue) error {
	prune := time.NewTicker(r.cfg.PruneInterval)
	defer prune.Stop()
	check := time.NewTicker(r.cfg.CheckInterval)
	defer check.Stop()
	backoff := r.cfg.RetryMin
	for {
		start := r.cfg.Now()
		err := r.watch(ctx, kv, prune.C, check.C)
		if ctx.Err() != nil {
			return nil
		}
		if r.cfg.Now().Sub(start) > r.cfg.RetryMax {
			backoff = r.cfg.RetryMin // the watch had been working: retry promptly
		}
		r.cfg.Logger.Warn("revocation watch ended, watching again", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, r.cfg.RetryMax)
	}
}

// watch reads the bucket from the start into a fresh set, swaps it in once caught up, then
// applies updates until the watch ends or stalls.
func (r *Revocations) watch(ctx context.Context, kv jetstream.KeyValue, prune, check <-chan time.Time) error {
	// Whatever the bucket held before the watch starts is delivered or gone by the time it
	// has caught up, so base is where a caught-up watch stands even if the newest entries
	// were removed before it read them.
	base, _ := r.lastRevision(ctx, kv)
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watching the revocation bucket: %w", err)
	}
	defer func() { _ = w.Stop() }()
	initial := map[string]time.Time{}
	var seen uint64 // the newest revision the watch delivered
	// behind is whether the last check found the watch behind the bucket, seenThen what it
	// had delivered at that check.
	var behind bool
	var seenThen uint64
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-prune:
			r.prune()
		case <-check:
			last, ok := r.lastRevision(ctx, kv)
			switch {
			case !ok || last <= seen:
				behind = false
			case behind && seen == seenThen:
				return fmt.Errorf("revocation watch stalled at revision %d; the bucket is at %d", seen, last)
			default:
				behind, seenThen = true, seen
			}
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("revocation watcher closed")
			}
			switch {
			case e == nil && initial != nil:
				r.mu.Lock()
				r.expiresAt = initial
				r.mu.Unlock()
				initial = nil
				seen = max(seen, base)
				r.caughtUp.Store(true)
				r.cfg.Logger.Info("revocations caught up", "revoked", r.Len())
			case e == nil:
			case initial != nil:
				seen = max(seen, e.Revision())
				r.apply(initial, e)
			default:
				seen = max(seen, e.Revision())
				r.mu.Lock()
				r.apply(r.expiresAt, e)
				r.mu.Unlock()
			}
		}
	}
}

// lastRevision returns the revision of the newest write to the bucket, if it can tell.
func (r *Revocations) lastRevision(ctx context.Context, kv jetstream.KeyValue) (uint64, bool) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.CheckInterval)
	defer cancel()
	st, err := kv.Status(ctx)
	if err != nil {
		return 0, false
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || bs.StreamInfo() == nil {
		return 0, false
	}
	return bs.StreamInfo().State.LastSeq, true
}

// apply records one bucket entry in set: a put revokes, a delete or purge un-revokes.
func (r *Revocations) apply(set map[string]time.Time, e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		delete(set, e.Key())
		return
	}
	var v revocationJSON
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		// The key alone revokes; without an expiry the entry stays until deleted.
		r.cfg.Logger.Warn("revocation value does not decode; revoking for good", "jti", echo(e.Key()), "err", err)
		v.ExpiresAt = time.Time{}
	}
	set[e.Key()] = v.ExpiresAt
}

// prune drops the entries of tokens that have expired: verifiers refuse those anyway.
func (r *Revocations) prune() {
	now := r.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for jti, exp := range r.expiresAt {
		if !exp.IsZero() && !now.Before(exp) {
			delete(r.expiresAt, jti)
		}
	}
}
