package localnats

import (
	"testing"

	"github.com/nats-io/nats.go"
)

func TestStartServesJetStreamAndRestartKeepsStreams(t *testing.T) {
	dir := t.TempDir()
	s, err := Start(Config{StoreDir: dir, SyncAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	if !s.JetStreamEnabled() {
		t.Fatal("JetStream is off")
	}
	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AddStream(&nats.StreamConfig{Name: "S", Subjects: []string{"s"}, Storage: nats.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish("s", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	nc.Close()

	s2, err := s.Restart()
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Stop()
	if s2.URL() != s.URL() {
		t.Errorf("restart moved the server from %s to %s", s.URL(), s2.URL())
	}
	nc, err = nats.Connect(s2.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ = nc.JetStream()
	info, err := js.StreamInfo("S")
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("stream holds %d messages after restart, want 1", info.State.Msgs)
	}
}

func TestStartNeedsAStoreDir(t *testing.T) {
	if _, err := Start(Config{}); err == nil {
		t.Error("Start without a store dir succeeded")
	}
}
