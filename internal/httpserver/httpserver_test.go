package httpserver

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetingest/fleetingest/internal/freeport"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestServeAnswersHealthReadinessMetricsAndTheHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_things_total", Help: "things"})
	reg.MustRegister(c)
	c.Add(3)
	var ready atomic.Bool
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ServeListener(ctx, l, Config{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = w.Write([]byte("app:" + r.URL.Path))
			}),
			Ready: []ReadyFunc{func(context.Context) error {
				if !ready.Load() {
					return errors.New("warming up")
				}
				return nil
			}},
			Gatherer: reg,
		})
	}()
	base := "http://" + l.Addr().String()

	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "warming up") {
		t.Errorf("/readyz while not ready = %d %q", code, body)
	}
	ready.Store(true)
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz when ready = %d", code)
	}
	if code, body := get(t, base+"/metrics"); code != 200 || !strings.Contains(body, "test_things_total 3") {
		t.Errorf("/metrics = %d, without the registered counter", code)
	}
	if code, body := get(t, base+"/v1/x"); code != 200 || body != "app:/v1/x" {
		t.Errorf("handler = %d %q", code, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("graceful shutdown returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop")
	}
}

func TestServeFailsOnABusyAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	err = Serve(context.Background(), Config{Addr: l.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "listening on") {
		t.Errorf("Serve on a busy address = %v", err)
	}
}

func TestServeWithAMetricsAddressKeepsMetricsOffTheMainPort(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_things_total", Help: "things"})
	reg.MustRegister(c)
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, Config{
			Addr: addr, MetricsAddr: metricsAddr, Gatherer: reg, ReadyNote: "careful",
			Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }),
		})
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if conn, err := net.Dial("tcp", metricsAddr); err == nil {
			_ = conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the metrics listener never came up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, body := get(t, "http://"+metricsAddr+"/metrics"); code != 200 || !strings.Contains(body, "test_things_total") {
		t.Errorf("metrics port /metrics: %d %q", code, body)
	}
	if code, _ := get(t, "http://"+addr+"/metrics"); code != http.StatusTeapot {
		t.Errorf("main port /metrics reached %d, want the handler (no metrics there)", code)
	}
	if code, body := get(t, "http://"+addr+"/readyz"); code != 200 || !strings.Contains(body, "careful") {
		t.Errorf("/readyz: %d %q, want 200 with the note", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Addr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// serveTest serves cfg on a free port until the test ends and returns its base URL.
func serveTest(t *testing.T, cfg Config) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = ServeListener(ctx, l, cfg) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + l.Addr().String()
}

func TestRequestsOverTheInFlightBoundAreAnswered503AtOnce(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 10)
	url := serveTest(t, Config{MaxInFlight: 2, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		entered <- struct{}{}
		<-release
		w.WriteHeader(http.StatusNoContent)
	})})
	results := make(chan int, 2)
	for range 2 {
		go func() {
			res, err := http.Get(url + "/work")
			if err != nil {
				results <- -1
				return
			}
			_ = res.Body.Close()
			results <- res.StatusCode
		}()
	}
	<-entered
	<-entered
	start := time.Now()
	res, err := http.Post(url+"/work", "application/json", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || !strings.Contains(string(body), `"code":14`) {
		t.Errorf("third request: %d Retry-After %q %s, want 503 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"), body)
	}
	if time.Since(start) > time.Second {
		t.Errorf("the refusal took %s: it must not wait for a slot", time.Since(start))
	}
	if code, _ := get(t, url+"/healthz"); code != 200 {
		t.Errorf("/healthz while the handler is full: %d", code)
	}
	close(release)
	for range 2 {
		if code := <-results; code != http.StatusNoContent {
			t.Errorf("a request within the bound: %d", code)
		}
	}
}

func TestABodyThatTricklesInIsCutAtTheReadTimeout(t *testing.T) {
	readErr := make(chan error, 1)
	url := serveTest(t, Config{ReadTimeout: 500 * time.Millisecond, Handler: http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		readErr <- err
	})})
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if _, err := io.WriteString(conn, "POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 16777216\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	go func() { // a byte every 100 ms: never done within the timeout
		for range 50 {
			time.Sleep(100 * time.Millisecond)
			if _, err := conn.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	select {
	case err := <-readErr:
		if err == nil {
			t.Fatal("the trickling body was read to its end")
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("the body was cut after %s, want about the 500 ms read timeout", took)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("the trickling body was not cut within 4 s")
	}
}
