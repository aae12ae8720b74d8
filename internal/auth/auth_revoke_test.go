package auth

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetingest/fleetingest/internal/localnats"
	"github.com/fleetingest/fleetingest/test/natstest"
)

// revocationBucket starts NATS and creates the bucket.
func revocationBucket(t *testing.T) (*localnats.Server, jetstream.KeyValue) {
	t.Helper()
	s := natstest.Start(t)
	_, js := natstest.Connect(t, s.URL())
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "test_revocations"})
	if err != nil {
		t.Fatal(err)
	}
	return s, kv
}

// runRevocations runs r over kv until the test ends and waits for it to catch up.
func runRevocations(t *testing.T, r *Revocations, kv jetstream.KeyValue) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := r.Run(ctx, kv); err != nil {
			t.Error(err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	eventually(t, 5*time.Second, "revocations catch up", r.Ready)
}

func TestRevokedTokenIsRefusedWithinASecond(t *testing.T) {
	_, kv := revocationBucket(t)
	f := newDeviceFixture(t, func(c *DeviceVerifierConfig) { c.Now = time.Now })
	runRevocations(t, f.revoked, kv)
	token, claims, err := f.keys.signer.DeviceToken(DeviceScope("EV-101"), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.verifier.Verify(token); err != nil {
		t.Fatal(err)
	}

	// A device keeps posting with the cached token.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var refusedAt atomic.Pointer[time.Time]
	var wrongReason atomic.Value
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			_, err := f.verifier.Verify(token)
			if err == nil {
				continue
			}
			if ae := (*Error)(nil); !errors.As(err, &ae) || ae.Reason != ReasonRevoked {
				wrongReason.Store(err.Error())
			}
			now := time.Now()
			refusedAt.Store(&now)
			return
		}
	})
	time.Sleep(50 * time.Millisecond)
	if refusedAt.Load() != nil {
		t.Fatal("refused before the revocation")
	}
	revokedAt := time.Now()
	if err := Revoke(t.Context(), kv, claims.ID, claims.Expiry); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "the revoked token is refused", func() bool {
		at := refusedAt.Load()
		return at != nil && at.Sub(revokedAt) < time.Second
	})
	cancel()
	wg.Wait()
	if r := wrongReason.Load(); r != nil {
		t.Fatalf("refused for another reason: %v", r)
	}
	t.Logf("refused %s after the revoke call", refusedAt.Load().Sub(revokedAt))
	if f.verifier.signatureChecks.Load() != 1 {
		t.Fatalf("the token was verified %d times; the test meant to exercise the cached path", f.verifier.signatureChecks.Load())
	}
}

func TestRevocationsFollowTheBucket(t *testing.T) {
	tests := []struct {
		name string
		// before writes to the bucket before the watch starts, after once it caught up.
		before, after func(t *testing.T, kv jetstream.KeyValue)
		want          map[string]bool
	}{
		{
			name: "entries present at start are revoked once caught up",
			before: func(t *testing.T, kv jetstream.KeyValue) {
				mustRevoke(t, kv, "a", time.Now().Add(time.Hour))
				mustRevoke(t, kv, "b", time.Now().Add(time.Hour))
			},
			want: map[string]bool{"a": true, "b": true, "c": false},
		},
		{
			name:   "an entry put later is revoked",
			after:  func(t *testing.T, kv jetstream.KeyValue) { mustRevoke(t, kv, "a", time.Now().Add(time.Hour)) },
			want:   map[string]bool{"a": true},
			before: func(*testing.T, jetstream.KeyValue) {},
		},
		{
			name:   "a deleted entry is no longer revoked",
			before: func(t *testing.T, kv jetstream.KeyValue) { mustRevoke(t, kv, "a", time.Now().Add(time.Hour)) },
			after: func(t *testing.T, kv jetstream.KeyValue) {
				mustRevoke(t, kv, "b", time.Now().Add(time.Hour))
				if err := kv.Delete(t.Context(), "a"); err != nil {
					t.Fatal(err)
				}
			},
			want: map[string]bool{"a": false, "b": true},
		},
		{
			name:   "a purged entry is no longer revoked",
			before: func(t *testing.T, kv jetstream.KeyValue) { mustRevoke(t, kv, "a", time.Now().Add(time.Hour)) },
			after: func(t *testing.T, kv jetstream.KeyValue) {
				mustRevoke(t, kv, "b", time.Now().Add(time.Hour))
				if err := kv.Purge(t.Context(), "a"); err != nil {
					t.Fatal(err)
				}
			},
			want: map[string]bool{"a": false, "b": true},
		},
		{
			name: "an entry deleted before the start is not revoked",
			before: func(t *testing.T, kv jetstream.KeyValue) {
				mustRevoke(t, kv, "a", time.Now().Add(time.Hour))
				mustRevoke(t, kv, "b", time.Now().Add(time.Hour))
				if err := kv.Delete(t.Context(), "a"); err != nil {
					t.Fatal(err)
				}
			},
			want: map[string]bool{"a": false, "b": true},
		},
		{
			name: "a value that does not decode still revokes",
			before: func(t *testing.T, kv jetstream.KeyValue) {
				if _, err := kv.Put(t.Context(), "a", []byte("garbage")); err != nil {
					t.Fatal(err)
				}
			},
			want: map[string]bool{"a": true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, kv := revocationBucket(t)
			tc.before(t, kv)
			r := newTestRevocations(t)
			runRevocations(t, r, kv)
			if tc.after != nil {
				tc.after(t, kv)
			}
			eventually(t, time.Second, "the copy matches the bucket", func() bool {
				for jti, want := range tc.want {
					if r.Revoked(jti) != want {
						return false
					}
				}
				return true
			})
		})
	}
}

