package auth

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestDeviceVerifierChecksASignatureOncePerToken(t *testing.T) {
	f := newDeviceFixture(t)
	token, _ := f.mint(t, DeviceScope("EV-101"), time.Hour)
	for range 100 {
		if _, err := f.verifier.Verify(token); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.verifier.signatureChecks.Load(); got != 1 {
		t.Fatalf("%d signature checks for one token used 100 times, want 1", got)
	}
	other, _ := f.mint(t, DeviceScope("EV-102"), time.Hour)
	if _, err := f.verifier.Verify(other); err != nil {
		t.Fatal(err)
	}
	if got := f.verifier.signatureChecks.Load(); got != 2 {
		t.Fatalf("%d signature checks after a second token, want 2", got)
	}
}

func TestDeviceVerifierCachedTokens(t *testing.T) {
	tests := []struct {
		name string
		// after runs once the token has been verified and cached.
		after func(t testing.TB, f deviceFixture, c DeviceClaims)
		want  Reason
	}{
		{
			name:  "a cached token is accepted until its expiry",
			after: func(_ testing.TB, f deviceFixture, c DeviceClaims) { f.clock.set(c.Expiry.Add(-time.Nanosecond)) },
		},
		{
			name:  "a cached token is refused at its expiry",
			after: func(_ testing.TB, f deviceFixture, c DeviceClaims) { f.clock.set(c.Expiry) },
			want:  ReasonExpired,
		},
		{
			name:  "a cached token is refused once revoked",
			after: func(_ testing.TB, f deviceFixture, c DeviceClaims) { revokeInMemory(f.revoked, c.ID, c.Expiry) },
			want:  ReasonRevoked,
		},
		{
			name: "a cached token is refused once its key is removed",
			after: func(t testing.TB, f deviceFixture, _ DeviceClaims) {
				other := newKeyDir(t)
				mustRename(t, filepath.Join(other.dir, other.kid+publicKeySuffix), filepath.Join(f.keys.dir, other.kid+publicKeySuffix))
				mustRemove(t, filepath.Join(f.keys.dir, f.keys.kid+publicKeySuffix))
				if err := f.keySet.Reload(); err != nil {
					t.Fatal(err)
				}
			},
			want: ReasonUnknownKey,
		},
		{
			name: "a cached token stays accepted when another key is added",
			after: func(t testing.TB, f deviceFixture, _ DeviceClaims) {
				other := newKeyDir(t)
				mustRename(t, filepath.Join(other.dir, other.kid+publicKeySuffix), filepath.Join(f.keys.dir, other.kid+publicKeySuffix))
				if err := f.keySet.Reload(); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newDeviceFixture(t)
			token, claims := f.mint(t, DeviceScope("EV-101"), time.Minute)
			if _, err := f.verifier.Verify(token); err != nil {
				t.Fatal(err)
			}
			tc.after(t, f, claims)
			_, err := f.verifier.Verify(token)
			assertReason(t, err, tc.want, token)
		})
	}
}

func mustRename(t testing.TB, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

func mustRemove(t testing.TB, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func TestDeviceVerifierCacheStaysBounded(t *testing.T) {
	const bound = 10
	f := newDeviceFixture(t, func(c *DeviceVerifierConfig) { c.MaxCacheEntries = bound })
	var tokens []string
	for i := range 100 {
		token, _ := f.mint(t, DeviceScope("EV-101"), time.Duration(i+1)*time.Minute)
		tokens = append(tokens, token)
		if _, err := f.verifier.Verify(token); err != nil {
			t.Fatal(err)
		}
		if n := f.verifier.cache.len(); n > bound {
			t.Fatalf("cache holds %d tokens, bound %d", n, bound)
		}
	}
	// Evicted tokens verify again, at the cost of a signature check.
	for _, token := range tokens {
		if _, err := f.verifier.Verify(token); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.verifier.cache.len(); n > bound {
		t.Fatalf("cache holds %d tokens, bound %d", n, bound)
	}
}

func TestDeviceVerifierCacheDropsExpiredTokensFirst(t *testing.T) {
	const bound = 10
	f := newDeviceFixture(t, func(c *DeviceVerifierConfig) { c.MaxCacheEntries = bound })
	var lasting []string
	for i := range bound {
		ttl := time.Second
		if i%2 == 0 {
			ttl = time.Hour
		}
		token, _ := f.mint(t, DeviceScope("EV-101"), ttl)
		if ttl == time.Hour {
			lasting = append(lasting, token)
		}
		if _, err := f.verifier.Verify(token); err != nil {
			t.Fatal(err)
		}
	}
	f.clock.advance(time.Minute)
	fresh, _ := f.mint(t, DeviceScope("EV-101"), time.Hour)
	if _, err := f.verifier.Verify(fresh); err != nil {
		t.Fatal(err)
	}
	checks := f.verifier.signatureChecks.Load()
	for _, token := range lasting {
		if _, err := f.verifier.Verify(token); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.verifier.signatureChecks.Load(); got != checks {
		t.Fatalf("%d lasting tokens re-verified: eviction dropped live tokens while expired ones were there", got-checks)
	}
}

func TestDeviceVerifierCachesOnlyAcceptedTokens(t *testing.T) {
	f := newDeviceFixture(t)
	token, claims := f.mint(t, DeviceScope("EV-101"), time.Second)
	revoked, revokedClaims := f.mint(t, DeviceScope("EV-101"), time.Hour)
	revokeInMemory(f.revoked, revokedClaims.ID, revokedClaims.Expiry)
	f.clock.set(claims.Expiry)
	for _, bad := range []string{token, revoked, "a.b.c", token[:len(token)-4] + "AAAA"} {
		if _, err := f.verifier.Verify(bad); err == nil {
			t.Fatalf("accepted %q", bad)
		}
	}
	if n := f.verifier.cache.len(); n != 0 {
		t.Fatalf("cache holds %d refused tokens", n)
	}
}

func BenchmarkDeviceVerifyCached(b *testing.B) {
	f := newDeviceFixture(b)
	token, _ := f.mint(b, DeviceScope("EV-101"), time.Hour)
	if _, err := f.verifier.Verify(token); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := f.verifier.Verify(token); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDeviceVerifyCachedParallel(b *testing.B) {
	f := newDeviceFixture(b)
	token, _ := f.mint(b, DeviceScope("EV-101"), time.Hour)
	if _, err := f.verifier.Verify(token); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := f.verifier.Verify(token); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkDeviceVerifyUncached(b *testing.B) {
	f := newDeviceFixture(b)
	tokens := make([]string, 1000)
	for i := range tokens {
		tokens[i], _ = f.mint(b, DeviceScope("EV-101"), time.Hour)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(tokens) {
			b.StopTimer()
			f.verifier.cache = newTokenCache[DeviceClaims](DefaultMaxCacheEntries)
			i = 0
			b.StartTimer()
		}
		if _, err := f.verifier.Verify(tokens[i]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkDeviceMiddlewareCached(b *testing.B) {
	f := newDeviceFixture(b)
	token, _ := f.mint(b, DeviceScope("EV-101"), time.Hour)
	h := DeviceMiddleware(f.verifier, nil, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		if _, ok := DeviceFromContext(r.Context()); !ok {
			b.Error("no claims")
		}
	}))
	r := httptest.NewRequest(http.MethodPost, "/v1/meter", http.NoBody)
	r.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}
