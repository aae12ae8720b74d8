// Package localnats runs an in-process NATS server with JetStream on file storage, for
// `fleetingest dev` and the tests.
package localnats

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/fleetingest/fleetingest/internal/freeport"
)

// Config of an embedded server.
type Config struct {
	// StoreDir holds JetStream's files. Required.
	StoreDir string
	// Host to listen on. Default 127.0.0.1.
	Host string
	// Port to listen on; 0 picks a free one. -1 is not allowed: clients connect over TCP.
	Port int
	// SyncAlways makes JetStream fsync every write before it acknowledges: the single-replica
	// durability the dev stack and the benchmarks run with. Default true via New's callers.
	SyncAlways bool
	// MaxStore bounds JetStream's file storage. Default 10 GiB.
	MaxStore int64
}

// Server is a running embedded NATS server.
type Server struct {
	*server.Server
	cfg Config
}

// Start starts a server and waits until it accepts connections.
func Start(cfg Config) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, fmt.Errorf("embedded NATS needs a store directory")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.MaxStore == 0 {
		cfg.MaxStore = 10 << 30
	}
	if err := os.MkdirAll(cfg.StoreDir, 0o750); err != nil {
		return nil, fmt.Errorf("creating NATS store directory: %w", err)
	}
	port := cfg.Port
	if port == 0 {
		p, err := freeport.On(cfg.Host)
		if err != nil {
			return nil, err
		}
		port = p
	}
	opts := &server.Options{
		ServerName:         "fleetingest-dev",
		Host:               cfg.Host,
		Port:               port,
		JetStream:          true,
		StoreDir:           filepath.Clean(cfg.StoreDir),
		JetStreamMaxStore:  cfg.MaxStore,
		JetStreamMaxMemory: 256 << 20,
		SyncAlways:         cfg.SyncAlways,
		NoSigs:             true,
		NoLog:              true,
		MaxPayload:         8 << 20,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("creating embedded NATS server: %w", err)
	}
	cfg.Port = port
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded NATS server on %s:%d not ready after 10s", cfg.Host, port)
	}
	return &Server{Server: s, cfg: cfg}, nil
}

// URL is the client URL of the server.
func (s *Server) URL() string {
	return "nats://" + net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port))
}

// Stop shuts the server down and waits for it to finish.
func (s *Server) Stop() {
	s.Shutdown()
	s.WaitForShutdown()
}

// Restart starts a new server on the same port and store, as after a crash or an upgrade.
func (s *Server) Restart() (*Server, error) {
	s.Stop()
	return Start(s.cfg)
}