func mustRevoke(t *testing.T, kv jetstream.KeyValue, jti string, exp time.Time) {
	t.Helper()
	if err := Revoke(t.Context(), kv, jti, exp); err != nil {
		t.Fatal(err)
	}
}

func TestRevokeWritesTheTokenExpiry(t *testing.T) {
	_, kv := revocationBucket(t)
	exp := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	mustRevoke(t, kv, "jti-1", exp)
	e, err := kv.Get(t.Context(), "jti-1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(e.Value()), `{"expiresAt":"2026-12-03T10:00:00Z"}`; got != want {
		t.Fatalf("value %s, want %s", got, want)
	}
	var v revocationJSON
	if err := json.Unmarshal(e.Value(), &v); err != nil || !v.ExpiresAt.Equal(exp) {
		t.Fatalf("value decodes to %v, %v", v, err)
	}
	if err := Revoke(t.Context(), kv, "", exp); err == nil {
		t.Fatal("revoked an empty id")
	}
}

func TestRevocationsSurviveANATSRestart(t *testing.T) {
	s, kv := revocationBucket(t)
	r, err := NewRevocations(RevocationsConfig{Logger: quiet, RetryMin: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mustRevoke(t, kv, "before", time.Now().Add(time.Hour))
	runRevocations(t, r, kv)
	if !r.Revoked("before") {
		t.Fatal("an entry present at start is not revoked")
	}
	restarted, err := s.Restart()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(restarted.Stop)
	// The client reconnects on its own; a write succeeds once it has.
	eventually(t, 10*time.Second, "a revocation is written after the restart", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		return Revoke(ctx, kv, "after", time.Now().Add(time.Hour)) == nil
	})
	// The watch stalls across the restart; two checks (a second apart) find it behind.
	took := eventually(t, 3*time.Second, "a revocation written after the restart is seen", func() bool { return r.Revoked("after") })
	t.Logf("seen after %s", took)
	if !r.Revoked("before") {
		t.Fatal("an entry from before the restart is no longer revoked")
	}
}

// endingKV wraps a bucket and lets the test stop the watches Run starts.
type endingKV struct {
	jetstream.KeyValue
	mu       sync.Mutex
	watchers []jetstream.KeyWatcher
	fail     atomic.Int32 // watches to refuse before one succeeds
}

func (k *endingKV) WatchAll(ctx context.Context, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	if k.fail.Add(-1) >= 0 {
		return nil, context.DeadlineExceeded
	}
	w, err := k.KeyValue.WatchAll(ctx, opts...)
	if err == nil {
		k.mu.Lock()
		k.watchers = append(k.watchers, w)
		k.mu.Unlock()
	}
	return w, err
}

func (k *endingKV) watches() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.watchers)
}

func (k *endingKV) stopLatest() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.watchers[len(k.watchers)-1].Stop()
}

func TestRevocationsWatchAgainWhenAWatchEnds(t *testing.T) {
	_, bucket := revocationBucket(t)
	kv := &endingKV{KeyValue: bucket}
	kv.fail.Store(2) // the first two attempts fail
	r, err := NewRevocations(RevocationsConfig{Logger: quiet, RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mustRevoke(t, bucket, "a", time.Now().Add(time.Hour))
	runRevocations(t, r, kv)
	if !r.Revoked("a") {
		t.Fatal("not revoked after catching up")
	}
	if err := kv.stopLatest(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "a second watch starts", func() bool { return kv.watches() == 2 })
	if err := bucket.Delete(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	mustRevoke(t, bucket, "b", time.Now().Add(time.Hour))
	eventually(t, time.Second, "the second watch applies updates", func() bool { return !r.Revoked("a") && r.Revoked("b") })
}

func TestRevocationsPruneExpiredEntries(t *testing.T) {
	c := newClock(t0)
	r, err := NewRevocations(RevocationsConfig{Now: c.Now, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	revokeInMemory(r, "short", t0.Add(time.Minute))
	revokeInMemory(r, "long", t0.Add(time.Hour))
	revokeInMemory(r, "forever", time.Time{})
	c.set(t0.Add(time.Minute))
	r.prune()
	if r.Revoked("short") || !r.Revoked("long") || !r.Revoked("forever") || r.Len() != 2 {
		t.Fatalf("after pruning: short %v long %v forever %v len %d", r.Revoked("short"), r.Revoked("long"), r.Revoked("forever"), r.Len())
	}
}

func TestParseUnverifiedReadsIDAndExpiry(t *testing.T) {
	f := newDeviceFixture(t)
	device, dc := f.mint(t, DeviceScope("EV-101"), time.Hour)
	user, _, err := newKeyDir(t).signer.UserToken("ada", RoleViewer, time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		token   string
		wantJTI string
		wantExp time.Time
		wantErr bool
	}{
		{name: "a device token of a key not at hand", token: device, wantJTI: dc.ID, wantExp: dc.Expiry},
		{name: "a user token", token: user, wantExp: t0.Add(time.Hour)},
		{name: "a token without id", token: signRaw(t, f.keys, DeviceTokenType, map[string]any{"exp": 1}), wantErr: true},
		{name: "a token without expiry", token: signRaw(t, f.keys, DeviceTokenType, map[string]any{"jti": "x"}), wantErr: true},
		{name: "not a token", token: "hello", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			jti, exp, err := ParseUnverified(tc.token)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if jti == "" || tc.wantJTI != "" && jti != tc.wantJTI || !exp.Equal(tc.wantExp) {
				t.Fatalf("jti %q exp %s, want %q %s", jti, exp, tc.wantJTI, tc.wantExp)
			}
		})
	}
}
