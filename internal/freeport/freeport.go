// Package freeport finds a TCP port nobody listens on, for servers the dev stack and the
// tests start on ports the caller did not choose.
package freeport

import (
	"fmt"
	"net"
)

// On returns a port free on host at the time of the call. Another process may take it before
// the caller binds it; callers that can retry on a busy port should.
func On(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("releasing the free port %d: %w", port, err)
	}
	return port, nil
}

// Addr returns "host:port" with a port free on host.
func Addr(host string) (string, error) {
	port, err := On(host)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, fmt.Sprint(port)), nil
}
