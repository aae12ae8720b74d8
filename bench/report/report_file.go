package report

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// EnvDir is the environment variable that names the folder of results.json; unset, nothing
// is written.
const EnvDir = "BENCH_RESULTS"

// FileName is the results file in that folder.
const FileName = "results.json"

// Dir returns the folder EnvDir names, or "" when it is unset. A relative folder is taken
// from the module's root (the nearest folder above the working directory with a go.mod),
// because go test runs each package's benchmarks in that package's own folder.
func Dir() (string, error) {
	dir := os.Getenv(EnvDir)
	if dir == "" || filepath.IsAbs(dir) {
		return dir, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("resolving %s=%s: %w", EnvDir, dir, err)
	}
	for root := wd; ; root = filepath.Dir(root) {
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			return filepath.Join(root, dir), nil
		}
		if filepath.Dir(root) == root {
			return filepath.Join(wd, dir), nil
		}
	}
}

// ReadFile reads the results at path; a file that does not exist holds none.
func ReadFile(path string) (Results, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Results{Benchmarks: map[string]Benchmark{}}, nil
	}
	if err != nil {
		return Results{}, err
	}
	defer func() { _ = f.Close() }() // read only: closing cannot lose data
	r, err := Decode(f)
	if err != nil {
		return Results{}, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// MergeFile merges update into dir/results.json (see Merge), creating the folder and the file
// as needed. The file is replaced whole (written beside it, then renamed), so a reader never
// sees half of it, and merges are serialized by a lock on the folder, so that benchmark
// binaries finishing at once do not lose each other's records.
func MergeFile(dir string, update Results) (err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return fmt.Errorf("locking %s: %w", dir, err)
	}
	defer func() { err = errors.Join(err, unlock()) }()
	path := filepath.Join(dir, FileName)
	base, err := ReadFile(path)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".results-*.json")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name()) // best effort: the error already says the merge failed
		}
	}()
	if err := Encode(tmp, Merge(base, update)); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
