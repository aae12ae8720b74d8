package auth

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/test/mountedsecret"
)

// secretDir is a folder laid out the way kubelet mounts a Secret.
type secretDir struct {
	t   *testing.T
	dir string
}

// publish swaps the folder's files to the .pub files of keys.
func (s secretDir) publish(_ string, keys ...keyDir) {
	s.t.Helper()
	var paths []string
	for _, k := range keys {
		paths = append(paths, filepath.Join(k.dir, k.kid+publicKeySuffix))
	}
	mountedsecret.Publish(s.t, s.dir, mountedsecret.Files(s.t, paths...))
}

func TestKeySetFollowsAKubeletSecretRotation(t *testing.T) {
	oldKey, newKey := newKeyDir(t), newKeyDir(t)
	secret := secretDir{t: t, dir: t.TempDir()}
	secret.publish("..2026_12_03_a", oldKey)

	keys, err := NewKeySet(KeySetConfig{Dir: secret.dir, Logger: quiet}) // re-read every second, the default
	if err != nil {
		t.Fatal(err)
	}
	if got := keys.KeyIDs(); !slices.Equal(got, []string{oldKey.kid}) {
		t.Fatalf("keys %v, want [%s]", got, oldKey.kid)
	}
	v, err := NewDeviceVerifier(DeviceVerifierConfig{Keys: keys, Revocations: newTestRevocations(t)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	oldToken, _, err := oldKey.signer.DeviceToken(DeviceScope("EV-101"), time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	newToken, _, err := newKey.signer.DeviceToken(DeviceScope("EV-101"), time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := keys.Run(ctx); err != nil {
			t.Error(err)
		}
	})
	// Devices posting with the old key all along.
	var oldRefused atomic.Int64 // refusals of the old key's token
	var oldRefusedBeforeRemoval atomic.Int64
	var removing atomic.Bool
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := v.Verify(oldToken); err != nil {
					oldRefused.Add(1)
					if !removing.Load() {
						oldRefusedBeforeRemoval.Add(1)
					}
				}
			}
		})
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})

	if _, err := v.Verify(newToken); err == nil {
		t.Fatal("the new key's token verified before the new key was published")
	}
	secret.publish("..2026_12_03_b", oldKey, newKey)
	took := eventually(t, 2*time.Second, "the new key's token verifies", func() bool {
		_, err := v.Verify(newToken)
		return err == nil
	})
	t.Logf("new key accepted after %s", took)
	time.Sleep(100 * time.Millisecond) // both keys serve for a while
	if n := oldRefusedBeforeRemoval.Load(); n > 0 {
		t.Fatalf("the old key's token was refused %d times while its key was published", n)
	}

	removing.Store(true)
	secret.publish("..2026_12_03_c", newKey)
	took = eventually(t, 2*time.Second, "the old key's token is refused", func() bool { return oldRefused.Load() > 0 })
	t.Logf("old key refused after %s", took)
	if n := oldRefusedBeforeRemoval.Load(); n > 0 {
		t.Fatalf("the old key's token was refused %d times while its key was published", n)
	}
	_, err = v.Verify(oldToken)
	assertReason(t, err, ReasonUnknownKey, oldToken)
	if _, err := v.Verify(newToken); err != nil {
		t.Fatalf("the new key's token: %v", err)
	}
	if got := keys.KeyIDs(); !slices.Equal(got, []string{newKey.kid}) {
		t.Fatalf("keys %v, want [%s]", got, newKey.kid)
	}
}

func TestKeySetReload(t *testing.T) {
	tests := []struct {
		name string
		// change alters the folder after the first read.
		change   func(t *testing.T, dir string, k keyDir)
		wantErr  bool
		wantKids func(k keyDir) []string
		wantGen  uint64
	}{
		{
			name:     "an unchanged folder keeps the keys and the generation",
			change:   func(*testing.T, string, keyDir) {},
			wantKids: func(k keyDir) []string { return []string{k.kid} },
		},
		{
			name: "an unreadable key among valid ones is skipped",
			change: func(t *testing.T, dir string, _ keyDir) {
				if err := os.WriteFile(filepath.Join(dir, "broken.pub"), []byte("not pem"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			wantKids: func(k keyDir) []string { return []string{k.kid} },
		},
		{
			name: "a folder left without a valid key keeps the previous keys",
			change: func(t *testing.T, dir string, k keyDir) {
				mustRemove(t, filepath.Join(dir, k.kid+publicKeySuffix))
				if err := os.WriteFile(filepath.Join(dir, "broken.pub"), []byte("not pem"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			wantErr:  true,
			wantKids: func(k keyDir) []string { return []string{k.kid} },
		},
		{
			name:     "a folder that vanished keeps the previous keys",
			change:   func(_ *testing.T, dir string, _ keyDir) { _ = os.RemoveAll(dir) },
			wantErr:  true,
			wantKids: func(k keyDir) []string { return []string{k.kid} },
		},
		{
			name: "a replaced key moves the generation",
			change: func(t *testing.T, dir string, k keyDir) {
				other := newKeyDir(t)
				b, err := os.ReadFile(filepath.Join(other.dir, other.kid+publicKeySuffix))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, k.kid+publicKeySuffix), b, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			wantKids: func(k keyDir) []string { return []string{k.kid} },
			wantGen:  1,
		},
		{
			name: "hidden files, other files and folders are ignored",
			change: func(t *testing.T, dir string, k keyDir) {
				b, err := os.ReadFile(filepath.Join(dir, k.kid+publicKeySuffix))
				if err != nil {
					t.Fatal(err)
				}
				for _, name := range []string{".hidden.pub", "notes.txt"} {
					if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				if err := os.Mkdir(filepath.Join(dir, "folder.pub"), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			wantKids: func(k keyDir) []string { return []string{k.kid} },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := newKeyDir(t)
			ks := newKeySet(t, k.dir)
			tc.change(t, k.dir, k)
			err := ks.Reload()
			if (err != nil) != tc.wantErr {
				t.Fatalf("reload error %v, want error %v", err, tc.wantErr)
			}
			if got, want := ks.KeyIDs(), tc.wantKids(k); !slices.Equal(got, want) {
				t.Fatalf("keys %v, want %v", got, want)
			}
			if got := ks.Generation(); got != tc.wantGen {
				t.Fatalf("generation %d, want %d", got, tc.wantGen)
			}
		})
	}
}

func TestNewKeySetRefusesAFolderWithoutKeys(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) string
	}{
		{name: "an empty folder", setup: func(t *testing.T) string { return t.TempDir() }},
		{name: "a missing folder", setup: func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }},
		{name: "a folder of signing keys only", setup: func(t *testing.T) string {
			k := newKeyDir(t)
			mustRemove(t, filepath.Join(k.dir, k.kid+publicKeySuffix))
			return k.dir
		}},
		{name: "a folder of broken keys", setup: func(t *testing.T) string {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "a.pub"), []byte("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewKeySet(KeySetConfig{Dir: tc.setup(t), Logger: quiet}); err == nil {
				t.Fatal("got a key set, want an error")
			}
		})
	}
}
