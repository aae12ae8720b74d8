package analytics_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"

	analyticsv1 "github.com/fleetingest/fleetingest/api/analytics/v1"
	"github.com/fleetingest/fleetingest/api/analytics/v1/analyticsv1connect"
)

func heapBytes() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// gzipOf packs n bytes of data repeated.
func gzipOf(t *testing.T, prefix string, n int, suffix string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	_, _ = io.WriteString(zw, prefix)
	chunk := bytes.Repeat([]byte("a"), 1<<20)
	for written := 0; written < n; written += len(chunk) {
		if _, err := zw.Write(chunk[:min(len(chunk), n-written)]); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = io.WriteString(zw, suffix)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func (f *authFixture) request(t *testing.T, method, path string, body []byte, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, f.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Header.Set("Authorization", "Bearer "+f.admin)
	res, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	data, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(data)
}

func TestAnalyticsBoundsRequestBodiesOnEveryProtocol(t *testing.T) {
	f := newAuthFixture(t)
	ctx := t.Context()

	t.Run("a gzip REST body that unpacks to 64 MiB is refused 413 and writes nothing", func(t *testing.T) {
		body := gzipOf(t, `{"vehicleId":"EV-big","meterId":"`, 64<<20, `"}`)
		code, answer := f.request(t, http.MethodPost, "/v1/analytics/mappings", body,
			http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}})
		if code != http.StatusRequestEntityTooLarge {
			t.Fatalf("%d bytes packed: %d %s, want 413", len(body), code, answer)
		}
		if _, err := f.reg.Get(ctx, "EV-big"); err == nil {
			t.Error("the refused mapping was written")
		}
	})
	t.Run("a plain REST body over the bound is refused 413", func(t *testing.T) {
		body := []byte(`{"vehicleId":"EV-big","meterId":"` + strings.Repeat("m", 1<<20) + `"}`)
		if code, answer := f.request(t, http.MethodPost, "/v1/analytics/mappings", body, http.Header{"Content-Type": {"application/json"}}); code != http.StatusRequestEntityTooLarge {
			t.Fatalf("%d %s, want 413", code, answer)
		}
	})
	t.Run("a REST body in an encoding the service does not speak is refused 415", func(t *testing.T) {
		if code, answer := f.request(t, http.MethodPost, "/v1/analytics/mappings", []byte(`{}`),
			http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"br"}}); code != http.StatusUnsupportedMediaType {
			t.Fatalf("%d %s, want 415", code, answer)
		}
	})
	t.Run("a gzip REST body within the bound is read", func(t *testing.T) {
		body := gzipOf(t, `{"vehicleId":"EV-gz","meterId":"meter-gz`, 0, `"}`)
		if code, answer := f.request(t, http.MethodPost, "/v1/analytics/mappings", body,
			http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}}); code != http.StatusOK {
			t.Fatalf("%d %s", code, answer)
		}
		if m, err := f.reg.Get(ctx, "EV-gz"); err != nil || m.MeterID != "meter-gz" {
			t.Errorf("mapping %+v, %v", m, err)
		}
	})
	for _, proto := range []struct {
		name string
		opt  []connect.ClientOption
	}{{"Connect", nil}, {"gRPC", []connect.ClientOption{connect.WithGRPC()}}, {"gRPC-Web", []connect.ClientOption{connect.WithGRPCWeb()}}} {
		t.Run("a 50 MB "+proto.name+" message is refused ResourceExhausted", func(t *testing.T) {
			c := analyticsv1connect.NewAnalyticsServiceClient(h2cClient(), f.url, append(proto.opt, bearer(f.admin))...)
			_, err := c.CreateMapping(ctx, connect.NewRequest(&analyticsv1.CreateMappingRequest{VehicleId: "EV-huge", MeterId: strings.Repeat("m", 50<<20)}))
			if code := connect.CodeOf(err); code != connect.CodeResourceExhausted {
				t.Fatalf("code %v (%v), want ResourceExhausted", code, err)
			}
		})
	}
	if _, err := f.reg.Get(ctx, "EV-huge"); err == nil {
		t.Error("a refused mapping was written")
	}
}

