package e2e

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// devProcess runs `fleetingest dev` in a temp folder on free ports and returns its base URL,
// data folder and what it printed once it printed its tokens.
func devProcess(t *testing.T, args ...string) (url, dataDir, printed string) {
	t.Helper()
	bin := command.Path(t)
	dataDir = filepath.Join(t.TempDir(), "dev")
	wait := "export FLEETINGEST_ADMIN_TOKEN="
	for _, a := range args {
		if a == "--insecure-no-auth" {
			wait = "WARNING: AUTHENTICATION IS OFF"
		}
	}
	out := newLineWriter(wait)
	cmd := exec.Command(bin, append([]string{"dev", "--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--nats-port", "0", "--postgres-port", "0"}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	select {
	case <-out.seen:
	case <-time.After(2 * time.Minute):
		t.Fatalf("dev never printed %q:\n%s", wait, out)
	}
	m := regexp.MustCompile(`fleetingest dev ready: (http://\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no ready line:\n%s", out)
	}
	return m[1], dataDir, out.String()
}

// fleetingest runs the binary and returns the last line of its stdout.
func fleetingest(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(command.Path(t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("fleetingest %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	return lines[len(lines)-1]
}

func postWithToken(t *testing.T, url, token, body string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/v1/telemetry", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	return res.StatusCode
}

// TestTokensMintedAndRevokedWithTheCommandLine mints a device token for one meter with
// `fleetingest token device`, posts with it, revokes it with `fleetingest token revoke` and
// sees it refused within a second.
func TestTokensMintedAndRevokedWithTheCommandLine(t *testing.T) {
	url, dataDir, _ := devProcess(t)
	token := fleetingest(t, "token", "device", "--data-dir", dataDir, "--device", "meter-cli", "--ttl", "1s")
	reading := func() string {
		return `{"meterId":"meter-cli","kwhConsumedAc":1,"voltage":230,"timestamp":"` + time.Now().UTC().Format(time.RFC3339Nano) + `"}`
	}
	if code := postWithToken(t, url, token, reading()); code != http.StatusAccepted {
		t.Fatalf("a fresh 1 s token: %d", code)
	}
	time.Sleep(2 * time.Second)
	if code := postWithToken(t, url, token, reading()); code != http.StatusUnauthorized {
		t.Fatalf("the 1 s token 2 s later: %d, want 401", code)
	}

	token = fleetingest(t, "token", "device", "--data-dir", dataDir, "--prefix", "")
	if code := postWithToken(t, url, token, reading()); code != http.StatusAccepted {
		t.Fatalf("an every-device token: %d", code)
	}
	jti := fleetingest(t, "token", "revoke", "--data-dir", dataDir, "--token", token)
	revoked := time.Now()
	if jti == "" || strings.Contains(jti, " ") {
		t.Fatalf("revoke printed %q, want the token's id", jti)
	}
	for postWithToken(t, url, token, reading()) != http.StatusUnauthorized {
		if time.Since(revoked) > time.Second {
			t.Fatal("the revoked token is still accepted a second later")
		}
		time.Sleep(10 * time.Millisecond)
	}

	kid := fleetingest(t, "token", "keygen", "--out", filepath.Join(t.TempDir(), "keys"))
	if !regexp.MustCompile(`^[0-9a-f]+$`).MatchString(kid) {
		t.Errorf("keygen printed %q, want a key id", kid)
	}
	user := fleetingest(t, "token", "user", "--data-dir", dataDir, "--name", "ops", "--role", "viewer")
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/analytics/mappings", http.NoBody)
	req.Header.Set("Authorization", "Bearer "+user)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("a viewer token from `token user`: %d", res.StatusCode)
	}
}

// TestDevWithoutAuthenticationSaysSoLoudly runs `fleetingest dev --insecure-no-auth`: it
// takes readings without a token, and says at start and in /readyz that nothing is checked.
func TestDevWithoutAuthenticationSaysSoLoudly(t *testing.T) {
	url, dataDir, printed := devProcess(t, "--insecure-no-auth")
	if strings.Contains(printed, "FLEETINGEST_DEVICE_TOKEN") {
		t.Errorf("an insecure dev printed tokens:\n%s", printed)
	}
	res, err := http.Post(url+"/v1/telemetry", "application/json", strings.NewReader(
		`{"meterId":"m-open","kwhConsumedAc":1,"voltage":230,"timestamp":"`+time.Now().UTC().Format(time.RFC3339)+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Errorf("a reading without a token: %d, want 202", res.StatusCode)
	}
	res, err = http.Get(url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(res.Body)
	_ = res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(body.String(), "AUTHENTICATION IS OFF") {
		t.Errorf("/readyz: %d %q, want 200 saying authentication is off", res.StatusCode, body.String())
	}
	if _, err := os.Stat(filepath.Join(dataDir, "auth")); err == nil {
		t.Error("an insecure dev made signing keys")
	}
}
