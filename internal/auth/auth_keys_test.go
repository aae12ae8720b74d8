package auth

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestGenerateKeyWritesBothHalves(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "folder")
	kid, err := GenerateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := validKeyID(kid); err != nil || len(kid) != 16 {
		t.Fatalf("kid %q: %v", kid, err)
	}
	for name, mode := range map[string]os.FileMode{kid + ".key": 0o600, kid + ".pub": 0o644} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode().Perm(); got != mode {
			t.Fatalf("%s mode %v, want %v", name, got, mode)
		}
	}
	s, err := LoadSigner(filepath.Join(dir, kid+".key"))
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyID() != kid {
		t.Fatalf("signer kid %q, want %q", s.KeyID(), kid)
	}
	if got := newKeySet(t, dir).KeyIDs(); !slices.Equal(got, []string{kid}) {
		t.Fatalf("key set %v, want [%s]", got, kid)
	}
}

func TestLoadSignerRefusesBadFiles(t *testing.T) {
	k := newKeyDir(t)
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pub, err := os.ReadFile(filepath.Join(k.dir, k.kid+publicKeySuffix))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := os.ReadFile(filepath.Join(k.dir, k.kid+privateKeySuffix))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
	}{
		{name: "a missing file", path: filepath.Join(dir, "missing.key")},
		{name: "a file without the .key suffix", path: write("abc.pem", string(priv))},
		{name: "a kid with characters unsafe in a header", path: write("a b.key", string(priv))},
		{name: "a public key", path: write("pub.key", string(pub))},
		{name: "text that is not PEM", path: write("text.key", "hello")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := LoadSigner(tc.path); err == nil {
				t.Fatal("loaded, want an error")
			}
		})
	}
}

func TestNewestSignerPicksTheLatestKey(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewestSigner(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("empty folder: %v, want fs.ErrNotExist", err)
	}
	first, err := GenerateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	second, err := GenerateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(dir, first+".key"), old, old); err != nil {
		t.Fatal(err)
	}
	s, err := NewestSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyID() != second {
		t.Fatalf("newest %s, want %s", s.KeyID(), second)
	}
}

func TestEnsureDevKeysCreatesThenReuses(t *testing.T) {
	data := t.TempDir()
	first, err := EnsureDevKeys(data)
	if err != nil {
		t.Fatal(err)
	}
	if first.DeviceKeyDir != filepath.Join(data, "auth", "device") || first.UserKeyDir != filepath.Join(data, "auth", "user") {
		t.Fatalf("folders %s %s", first.DeviceKeyDir, first.UserKeyDir)
	}
	again, err := EnsureDevKeys(data)
	if err != nil {
		t.Fatal(err)
	}
	if again.DeviceSigner.KeyID() != first.DeviceSigner.KeyID() || again.UserSigner.KeyID() != first.UserSigner.KeyID() {
		t.Fatal("a second start generated new keys")
	}
	if first.DeviceSigner.KeyID() == first.UserSigner.KeyID() {
		t.Fatal("device and user share a key")
	}
	// Each folder verifies its own kind only.
	devices := newKeySet(t, first.DeviceKeyDir)
	users := newKeySet(t, first.UserKeyDir)
	dv, err := NewDeviceVerifier(DeviceVerifierConfig{Keys: devices, Revocations: newTestRevocations(t)})
	if err != nil {
		t.Fatal(err)
	}
	uv, err := NewLocalUserVerifier(LocalUserConfig{Keys: users})
	if err != nil {
		t.Fatal(err)
	}
	deviceToken, _, err := first.DeviceSigner.DeviceToken(PrefixScope(""), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	userToken, _, err := first.UserSigner.UserToken("ada", RoleViewer, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dv.Verify(deviceToken); err != nil {
		t.Fatal(err)
	}
	if _, err := uv.VerifyUser(t.Context(), userToken); err != nil {
		t.Fatal(err)
	}
	if _, err := dv.Verify(userToken); err == nil {
		t.Fatal("the device verifier accepted a user token")
	}
	if _, err := uv.VerifyUser(t.Context(), deviceToken); err == nil {
		t.Fatal("the user verifier accepted a device token")
	}
}