func TestAnalyticsMemoryStaysBoundedUnderCompressedBodies(t *testing.T) {
	f := newAuthFixture(t)
	// Gzip bodies within the bound on the wire (some 40 KB) that unpack to 40 MiB each, 8 at
	// once, as Connect requests.
	body := gzipOf(t, "", 40<<20, "")
	before := heapBytes()
	var wg sync.WaitGroup
	var peak uint64
	var mu sync.Mutex
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
			metrics.Read(s)
			mu.Lock()
			peak = max(peak, s[0].Value.Uint64())
			mu.Unlock()
		}
	}()
	for range 8 {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost,
				f.url+analyticsv1connect.AnalyticsServiceGetVehiclePerformanceProcedure, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/proto")
			req.Header.Set("Connect-Protocol-Version", "1")
			req.Header.Set("Content-Encoding", "gzip")
			req.Header.Set("Authorization", "Bearer "+f.viewer)
			res, err := h2cClient().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			if res.StatusCode != http.StatusTooManyRequests { // Connect's HTTP status for ResourceExhausted
				t.Errorf("a 40 MiB message was answered %d, want 429 (ResourceExhausted)", res.StatusCode)
			}
		})
	}
	wg.Wait()
	close(stop)
	mu.Lock()
	grown := int64(peak) - int64(before)
	mu.Unlock()
	t.Logf("heap peaked %.1f MiB above its start for 8 bodies of %d KB packed", float64(grown)/(1<<20), len(body)>>10)
	if grown > 128<<20 {
		t.Fatalf("heap grew %.1f MiB: compressed bodies are unpacked without a bound", float64(grown)/(1<<20))
	}
}

func TestAnalyticsQueryParametersAreCheckedNever500(t *testing.T) {
	f := newAuthFixture(t)
	admin := analyticsv1connect.NewAnalyticsServiceClient(h2cClient(), f.url, bearer(f.admin))
	if _, err := admin.CreateMapping(t.Context(), connect.NewRequest(&analyticsv1.CreateMappingRequest{VehicleId: "EV-1", MeterId: "meter-1"})); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path  string
		code  int
		names string // what the message must name
	}{
		{"/v1/analytics/performance/EV-1?utm_source=x", 200, ""},
		{"/v1/analytics/alerts?utm_source=x&fbclid=1", 200, ""},
		{"/v1/analytics/performance/EV-1?end=0001-01-01T00:00:00Z", 400, "end"},
		{"/v1/analytics/performance/EV-1?end=1970-01-01T10:00:00Z", 400, "end"},
		{"/v1/analytics/performance/EV-1?window=213504d", 400, "window"},
		{"/v1/analytics/performance/EV-1?window=9223372036854775807ns", 400, "window"},
		{"/v1/analytics/alerts?pageToken=9223372036854775807", 400, "pageToken"},
		{"/v1/analytics/alerts?pageSize=-1", 400, "pageSize"},
		{"/v1/analytics/alerts?threshold=NaN", 400, "threshold"},
		{"/v1/analytics/vehicles/EV-1/series?step=106752d", 400, "step"},
		{"/v1/status/vehicles?silentFor=213504d", 400, "silentFor"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			code, body := f.request(t, http.MethodGet, tc.path, nil, nil)
			if code != tc.code || !strings.Contains(body, tc.names) {
				t.Errorf("%d %s, want %d naming %q", code, body, tc.code, tc.names)
			}
		})
	}
}

func TestAnalyticsErrorsEchoAtMostAFewHundredBytes(t *testing.T) {
	f := newAuthFixture(t)
	id := strings.Repeat("é", 20_000) // 40 KB of an invalid id, within the body bound
	for _, proto := range []struct {
		name string
		opt  []connect.ClientOption
	}{{"Connect", nil}, {"gRPC", []connect.ClientOption{connect.WithGRPC()}}, {"gRPC-Web", []connect.ClientOption{connect.WithGRPCWeb()}}} {
		t.Run(proto.name, func(t *testing.T) {
			c := analyticsv1connect.NewAnalyticsServiceClient(h2cClient(), f.url, append(proto.opt, bearer(f.admin))...)
			_, err := c.GetVehiclePerformance(t.Context(), connect.NewRequest(&analyticsv1.GetVehiclePerformanceRequest{VehicleId: id}))
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument {
				t.Fatalf("%v, want InvalidArgument", err)
			}
			if len(ce.Message()) > 600 {
				t.Errorf("the message is %d bytes: it echoes the id", len(ce.Message()))
			}
		})
	}
	t.Run("REST", func(t *testing.T) {
		code, body := f.request(t, http.MethodGet, "/v1/analytics/performance/"+strings.Repeat("x", 30_000), nil, nil)
		if code != 400 || len(body) > 1000 {
			t.Errorf("%d, %d bytes: %.200s", code, len(body), body)
		}
	})
}
