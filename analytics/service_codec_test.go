package analytics

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	analyticsv1 "github.com/fleetingest/fleetingest/api/analytics/v1"
)

func TestCompactJSONRemovesWhitespaceOutsideStringsOnly(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"spaces after commas and colons go", `{"a": 1, "b": [1, 2]}`, `{"a":1,"b":[1,2]}`},
		{"spaces inside strings stay", `{"m": "a, b: c"}`, `{"m":"a, b: c"}`},
		{"an escaped quote does not end the string", `{"m": "say \"x, y\"", "n": 1}`, `{"m":"say \"x, y\"","n":1}`},
		{"an escaped backslash before a quote ends the string", `{"m": "a\\", "n": 2}`, `{"m":"a\\","n":2}`},
		{"newlines and tabs go", "{\n\t\"a\": 1\r\n}", `{"a":1}`},
		{"compact input is unchanged", `{"a":1}`, `{"a":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(compactJSON([]byte(tc.in))); got != tc.want {
				t.Errorf("compactJSON(%s) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

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
