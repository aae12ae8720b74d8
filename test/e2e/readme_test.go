package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/test/envtest"
)

// TestTheReadmesTryItBlocksRunAsWritten runs the shell blocks of the README's "Try it"
// section, exactly as a newcomer pastes them after `make dev` (which builds bin/fleetingest
// and runs `bin/fleetingest dev` with its data in .fleetingest), against the README's address
// with the printed export lines pasted, and checks every answer the README shows (`# {…}`
// lines, "..." standing for the rest of an answer) appears, in order, in what they printed.
func TestTheReadmesTryItBlocksRunAsWritten(t *testing.T) {
	blocks := readmeBlocks(t, "Try it")
	if len(blocks) == 0 {
		t.Fatal(`README.md has no sh blocks under "## Try it"`)
	}
	bin := command.Path(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// A checkout as `make dev` leaves it: bin/fleetingest, and the data in .fleetingest.
	checkout := t.TempDir()
	if err := os.Mkdir(filepath.Join(checkout, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, filepath.Join(checkout, "bin", "fleetingest")); err != nil {
		t.Fatal(err)
	}
	out := newLineWriter("export FLEETINGEST_ADMIN_TOKEN=")
	dev := exec.Command(filepath.Join("bin", "fleetingest"), "dev", "--nats-port", "0", "--postgres-port", "0")
	dev.Dir = checkout
	dev.Stdout, dev.Stderr = out, out
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = dev.Process.Signal(syscall.SIGTERM)
		_ = dev.Wait()
	})
	select {
	case <-out.seen:
	case <-time.After(2 * time.Minute):
		t.Fatalf("fleetingest dev never printed its tokens (is 127.0.0.1:8080 taken?):\n%s", out)
	}

	script := "set -euo pipefail\n" + strings.Join(blocks, "\n")
	sh := exec.CommandContext(ctx, "bash", "-c", script)
	sh.Dir = checkout
	sh.Env = append(os.Environ(), devExports(out.String())...)
	got, err := sh.CombinedOutput()
	if err != nil {
		t.Fatalf("the Try it blocks failed: %v\n--- script\n%s\n--- output\n%s", err, script, got)
	}
	rest := string(got)
	for _, want := range readmeAnswers(blocks) {
		loc := want.FindStringIndex(rest)
		if loc == nil {
			t.Fatalf("the README shows an answer matching %s, the blocks printed (from there on):\n%s", want, rest)
		}
		rest = rest[loc[1]:]
	}
}

// readmeBlocks returns the ```sh blocks of the README section with the given heading.
func readmeBlocks(t *testing.T, heading string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(envtest.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	in, block := false, false
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			in = strings.TrimPrefix(line, "## ") == heading
		case in && !block && line == "```sh":
			block = true
			cur.Reset()
		case in && block && line == "```":
			block = false
			blocks = append(blocks, cur.String())
		case in && block:
			cur.WriteString(line + "\n")
		}
	}
	return blocks
}

// readmeAnswers turns the answers the blocks show (`# {…}` comment lines) into patterns, in
// order: "..." stands for any text.
func readmeAnswers(blocks []string) []*regexp.Regexp {
	var out []*regexp.Regexp
	for _, b := range blocks {
		for _, line := range strings.Split(b, "\n") {
			answer, ok := strings.CutPrefix(strings.TrimSpace(line), "# {")
			if !ok {
				continue
			}
			parts := strings.Split("{"+answer, "...")
			for i, p := range parts {
				parts[i] = regexp.QuoteMeta(p)
			}
			out = append(out, regexp.MustCompile(strings.Join(parts, ".*?")))
		}
	}
	return out
}

// devExports returns the variables of the `export NAME=value` lines `fleetingest dev`
// printed, as a newcomer would paste them.
func devExports(out string) []string {
	var env []string
	for _, line := range strings.Split(out, "\n") {
		if kv, ok := strings.CutPrefix(strings.TrimSpace(line), "export "); ok {
			env = append(env, kv)
		}
	}
	return env
}
