// Package mountedsecret lays out a folder the way kubelet mounts a Secret or ConfigMap
// volume, for tests of code that re-reads mounted files: the files live in a timestamped
// folder, "..data" links to it, and each file name links through "..data". Publish swaps
// the whole set atomically, as kubelet's atomic writer does.
package mountedsecret

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

var stamps atomic.Int64

// Publish writes files (name → content) into a new timestamped folder of dir, renames a new
// "..data" link over the old one, then removes the top-level links of names no longer
// published and adds the links of new names, in kubelet's order.
func Publish(tb testing.TB, dir string, files map[string][]byte) {
	tb.Helper()
	stamp := fmt.Sprintf("..2026_12_03_%06d", stamps.Add(1))
	if err := os.MkdirAll(filepath.Join(dir, stamp), 0o755); err != nil {
		tb.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, stamp, name), data, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(stamp, tmp); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		tb.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range entries {
		if n := e.Name(); !strings.HasPrefix(n, ".") && files[n] == nil {
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				tb.Fatal(err)
			}
		}
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			tb.Fatal(err)
		}
	}
}

// Files reads the named files of folders (each file's base name → content), to publish
// keys generated elsewhere.
func Files(tb testing.TB, paths ...string) map[string][]byte {
	tb.Helper()
	out := make(map[string][]byte, len(paths))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		out[filepath.Base(p)] = data
	}
	return out
}
