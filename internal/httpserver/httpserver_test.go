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
