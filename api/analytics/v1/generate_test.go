package analyticsv1_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedCodeIsCurrent regenerates every .proto under api/ with the pinned toolchain
// into a temporary folder and fails on any difference from the committed files.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	genGo, genConnect := os.Getenv("PROTOC_GEN_GO"), os.Getenv("PROTOC_GEN_CONNECT_GO")
	if genGo == "" || genConnect == "" {
		t.Fatal("PROTOC_GEN_GO and PROTOC_GEN_CONNECT_GO are not set: run the tests with `make test`, which installs the pinned protoc plugins and sets them")
	}
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmd := exec.Command(filepath.Join(root, "hack", "protoc.sh"), out)
	cmd.Env = append(os.Environ(), "PROTOC_GEN_GO="+genGo, "PROTOC_GEN_CONNECT_GO="+genConnect)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("running hack/protoc.sh: %v\n%s", err, msg)
	}
	generated := map[string]bool{}
	err = filepath.WalkDir(out, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, path)
		generated[rel] = true
		want, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		got, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Errorf("%s is generated but not committed (run `make generate`): %v", rel, err)
			return nil
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what `make generate` produces: run `make generate` and commit", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("comparing generated files: %v", err)
	}
	if len(generated) == 0 {
		t.Fatal("hack/protoc.sh generated nothing")
	}
	// A committed generated file whose .proto is gone is drift too.
	err = filepath.WalkDir(filepath.Join(root, "api"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !strings.HasSuffix(path, ".pb.go") && !strings.HasSuffix(path, ".connect.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		if !generated[rel] {
			t.Errorf("%s is committed but no longer generated: delete it", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("listing committed generated files: %v", err)
	}
}
