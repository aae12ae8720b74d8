package gateway

import (
	"compress/gzip"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/internal/auth"
)

// Paths served by Handler.
const (
	PathTelemetry      = "/v1/telemetry"
	PathTelemetryBatch = "/v1/telemetry/batch"
)

// Bodies of a 202 for one reading, as the seed answered them.
var (
	bodyMeterIngested   = []byte(`{"status":"meter telemetry ingested"}`)
	bodyVehicleIngested = []byte(`{"status":"vehicle telemetry ingested"}`)
)

var contentTypeJSON = []string{"application/json"}

// statusClientClosed is recorded (and written, to nobody) when the client went away before
// its readings were queued or answered.
const statusClientClosed = 499

// clientGone records that the client went away; the answer reaches nobody.
func clientGone(w http.ResponseWriter) int {
	w.WriteHeader(statusClientClosed)
	return statusClientClosed
}

// Handler serves POST /v1/telemetry (one reading) and POST /v1/telemetry/batch (a JSON array
// or NDJSON of readings of either kind); other methods on those paths get a 405 in the same
// error shape. Mount it on a shared mux at both paths (or at "/").
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathTelemetry, g.counted(PathTelemetry, g.serveReading))
	mux.HandleFunc("POST "+PathTelemetryBatch, g.counted(PathTelemetryBatch, g.serveBatch))
	mux.HandleFunc(PathTelemetry, g.counted(PathTelemetry, methodNotAllowed))
	mux.HandleFunc(PathTelemetryBatch, g.counted(PathTelemetryBatch, methodNotAllowed))
	return mux
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request) int {
	w.Header().Set("Allow", http.MethodPost)
	return writeStatus(w, &httpStatus{
		http:    http.StatusMethodNotAllowed,
		code:    codeUnimplemented,
		message: "method " + r.Method + " not allowed: use POST",
	})
}

// counted records each answer's code by path.
func (g *Gateway) counted(path string, serve func(http.ResponseWriter, *http.Request) int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		code := serve(w, r)
		g.metrics.request(path, code)
	}
}

// authenticate verifies the request's device token. It returns nil claims when the gateway
// runs without authentication, and writes the 401 itself.
func (g *Gateway) authenticate(w http.ResponseWriter, r *http.Request) (claims *auth.DeviceClaims, answered int) {
	if g.cfg.Devices == nil {
		return nil, 0
	}
	token, aerr := auth.BearerToken(r)
	if aerr == nil {
		c, err := g.cfg.Devices.Verify(token)
		if err == nil {
			return &c, 0
		}
		if !errors.As(err, &aerr) {
			aerr = &auth.Error{Reason: auth.ReasonMalformed, Message: err.Error()}
		}
	}
	g.metrics.unauthenticated.WithLabelValues(string(aerr.Reason)).Inc()
	auth.WriteChallenge(w, aerr)
	return nil, writeStatus(w, unauthenticated(aerr))
}

func (g *Gateway) serveReading(w http.ResponseWriter, r *http.Request) int {
	claims, answered := g.authenticate(w, r)
	if answered != 0 {
		return answered
	}
	if _, ok := requestFormat(r.Header.Get("Content-Type"), false); !ok {
		return writeStatus(w, unsupportedMediaType(r.Header.Get("Content-Type"), "application/json"))
	}
	buf, status := g.readBody(w, r, g.cfg.MaxBodyBytes)
	if status != nil {
		return writeStatus(w, status)
	}
	reading, derr := telemetry.DecodeReading(*buf, g.cfg.Now(), g.cfg.Limits)
	if derr != nil {
		g.metrics.rejectedPayload(refusedKind(derr), derr.Class, 1)
		g.releaseBody(buf)
		return writeStatus(w, decodeStatus(derr))
	}
	g.releaseBody(buf)
	if claims != nil && !claims.Scope.Allows(reading.DeviceID()) {
		g.metrics.rejected(reading.Kind(), reasonForbidden, 1)
		return writeStatus(w, outOfScope(claims, reading.DeviceID()))
	}
	ctx := r.Context()
	if ctx.Err() != nil {
		return clientGone(w)
	}
	m := g.shardMap()
	if m == nil {
		g.metrics.rejected(reading.Kind(), reasonUnavailable, 1)
		return g.writeUnavailable(w, errNoShardMap)
	}
	shard := g.route(m, reading)
	t := newTicket(1, 1)
	p := &pending{t: t, at: time.Now()}
	p.one[0] = queued{idx: 0, r: reading}
	p.items = p.one[:]
	if err := g.enqueue(shard, p); err != nil {
		g.metrics.rejected(reading.Kind(), reasonUnavailable, 1)
		return g.writeUnavailable(w, err)
	}
	select {
	case <-t.done:
	case <-ctx.Done():
		// The reading may still be published; the client retries and the store dedups.
		return clientGone(w)
	}
	if err := t.errs[0]; err != nil {
		g.metrics.rejected(reading.Kind(), reasonUnavailable, 1)
		return g.writeUnavailable(w, err)
	}
	g.metrics.accepted(reading.Kind(), 1)
	// Assigned, not Set: the shared slice saves an allocation per reading (net/http only
	// reads header values).
	w.Header()["Content-Type"] = contentTypeJSON
	w.WriteHeader(http.StatusAccepted)
	if reading.Kind() == telemetry.KindMeter {
		_, _ = w.Write(bodyMeterIngested)
	} else {
		_, _ = w.Write(bodyVehicleIngested)
	}
	return http.StatusAccepted
}

