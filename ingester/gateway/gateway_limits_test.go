package gateway_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/ingester/gateway"
	"github.com/fleetingest/fleetingest/internal/httpserver"
)

// heapBytes is the heap's live objects after a collection.
func heapBytes() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestGatewayMemoryGrowsWithBytesReceivedNotBytesAnnounced(t *testing.T) {
	e := newEnv(t, envOptions{})
	before := heapBytes()
	// 300 connections, each announcing a 16 MiB batch and sending 1 KiB of it.
	const conns = 300
	addr := strings.TrimPrefix(e.http.URL, "http://")
	var open []net.Conn
	defer func() {
		for _, c := range open {
			_ = c.Close()
		}
	}()
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: %d\r\n\r\n", gateway.PathTelemetryBatch, 16<<20)
	chunk := bytes.Repeat([]byte(" "), 1024)
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second) // every handler is reading its body
	grown := int64(heapBytes()) - int64(before)
	t.Logf("heap grew %.1f MiB for %d stalled 16 MiB batches", float64(grown)/(1<<20), conns)
	if grown > 64<<20 {
		t.Fatalf("heap grew %.1f MiB for %d connections that sent 1 KiB each: memory follows announced sizes", float64(grown)/(1<<20), conns)
	}
}

func TestGatewayBoundsTheStreamsOfHTTP2Connections(t *testing.T) {
	e := newEnv(t, envOptions{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = httpserver.ServeListener(ctx, l, httpserver.Config{Handler: e.gw.Handler(), MaxInFlight: 150})
	}()
	defer func() { cancel(); <-served }()
	url := "http://" + l.Addr().String() + gateway.PathTelemetryBatch

	before := heapBytes()
	// Two h2c connections, 250 streams each, every stream announcing 16 MiB and sending 1 KiB.
	var writers []*io.PipeWriter
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for range 2 {
		protocols := new(http.Protocols)
		protocols.SetUnencryptedHTTP2(true)
		client := &http.Client{Transport: &http.Transport{Protocols: protocols}}
		t.Cleanup(client.CloseIdleConnections)
		for range 250 {
			pr, pw := io.Pipe()
			writers = append(writers, pw)
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, pr)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = 16 << 20
			req.Header.Set("Content-Type", "application/x-ndjson")
			wg.Go(func() {
				res, err := client.Do(req)
				code := -1
				if err == nil {
					code = res.StatusCode
					_ = res.Body.Close()
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
			})
			go func() { _, _ = pw.Write(bytes.Repeat([]byte(" "), 1024)) }()
		}
	}
	time.Sleep(2 * time.Second)
	grown := int64(heapBytes()) - int64(before)
	mu.Lock()
	busy := codes[http.StatusServiceUnavailable]
	mu.Unlock()
	t.Logf("heap grew %.1f MiB; %d streams answered 503 so far", float64(grown)/(1<<20), busy)
	if grown > 96<<20 {
		t.Errorf("heap grew %.1f MiB for 500 streams that sent 1 KiB each", float64(grown)/(1<<20))
	}
	if busy == 0 {
		t.Error("no stream was refused although 500 exceed the in-flight bound of 150")
	}
	for _, w := range writers {
		_ = w.CloseWithError(io.ErrUnexpectedEOF)
	}
	cancel()
	wg.Wait()
}

func TestGatewayDecompressesGzipBodiesWithinTheSameLimits(t *testing.T) {
	e := newEnv(t, envOptions{gateway: func(c *gateway.Config) { c.MaxBatchBodyBytes = 64 << 10 }})
	now := time.Now()
	batch := []byte(meterJSON("meter-gz", now) + "\n" + vehicleJSON("ev-gz", now) + "\n")
	post := func(encoding string, body []byte) answer {
		return e.postHeaders(t.Context(), gateway.PathTelemetryBatch, "application/x-ndjson", string(body), http.Header{"Content-Encoding": {encoding}})
	}
	if a := post("gzip", gzipped(t, batch)); a.code != 202 || !strings.Contains(string(a.body), `"accepted":2`) {
		t.Fatalf("a gzip batch: %d %s", a.code, a.body)
	}
	// 64 KiB + 1 once unpacked: a few hundred bytes on the wire.
	bomb := gzipped(t, append(bytes.Repeat([]byte(" "), 64<<10), '\n'))
	if a := post("gzip", bomb); a.code != 413 {
		t.Errorf("a gzip body over the limit once unpacked (%d bytes packed): %d %s, want 413", len(bomb), a.code, a.body)
	}
	if a := post("gzip", []byte("not gzip at all")); a.code != 400 {
		t.Errorf("a body that is not gzip: %d %s, want 400", a.code, a.body)
	}
	if a := post("br", batch); a.code != 415 {
		t.Errorf("an encoding the gateway does not speak: %d %s, want 415", a.code, a.body)
	}
	if _, meters, _ := e.find("meter-gz"); len(meters) != 1 {
		t.Errorf("%d readings of meter-gz published, want the one of the accepted batch", len(meters))
	}
}

func TestGatewayErrorsEchoAtMostAFewHundredBytesOfInput(t *testing.T) {
	e := newEnv(t, envOptions{})
	huge := strings.Repeat("x", 200_000)
	for _, tc := range []struct{ name, path, body string }{
		{"a huge id", gateway.PathTelemetry, meterJSON(huge, time.Now())},
		{"a huge unknown field", gateway.PathTelemetry, `{"` + huge + `":1}`},
		{"a huge id in a batch", gateway.PathTelemetryBatch, meterJSON(huge, time.Now()) + "\n" + meterJSON("ok-1", time.Now())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := e.post(tc.path, "application/x-ndjson", tc.body)
			if a.code == 202 && tc.path == gateway.PathTelemetry {
				t.Fatalf("accepted: %s", a.body)
			}
			if len(a.body) > 2048 {
				t.Errorf("the answer is %d bytes: it echoes the input", len(a.body))
			}
			var parsed map[string]any
			if err := json.Unmarshal(a.body, &parsed); err != nil {
				t.Errorf("the cut answer is not JSON: %v", err)
			}
		})
	}
}
