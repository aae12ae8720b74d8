package analytics

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	analyticsv1 "github.com/fleetingest/fleetingest/api/analytics/v1"
)

func TestTheJSONCodecAppendsCompactAnswersAfterWhatTheBufferHeld(t *testing.T) {
	msg := &analyticsv1.MappingResponse{VehicleId: "EV 1", MeterId: "m-1", Message: "a, b: c"}
	got, err := jsonCodec{name: "json"}.MarshalAppend([]byte("prefix "), msg)
	if err != nil {
		t.Fatal(err)
	}
	body, ok := bytes.CutPrefix(got, []byte("prefix "))
	if !ok {
		t.Fatalf("the buffer's bytes were not kept: %s", got)
	}
	if !bytes.Contains(body, []byte(`"vehicleId":"EV 1","meterId":"m-1","message":"a, b: c"`)) {
		t.Errorf("answer not compact, or its strings changed: %s", body)
	}
	var back analyticsv1.MappingResponse
	if err := (jsonCodec{name: "json"}).Unmarshal(body, &back); err != nil || !proto.Equal(&back, msg) {
		t.Errorf("answer does not decode to what was sent: %v, %v", &back, err)
	}
}
