package drills

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/internal/freeport"
	"github.com/fleetingest/fleetingest/test/natstest"
	"github.com/fleetingest/fleetingest/test/pgtest"
)

// fleet is one shard of a fleet run as a cluster runs it, each part its own process: a NATS
// server, a gateway and an ingester (the fleetingest binary), and the shard's database.
type fleet struct {
	topo     ingester.Topology
	natsDir  string
	natsPort int
	natsURL  string
	nats     *proc
	js       jetstream.JetStream
	dsn      string
	gateway  *proc
	url      string
	ingester *proc
	ingArgs  []string
}

// startFleet starts the fleet name's processes and waits until its gateway and ingester are
// ready; ingesterArgs are added to the ingester's flags.
func startFleet(t *testing.T, name string, ingesterArgs ...string) *fleet {
	t.Helper()
	f := &fleet{topo: ingester.Topology{Namespace: "drills", Fleet: name, Shards: 1}, natsDir: filepath.Join(t.TempDir(), "nats")}
	var err error
	if f.natsPort, err = freeport.On("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	f.natsURL = "nats://127.0.0.1:" + strconv.Itoa(f.natsPort)
	f.nats = startNATS(t, f.natsDir, f.natsPort)
	_, f.js = natstest.Connect(t, f.natsURL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := ingester.EnsureStreams(ctx, f.js, f.topo, ingester.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	f.dsn = pgtest.NewDatabase(t, cluster)

	gwAddr, err := freeport.Addr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	f.url = "http://" + gwAddr
	f.gateway = start(t, "gateway", nil, command.Path(t), "gateway", "--nats-url", f.natsURL, "--namespace", f.topo.Namespace,
		"--fleet", f.topo.Fleet, "--http-addr", gwAddr, "--insecure-no-auth")
	f.ingArgs = append([]string{"ingester", "--nats-url", f.natsURL, "--namespace", f.topo.Namespace, "--fleet", f.topo.Fleet,
		"--shard", "0", "--dsn", f.dsn}, ingesterArgs...)
	f.startIngester(t)
	if err := waitReady(f.url, time.Minute); err != nil {
		t.Fatalf("gateway: %v\n%s", err, f.gateway.out)
	}
	return f
}

// startIngester starts the shard's ingester and waits until it is ready.
func (f *fleet) startIngester(t *testing.T) {
	t.Helper()
	addr, err := freeport.Addr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	f.ingester = start(t, "ingester", nil, command.Path(t), append(f.ingArgs, "--http-addr", addr)...)
	if err := waitReady("http://"+addr, time.Minute); err != nil {
		t.Fatalf("ingester: %v\n%s", err, f.ingester.out)
	}
}

// consumer is the shard's durable consumer as it is now.
func (f *fleet) consumer(t *testing.T) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := f.js.Consumer(ctx, f.topo.Stream(0), ingester.ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// stop stops the processes gracefully: gateway, ingester, NATS.
func (f *fleet) stop(t *testing.T) {
	t.Helper()
	f.gateway.stop(t)
	f.ingester.stop(t)
	f.nats.stop(t)
}

// backlog is the number of messages of topo's streams not yet delivered to an ingester, and
// of those delivered and not yet acknowledged.
func backlog(t *testing.T, js jetstream.JetStream, topo ingester.Topology) (undelivered, unacknowledged int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range topo.Shards {
		c, err := js.Consumer(ctx, topo.Stream(i), ingester.ConsumerName)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		undelivered += int(info.NumPending)
		unacknowledged += info.NumAckPending
	}
	return undelivered, unacknowledged
}
