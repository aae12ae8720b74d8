package auth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// KeySetConfig configures a KeySet.
type KeySetConfig struct {
	// Dir is the folder of "<kid>.pub" files, often a mounted Secret. Required.
	Dir string
	// Interval between re-reads of Dir while Run runs. Default 1s.
	Interval time.Duration
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

func (c KeySetConfig) withDefaults() KeySetConfig {
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c KeySetConfig) validate() error {
	if c.Dir == "" {
		return errors.New("key set needs a folder")
	}
	if c.Interval < 0 {
		return fmt.Errorf("key set interval must be positive, got %s", c.Interval)
	}
	return nil
}

// KeySet is the verification keys of one folder: every "*.pub" file in it, the key id being
// the file name without ".pub". Names starting with "." are skipped, which is how a mounted
// Kubernetes Secret keeps its "..data" link and timestamped folders; its keys are links
// through "..data", which kubelet swaps atomically, and are read through their names.
//
// It is safe for concurrent use; a re-read that changes the keys swaps them all at once.
type KeySet struct {
	cfg  KeySetConfig
	mu   sync.Mutex // serializes reloads
	snap atomic.Pointer[keySnapshot]
}

// keySnapshot is one read of the folder. It is never modified once published.
type keySnapshot struct {
	// generation counts the changes since the KeySet was made; verifiers tie cached tokens to it.
	generation uint64
	keys       map[string]ed25519.PublicKey
	// files holds the bytes of every "*.pub" read, valid or not, to tell a change.
	files map[string][]byte
}

// NewKeySet reads the folder once; a folder without a valid key is an error.
func NewKeySet(cfg KeySetConfig) (*KeySet, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	k := &KeySet{cfg: cfg}
	if err := k.Reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// Reload re-reads the folder and swaps in its keys if the files changed. When the read fails
// or finds no valid key, the previous keys stay and the error says why.
func (k *KeySet) Reload() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	files, err := readKeyFiles(k.cfg.Dir)
	if err != nil {
		return err
	}
	prev := k.snap.Load()
	if prev != nil && maps.EqualFunc(prev.files, files, bytes.Equal) {
		return nil
	}
	keys := make(map[string]ed25519.PublicKey, len(files))
	var bad []string
	for name, data := range files {
		kid, err := keyIDFromFile(name, publicKeySuffix)
		if err == nil {
			var pub ed25519.PublicKey
			if pub, err = parsePublicKey(data); err == nil {
				keys[kid] = pub
				continue
			}
		}
		bad = append(bad, name)
		k.cfg.Logger.Warn("skipping unreadable verification key", "dir", k.cfg.Dir, "file", name, "err", err)
	}
	if len(keys) == 0 {
		return fmt.Errorf("no valid verification key (*%s) in %s (unreadable: %s)", publicKeySuffix, k.cfg.Dir, strings.Join(bad, ", "))
	}
	var gen uint64
	if prev != nil {
		gen = prev.generation + 1
		if maps.EqualFunc(prev.keys, keys, func(a, b ed25519.PublicKey) bool { return bytes.Equal(a, b) }) {
			// Only invalid files changed: keep the generation so cached tokens stay.
			gen = prev.generation
		}
	}
	k.snap.Store(&keySnapshot{generation: gen, keys: keys, files: files})
	k.cfg.Logger.Info("loaded verification keys", "dir", k.cfg.Dir, "kids", slices.Sorted(maps.Keys(keys)))
	return nil
}

// readKeyFiles returns the contents of every "*.pub" of dir by name. A name that vanished
// since the listing (a key removed mid-swap) is left out.
func readKeyFiles(dir string) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing verification keys in %s: %w", dir, err)
	}
	files := make(map[string][]byte, len(entries))
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, publicKeySuffix) {
			continue
		}
		path := filepath.Join(dir, name)
		info, err := os.Stat(path) // follows the links of a mounted Secret
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading verification key %s: %w", path, err)
		}
		if !info.Mode().IsRegular() {
			continue
		}
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading verification key %s: %w", path, err)
		}
		files[name] = data
	}
	return files, nil
}

// Run re-reads the folder every Interval until ctx ends. A failed re-read is logged and the
// previous keys stay.
func (k *KeySet) Run(ctx context.Context) error {
	t := time.NewTicker(k.cfg.Interval)
	defer t.Stop()
	var lastErr string // a lasting failure is logged once, not every Interval
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			err := k.Reload()
			switch {
			case err != nil && err.Error() != lastErr:
				lastErr = err.Error()
				k.cfg.Logger.Error("re-reading verification keys; keeping the previous ones", "dir", k.cfg.Dir, "err", err)
			case err == nil && lastErr != "":
				lastErr = ""
				k.cfg.Logger.Info("verification keys readable again", "dir", k.cfg.Dir)
			}
		}
	}
}

// KeyIDs returns the ids of the current keys, sorted.
func (k *KeySet) KeyIDs() []string {
	return slices.Sorted(maps.Keys(k.snap.Load().keys))
}

// Generation counts the changes of the keys: it moves whenever a key is added, removed or
// replaced.
func (k *KeySet) Generation() uint64 { return k.snap.Load().generation }

// current returns the current snapshot.
func (k *KeySet) current() *keySnapshot { return k.snap.Load() }
