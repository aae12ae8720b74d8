// Package natstest starts embedded NATS servers with JetStream for tests.
package natstest

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetingest/fleetingest/internal/localnats"
)

// Start starts a JetStream server (file storage, sync-always) in a temp dir; it stops when
// the test ends.
func Start(tb testing.TB) *localnats.Server {
	tb.Helper()
	s, err := localnats.Start(localnats.Config{StoreDir: tb.TempDir(), SyncAlways: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// Connect returns a client connection and its JetStream context; both close when the test ends.
func Connect(tb testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
	if err != nil {
		tb.Fatalf("connecting to NATS at %s: %v", url, err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("creating JetStream context: %v", err)
	}
	return nc, js
}
