package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNATSUnreachable marks errors caused by not reaching NATS at all, as opposed to NATS
// refusing a request.
var ErrNATSUnreachable = errors.New("NATS unreachable")

// NATSConnector hands out JetStream contexts for a server URL and an optional credentials
// file's content.
type NATSConnector interface {
	JetStream(ctx context.Context, url string, creds []byte) (jetstream.JetStream, error)
}

// NATSPool keeps one connection per URL and credentials, shared by every FleetIngestion that
// uses them, and reconnects in the background after an outage. Its zero value is not usable:
// call NewNATSPool.
type NATSPool struct {
	connectTimeout time.Duration
	log            *slog.Logger

	mu    sync.Mutex
	conns map[string]*nats.Conn
}

// NewNATSPool returns an empty pool. connectTimeout bounds each dial (default 5s).
func NewNATSPool(connectTimeout time.Duration, log *slog.Logger) *NATSPool {
	if connectTimeout <= 0 {
		connectTimeout = 5 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	return &NATSPool{connectTimeout: connectTimeout, log: log, conns: map[string]*nats.Conn{}}
}

// JetStream returns a JetStream context on a connected connection to url, dialling one if
// there is none. While a pooled connection is reconnecting, it fails at once with
// ErrNATSUnreachable rather than waiting for requests to time out.
func (p *NATSPool) JetStream(_ context.Context, url string, creds []byte) (jetstream.JetStream, error) {
	key := poolKey(url, creds)
	p.mu.Lock()
	defer p.mu.Unlock()
	nc := p.conns[key]
	if nc != nil && nc.IsClosed() {
		delete(p.conns, key)
		nc = nil
	}
	if nc == nil {
		opts := []nats.Option{
			nats.Name("fleetingest-operator"),
			nats.Timeout(p.connectTimeout),
			nats.MaxReconnects(-1),
			nats.ReconnectWait(time.Second),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if err != nil { // nil when the pool closes the connection
					p.log.Warn("disconnected from NATS", "url", url, "err", err)
				}
			}),
			nats.ReconnectHandler(func(c *nats.Conn) {
				p.log.Info("reconnected to NATS", "url", c.ConnectedUrlRedacted())
			}),
		}
		if len(creds) > 0 {
			opts = append(opts, nats.UserCredentialBytes(creds))
		}
		var err error
		if nc, err = nats.Connect(url, opts...); err != nil {
			return nil, fmt.Errorf("%w: connecting to %s: %w", ErrNATSUnreachable, url, err)
		}
		p.conns[key] = nc
	}
	if !nc.IsConnected() {
		return nil, fmt.Errorf("%w: connection to %s is %s", ErrNATSUnreachable, url, statusName(nc.Status()))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("creating a JetStream context on %s: %w", url, err)
	}
	return js, nil
}

// Close closes every pooled connection.
func (p *NATSPool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, nc := range p.conns {
		nc.Close()
		delete(p.conns, k)
	}
}

func poolKey(url string, creds []byte) string {
	sum := sha256.Sum256(creds)
	return url + "#" + hex.EncodeToString(sum[:8])
}

func statusName(s nats.Status) string {
	switch s {
	case nats.RECONNECTING:
		return "reconnecting"
	case nats.DISCONNECTED:
		return "disconnected"
	case nats.CLOSED:
		return "closed"
	case nats.CONNECTING:
		return "connecting"
	default:
		return s.String()
	}
}

// isUnreachable reports whether err means NATS could not be reached (rather than refusing).
func isUnreachable(err error) bool {
	return errors.Is(err, ErrNATSUnreachable) ||
		errors.Is(err, nats.ErrNoServers) ||
		errors.Is(err, nats.ErrConnectionClosed) ||
		errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse)
}
