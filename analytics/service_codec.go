package analytics

import (
	"bytes"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// jsonCodec is the handler's JSON codec, and so the REST paths' (the transcoder passes it
// through): protojson that also writes zero values (`"meterReadings": 0`, `"missingShards":
// []`), so clients see every field. It takes both names connect-go gives JSON.
type jsonCodec struct{ name string }

func (c jsonCodec) Name() string { return c.name }

func (c jsonCodec) Marshal(v any) ([]byte, error) { return c.MarshalAppend(nil, v) }

// MarshalAppend lets connect-go encode into its pooled buffers. protojson varies its spaces
// from build to build on purpose: answers are compacted, the same from every build.
func (jsonCodec) MarshalAppend(dst []byte, v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("encoding %T as JSON: not a proto message", v)
	}
	out, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	buf := bytes.NewBuffer(dst)
	err = json.Compact(buf, out)
	return buf.Bytes(), err
}

func (jsonCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("decoding JSON into %T: not a proto message", v)
	}
	if len(data) == 0 {
		return nil // an empty body is the empty message, as connect-go's own codec has it
	}
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, m)
}
