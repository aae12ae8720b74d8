package localpg

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
)

// ErrNoBinaries is returned by FindBinDir when no PostgreSQL server binaries are installed.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, postgres) not found on PATH or in /usr/lib/postgresql/*/bin: install the Debian package `postgresql` (apt-get install -y postgresql)")

// debianRoot is where Debian installs one folder per PostgreSQL major version.
const debianRoot = "/usr/lib/postgresql"

// FindBinDir returns the folder holding initdb and postgres: the folder of the first initdb
// on PATH that has postgres beside it, else the newest /usr/lib/postgresql/<major>/bin.
func FindBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		// Debian links /usr/local/bin/initdb or pg_wrapper scripts; follow links to the real folder.
		if resolved, err := filepath.EvalSymlinks(p); err == nil {
			p = resolved
		}
		dir := filepath.Dir(p)
		if isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	entries, err := os.ReadDir(debianRoot)
	if err != nil {
		return "", ErrNoBinaries
	}
	var majors []int
	for _, e := range entries {
		if v, err := strconv.Atoi(e.Name()); err == nil {
			majors = append(majors, v)
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(majors)))
	for _, v := range majors {
		dir := filepath.Join(debianRoot, strconv.Itoa(v), "bin")
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("looked in %s: %w", debianRoot, ErrNoBinaries)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
