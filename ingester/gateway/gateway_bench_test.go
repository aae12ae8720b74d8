package gateway_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/ingester/gateway"
)

// The benchmarks drive the handler over real HTTP (keep-alive) into an embedded JetStream
// server with sync-always file storage, and report readings/s. Run with
//
//	go test -run '^$' -bench Gateway -benchtime 5s ./ingester/gateway

func BenchmarkGatewaySingleReading(b *testing.B) {
	for _, clients := range []int{128, 512} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) { benchmarkSingle(b, clients) })
	}
}

func benchmarkSingle(b *testing.B, clients int) {
	e := newEnv(b, envOptions{shards: 2})
	now := time.Now()
	bodies := make([][]byte, 4096)
	for i := range bodies {
		if i%2 == 0 {
			bodies[i] = []byte(meterJSON(fmt.Sprintf("meter-%d", i), now))
		} else {
			bodies[i] = []byte(vehicleJSON(fmt.Sprintf("ev-%d", i), now))
		}
	}
	url := e.http.URL + gateway.PathTelemetry
	var next atomic.Int64
	b.SetParallelism(max(1, clients/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := bodies[next.Add(1)%int64(len(bodies))]
			resp, err := e.client.Post(url, "application/json", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, err = io.Copy(io.Discard, resp.Body)
			if cerr := resp.Body.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				b.Error(err)
				return
			}
			if resp.StatusCode != http.StatusAccepted {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "readings/s")
	reportMessages(b, e, b.N)
}

func BenchmarkGatewayBatch(b *testing.B) {
	const perBatch = 1000
	e := newEnv(b, envOptions{shards: 2})
	now := time.Now()
	var sb strings.Builder
	sb.WriteByte('[')
	for i := range perBatch {
		if i > 0 {
			sb.WriteByte(',')
		}
		if i%2 == 0 {
			sb.WriteString(meterJSON(fmt.Sprintf("meter-%d", i), now))
		} else {
			sb.WriteString(vehicleJSON(fmt.Sprintf("ev-%d", i), now))
		}
	}
	sb.WriteByte(']')
	body := []byte(sb.String())
	url := e.http.URL + gateway.PathTelemetryBatch
	want := fmt.Sprintf(`{"accepted":%d,"rejected":[]}`, perBatch)
	b.SetParallelism(2)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := e.client.Post(url, "application/json", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			got, err := io.ReadAll(resp.Body)
			if cerr := resp.Body.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				b.Error(err)
				return
			}
			if resp.StatusCode != http.StatusAccepted || string(got) != want {
				b.Errorf("status %d: %.200s", resp.StatusCode, got)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*perBatch)/b.Elapsed().Seconds(), "readings/s")
	reportMessages(b, e, b.N*perBatch)
}

func reportMessages(b *testing.B, e *env, readings int) {
	b.StopTimer()
	var msgs uint64
	for i := 0; i < e.topo.Shards; i++ {
		s, err := e.js.Stream(b.Context(), e.topo.Stream(i))
		if err != nil {
			b.Fatal(err)
		}
		info, err := s.Info(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		msgs += info.State.Msgs
	}
	if msgs > 0 {
		b.ReportMetric(float64(readings)/float64(msgs), "readings/msg")
	}
}

// BenchmarkGatewayHandlerInProcess calls the handler directly (no sockets), so it measures
// what the gateway itself costs per reading: decoding, placement, queueing, coalescing and
// the JetStream round trip, without the HTTP client and server.
func BenchmarkGatewayHandlerInProcess(b *testing.B) {
	e := newEnv(b, envOptions{shards: 2})
	now := time.Now()
	bodies := make([]string, 4096)
	for i := range bodies {
		if i%2 == 0 {
			bodies[i] = meterJSON(fmt.Sprintf("meter-%d", i), now)
		} else {
			bodies[i] = vehicleJSON(fmt.Sprintf("ev-%d", i), now)
		}
	}
	h := e.gw.Handler()
	var next atomic.Int64
	b.SetParallelism(256)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, gateway.PathTelemetry, strings.NewReader(bodies[next.Add(1)%int64(len(bodies))]))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusAccepted {
				b.Errorf("status %d: %s", rec.Code, rec.Body)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "readings/s")
	reportMessages(b, e, b.N)
}
