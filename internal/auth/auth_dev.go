package auth

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
)

// DevKeys are the local keys of a development data folder.
type DevKeys struct {
	// DeviceKeyDir and UserKeyDir hold the device and the user keys, each a KeySet folder.
	DeviceKeyDir, UserKeyDir string
	// DeviceSigner and UserSigner mint tokens with the newest key of each folder.
	DeviceSigner, UserSigner *Signer
}

// EnsureDevKeys returns the keys under "<dataDir>/auth/device" and "<dataDir>/auth/user",
// generating a key in each folder that has none (the first start).
func EnsureDevKeys(dataDir string) (DevKeys, error) {
	keys := DevKeys{
		DeviceKeyDir: filepath.Join(dataDir, "auth", "device"),
		UserKeyDir:   filepath.Join(dataDir, "auth", "user"),
	}
	var err error
	if keys.DeviceSigner, err = ensureKey(keys.DeviceKeyDir); err != nil {
		return DevKeys{}, fmt.Errorf("preparing device keys: %w", err)
	}
	if keys.UserSigner, err = ensureKey(keys.UserKeyDir); err != nil {
		return DevKeys{}, fmt.Errorf("preparing user keys: %w", err)
	}
	return keys, nil
}

// ensureKey returns the newest signer of dir, generating a key first if there is none.
func ensureKey(dir string) (*Signer, error) {
	s, err := NewestSigner(dir)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	kid, err := GenerateKey(dir)
	if err != nil {
		return nil, err
	}
	return LoadSigner(filepath.Join(dir, kid+privateKeySuffix))
}
