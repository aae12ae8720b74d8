package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// File suffixes of the two halves of a key.
const (
	privateKeySuffix = ".key"
	publicKeySuffix  = ".pub"
)

// maxKeyIDLen bounds a key id taken from a file name.
const maxKeyIDLen = 64

// GenerateKey creates an Ed25519 key in dir (created if missing): "<kid>.pub" (PKIX PEM,
// mode 0644) and "<kid>.key" (PKCS#8 PEM, mode 0600). The kid is 16 random hex characters.
func GenerateKey(dir string) (string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("generating ed25519 key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encoding public key: %w", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", fmt.Errorf("encoding private key: %w", err)
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", fmt.Errorf("generating key id: %w", err)
	}
	kid := hex.EncodeToString(id[:])
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("creating key folder %s: %w", dir, err)
	}
	// The public half first: a folder never holds a signing key whose tokens nothing verifies.
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	if err := writeNew(filepath.Join(dir, kid+publicKeySuffix), pubPEM, 0o644); err != nil {
		return "", err
	}
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})
	if err := writeNew(filepath.Join(dir, kid+privateKeySuffix), privPEM, 0o600); err != nil {
		return "", err
	}
	return kid, nil
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// keyIDFromFile returns the key id of "<dir>/<kid><suffix>".
func keyIDFromFile(path, suffix string) (string, error) {
	name := filepath.Base(path)
	kid, ok := strings.CutSuffix(name, suffix)
	if !ok {
		return "", fmt.Errorf("key file %s: name does not end in %s", path, suffix)
	}
	if err := validKeyID(kid); err != nil {
		return "", fmt.Errorf("key file %s: %w", path, err)
	}
	return kid, nil
}

// validKeyID accepts ids made of letters, digits, '-' and '_', which are safe both as file
// names and in a JWS header.
func validKeyID(kid string) error {
	if kid == "" || len(kid) > maxKeyIDLen {
		return fmt.Errorf("key id must be 1 to %d characters", maxKeyIDLen)
	}
	for _, c := range []byte(kid) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return fmt.Errorf("key id %q: only letters, digits, '-' and '_' are allowed", echo(kid))
		}
	}
	return nil
}

// parsePrivateKey decodes a PKCS#8 PEM Ed25519 private key.
func parsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM \"PRIVATE KEY\" block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing PKCS#8 key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is a %T, not ed25519", k)
	}
	return priv, nil
}

// parsePublicKey decodes a PKIX PEM Ed25519 public key.
func parsePublicKey(data []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PEM \"PUBLIC KEY\" block")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing PKIX key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("key is a %T, not ed25519", k)
	}
	return pub, nil
}

// LoadSigner reads a signing key from "<kid>.key"; the key id is the file name.
func LoadSigner(keyFile string) (*Signer, error) {
	kid, err := keyIDFromFile(keyFile, privateKeySuffix)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("reading signing key: %w", err)
	}
	priv, err := parsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", keyFile, err)
	}
	return newSigner(kid, priv)
}

// NewestSigner loads the most recently modified "*.key" file of dir (on equal times, the
// greatest name). With no key in dir the error wraps fs.ErrNotExist.
func NewestSigner(dir string) (*Signer, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing signing keys in %s: %w", dir, err)
	}
	var newest string
	var newestInfo fs.FileInfo
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, privateKeySuffix) || strings.HasPrefix(name, ".") {
			continue
		}
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		if newestInfo == nil || info.ModTime().After(newestInfo.ModTime()) ||
			info.ModTime().Equal(newestInfo.ModTime()) && name > newest {
			newest, newestInfo = name, info
		}
	}
	if newestInfo == nil {
		return nil, fmt.Errorf("no signing key (*%s) in %s: %w", privateKeySuffix, dir, fs.ErrNotExist)
	}
	return LoadSigner(filepath.Join(dir, newest))
}