// enqueue queues p on a shard unless the gateway cannot accept readings now.
func (g *Gateway) enqueue(shard int, p *pending) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.draining {
		return errNotRunning
	}
	if err := g.acceptable(); err != nil {
		return err
	}
	if !g.shards[shard].offer(p) {
		return errQueueFull
	}
	return nil
}

func (g *Gateway) writeUnavailable(w http.ResponseWriter, err error) int {
	w.Header().Set("Retry-After", strconv.Itoa(int(max(1, g.cfg.RetryAfter.Round(time.Second)/time.Second))))
	return writeStatus(w, unavailableStatus(err))
}

// readBody reads the request body into a pooled buffer, refusing more than limit bytes
// (after decompression, for a gzip body; other encodings are refused).
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request, limit int64) (*[]byte, *httpStatus) {
	var body io.Reader = http.MaxBytesReader(w, r.Body, limit)
	switch enc := r.Header.Get("Content-Encoding"); strings.ToLower(enc) {
	case "", "identity":
		if r.ContentLength > limit {
			return nil, tooLarge(limit)
		}
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, &httpStatus{http: http.StatusBadRequest, code: codeInvalidArgument, message: "the body is not gzip: " + err.Error()}
		}
		defer func() { _ = zr.Close() }()
		body = http.MaxBytesReader(w, zr, limit)
	default:
		return nil, &httpStatus{http: http.StatusUnsupportedMediaType, code: codeInvalidArgument,
			message: "unsupported Content-Encoding " + strconv.Quote(truncate(enc, 64)) + ": send gzip or none"}
	}
	buf, _ := g.bodies.Get().(*[]byte)
	if buf == nil {
		b := make([]byte, 0, 4096)
		buf = &b
	}
	b := (*buf)[:0]
	// Size the buffer by the declared length, but not beyond 64 KiB before the bytes arrive:
	// memory grows with the bytes received, not with the bytes a client announces.
	if want := min(r.ContentLength, 64<<10); want > 0 && int64(cap(b)) < want {
		b = make([]byte, 0, want)
	}
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			*buf = b
			g.releaseBody(buf)
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return nil, tooLarge(limit)
			}
			return nil, &httpStatus{http: http.StatusBadRequest, code: codeInvalidArgument, message: "reading the request body: " + err.Error()}
		}
	}
	*buf = b
	return buf, nil
}

// releaseBody returns a small body buffer to the pool; large ones are left to the GC.
func (g *Gateway) releaseBody(buf *[]byte) {
	if cap(*buf) <= 64<<10 {
		g.bodies.Put(buf)
	}
}

// requestFormat maps a Content-Type to a batch format. A missing Content-Type is taken as
// JSON; NDJSON is accepted only where batch is true.
func requestFormat(contentType string, batch bool) (telemetry.BatchFormat, bool) {
	switch contentType {
	case "", "application/json":
		return telemetry.BatchJSON, true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return 0, false
	}
	switch strings.ToLower(mt) {
	case "application/json":
		return telemetry.BatchJSON, true
	case "application/x-ndjson", "application/ndjson", "application/jsonl":
		return telemetry.BatchNDJSON, batch
	}
	return 0, false
}
