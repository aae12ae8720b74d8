package gateway

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/internal/auth"
)

// batchResponse is the 202 body of a batch: how many readings were durably queued and why
// each of the others was not.
type batchResponse struct {
	Accepted int             `json:"accepted"`
	Rejected []batchRejected `json:"rejected"`
}

type batchRejected struct {
	Index int         `json:"index"`
	Error *httpStatus `json:"error"`
}

func (g *Gateway) serveBatch(w http.ResponseWriter, r *http.Request) int {
	claims, answered := g.authenticate(w, r)
	if answered != 0 {
		return answered
	}
	format, ok := requestFormat(r.Header.Get("Content-Type"), true)
	if !ok {
		return writeStatus(w, unsupportedMediaType(r.Header.Get("Content-Type"), "application/json or application/x-ndjson"))
	}
	buf, status := g.readBody(w, r, g.cfg.MaxBatchBodyBytes)
	if status != nil {
		return writeStatus(w, status)
	}
	items, derr := telemetry.DecodeBatch(*buf, format, g.cfg.Now(), g.cfg.Limits, g.cfg.MaxBatchReadings)
	g.releaseBody(buf)
	if derr != nil {
		return writeStatus(w, decodeStatus(derr))
	}
	ctx := r.Context()
	if ctx.Err() != nil {
		return clientGone(w)
	}

	t, forbidden := g.queueBatch(items, claims)
	select {
	case <-t.done:
	case <-ctx.Done():
		return clientGone(w)
	}
	resp, unavailable := g.batchAnswer(items, t, forbidden)
	if resp.Accepted == 0 && unavailable != nil {
		return g.writeUnavailable(w, unavailable)
	}
	body, err := json.Marshal(resp)
	if err != nil {
		return writeStatus(w, &httpStatus{http: http.StatusInternalServerError, code: codeInternal, message: "encoding the batch answer: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(body)
	return http.StatusAccepted
}

// queueBatch queues the batch's valid readings that the token covers on their shards, at
// most MaxReadingsPerMessage a message, and returns their ticket. forbidden answers, by
// index, the valid readings outside the token's scope (nil claims: no token checked).
func (g *Gateway) queueBatch(items []telemetry.BatchItem, claims *auth.DeviceClaims) (t *ticket, forbidden map[int]*httpStatus) {
	m := g.shardMap()
	var perShard [][]queued
	if m != nil {
		perShard = make([][]queued, m.Shards())
	}
	valid := 0
	var unplaced []queued
	for _, it := range items {
		if it.Err != nil {
			continue
		}
		if claims != nil && !claims.Scope.Allows(it.Reading.DeviceID()) {
			if forbidden == nil {
				forbidden = map[int]*httpStatus{}
			}
			forbidden[it.Index] = outOfScope(claims, it.Reading.DeviceID())
			continue
		}
		valid++
		if m == nil {
			unplaced = append(unplaced, queued{idx: int32(it.Index), r: it.Reading})
			continue
		}
		s := g.route(m, it.Reading)
		perShard[s] = append(perShard[s], queued{idx: int32(it.Index), r: it.Reading})
	}
	t = newTicket(len(items), valid)
	if len(unplaced) > 0 {
		t.fail(unplaced, errNoShardMap)
	}
	now := time.Now()
	maxN := g.cfg.MaxReadingsPerMessage
	for s, qs := range perShard {
		for len(qs) > 0 {
			n := min(len(qs), maxN)
			p := &pending{t: t, items: qs[:n:n], at: now}
			if err := g.enqueue(s, p); err != nil {
				t.fail(p.items, err)
			}
			qs = qs[n:]
		}
	}
	return t, forbidden
}

// batchAnswer counts what became of each item of a batch whose ticket is done, and returns
// the last reason a reading could not be queued, if any.
func (g *Gateway) batchAnswer(items []telemetry.BatchItem, t *ticket, forbidden map[int]*httpStatus) (resp batchResponse, unavailable error) {
	resp.Rejected = []batchRejected{}
	for _, it := range items {
		switch {
		case it.Err != nil:
			g.metrics.rejectedPayload(refusedKind(it.Err), it.Err.Class, 1)
			resp.Rejected = append(resp.Rejected, batchRejected{Index: it.Index, Error: decodeStatus(it.Err)})
		case forbidden[it.Index] != nil:
			g.metrics.rejected(it.Reading.Kind(), reasonForbidden, 1)
			resp.Rejected = append(resp.Rejected, batchRejected{Index: it.Index, Error: forbidden[it.Index]})
		case t.errs[it.Index] != nil:
			unavailable = t.errs[it.Index]
			g.metrics.rejected(it.Reading.Kind(), reasonUnavailable, 1)
			resp.Rejected = append(resp.Rejected, batchRejected{Index: it.Index, Error: unavailableStatus(unavailable)})
		default:
			g.metrics.accepted(it.Reading.Kind(), 1)
			resp.Accepted++
		}
	}
	return resp, unavailable
}

// refusedKind names the kind of a refused reading for metrics, where its violations tell.
func refusedKind(err *telemetry.Error) string {
	for _, v := range err.Violations {
		switch v.Field {
		case telemetry.FieldMeterID, telemetry.FieldKwhConsumedAc, telemetry.FieldVoltage:
			return telemetry.KindMeter.String()
		case telemetry.FieldVehicleID, telemetry.FieldSoc, telemetry.FieldKwhDeliveredDc, telemetry.FieldBatteryTemp:
			return telemetry.KindVehicle.String()
		}
	}
	return "unknown"
}
